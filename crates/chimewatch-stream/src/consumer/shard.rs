//! One held shard's loop: read, decode, dead-letter what cannot be decoded, hand the rest to the processor,
//! checkpoint what the processor made durable, and at the shard's end flush and checkpoint `SHARD_END`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chimewatch_model::{Clock, FromStream, envelope, kpl};
use tokio_util::sync::CancellationToken;

use super::dead_letter::{DeadData, DeadLetter};
use super::telemetry::ConsumerTelemetry;
use super::{Batch, ConsumeError, Consumed, DeadLetters, Position, RawBatch, ShardInfo, ShardProcessor, ShardSource};
use crate::lease::{Checkpoint, LeaseStore};

/// The lease counter a worker holds for a shard; renewals and checkpoints take turns on it, since each write is
/// conditional on the counter the other may just have moved.
#[derive(Debug)]
pub(crate) struct HeldLease {
    pub counter: tokio::sync::Mutex<u64>,
}

/// How a shard task ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The shard is closed and fully processed; `SHARD_END` is checkpointed.
    Ended,
    /// Asked to stop: everything handed over was flushed and checkpointed.
    Stopped,
}

pub(crate) struct ShardTask<R: Send + 'static> {
    pub shard_id: String,
    pub worker_id: String,
    pub lease: Arc<HeldLease>,
    pub store: Arc<dyn LeaseStore>,
    pub source: Arc<dyn ShardSource>,
    /// The latest ListShards, for closure (moto never ends a closed shard with a null iterator).
    pub shards: Arc<RwLock<HashMap<String, ShardInfo>>>,
    pub processor: Box<dyn ShardProcessor<R>>,
    pub dead_letters: DeadLetters,
    pub telemetry: ConsumerTelemetry,
    pub stop: CancellationToken,
    pub clock: Clock,
}

impl<R: FromStream> ShardTask<R> {
    fn info(&self) -> ShardInfo {
        let known = self.shards.read().ok().and_then(|s| s.get(&self.shard_id).cloned());
        known.unwrap_or_else(|| ShardInfo {
            shard_id: self.shard_id.clone(),
            parents: Vec::new(),
            ending_sequence: None,
            hash_range: None,
        })
    }

    pub async fn run(mut self, from: Checkpoint) -> Result<Exit, ConsumeError> {
        let skip_through = match &from {
            Checkpoint::At { sequence, sub_sequence } => Some(Position::new(sequence.clone(), *sub_sequence)),
            Checkpoint::TrimHorizon => None,
            // A finished shard has nothing left; the planner does not hand these out.
            Checkpoint::ShardEnd => return Ok(Exit::Ended),
        };
        let mut cursor = self.source.open(&self.info(), &from).await?;
        let mut checkpointed = skip_through.clone();
        let mut last_read: Option<Position> = None;
        loop {
            let raw = tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    let durable = self.flush().await?;
                    self.advance(&mut checkpointed, durable).await?;
                    return Ok(Exit::Stopped);
                }
                raw = cursor.next() => raw?,
            };
            let now = (self.clock)();
            let end_of_shard = raw.end_of_shard;
            let caught_up = raw.records.is_empty() && raw.millis_behind_latest.is_none_or(|m| m == 0);
            let info = self.info();
            let range = info.hash_range;
            let (batch, letters) =
                decode(&self.shard_id, range, raw, skip_through.as_ref(), now.as_i64(), &self.telemetry)?;
            if !letters.is_empty() {
                let shard_id = self.shard_id.clone();
                self.dead_letters
                    .send(letters, &self.telemetry)
                    .await
                    .map_err(|reason| ConsumeError::DeadLetter { shard_id, reason })?;
            }
            if let Some(end) = &batch.end {
                last_read = Some(end.clone());
            }
            self.telemetry.records.inc_by(batch.records.len() as u64);
            let durable = self
                .processor
                .process(batch)
                .await
                .map_err(|source| ConsumeError::Process { shard_id: self.shard_id.clone(), source })?;
            self.advance(&mut checkpointed, durable).await?;

