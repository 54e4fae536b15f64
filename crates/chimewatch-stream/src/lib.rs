//! The stream between chimewatch's services: a port for producing records and adapters behind it.
//!
//! A [`Producer`] returns from [`Producer::put`] only once every record is durable - accepted by Kinesis, or
//! fsynced to the embedded log - so the gateway can answer 2xx knowing nothing acknowledged can be lost.
//!
//! # Layout
//! - [`ports`]: the producer trait, its errors, and the records it carries.
//! - [`local`]: the embedded log, a durable, sharded, append-only log on local disk (the default for `up`).
//! - [`kinesis`]: Amazon Kinesis Data Streams: a KPL-compatible aggregating producer and a simple reader.
//! - [`consumer`]: the consumer runtime (KCL semantics): a worker that holds leases and feeds shard processors.
//! - [`lease`]: which worker processes which shard (KCL semantics): the lease store port and a sans-IO planner.
//! - [`telemetry`]: the producer's self-metrics, named once.

pub mod consumer;
mod in_flight;
pub mod kinesis;
pub mod lease;
pub mod local;
pub mod ports;
pub mod telemetry;

pub use chimewatch_model::{Clock, UnixMillis};
pub use ports::{InvalidSequenceNumber, OutRecord, ProduceError, Producer, SequenceNumber, StreamRecord};
pub use telemetry::ProducerTelemetry;

/// The system clock: what record arrival times and event times are compared with. The one place the services read
/// the wall clock; the sans-IO crates take `now` as an argument instead.
pub fn system_clock() -> UnixMillis {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}
