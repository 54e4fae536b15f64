//! Sans-IO data model of chimewatch: what clients send, what goes on the stream, and how one becomes the other.
//!
//! Nothing in this crate performs I/O or reads a clock: time enters as data (`now_ms` arguments, event timestamps).
//! Every parser here is total: any input yields a value or an error naming what was wrong and where, never a panic.
//!
//! # Layout
//! - [`json`]: strict JSON parsing (duplicate keys are errors) and splitting a batch into its elements.
//! - [`event`]: meeting events from the JS, Android and iOS SDKs, normalized to one shape, with per-event validation.
//! - [`ingestion`]: the Chime SDKs' own upload protocol, mapped to the same normalized events.
//! - [`sip`]: Voice Connector SIP message log records.
//! - [`transcode`]: the gateway's fast path, a batch element normalization would leave as sent written straight to
//!   its record.
//! - [`record`]: the versioned, self-describing record format carried on the stream.
//! - [`indexed`]: meeting event records read for aggregation: the event's text kept, its attributes indexed in place.
//! - [`partition`]: partition keys and the 128-bit hash keys that pick a shard.
//! - [`kpl`]: the Kinesis Producer Library aggregation format (encode and de-aggregate).
//! - [`time`]: [`UnixMillis`], how times cross crate boundaries, and the [`Clock`] the services read.
//! - [`envelope`]: decoding whatever a Kinesis record holds: chimewatch records, KPL aggregates, CloudWatch Logs
//!   subscription envelopes of SIP logs; each item a record or the reason it is not one.

pub mod envelope;
pub mod event;
pub mod indexed;
pub mod ingestion;
pub mod json;
pub mod kpl;
pub mod partition;
pub mod record;
pub mod sip;
pub mod time;
pub mod transcode;

pub use event::{EventError, Limits, MeetingEvent, NormalizedEvent, Truncation};
pub use indexed::{EventFields, FromStream, IndexedEvent, IndexedEventRecord, IndexedRecord};
pub use json::{BatchError, split_batch};
pub use partition::{HashKey, partition_key_for};
pub use record::{DecodeError, Delivery, Ingest, MeetingEventRecord, Record, SipMessageRecord};
pub use sip::SipLogRecord;
pub use time::{Civil, Clock, UnixMillis};
