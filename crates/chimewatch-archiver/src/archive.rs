//! The archiver as a consumer-runtime processor: each shard's rows are spooled per (table, partition) and written
//! out together in a *cut*, then checkpointed.
//!
//! # Exactly once
//! A cut covers every row of the shard from the one after the last checkpoint through a position `through`; its
//! objects are keyed by the shard and the first and last sequence numbers of their rows ([`object_key`]). Before
//! any object of a cut is written, the cut is *claimed*: `_chimewatch/cuts/<shard>/<first row>.json`, holding
//! `through`, is created only if absent. A replay after a crash (or by the next owner of the lease) starts at the
//! same checkpoint, so its first row is the same; finding the claim, it cuts at the claimed `through` too, and so
//! rewrites the same keys with the same rows instead of adding overlapping files. Only after every object of a cut
//! is committed is `through` handed to the runtime to checkpoint.
//!
//! # Fencing
//! S3 has no writes conditional on a lease, so a worker that lost the shard while paused could wake and write. Two
//! things stop it: before it claims, and before each object, it asks the lease table whether the shard is still its
//! own ([`Fence`]); and once a cut is checkpointed its claim is not deleted but overwritten with a *tombstone* (the
//! claim, with `checkpointedAtMs`), so an old owner that comes back for those rows finds the tombstone where it
//! would have created its claim, and stops instead of writing overlapping files. Tombstones are kept a day
//! ([`TOMBSTONE_RETENTION_MS`]), then deleted by a later cut.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chimewatch_model::{Clock, IndexedRecord};
use chimewatch_sinks::ObjectStore;
use chimewatch_stream::SequenceNumber;
use chimewatch_stream::consumer::{Batch, Fence, Position, ProcessError, ProcessorFactory, ShardProcessor};
use serde::{Deserialize, Serialize};

use crate::encode::write_entries;
use crate::layout::{Format, Partition, Table, object_key, root};
use crate::rows::{MeetingEventRow, Row, SipMessageRow, Source};
use crate::spool::{Part, Spool};
use crate::telemetry::{ArchiverTelemetry, ShardLevels};

#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    /// Under this prefix of the bucket (or directory) go the tables and the claims; empty for the root.
    pub prefix: String,
    pub format: Format,
    /// A cut is due once a partition's rows would make a file of about this many bytes.
    pub max_file_bytes: u64,
    /// ... or once the oldest buffered row has waited this long.
    pub max_age: Duration,
    /// ... or once a shard's spool holds this many bytes of rows. Bounds local disk, and memory: the index keeps
    /// about 120 bytes per buffered row (384 MiB of rows of about 400 bytes in postcard, attributes of a few
    /// hundred bytes: about 1 million rows, 120 MB).
    pub max_spool_bytes: u64,
    /// Where shards spool rows (unnamed temporary files).
    pub spool_dir: PathBuf,
}

impl ArchiverConfig {
    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            prefix: String::new(),
            format: Format::Parquet,
            max_file_bytes: 128 * 1024 * 1024,
            max_age: Duration::from_secs(300),
            max_spool_bytes: 384 * 1024 * 1024,
            spool_dir: spool_dir.into(),
        }
    }

    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_file_bytes < 1024 * 1024 {
            return Err("archive.max_file_mb must be at least 1".into());
        }
        if self.max_age.is_zero() {
            return Err("archive.max_age must be positive".into());
        }
        Ok(())
    }

    /// Where the claims of `shard`'s cuts are.
    pub fn claims_prefix(&self, shard: &str) -> String {
        format!("{}{CLAIMS_DIR}/{shard}/", root(&self.prefix))
    }
}

/// Claims live beside the tables, under a name Athena and Hive skip.
pub const CLAIMS_DIR: &str = "_chimewatch/cuts";