            // The end: a null iterator, or (moto) a shard ListShards shows closed, read through its last number.
            let ending = info.ending_sequence.as_ref();
            let past_end = ending.is_some_and(|e| last_read.as_ref().is_some_and(|p| &p.sequence >= e) || caught_up);
            if end_of_shard || past_end {
                let durable = self.flush().await?;
                self.advance(&mut checkpointed, durable).await?;
                self.write_checkpoint(Checkpoint::ShardEnd).await?;
                self.telemetry.shards_ended.inc();
                tracing::info!(shard = %self.shard_id, "Shard read to its end; its children may start.");
                return Ok(Exit::Ended);
            }
        }
    }

    async fn flush(&mut self) -> Result<Option<Position>, ConsumeError> {
        self.processor.flush().await.map_err(|source| ConsumeError::Process { shard_id: self.shard_id.clone(), source })
    }

    /// Checkpoints `durable` when it is past the last checkpoint.
    async fn advance(
        &mut self,
        checkpointed: &mut Option<Position>,
        durable: Option<Position>,
    ) -> Result<(), ConsumeError> {
        if let Some(p) = durable
            && checkpointed.as_ref().is_none_or(|c| &p > c)
        {
            self.write_checkpoint(p.checkpoint()).await?;
            self.processor.checkpointed(&p).await;
            *checkpointed = Some(p);
        }
        Ok(())
    }

    async fn write_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), ConsumeError> {
        let counter = self.lease.counter.lock().await;
        self.store.checkpoint(&self.shard_id, &self.worker_id, *counter, checkpoint).await?;
        self.telemetry.checkpoints.inc();
        Ok(())
    }
}

/// Splits what was read into the processor's batch and the dead letters, skipping what the checkpoint covers, and
/// records the shard's lag.
fn decode<R: FromStream>(
    shard_id: &str,
    hash_range: Option<(u128, u128)>,
    raw: RawBatch,
    skip_through: Option<&Position>,
    now_ms: i64,
    telemetry: &ConsumerTelemetry,
) -> Result<(Batch<R>, Vec<DeadLetter>), ConsumeError> {
    let iterator_age = raw.records.last().map_or(0, |r| (now_ms - r.arrival.as_i64()).max(0));
    telemetry.lag(shard_id, raw.millis_behind_latest, iterator_age);
    telemetry.read_throttles.inc_by(raw.throttled_reads);
    telemetry.bytes.inc_by(raw.records.iter().map(|r| r.data.len() as u64).sum());

    let mut records = Vec::new();
    let mut letters = Vec::new();
    let mut end = None;
    for r in raw.records {
        let letter = |sub: u64, log_event: usize, reason: String, data: &[u8]| DeadLetter {
            shard_id: shard_id.to_owned(),
            sequence_number: r.sequence_number.clone(),
            sub_sequence_number: sub,
            log_event,
            partition_key: r.partition_key.clone(),
            arrival: r.arrival,
            reason,
            data: DeadData::of(data),
        };
        let users = match kpl::deaggregate(&r.data, &r.partition_key) {
            Ok(users) => users,
            Err(e) => {
                let position = Position::new(r.sequence_number.clone(), 0);
                if skip_through.is_none_or(|s| &position > s) {
                    letters.push(letter(0, 0, format!("KPL aggregate: {e}"), &r.data));
                    end = Some(position);
                }
                continue;
            }
        };
        let aggregated = kpl::is_aggregated(&r.data);
        for (sub, user) in users.into_iter().enumerate() {
            let position = Position::new(r.sequence_number.clone(), sub as u64);
            if skip_through.is_some_and(|s| &position <= s) {
                continue;
            }
            end = Some(position.clone());
            if aggregated && hash_range.is_some_and(|(lo, hi)| !(lo..=hi).contains(&user.hash_key().0)) {
                telemetry.misrouted.inc();
                tracing::debug!(shard = shard_id, sequence = %r.sequence_number, sub_sequence = sub, "Skipped a user record outside the shard's hash range (its producer puts it again on the right shard).");
                continue;
            }
            // Decoded again only when one of its log events is bad, so that its dead letter carries that event.
            let mut envelope: Option<Option<envelope::LogsEnvelope>> = None;
            for (log_event, decoded) in envelope::decode_user_record(&user.data, r.arrival.as_i64()) {
                match decoded {
                    Ok(record) => records.push(Consumed {
                        position: position.clone(),
                        log_event,
                        partition_key: user.partition_key.clone(),
                        arrival: r.arrival,
                        record,
                    }),
                    Err(reason) => {
                        let part = match user.data.starts_with(&envelope::GZIP_MAGIC) {
                            true => envelope
                                .get_or_insert_with(|| envelope::decode_logs_envelope(&user.data).ok())
                                .as_ref()
                                .and_then(|e| e.log_events.get(log_event))
                                .map(|e| e.message.as_bytes()),
                            false => None,
                        };
                        letters.push(letter(sub as u64, log_event, reason, part.unwrap_or(&user.data)));
                    }
                }
            }
        }
    }
    let batch = Batch { shard_id: shard_id.to_owned(), records, end, millis_behind_latest: raw.millis_behind_latest };
    Ok((batch, letters))
}
