//! The S3 archiver: the stream's records as query-ready files for analysts (Athena, DuckDB, Spark), written
//! exactly once, in Hive partitions by event time.
//!
//! # Layout
//! - [`layout`]: Hive partitions by event time (`<prefix>/<table>/dt=YYYY-MM-DD/hour=HH/`) and object keys derived
//!   from the shard and the sequence range a file covers, so a replay after a crash rewrites the same key.
//! - [`rows`]: the typed rows of the `meeting_events` and `sip_messages` tables, with the full attributes kept as
//!   JSON so nothing is lost; [`schema`] is their Arrow schema, the archive's contract with analysts.
//! - [`spool`]: a shard's buffered rows, on disk with a small index in memory.
//! - [`encode`]: Parquet (ZSTD) and gzip NDJSON writers and readers; [`ndjson`] is the NDJSON codec of the
//!   archive's column types.
//! - [`archive`]: the shard processor: cuts, claims, commits, checkpoints.
//! - [`compact`]: merges a partition's small files into large ones.
//! - [`lookup`]: reads one attendee's, meeting's or call's rows back, for `chimewatch explain`.
//! - [`telemetry`]: the archiver's self-metrics.

pub mod archive;
pub mod compact;
pub mod encode;
pub mod layout;
pub mod lookup;
pub mod ndjson;
pub mod rows;
pub mod schema;
pub mod spool;
pub mod telemetry;

pub use archive::{ArchiverConfig, Archiving};
pub use layout::{Format, Partition, Table};
pub use telemetry::ArchiverTelemetry;
