//! The embedded log: a durable, sharded, append-only log on local disk, the default stream of `chimewatch up`.
//!
//! Layout under the log's directory: `meta.json` (shard count), a `lock` file held by the one writing process, and
//! `shard-NNNN/<base offset>.log` segments. A record's sequence number is its byte offset within its shard, so
//! seeking is a file lookup and numbers only grow. Each frame is checksummed (CRC32C); appends are group-committed
//! (one `fdatasync` for everything that queued up while the previous sync ran) and acknowledged only after the sync.
//! Opening the log drops a torn tail left by a crash. Old sealed segments are deleted by age and by size, but never
//! while a consumer that registered a [`ConsumerHold`] still needs them: past the size budget, puts are refused
//! instead. Readers, in this process or another, read frames up to the last valid one, with their own positions, and
//! report damaged frames once and read on past them (see `reader`).
//!
//! # Layout
//! - this file: opening the log, the producer side, handing out readers and holds;
//! - `writer`: one shard's writer thread: group commit, rolling, retention, and what it does when writes fail;
//! - `reader`: reading a shard, and the policy for damaged frames;
//! - `hold`: consumers' holds, and the lease store wrapper that publishes checkpoints as holds;
//! - `source`: the log as the consumer runtime's shard source;
//! - `frame`, `disk`, `telemetry`: the on-disk frame, durable file-system steps, the log's own metrics.

mod disk;
mod frame;
mod hold;
mod reader;
mod source;
mod telemetry;
mod writer;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chimewatch_model::HashKey;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::in_flight::InFlight;
use crate::ports::{OutRecord, ProduceError, Producer};
use crate::telemetry::ProducerTelemetry;

pub use frame::MAX_RECORD_BYTES;
pub use hold::{ConsumerHold, HeldCheckpoints};
pub use reader::{LogRecord, ShardReader};
pub use source::{LocalSource, shard_id};
pub use telemetry::LogTelemetry;

/// Settings of the embedded log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLogConfig {
    /// Shards of a new log; an existing log keeps the count it was created with.
    pub shards: u32,
    /// Size at which a segment is sealed and a new one started.
    pub segment_bytes: u64,
    /// Sealed segments older than this are deleted.
    pub retention: Duration,
    /// Sealed segments are deleted, oldest first, while a shard holds more than this; when a consumer's hold keeps
    /// them, puts to the shard are refused instead.
    pub max_shard_bytes: u64,
    /// Bytes accepted but not yet durable before puts are refused with `Overloaded`.
    pub max_in_flight_bytes: u64,
}

impl LocalLogConfig {
    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1024).contains(&self.shards) {
            return Err(format!("local.shards must be between 1 and 1024, got {}", self.shards));
        }
        if self.segment_bytes < 4096 {
            return Err(format!("local.segment_bytes must be at least 4096, got {}", self.segment_bytes));
        }
        Ok(())
    }
}

impl Default for LocalLogConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            segment_bytes: 64 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_shard_bytes: 8 << 30,
            max_in_flight_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is in use by another chimewatch process (its lock is held)")]
    Locked { path: PathBuf },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_owned(), source }
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    shards: u32,
}

const META_FORMAT: u32 = 1;

fn shard_dir(root: &Path, shard: u32) -> PathBuf {
    root.join(format!("shard-{shard:04}"))
}

/// The shard count of an existing log, or `None` when `root` holds no log yet.
pub fn read_shard_count(root: &Path) -> Result<Option<u32>, LogError> {
    let path = root.join("meta.json");
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: Meta = serde_json::from_slice(&bytes)
                .map_err(|e| LogError::Corrupt { path: path.clone(), reason: e.to_string() })?;
            if meta.format != META_FORMAT || meta.shards == 0 {
                return Err(LogError::Corrupt { path, reason: format!("unsupported log format {meta:?}") });
            }
            Ok(Some(meta.shards))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::Io { path, source: e }),
    }
}

/// The writing side of the embedded log; also hands out readers that see exactly what was committed.
#[derive(Debug)]
pub struct LocalLog {
    root: PathBuf,
    shards: Vec<ShardHandle>,
    in_flight: InFlight,
    telemetry: ProducerTelemetry,
    shared: writer::Shared,
    closed: AtomicBool,
    _lock: File,
}

