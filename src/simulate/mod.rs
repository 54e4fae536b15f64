//! `chimewatch simulate`: a reproducible fleet of Chime SDK clients and Voice Connector calls to look at.
//!
//! Simulated JS, Android and iOS attendees join meetings, fail to join, reconnect, lose devices and leave, and send
//! their events as their SDKs do: the SDKs' own ingestion protocol (with JoinTokens the "backend" registers, and the
//! JS SDK's page-end beacons) or the blog sample's `{name, attributes}` uploads; Voice Connector calls reach the
//! gateway as SIP message log records. A scenario shapes the fleet's health over time.
//!
//! - [`fleet`]: the fleet, pure and deterministic: `Fleet::new(config)` and `step(now_ms)`, one tick at a time.
//! - [`session`]: an attendee's plan and state, and its events in each SDK's shapes.
//! - [`voice`]: Voice Connector calls as SIP messages.
//! - [`profile`]: SDKs, versions, browsers and devices, and each SDK's statuses and error names.
//! - [`scenario`]: how the fleet's health changes over a run.
//! - [`random`]: the seeded draws.
//! - [`driver`]: the HTTP side: [`run`] plays a fleet against a gateway (in-process too, e.g. for `up --demo`).

pub mod driver;
pub mod fleet;
pub mod profile;
pub mod random;
pub mod scenario;
pub mod session;
pub mod voice;

pub use driver::{Failure, Options, Summary, run};
pub use scenario::Scenario;

/// Events per second of `up --demo`'s fleet (incident scenario): enough to fill every panel, gentle on a laptop.
pub const DEMO_RATE: f64 = 40.0;
/// The demo's fleet starts this far in the past, played at once: its first minutes (calm, then the outage
/// beginning) are on the charts and their windows closed as soon as the console opens.
pub const DEMO_BACKFILL: std::time::Duration = std::time::Duration::from_secs(120);
/// The demo's seed: every `up --demo` plays the same fleet.
pub const DEMO_SEED: u64 = 1;

#[cfg(test)]
mod tests;
