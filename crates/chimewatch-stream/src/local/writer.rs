//! One shard's writer: recovery on open, group commit, segment rolling and retention, on a dedicated thread.
//!
//! What keeps "acknowledged means durable, and readable after everything acknowledged before it" through failures:
//! - A failed append is cut back to the last good length. When the cut itself fails, the shard refuses every put
//!   until a later attempt cuts it: frames appended after the leftover bytes would be out of every reader's reach.
//! - A roll counts as done only once the new segment's directory entry is synced. From the moment a segment is
//!   full nothing more is appended to it, so a failed roll is simply tried again, reopening the empty file it left.
//! - Retention never deletes records a consumer's hold still needs. When a shard's byte budget could only be kept by
//!   deleting them, puts are refused (back-pressure) until the consumer catches up. Retention runs as segments roll
//!   and when a put would exceed the budget, never at open: consumers register their holds after the log opens.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::disk::{self, Faults, Op};
use super::frame::{self, Frame};
use super::hold::Holds;
use super::telemetry::LogTelemetry;
use super::{LocalLogConfig, LogError, io_err};
use crate::ports::OutRecord;
use crate::telemetry::ProducerTelemetry;

pub(crate) struct AppendJob {
    pub records: Vec<OutRecord>,
    /// The put's outcome; an error is a reason a client may read.
    pub ack: oneshot::Sender<Result<(), String>>,
}

/// Most bytes taken into one group commit; more waits for the next sync.
const MAX_COMMIT_BYTES: usize = 16 << 20;

/// What the writers of one log share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared {
    pub holds: Arc<Holds>,
    pub telemetry: LogTelemetry,
    pub faults: Faults,
}

pub(crate) struct ShardWriter {
    shard: u32,
    dir: PathBuf,
    config: LocalLogConfig,
    shared: Shared,
    /// Sealed segments, oldest first: (base offset, path).
    sealed: VecDeque<(u64, PathBuf)>,
    active: File,
    active_path: PathBuf,
    active_base: u64,
    active_len: u64,
    committed: Arc<AtomicU64>,
    /// Set when a failed write left bytes past `active_len` that could not be cut: what failed.
    damaged: Option<String>,
    /// The active segment is full and a roll is under way: it must complete before anything more is written.
    roll_pending: bool,
    /// Puts are being refused because consumers hold the shard's whole budget (logged when it starts and ends).
    held_full: bool,
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Segments of a shard directory, oldest first.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LogError::Io { path: dir.to_owned(), source: e }),
    };
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(base) = base {
            out.push((base, path));
        }
    }
    out.sort();
    Ok(out)
}

impl ShardWriter {
    pub fn open(dir: &Path, shard: u32, config: LocalLogConfig, shared: Shared) -> Result<Self, LogError> {
        disk::create_dir_durably(dir, &shared.faults).map_err(io_err(dir))?;
        let mut segments: VecDeque<_> = list_segments(dir)?.into();
        let (active_base, active_path) = match segments.pop_back() {
            Some(last) => last,
            None => {
                let path = segment_path(dir, 0);
                File::options().create(true).append(true).open(&path).map_err(io_err(&path))?;
                disk::sync_dir(dir, &shared.faults).map_err(io_err(dir))?;
                (0, path)
            }
        };
        let valid_len = recover(&active_path)?;
        let active = File::options().append(true).open(&active_path).map_err(io_err(&active_path))?;
        Ok(Self {
            shard,
            dir: dir.to_owned(),
            config,
            shared,
            sealed: segments,
            active,
            active_path,
            active_base,
            active_len: valid_len,
            committed: Arc::new(AtomicU64::new(active_base + valid_len)),
            damaged: None,
            roll_pending: false,
            held_full: false,
        })
    }

