//! The producer port: what the gateway needs from a stream, in domain terms (no SDK types).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

/// A record to put on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl OutRecord {
    /// Bytes the record costs against stream limits (Kinesis counts the partition key too).
    pub fn cost(&self) -> usize {
        self.partition_key.len() + self.data.len()
    }
}

/// A user record read back from a stream (after de-aggregation), with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    /// The stream's sequence number, a decimal string (compare as numbers, never as strings).
    pub sequence_number: String,
    /// Position within a KPL aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    pub partition_key: String,
    /// When the stream accepted the record, in milliseconds since the epoch.
    pub arrival_ms: i64,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// Too many bytes are waiting to be made durable: the client should retry later (HTTP 429/503).
    #[error(
        "the stream is at capacity ({in_flight_bytes} bytes waiting, limit {limit_bytes}); retry after {retry_after:?}"
    )]
    Overloaded { in_flight_bytes: u64, limit_bytes: u64, retry_after: Duration },
    /// The stream did not make the records durable in time; some may be durable (at-least-once).
    #[error("the stream is unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Duration },
    #[error("a record of {size} bytes exceeds the stream's limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("the producer is shutting down")]
    ShuttingDown,
}

#[async_trait]
pub trait Producer: Send + Sync + Debug {
    /// Puts the records and returns once all are durable. On error, none, some or all may be durable.
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), ProduceError>;

    /// Whether the producer can take records now (for readiness probes).
    fn is_ready(&self) -> bool;

    /// Flushes whatever is buffered and stops background work; later puts fail with `ShuttingDown`.
    async fn close(&self);
}
