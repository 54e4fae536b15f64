//! Sans-IO SIP for chimewatch: a parser for SIP messages as Voice Connector captures them, and a call tracker that
//! follows each call through its transactions and tells what happened to it. No I/O, no clock: time is the
//! messages' capture time.
//!
//! # Layout
//! - [`message`]: the parser (start line, headers with compact forms and folding, several `Via`, the body by
//!   `Content-Length`). Total: any bytes give a message or an error naming what is wrong, never a panic.
//! - [`tracker`]: the call tracker and its counting policy: attempts, answers, failures, cancels, active calls,
//!   setup time, post-dial delay, duration, status classes, failure reasons; memory bounded by a timeout.
//! - [`explain`]: one call's ladder, figures and verdict, from the same tracker.

pub mod explain;
pub mod message;
pub mod tracker;

pub use explain::{CallExplanation, CallVerdict, LadderStep};
pub use message::{Message, ParseError, StartLine};
pub use tracker::{CallFact, CallTracker, Direction, Observed, Policy};
