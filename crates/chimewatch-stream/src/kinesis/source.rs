//! Kinesis as a consumer's [`ShardSource`]: ListShards for discovery and closure, and a GetRecords cursor per shard
//! that keeps within the shard's read limits, backs off when throttled, and renews an expired iterator after the
//! last record it returned.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use rand::RngExt;
use tokio::time::Instant;

use super::KinesisError;
use super::errors::classify;
use super::shard_map::list_shards;
use crate::UnixMillis;
use crate::consumer::{ConsumeError, RawBatch, ShardCursor, ShardInfo, ShardSource};
use crate::lease::Checkpoint;
use crate::ports::{SequenceNumber, StreamRecord};

#[derive(Debug, Clone)]
pub struct KinesisSourceConfig {
    pub stream: String,
    /// Most records one GetRecords returns (Kinesis allows 10,000).
    pub max_records_per_read: i32,
    /// GetRecords calls per second per shard. A shard allows 5, shared by every application polling it; the
    /// default leaves room for the aggregator and the archiver to read the same stream.
    pub reads_per_second: f64,
    /// Bytes per second per shard; a shard serves 2 MB/s to all its polling applications together.
    pub read_bytes_per_second: f64,
    /// Wait after a read that found nothing new.
    pub idle_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failed reads (other than throttling) before the cursor gives up and the shard restarts.
    pub max_read_attempts: u32,
}

impl KinesisSourceConfig {
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            max_records_per_read: 10_000,
            reads_per_second: 2.0,
            read_bytes_per_second: 1_000_000.0,
            idle_interval: Duration::from_secs(1),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            max_read_attempts: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KinesisSource {
    client: Client,
    config: KinesisSourceConfig,
}

impl KinesisSource {
    pub fn new(client: Client, config: KinesisSourceConfig) -> Self {
        Self { client, config }
    }
}

fn source_error(e: KinesisError) -> ConsumeError {
    ConsumeError::Source(e.to_string())
}

#[async_trait]
impl ShardSource for KinesisSource {
    async fn shards(&self) -> Result<Vec<ShardInfo>, ConsumeError> {
        let shards = list_shards(&self.client, &self.config.stream).await.map_err(source_error)?;
        Ok(shards
            .into_iter()
            .map(|s| ShardInfo {
                hash_range: Some((s.start, s.end)),
                shard_id: s.shard_id,
                parents: s.parents,
                ending_sequence: s.ending_sequence_number,
            })
            .collect())
    }

    async fn open(&self, shard: &ShardInfo, from: &Checkpoint) -> Result<Box<dyn ShardCursor>, ConsumeError> {
        let mut cursor = KinesisCursor {
            client: self.client.clone(),
            config: self.config.clone(),
            shard_id: shard.shard_id.clone(),
            start: from.clone(),
            last_sequence: None,
            iterator: None,
            ended: false,
            next_read: Instant::now(),
        };
        cursor.iterator = Some(cursor.fresh_iterator().await?);
        Ok(Box::new(cursor))
    }
}

#[derive(Debug)]
struct KinesisCursor {
    client: Client,
    config: KinesisSourceConfig,
    shard_id: String,
    start: Checkpoint,
    /// The last record returned: an expired iterator is renewed after it.
    last_sequence: Option<SequenceNumber>,
    iterator: Option<String>,
    ended: bool,
    /// Not before: the shard's call and byte rates.
    next_read: Instant,
}

impl KinesisCursor {
    async fn fresh_iterator(&self) -> Result<String, ConsumeError> {
        let request = self.client.get_shard_iterator().stream_name(&self.config.stream).shard_id(&self.shard_id);
        let request = match (&self.last_sequence, &self.start) {
            (Some(seq), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
            (None, Checkpoint::At { sequence, .. }) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence.as_str()),
            (None, Checkpoint::TrimHorizon | Checkpoint::ShardEnd) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
        };
        let out =
            request.send().await.map_err(|e| source_error(classify("GetShardIterator", &self.config.stream, &e)))?;
        out.shard_iterator
            .ok_or_else(|| ConsumeError::Source(format!("GetShardIterator returned no iterator for {}", self.shard_id)))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.backoff_base.saturating_mul(1 << attempt.min(16)).min(self.config.backoff_max);
        Duration::from_millis(rand::rng().random_range(0..=cap.as_millis() as u64))
    }
}

#[async_trait]
impl ShardCursor for KinesisCursor {
    async fn next(&mut self) -> Result<RawBatch, ConsumeError> {
        if self.ended {
            return Ok(RawBatch { end_of_shard: true, ..RawBatch::default() });
        }
        tokio::time::sleep_until(self.next_read).await;
        let mut throttled_reads = 0;
        let mut failures = 0;
        let out = loop {
            let iterator = match &self.iterator {
                Some(it) => it.clone(),
                None => self.fresh_iterator().await?,
            };
            self.iterator = Some(iterator.clone());
            match self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(self.config.max_records_per_read)
                .send()
                .await
            {
                Ok(out) => break out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                    throttled_reads += 1;
                    tracing::debug!(shard = %self.shard_id, "Shard iterator expired; renewing it after the last record read.");
                    self.iterator = None;
                }
                Err(e) => match classify("GetRecords", &self.config.stream, &e) {
                    KinesisError::Transient { throttled: true, .. } => {
                        throttled_reads += 1;
                        tokio::time::sleep(self.backoff(throttled_reads.min(16) as u32)).await;
                    }
                    KinesisError::Transient { message, .. } if failures + 1 < self.config.max_read_attempts => {
                        failures += 1;
                        tracing::warn!(shard = %self.shard_id, error = %message, attempt = failures, "GetRecords failed; retrying.");
                        tokio::time::sleep(self.backoff(failures)).await;
                    }
                    other => return Err(source_error(other)),
                },
            }
        };
        let mut bytes = 0usize;
        let records: Vec<StreamRecord> = out
            .records()
            .iter()
            .map(|r| {
                let partition_key = r.partition_key().unwrap_or_default().to_owned();
                bytes += r.data().as_ref().len() + partition_key.len();
                Ok(StreamRecord {
                    shard_id: self.shard_id.clone(),
                    sequence_number: SequenceNumber::parse(r.sequence_number())?,
                    sub_sequence_number: 0,
                    partition_key,
                    arrival: UnixMillis(r.approximate_arrival_timestamp().map_or(0, |t| t.to_millis().unwrap_or(0))),
                    data: r.data().as_ref().to_vec(),
                })
            })
            .collect::<Result<_, ConsumeError>>()?;
        if let Some(last) = records.last() {
            self.last_sequence = Some(last.sequence_number.clone());
        }
        // Pace the next call: the call rate, the byte rate, and an idle wait when nothing came.
        let mut wait = Duration::from_secs_f64(
            (1.0 / self.config.reads_per_second).max(bytes as f64 / self.config.read_bytes_per_second),
        );
        if records.is_empty() {
            wait = wait.max(self.config.idle_interval);
        }
        self.next_read = Instant::now() + wait;
        self.iterator = out.next_shard_iterator().map(str::to_owned);
        self.ended = self.iterator.is_none();
        Ok(RawBatch {
            records,
            millis_behind_latest: out.millis_behind_latest(),
            end_of_shard: self.ended,
            throttled_reads,
        })
    }
}