/// How long a checkpointed cut's tombstone is kept: longer than any worker stays paused and still believes it
/// holds its lease.
pub const TOMBSTONE_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// A cut's claim: the rows of the shard from `first` through `through` go into this cut's objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub shard_id: String,
    pub first: ClaimPosition,
    pub through: ClaimPosition,
    pub claimed_at_ms: i64,
    /// Set once the cut was checkpointed: the claim is a tombstone, and its rows are never written again.
    #[serde(default, rename = "checkpointedAtMs", skip_serializing_if = "Option::is_none")]
    pub checkpointed_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimPosition {
    pub sequence: String,
    pub sub_sequence: u64,
}

impl ClaimPosition {
    fn of(p: &Position) -> Self {
        Self { sequence: p.sequence.to_string(), sub_sequence: p.sub_sequence }
    }

    fn position(&self) -> Result<Position, ProcessError> {
        let sequence = SequenceNumber::parse(&self.sequence).map_err(|e| ProcessError(format!("claim: {e}")))?;
        Ok(Position::new(sequence, self.sub_sequence))
    }

    /// The claim's file name: the position of its first row.
    fn file_name(&self) -> String {
        format!("{}-{}.json", self.sequence, self.sub_sequence)
    }

    /// The inverse of [`file_name`](Self::file_name).
    pub fn from_file_name(name: &str) -> Option<Position> {
        let (sequence, sub) = name.strip_suffix(".json")?.split_once('-')?;
        Some(Position::new(SequenceNumber::parse(sequence).ok()?, sub.parse().ok()?))
    }
}

/// The archiver as a processor factory for the consumer runtime.
#[derive(Debug, Clone)]
pub struct Archiving {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ArchiverConfig,
    store: Arc<dyn ObjectStore>,
    telemetry: ArchiverTelemetry,
    clock: Clock,
    /// Bytes of file per byte of spooled row, per table, as the last files came out: to aim cuts at the file size.
    ratio: Mutex<[f64; 2]>,
}

impl Archiving {
    pub fn new(config: ArchiverConfig, store: Arc<dyn ObjectStore>, telemetry: ArchiverTelemetry) -> Self {
        Self::with_clock(config, store, telemetry, chimewatch_stream::system_clock)
    }

    /// The same, with the processing-time clock given (tests run it on a fake clock).
    pub fn with_clock(
        config: ArchiverConfig,
        store: Arc<dyn ObjectStore>,
        telemetry: ArchiverTelemetry,
        clock: Clock,
    ) -> Self {
        // Until a file was written, assume files as large as the spooled rows: the first cut errs small.
        Self { shared: Arc::new(Shared { config, store, telemetry, clock, ratio: Mutex::new([1.0, 1.0]) }) }
    }
}

impl ProcessorFactory<IndexedRecord> for Archiving {
    fn create(&self, shard_id: &str, fence: Fence) -> Box<dyn ShardProcessor<IndexedRecord>> {
        Box::new(ShardArchive {
            shard: shard_id.to_owned(),
            shared: self.shared.clone(),
            fence,
            spool: None,
            last_read: None,
            durable: None,
            oldest_ms: None,
            forced_end: None,
            claims: Vec::new(),
            cleaned_up: false,
            levels: ShardLevels::new(self.shared.telemetry.clone()),
        })
    }
}

struct ShardArchive {
    shard: String,
    /// Asked before claiming and before each object: is the shard still this worker's?
    fence: Fence,
    shared: Arc<Shared>,
    /// Created with the first row, so idle shards hold no file.
    spool: Option<Spool>,
    last_read: Option<Position>,
    durable: Option<Position>,
    /// When (processing time) the oldest buffered row was spooled.
    oldest_ms: Option<i64>,
    /// An earlier claim the current cut must end at.
    forced_end: Option<Position>,
    /// Claims of committed cuts not yet checkpointed: (through, key, claim).
    claims: Vec<(Position, String, Claim)>,
    /// Whether claims an earlier owner left behind were looked for.
    cleaned_up: bool,
    levels: ShardLevels,
}

fn table_index(t: Table) -> usize {
    match t {
        Table::MeetingEvents => 0,
        Table::SipMessages => 1,
    }
}

fn failed(e: impl std::fmt::Display) -> ProcessError {
    ProcessError(e.to_string())
}

