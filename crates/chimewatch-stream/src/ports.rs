//! The producer port and the types every port of the stream speaks, in domain terms (no SDK types).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chimewatch_model::UnixMillis;

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

/// A stream sequence number: a decimal of any length (Kinesis uses 56 digits and allows up to 129), compared as
/// the number it is, never as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    pub fn parse(text: &str) -> Result<Self, InvalidSequenceNumber> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber(text.to_owned()));
        }
        let digits = text.trim_start_matches('0');
        Ok(Self(if digits.is_empty() { "0".into() } else { digits.into() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Without leading zeros, a longer decimal is a larger number.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for SequenceNumber {
    /// The embedded log's sequence numbers are byte offsets.
    fn from(offset: u64) -> Self {
        Self(offset.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sequence number {0:?} is not a decimal")]
pub struct InvalidSequenceNumber(pub String);

/// A user record read back from a stream (after de-aggregation), with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: SequenceNumber,
    /// Position within a KPL aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    pub partition_key: String,
    /// When the stream accepted the record.
    pub arrival: UnixMillis,
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
