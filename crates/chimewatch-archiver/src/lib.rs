//! The S3 archiver's sans-IO core (issue "The S3 archiver"; the writer, S3 adapter and compaction come next): where
//! a record goes in the archive and what row it becomes.
//!
//! # Layout
//! - [`layout`]: Hive partitions by event time (`<prefix>/<table>/dt=YYYY-MM-DD/hour=HH/`) and object keys derived
//!   from the shard and the sequence range a file covers, so a replay after a crash rewrites the same key.
//! - [`rows`]: the typed rows of the `meeting_events` and `sip_messages` tables, with the full attributes kept as
//!   JSON so nothing is lost.

pub mod layout;
pub mod rows;