#[derive(Debug)]
struct ShardHandle {
    jobs: std::sync::Mutex<Option<mpsc::UnboundedSender<writer::AppendJob>>>,
    committed: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LocalLog {
    /// Opens (or creates) the log under `root`, recovering each shard's tail. Blocking: call it before serving.
    pub fn open(root: &Path, config: &LocalLogConfig, telemetry: ProducerTelemetry) -> Result<Self, LogError> {
        Self::open_with(root, config, telemetry, writer::Shared::default())
    }

    fn open_with(
        root: &Path,
        config: &LocalLogConfig,
        telemetry: ProducerTelemetry,
        shared: writer::Shared,
    ) -> Result<Self, LogError> {
        disk::create_dir_durably(root, &shared.faults).map_err(io_err(root))?;
        let lock_path = root.join("lock");
        let lock =
            File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(LogError::Locked { path: root.to_owned() }),
            Err(fs::TryLockError::Error(e)) => return Err(LogError::Io { path: lock_path, source: e }),
        }
        let shard_count = match read_shard_count(root)? {
            Some(n) => {
                if n != config.shards {
                    tracing::warn!(
                        existing = n,
                        configured = config.shards,
                        "The embedded log keeps the shard count it was created with."
                    );
                }
                n
            }
            None => {
                let path = root.join("meta.json");
                let meta =
                    serde_json::to_vec(&Meta { format: META_FORMAT, shards: config.shards.max(1) }).unwrap_or_default();
                disk::write_durably(&path, &meta, &shared.faults).map_err(io_err(&path))?;
                config.shards.max(1)
            }
        };
        let mut shards = Vec::with_capacity(shard_count as usize);
        for shard in 0..shard_count {
            let dir = shard_dir(root, shard);
            let state = writer::ShardWriter::open(&dir, shard, config.clone(), shared.clone())?;
            let committed = state.committed();
            let (tx, rx) = mpsc::unbounded_channel();
            let telemetry = telemetry.clone();
            let thread = std::thread::Builder::new()
                .name(format!("chimewatch-log-{shard}"))
                .spawn(move || state.run(rx, &telemetry))
                .map_err(io_err(&dir))?;
            shards.push(ShardHandle {
                jobs: std::sync::Mutex::new(Some(tx)),
                committed,
                thread: std::sync::Mutex::new(Some(thread)),
            });
        }
        let in_flight =
            InFlight::new(config.max_in_flight_bytes, Duration::from_secs(1), telemetry.in_flight_bytes.clone());
        Ok(Self {
            root: root.to_owned(),
            shards,
            in_flight,
            telemetry,
            shared,
            closed: AtomicBool::new(false),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The shard a partition key lands on.
    pub fn shard_for(&self, partition_key: &str) -> u32 {
        HashKey::of(partition_key).even_slice(self.shard_count())
    }

    /// A reader of `shard` that sees every committed record from `from` (a sequence number; 0 = the oldest).
    pub fn reader(&self, shard: u32, from: u64) -> Result<ShardReader, LogError> {
        let committed = self.shards.get(shard as usize).map(|s| s.committed.clone());
        let skipped = Some(self.shared.telemetry.corrupt_bytes_skipped.clone());
        ShardReader::open(&shard_dir(&self.root, shard), shard, from, committed, skipped)
    }

    /// Registers `consumer` as needing every record of every shard until it publishes its positions through the
    /// returned hold (usually by wrapping its lease store: [`ConsumerHold::checkpoints`]). Register before serving
    /// puts: retention deletes what no registered consumer needs.
    pub fn hold(&self, consumer: &str) -> ConsumerHold {
        self.shared.holds.register(consumer, self.shard_count())
    }

    /// The log's own metrics: refusals, write failures, damaged bytes skipped.
    pub fn log_telemetry(&self) -> &LogTelemetry {
        &self.shared.telemetry
    }

    /// The end of the committed data of a shard (the sequence number the next record will get).
    pub fn committed_end(&self, shard: u32) -> u64 {
        self.shards.get(shard as usize).map_or(0, |s| s.committed.load(Ordering::Acquire))
    }
}

/// The end of the valid frames of a shard on disk (where `stream dump` starts when following new records only).
/// Not the file's length: a write in progress may have left half a frame there.
pub fn end_of_shard(root: &Path, shard: u32) -> Result<u64, LogError> {
    let segments = writer::list_segments(&shard_dir(root, shard))?;
    let Some((base, path)) = segments.last() else { return Ok(0) };
    Ok(base + writer::valid_length(path)?.0)
}

/// Opens a reader of a log that another process may be writing (`stream dump`): it stops at the last valid frame.
pub fn open_reader(root: &Path, shard: u32, from: u64) -> Result<ShardReader, LogError> {
    ShardReader::open(&shard_dir(root, shard), shard, from, None, None)
}

#[async_trait]
impl Producer for LocalLog {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProduceError::ShuttingDown);
        }
        if let Some(r) = records.iter().find(|r| r.cost() > MAX_RECORD_BYTES) {
            return Err(ProduceError::RecordTooLarge { size: r.cost(), limit: MAX_RECORD_BYTES });
        }
        let started = Instant::now();
        let bytes: usize = records.iter().map(OutRecord::cost).sum();
        let _permit = match self.in_flight.acquire(bytes as u64) {
            Ok(p) => p,
            Err(e) => {
                self.telemetry.overloaded.inc();
                return Err(e);
            }
        };
        let count = records.len();
        let mut per_shard: Vec<Vec<OutRecord>> = vec![Vec::new(); self.shards.len()];
        for r in records {
            let shard = self.shard_for(&r.partition_key) as usize;
            per_shard[shard].push(r);
        }
        let mut acks = Vec::new();
        for (shard, records) in per_shard.into_iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let (ack, done) = oneshot::channel();
            let sent = self.shards[shard]
                .jobs
                .lock()
                .map_err(|_| ProduceError::ShuttingDown)?
                .as_ref()
                .map(|tx| tx.send(writer::AppendJob { records, ack }).is_ok());
            if sent != Some(true) {
                return Err(ProduceError::ShuttingDown);
            }
            acks.push(done);
        }
        for done in acks {
            match done.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(ProduceError::Unavailable { reason, retry_after: Duration::from_secs(1) });
                }
                Err(_) => return Err(ProduceError::ShuttingDown),
            }
        }
        self.telemetry.records.inc_by(count as u64);
        self.telemetry.entries.inc_by(count as u64);
        self.telemetry.bytes.inc_by(bytes as u64);
        self.telemetry.put_latency.observe(started.elapsed());
        Ok(())
    }

    fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.in_flight.has_room()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the senders lets each writer drain its queue, sync, and exit.
        let threads: Vec<_> = self
            .shards
            .iter()
            .filter_map(|s| {
                s.jobs.lock().ok().and_then(|mut j| j.take());
                s.thread.lock().ok().and_then(|mut t| t.take())
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        for s in &self.shards {
            if let Ok(mut j) = s.jobs.lock() {
                j.take();
            }
        }
    }
}

#[cfg(test)]
mod tests;