    pub fn committed(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    pub fn run(mut self, mut jobs: mpsc::UnboundedReceiver<AppendJob>, telemetry: &ProducerTelemetry) {
        let mut buf = Vec::new();
        while let Some(first) = jobs.blocking_recv() {
            let mut batch = vec![first];
            let mut bytes: usize = batch[0].records.iter().map(OutRecord::cost).sum();
            // Everything that queued while the last sync ran is committed by the next one.
            while bytes < MAX_COMMIT_BYTES {
                match jobs.try_recv() {
                    Ok(job) => {
                        bytes += job.records.iter().map(OutRecord::cost).sum::<usize>();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            let result = self.append(&batch, &mut buf);
            telemetry.call_latency.observe(started.elapsed());
            telemetry.requests.inc();
            for job in batch {
                let _ = job.ack.send(result.clone());
            }
        }
        if let Err(e) = self.active.sync_data() {
            tracing::error!(dir = %self.dir.display(), error = %e, "The embedded log failed its final sync.");
        }
    }

    /// Commits a batch, or says why not in words a client may read (the log has the details).
    fn append(&mut self, batch: &[AppendJob], buf: &mut Vec<u8>) -> Result<(), String> {
        let jobs = batch.len() as u64;
        if let Err(reason) = self.ensure_writable() {
            self.shared.telemetry.refused_unwritable.inc_by(jobs);
            return Err(reason);
        }
        let incoming: u64 =
            batch.iter().flat_map(|j| &j.records).map(|r| frame::frame_len(&r.partition_key, &r.data) as u64).sum();
        if let Err(reason) = self.make_room(incoming) {
            self.shared.telemetry.refused_held.inc_by(jobs);
            return Err(reason);
        }
        self.write_batch(batch, buf).map_err(|e| {
            self.shared.telemetry.write_failures.inc();
            tracing::error!(
                segment = %self.active_path.display(),
                error = %e,
                "The embedded log failed to commit a batch; its puts were refused."
            );
            format!("shard {}: the embedded log could not write: {e}", self.shard)
        })
    }

    /// Finishes what a failure left undone: cuts leftover bytes of a failed write, completes a roll.
    fn ensure_writable(&mut self) -> Result<(), String> {
        if let Some(failed) = self.damaged.take() {
            if let Err(e) = self.cut() {
                let reason = format!(
                    "shard {} refuses writes: a failed write ({failed}) left bytes in its segment that cannot be cut \
                     yet ({e}); writes resume once they can be",
                    self.shard
                );
                self.damaged = Some(failed);
                return Err(reason);
            }
            tracing::info!(
                segment = %self.active_path.display(),
                length = self.active_len,
                "The embedded log cut a failed write's leftover bytes; the shard takes writes again."
            );
        }
        if self.roll_pending {
            self.roll().map_err(|e| {
                tracing::error!(dir = %self.dir.display(), error = %e, "The embedded log could not start a new segment.");
                format!("shard {}: the embedded log could not start a new segment: {e}", self.shard)
            })?;
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &[AppendJob], buf: &mut Vec<u8>) -> io::Result<()> {
        let timestamp_ms = crate::system_clock().as_i64();
        buf.clear();
        let mut pending_len = 0u64;
        for record in batch.iter().flat_map(|j| &j.records) {
            let len = frame::frame_len(&record.partition_key, &record.data) as u64;
            if self.active_len + pending_len > 0 && self.active_len + pending_len + len > self.config.segment_bytes {
                self.write_and_sync(buf, pending_len)?;
                pending_len = 0;
                self.roll_pending = true;
                self.roll()?;
            }
            frame::encode(timestamp_ms, &record.partition_key, &record.data, buf);
            pending_len += len;
        }
        self.write_and_sync(buf, pending_len)
    }

    fn write_and_sync(&mut self, buf: &mut Vec<u8>, len: u64) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let result = self.write_frames(buf).and_then(|()| self.active.sync_data());
        buf.clear();
        match result {
            Ok(()) => {
                self.active_len += len;
                self.committed.store(self.active_base + self.active_len, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // Cut whatever part of the batch reached the file, so the next commit starts on a frame boundary.
                if let Err(cut) = self.cut() {
                    tracing::error!(
                        segment = %self.active_path.display(),
                        good_length = self.active_len,
                        error = %cut,
                        "The embedded log could not cut a failed write; the shard refuses writes until it can."
                    );
                    self.damaged = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    fn write_frames(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Err(e) = self.shared.faults.check(Op::Write) {
            // An injected failure lands part of the bytes first, as a full disk does.
            let _ = self.active.write_all(&buf[..buf.len() / 2]);
            return Err(e);
        }
        self.active.write_all(buf)
    }

    /// Cuts the active segment back to its last good length.
    fn cut(&mut self) -> io::Result<()> {
        self.shared.faults.check(Op::SetLen)?;
        self.active.set_len(self.active_len)
    }

    /// Seals the active segment and starts the next one, whose base is where the sealed one ends.
    fn roll(&mut self) -> io::Result<()> {
        let base = self.active_base + self.active_len;
        let path = segment_path(&self.dir, base);
        // Not `create_new`: a roll that failed after creating the file left it behind, empty, and must be retryable.
        let file = File::options().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            return Err(io::Error::other(format!(
                "{} already holds {len} bytes this writer did not write; it must not be appended to",
                path.display()
            )));
        }
        disk::sync_dir(&self.dir, &self.shared.faults)?;
        let sealed = std::mem::replace(&mut self.active_path, path);
        self.sealed.push_back((self.active_base, sealed));
        self.active = file;
        self.active_base = base;
        self.active_len = 0;
        self.roll_pending = false;
        if let Some((needed, consumer)) = self.enforce_retention(0) {
            tracing::info!(
                shard = self.shard,
                consumer,
                needed,
                "Retention keeps sealed segments a consumer still needs, though they are due for deletion."
            );
        }
        Ok(())
    }

    /// Bytes of the shard's segments on disk.
    fn total_bytes(&self) -> u64 {
        let oldest = self.sealed.front().map_or(self.active_base, |(base, _)| *base);
        self.active_base + self.active_len - oldest
    }

    /// Makes room for `incoming` bytes within `max_shard_bytes`, or refuses them when only records a consumer still
    /// needs could be deleted. A budget smaller than the active segment is not enforced, as before holds existed.
    fn make_room(&mut self, incoming: u64) -> Result<(), String> {
        let max = self.config.max_shard_bytes;
        if self.total_bytes() + incoming > max
            && let Some((needed, consumer)) = self.enforce_retention(incoming)
            && self.total_bytes() + incoming > max
        {
            if !self.held_full {
                self.held_full = true;
                tracing::error!(
                    shard = self.shard,
                    consumer,
                    needed,
                    shard_bytes = self.total_bytes(),
                    max_shard_bytes = max,
                    "An embedded log shard is full of records a consumer has not checkpointed; puts are refused \
                     until it catches up (raise local.max_shard_bytes or fix the consumer)."
                );
            }
            return Err(format!(
                "shard {} is full: local.max_shard_bytes ({max}) leaves no room without deleting records consumer \
                 {consumer:?} still needs (from sequence {needed}); retry once it catches up",
                self.shard
            ));
        }
        if self.held_full {
            self.held_full = false;
            tracing::info!(shard = self.shard, "An embedded log shard has room again; puts are accepted.");
        }
        Ok(())
    }

    /// Deletes sealed segments, oldest first, while they are past the retention age or the shard (with `incoming`
    /// bytes more) is beyond its budget, and no consumer still needs them. Returns the hold that stopped it, if any.
    fn enforce_retention(&mut self, incoming: u64) -> Option<(u64, String)> {
        let now = SystemTime::now();
        while let Some((base, path)) = self.sealed.front() {
            let end = self.sealed.get(1).map_or(self.active_base, |(b, _)| *b);
            let over_budget = self.total_bytes() + incoming > self.config.max_shard_bytes;
            let expired = || {
                let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
                modified.and_then(|t| now.duration_since(t).ok()).is_some_and(|age| age > self.config.retention)
            };
            if !over_budget && !expired() {
                return None;
            }
            if let Some((needed, consumer)) = self.shared.holds.oldest_needed(self.shard)
                && needed < end
            {
                return Some((needed, consumer));
            }
            let len = end - base;
            match fs::remove_file(path) {
                Ok(()) => tracing::info!(segment = %path.display(), bytes = len, "Retention deleted a sealed segment."),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "Retention could not delete a segment.");
                    return None;
                }
            }
            self.sealed.pop_front();
        }
        None
    }
}

/// Scans a segment without changing it: the length of its valid frames, the file's length, and why the scan
/// stopped short of the end (a torn tail, or a write in progress), if it did.
pub(crate) fn valid_length(path: &Path) -> Result<(u64, u64, Option<&'static str>), LogError> {
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut valid = 0u64;
    let reason = loop {
        match frame::read(&mut reader).map_err(io_err(path))? {
            Frame::Record { len, .. } => valid += len as u64,
            Frame::End => break None,
            Frame::Torn { reason } => break Some(reason),
        }
    };
    Ok((valid, file_len, reason))
}

/// Scans a segment and cuts a torn tail; returns the length of its valid frames.
fn recover(path: &Path) -> Result<u64, LogError> {
    let (valid, file_len, reason) = valid_length(path)?;
    if valid < file_len {
        tracing::warn!(
            segment = %path.display(),
            dropped_bytes = file_len - valid,
            reason = reason.unwrap_or("trailing bytes"),
            "Recovery cut a torn tail from the embedded log; no acknowledged record lies in it."
        );
        let f = File::options().write(true).open(path).map_err(io_err(path))?;
        f.set_len(valid).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(valid)
}
