//! CloudWatch metric alarms evaluated the way CloudWatch evaluates them, sans-IO: `chimewatch up` runs the alarm
//! definitions that are deployed to AWS against its embedded metric store.
//!
//! # Layout
//! - [`math`]: the metric math subset (`+ - * /`, comparisons, `FILL`, `IF`).

pub mod math;