/// A consumed record as an archive row.
fn row(shard: &str, consumed: &chimewatch_stream::consumer::Consumed<IndexedRecord>) -> Row {
    let source = Source {
        shard_id: shard.to_owned(),
        sequence_number: consumed.position.sequence.to_string(),
        sub_sequence_number: consumed.position.sub_sequence,
        log_event_index: consumed.log_event as u64,
    };
    match &consumed.record {
        IndexedRecord::MeetingEvent(r) => Row::Meeting(MeetingEventRow::new(r, source)),
        IndexedRecord::SipMessage(r) => Row::Sip(SipMessageRow::new(r, source)),
    }
}

/// What a cut's claim decided.
enum Claimed {
    /// Write the cut through this position; the claim's key and content.
    Through(Position, String, Claim),
    /// An earlier claim ends later than what was read: keep reading until it.
    Later(Position),
}

impl ShardArchive {
    fn spool(&mut self) -> Result<&mut Spool, ProcessError> {
        if self.spool.is_none() {
            self.spool = Some(Spool::new(&self.shared.config.spool_dir).map_err(failed)?);
        }
        self.spool.as_mut().ok_or_else(|| ProcessError("spool unavailable".into()))
    }

    fn buffered(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn update_levels(&mut self) {
        let (partitions, bytes) = self.spool.as_ref().map_or((0, 0), |s| (s.partitions() as u64, s.bytes()));
        self.levels.set(partitions, bytes);
    }

    fn due(&self, now_ms: i64) -> bool {
        let Some(spool) = &self.spool else { return false };
        let config = &self.shared.config;
        let ratio = self.shared.ratio.lock().map(|r| *r).unwrap_or([1.0, 1.0]);
        let aged = self.oldest_ms.is_some_and(|t| now_ms - t >= config.max_age.as_millis() as i64);
        let large = [Table::MeetingEvents, Table::SipMessages]
            .into_iter()
            .any(|t| spool.largest(t) as f64 * ratio[table_index(t)] >= config.max_file_bytes as f64);
        aged || large || spool.bytes() >= config.max_spool_bytes
    }

    /// Claims the cut from the first buffered row through `through`, or learns the claim an earlier run made.
    async fn claim(&self, first: &Position, through: &Position, now_ms: i64) -> Result<Claimed, ProcessError> {
        let claim = Claim {
            shard_id: self.shard.clone(),
            first: ClaimPosition::of(first),
            through: ClaimPosition::of(through),
            claimed_at_ms: now_ms,
            checkpointed_at_ms: None,
        };
        let key = format!("{}{}", self.shared.config.claims_prefix(&self.shard), claim.first.file_name());
        let body = serde_json::to_vec(&claim).map_err(failed)?;
        self.fence.check().await?;
        if self.shared.store.create_new(&key, Bytes::from(body)).await.map_err(failed)? {
            return Ok(Claimed::Through(through.clone(), key, claim));
        }
        let existing = self.shared.store.get(&key).await.map_err(failed)?;
        let existing: Claim = existing
            .ok_or_else(|| ProcessError(format!("claim {key} exists but could not be read")))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| ProcessError(format!("claim {key}: {e}"))))?;
        if let Some(at) = existing.checkpointed_at_ms {
            // Another owner wrote and checkpointed these rows: this worker lost the shard and must not write.
            return Err(ProcessError(format!(
                "the rows of shard {} from {} were archived and checkpointed (at {at} ms) by another owner; this worker no longer holds the shard",
                self.shard, first.sequence
            )));
        }
        let claimed = existing.through.position()?;
        self.shared.telemetry.claims_followed.inc();
        tracing::info!(shard = %self.shard, claim = %key, through = %claimed.sequence, "Following an earlier claim for these rows: the same objects are written again.");
        Ok(if &claimed <= through { Claimed::Through(claimed, key, existing) } else { Claimed::Later(claimed) })
    }

    /// Writes every buffered row through `through` (or through an earlier claim's end); afterwards `durable` is
    /// that end. Learning of a claim that ends later only records it in `forced_end`.
    async fn cut(&mut self, through: Position, now_ms: i64) -> Result<(), ProcessError> {
        let Some(first) = self.spool.as_ref().and_then(Spool::first_position) else { return Ok(()) };
        let (through, claim_key, claim) = match self.claim(&first, &through, now_ms).await? {
            Claimed::Through(p, key, claim) => (p, key, claim),
            Claimed::Later(p) => {
                self.forced_end = Some(p);
                return Ok(());
            }
        };
        let spool = self.spool.take().ok_or_else(|| ProcessError("spool unavailable".into()))?;
        let result = self.write_cut(spool, &first, &through, now_ms).await;
        if result.is_err() {
            self.shared.telemetry.write_failures.inc();
        }
        let spool = result?;
        self.spool = Some(spool);
        self.forced_end = None;
        self.claims.push((through.clone(), claim_key, claim));
        self.durable = Some(through);
        self.oldest_ms = if self.buffered() { Some(now_ms) } else { None };
        if let Some(s) = &mut self.spool {
            s.reclaim().map_err(failed)?;
        }
        self.update_levels();
        if !self.cleaned_up {
            self.forget_older_claims(&first, now_ms).await;
            self.cleaned_up = true;
        }
        Ok(())
    }

    async fn write_cut(
        &self,
        mut spool: Spool,
        first: &Position,
        through: &Position,
        now_ms: i64,
    ) -> Result<Spool, ProcessError> {
        let config = &self.shared.config;
        let parts = spool.take_through(through);
        let mut written_rows = 0;
        let mut objects = 0;
        let mut oldest_arrival = i64::MAX;
        for part in parts {
            let Some((lo, hi)) = part.range() else { continue };
            let key = object_key(
                &config.prefix,
                part.table,
                part.partition,
                &self.shard,
                lo.sequence.as_str(),
                hi.sequence.as_str(),
                config.format,
            );
            let Part { table, partition, entries } = part;
            oldest_arrival = oldest_arrival.min(entries.iter().map(|e| e.arrival_ms).min().unwrap_or(i64::MAX));
            let spooled: u64 = entries.iter().map(|e| u64::from(e.len())).sum();
            let format = config.format;
            let dir = config.spool_dir.clone();
            let (returned, encoded) = tokio::task::spawn_blocking(move || {
                let encoded = tempfile::NamedTempFile::new_in(&dir).map_err(failed).and_then(|file| {
                    let rows = write_entries(&mut spool, &entries, table, format, file.path()).map_err(failed)?;
                    Ok((file, rows))
                });
                (spool, encoded)
            })
            .await
            .map_err(failed)?;
            spool = returned;
            let (file, rows) = encoded?;
            let size = file.as_file().metadata().map_err(failed)?.len();
            self.fence.check().await?;
            self.shared.store.put_file(&key, file.path()).await.map_err(failed)?;
            if let Ok(mut ratio) = self.shared.ratio.lock()
                && spooled > 0
            {
                ratio[table_index(table)] = size as f64 / spooled as f64;
            }
            let t = &self.shared.telemetry;
            t.objects.inc();
            t.bytes.inc_by(size);
            t.rows_written.inc_by(rows);
            written_rows += rows;
            objects += 1;
            tracing::debug!(key, rows, bytes = size, partition = %partition.path(), "Archived.");
        }
        let t = &self.shared.telemetry;
        t.cuts.inc();
        if let Some(per_file) = written_rows.checked_div(objects) {
            t.rows_per_file.set(per_file as i64);
            t.commit_latency_ms.set((now_ms - oldest_arrival).max(0));
        }
        tracing::info!(shard = %self.shard, first = %first.sequence, through = %through.sequence, objects, rows = written_rows, "Cut committed.");
        Ok(spool)
    }

    /// Deletes what of the shard's claims a new owner no longer needs: claims before `first` an earlier owner left
    /// (it crashed before its checkpoint's tombstone), and tombstones older than [`TOMBSTONE_RETENTION_MS`]. Best
    /// effort: a claim left behind only holds compaction off that shard's newer files.
    async fn forget_older_claims(&self, first: &Position, now_ms: i64) {
        let prefix = self.shared.config.claims_prefix(&self.shard);
        let stale = match self.shared.store.list(&prefix).await {
            Ok(objects) => objects
                .into_iter()
                .filter(|o| {
                    let name = o.key.strip_prefix(&prefix).unwrap_or_default();
                    // Old enough that it is a tombstone, or would be one: no paused owner comes back for it.
                    ClaimPosition::from_file_name(name).is_some_and(|p| &p < first)
                        && now_ms - o.last_modified_ms > TOMBSTONE_RETENTION_MS
                })
                .map(|o| o.key)
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(shard = %self.shard, error = %e, "Could not list old claims; the next cut retries.");
                return;
            }
        };
        if let Err(e) = self.shared.store.delete(&stale).await {
            tracing::warn!(shard = %self.shard, error = %e, "Could not delete old claims; the next cut retries.");
        }
    }

    /// What to report to the runtime: the durable position, moved forward to what was read when nothing waits.
    fn report(&mut self) -> Option<Position> {
        if !self.buffered()
            && let Some(read) = &self.last_read
            && self.durable.as_ref().is_none_or(|d| d < read)
        {
            self.durable = Some(read.clone());
        }
        self.durable.clone()
    }
}

