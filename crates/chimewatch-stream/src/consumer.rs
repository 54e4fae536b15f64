//! The consumer runtime the aggregator and the archiver share: the Kinesis Client Library's semantics in Rust, over
//! any stream that implements [`ShardSource`] (Kinesis, or the embedded log).
//!
//! A [`Worker`] discovers shards and keeps one lease per shard in a [`LeaseStore`](crate::lease::LeaseStore),
//! takes and renews leases as the sans-IO [`plan`](crate::lease::plan) decides, and runs one task per held shard.
//! Each task reads its shard in order, decodes every record (chimewatch records, KPL aggregates, CloudWatch Logs
//! envelopes), sends what cannot be decoded to the [`DeadLetters`], hands the rest to the shard's
//! [`ShardProcessor`], and checkpoints only the position the processor reports durable. A child shard starts only
//! after its parents were read to their end and checkpointed `SHARD_END`.
//!
//! Delivery is at least once. After a crash or a lease move, the new owner starts after the last checkpoint, so the
//! records the old owner had processed but not yet checkpointed are processed again: at most what a processor holds
//! undurable plus what the old owner read between losing the lease and noticing (one renewal interval).
//!
//! # Layout
//! - this file: the ports (source, cursor, processor) and the types they speak;
//! - `worker`: the lease loop: discovery, renew / take / steal, one task per shard, graceful release;
//! - `shard`: one shard's loop: read, decode, dead-letter, process, checkpoint, detect the shard's end;
//! - `dead_letter`: where undecodable records go, with their reason;
//! - `telemetry`: lag (millis behind latest, iterator age), records, leases held, dead letters.

mod dead_letter;
mod shard;
mod telemetry;
mod worker;

use std::fmt::Debug;

use async_trait::async_trait;
use chimewatch_model::Record;

pub use dead_letter::{DeadData, DeadLetter, DeadLetters, MAX_DEAD_DATA, Refused};
pub use telemetry::ConsumerTelemetry;
pub use worker::{Worker, WorkerConfig};

use crate::lease::{Checkpoint, LeaseError};
pub use crate::ports::SequenceNumber;
use crate::ports::StreamRecord;

/// A shard as the stream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parents: Vec<String>,
    /// Set once the shard was closed by a split or merge: the last sequence number it holds.
    pub ending_sequence: Option<SequenceNumber>,
    /// The hash keys the shard covers (Kinesis); a KPL aggregate's user records outside it are skipped, because
    /// the producer put them again on the right shard (the KCL does the same).
    pub hash_range: Option<(u128, u128)>,
}

/// Where a user record sits in its shard; positions order as the shard does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The stream's sequence number (Kinesis: a decimal; the embedded log: a byte offset).
    pub sequence: SequenceNumber,
    /// The user record's index within a KPL aggregate (0 for a plain record).
    pub sub_sequence: u64,
}

impl Position {
    pub fn new(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self { sequence, sub_sequence }
    }

    /// A position from its sequence number's text.
    pub fn parse(sequence: &str, sub_sequence: u64) -> Result<Self, crate::InvalidSequenceNumber> {
        Ok(Self::new(SequenceNumber::parse(sequence)?, sub_sequence))
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::At { sequence: self.sequence.clone(), sub_sequence: self.sub_sequence }
    }
}

/// What one read of a shard returned: whole stream records, before de-aggregation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawBatch {
    pub records: Vec<StreamRecord>,
    /// How far the shard's newest record is ahead of this read, when the stream says.
    pub millis_behind_latest: Option<i64>,
    /// The shard is closed and everything in it was read.
    pub end_of_shard: bool,
    /// Reads retried before this one succeeded: throttled by the stream, or with an expired iterator.
    pub throttled_reads: u64,
}

/// The stream side of the consumer: Kinesis, or the embedded log.
#[async_trait]
pub trait ShardSource: Send + Sync + Debug {
    /// Every shard the stream has, open and closed, with its parents.
    async fn shards(&self) -> Result<Vec<ShardInfo>, ConsumeError>;
    /// A cursor at `from`: from the oldest record for `TrimHorizon`; at (not after) the sequence number of `At`,
    /// since the record there may be an aggregate only partly processed.
    async fn open(&self, shard: &ShardInfo, from: &Checkpoint) -> Result<Box<dyn ShardCursor>, ConsumeError>;
}

/// Reads one shard in order, respecting the stream's read limits.
#[async_trait]
pub trait ShardCursor: Send + Debug {
    /// The next records (empty when caught up), waiting first as the stream's read limits require.
    async fn next(&mut self) -> Result<RawBatch, ConsumeError>;
}

