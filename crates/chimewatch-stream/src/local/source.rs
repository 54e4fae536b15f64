//! The embedded log as a consumer's [`ShardSource`]: the same runtime, leases and processors as on Kinesis, with
//! shards that never split and sequence numbers that are byte offsets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::LocalLog;
use super::reader::ShardReader;
use crate::consumer::{ConsumeError, RawBatch, ShardCursor, ShardInfo, ShardSource};
use crate::lease::Checkpoint;
use crate::ports::StreamRecord;

/// Most records and bytes one read returns (Kinesis returns at most 10,000 records and 10 MB).
const MAX_READ_RECORDS: usize = 10_000;
const MAX_READ_BYTES: usize = 4 << 20;

/// A shard's id as the consumer, its leases and `stream dump` name it.
pub fn shard_id(shard: u32) -> String {
    format!("shard-{shard:04}")
}

pub(crate) fn shard_number(id: &str) -> Option<u32> {
    id.strip_prefix("shard-")?.parse().ok()
}

#[derive(Debug, Clone)]
pub struct LocalSource {
    log: Arc<LocalLog>,
    /// How long a caught-up cursor waits before reading again.
    poll_interval: Duration,
}

impl LocalSource {
    /// Reads the log this process writes, up to what it committed (fsynced).
    pub fn new(log: Arc<LocalLog>) -> Self {
        Self { log, poll_interval: Duration::from_millis(200) }
    }

    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

#[async_trait]
impl ShardSource for LocalSource {
    async fn shards(&self) -> Result<Vec<ShardInfo>, ConsumeError> {
        Ok((0..self.log.shard_count())
            .map(|s| ShardInfo { shard_id: shard_id(s), parents: Vec::new(), ending_sequence: None, hash_range: None })
            .collect())
    }

    async fn open(&self, shard: &ShardInfo, from: &Checkpoint) -> Result<Box<dyn ShardCursor>, ConsumeError> {
        let number = shard_number(&shard.shard_id)
            .filter(|n| *n < self.log.shard_count())
            .ok_or_else(|| ConsumeError::Source(format!("the embedded log has no shard {:?}", shard.shard_id)))?;
        let offset = match from {
            Checkpoint::TrimHorizon | Checkpoint::ShardEnd => 0,
            Checkpoint::At { sequence, .. } => sequence
                .as_str()
                .parse()
                .map_err(|_| ConsumeError::Source(format!("{sequence} is not an embedded log offset")))?,
        };
        let reader = self.log.reader(number, offset).map_err(|e| ConsumeError::Source(e.to_string()))?;
        Ok(Box::new(LocalCursor {
            log: self.log.clone(),
            shard: number,
            reader: Some(reader),
            poll_interval: self.poll_interval,
            caught_up: false,
        }))
    }
}

#[derive(Debug)]
struct LocalCursor {
    log: Arc<LocalLog>,
    shard: u32,
    /// Moved into the blocking read and back.
    reader: Option<ShardReader>,
    poll_interval: Duration,
    caught_up: bool,
}

#[async_trait]
impl ShardCursor for LocalCursor {
    async fn next(&mut self) -> Result<RawBatch, ConsumeError> {
        if self.caught_up {
            tokio::time::sleep(self.poll_interval).await;
        }
        let mut reader =
            self.reader.take().ok_or_else(|| ConsumeError::Source("a failed read left the cursor unusable".into()))?;
        let (reader, read) = tokio::task::spawn_blocking(move || {
            // Damage was logged and counted by the reader, which moved past it: the consumer reads on, since
            // stopping would hold the shard at the damage forever (a restart would meet it again).
            let read = loop {
                match reader.read(MAX_READ_RECORDS, MAX_READ_BYTES) {
                    Err(super::LogError::Corrupt { .. }) => continue,
                    read => break read,
                }
            };
            (reader, read)
        })
        .await
        .map_err(|e| ConsumeError::Source(format!("reading the embedded log: {e}")))?;
        let records = read.map_err(|e| ConsumeError::Source(e.to_string()))?;
        let position = reader.position();
        self.reader = Some(reader);
        let behind = self.log.committed_end(self.shard) > position;
        self.caught_up = !behind;
        let newest_read = records.last().map(|r| r.timestamp_ms);
        let id = shard_id(self.shard);
        let records: Vec<StreamRecord> = records
            .into_iter()
            .map(|r| StreamRecord {
                shard_id: id.clone(),
                sequence_number: r.sequence.into(),
                sub_sequence_number: 0,
                partition_key: r.partition_key,
                arrival: crate::UnixMillis(r.timestamp_ms),
                data: r.data,
            })
            .collect();
        // The log keeps no clock of its newest record: when behind, the age of the last record read stands in.
        let millis_behind_latest = match (behind, newest_read) {
            (false, _) => Some(0),
            (true, Some(t)) => Some((crate::system_clock().as_i64() - t).max(0)),
            (true, None) => None,
        };
        Ok(RawBatch { records, millis_behind_latest, end_of_shard: false, throttled_reads: 0 })
    }
}