#[async_trait]
impl ShardProcessor<IndexedRecord> for ShardArchive {
    async fn process(&mut self, batch: Batch<IndexedRecord>) -> Result<Option<Position>, ProcessError> {
        let now = (self.shared.clock)().as_i64();
        for consumed in &batch.records {
            if let Some(forced) = self.forced_end.clone()
                && consumed.position > forced
            {
                self.cut(forced, now).await?;
            }
            let row = row(&self.shard, consumed);
            if row.partition() < Partition::of(consumed.arrival.as_i64()) {
                self.shared.telemetry.late_rows.inc();
            }
            self.spool()?.append(&row, consumed.position.clone(), consumed.arrival.as_i64()).map_err(failed)?;
            self.shared.telemetry.rows.inc();
            self.oldest_ms.get_or_insert(now);
        }
        if let Some(end) = batch.end {
            self.last_read = Some(end);
        }
        self.update_levels();
        if self.buffered()
            && let Some(read) = self.last_read.clone()
        {
            match self.forced_end.clone() {
                Some(forced) if forced <= read => self.cut(forced, now).await?,
                Some(_) => {}
                None if self.due(now) => self.cut(read, now).await?,
                None => {}
            }
        }
        Ok(self.report())
    }

    /// The claims of checkpointed cuts become tombstones: their rows are never to be written again.
    async fn checkpointed(&mut self, position: &Position) {
        let (done, live): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.claims).into_iter().partition(|(t, _, _)| t <= position);
        self.claims = live;
        let now = (self.shared.clock)().as_i64();
        for (_, key, mut claim) in done {
            claim.checkpointed_at_ms = Some(now);
            let body = match serde_json::to_vec(&claim) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(shard = %self.shard, claim = %key, error = %e, "Could not encode a tombstone.");
                    continue;
                }
            };
            if let Err(e) = self.shared.store.put(&key, Bytes::from(body)).await {
                tracing::warn!(shard = %self.shard, claim = %key, error = %e, "Could not turn a checkpointed cut's claim into a tombstone; the ownership checks still fence the shard.");
            }
        }
    }

    async fn flush(&mut self) -> Result<Option<Position>, ProcessError> {
        let now = (self.shared.clock)().as_i64();
        // Each round writes rows, or learns of a claim past what was read (an error: the next owner completes it).
        while self.buffered()
            && let Some(read) = self.last_read.clone()
        {
            let through = self.forced_end.clone().unwrap_or_else(|| read.clone());
            if through > read {
                return Err(ProcessError(format!(
                    "cannot write shard {}'s rows: an earlier claim ends at {} past what was read ({}); the next owner completes it",
                    self.shard, through.sequence, read.sequence
                )));
            }
            self.cut(through, now).await?;
        }
        Ok(self.report())
    }
}

#[cfg(test)]
mod tests;