/// A decoded user record, handed to a processor. `R` is what the processor reads: the whole [`Record`], or what it
/// needs of it ([`chimewatch_model::IndexedRecord`]); either way the same records are taken and dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed<R = Record> {
    pub position: Position,
    /// Index within a CloudWatch Logs envelope's `logEvents` (0 otherwise).
    pub log_event: usize,
    pub partition_key: String,
    /// When the stream accepted the record.
    pub arrival: chimewatch_model::UnixMillis,
    pub record: R,
}

/// One shard's records for a processor, in shard order; the undecodable ones were dead-lettered already.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<R = Record> {
    pub shard_id: String,
    pub records: Vec<Consumed<R>>,
    /// The last position read, decoded or not; `None` when nothing was read (time passed: a processor may close
    /// windows). A processor that made everything handed over durable returns this.
    pub end: Option<Position>,
    pub millis_behind_latest: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// What the aggregator and the archiver implement: one instance per shard a worker holds.
#[async_trait]
pub trait ShardProcessor<R: Send + 'static = Record>: Send + Sync {
    /// Takes the next records of the shard; returns the position through which everything handed over so far is
    /// durable, if that moved. Called with empty batches too, so that time-driven work (window closes, age flushes)
    /// happens on idle shards. An error restarts the shard from its last checkpoint with a new processor.
    async fn process(&mut self, batch: Batch<R>) -> Result<Option<Position>, ProcessError>;

    /// Makes everything handed over durable, at the shard's end or before a graceful release of its lease, and
    /// returns the position it covers. (A lease lost to another worker drops the processor without a flush.)
    async fn flush(&mut self) -> Result<Option<Position>, ProcessError>;

    /// Told after the checkpoint at `position` was written: nothing up to it will be handed over again (the
    /// archiver drops the claims of the cuts it covers). Best effort: a crash can come before the call.
    async fn checkpointed(&mut self, _position: &Position) {}
}

/// Creates a worker's shard processors; `fence` tells a processor whether the worker still holds the shard.
pub trait ProcessorFactory<R: Send + 'static = Record>: Send + Sync + Debug {
    fn create(&self, shard_id: &str, fence: Fence) -> Box<dyn ShardProcessor<R>>;
}

/// Whether this worker still owns a shard's lease, asked of the lease table itself (a consistent read): for a
/// processor about to write somewhere the lease does not fence (objects in S3), so that a worker that lost the shard
/// while paused stops before writing rather than after.
#[derive(Debug, Clone)]
pub struct Fence {
    store: std::sync::Arc<dyn crate::lease::LeaseStore>,
    shard_id: String,
    owner: String,
}

impl Fence {
    pub fn new(store: std::sync::Arc<dyn crate::lease::LeaseStore>, shard_id: &str, owner: &str) -> Self {
        Self { store, shard_id: shard_id.to_owned(), owner: owner.to_owned() }
    }

    /// A fence over a table of its own that gives the shard to `owner`: for a processor run outside a worker (tests,
    /// tools), where nobody else can take it.
    pub fn held(shard_id: &str, owner: &str) -> Self {
        let store = crate::lease::memory::MemoryLeaseStore::default();
        store.restore([crate::lease::Lease {
            shard_id: shard_id.to_owned(),
            owner: Some(owner.to_owned()),
            counter: 1,
            checkpoint: crate::lease::Checkpoint::TrimHorizon,
            parents: Vec::new(),
        }]);
        Self::new(std::sync::Arc::new(store), shard_id, owner)
    }

    /// Ok while the lease table names this worker the shard's owner.
    pub async fn check(&self) -> Result<(), ProcessError> {
        match self.store.get(&self.shard_id).await {
            Ok(Some(lease)) if lease.owner.as_deref() == Some(self.owner.as_str()) => Ok(()),
            Ok(lease) => Err(ProcessError(format!(
                "lease of shard {} is no longer this worker's ({}): another worker took it",
                self.shard_id,
                lease.and_then(|l| l.owner).map_or_else(|| "no owner".to_owned(), |o| format!("owner {o}"))
            ))),
            Err(e) => Err(ProcessError(format!("could not confirm the lease of shard {}: {e}", self.shard_id))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    #[error("reading the stream: {0}")]
    Source(String),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("processing shard {shard_id}: {source}")]
    Process { shard_id: String, source: ProcessError },
    #[error("dead-lettering a record of shard {shard_id}: {reason}")]
    DeadLetter { shard_id: String, reason: String },
}

impl From<crate::InvalidSequenceNumber> for ConsumeError {
    fn from(e: crate::InvalidSequenceNumber) -> Self {
        ConsumeError::Source(e.to_string())
    }
}

#[cfg(test)]
mod tests;
