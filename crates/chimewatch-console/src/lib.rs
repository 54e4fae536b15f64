//! The console of `chimewatch up`: the dashboards and alarms of `deploy/` rendered and evaluated on the embedded
//! store, and the search that explains one attendee, meeting or call.
//!
//! # Layout
//! - [`builtin`]: the deploy files, compiled in, so the binary needs no checkout to show them.
//! - [`template`]: their `${Name}` placeholders, filled per deployment.
//! - [`body`]: dashboard bodies as PutDashboard takes them, checked by CloudWatch's rules.
//! - [`search`] and [`math`]: the `SEARCH` and metric math expressions of metric widgets.
//! - [`data`]: what each widget shows, read from the store; [`chart`] draws it as SVG.
//! - [`alarms`]: alarm states and history, evaluated with `chimewatch_metrics::alarm`.
//! - [`timeline`]: one attendee's or meeting's events in time order, and a call's messages.
//! - [`explain`]: the verdicts, a meeting's attendees, and a call's SIP ladder as SVG.
//! - [`page`] and [`server`]: the HTML and the routes `up` serves.

pub mod alarms;
pub mod body;
pub mod builtin;
pub mod chart;
pub mod data;
pub mod explain;
pub mod math;
pub mod page;
pub mod search;
pub mod server;
pub mod template;
pub mod timeline;

#[cfg(test)]
mod tests;

pub use server::{Console, router};
