//! One shard's writer: recovery on open, group commit, segment rolling and retention, on a dedicated thread.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::frame::{self, Frame};
use super::{LocalLogConfig, LogError, io_err};
use crate::ports::OutRecord;
use crate::telemetry::ProducerTelemetry;

pub(crate) struct AppendJob {
    pub records: Vec<OutRecord>,
    pub ack: oneshot::Sender<Result<(), String>>,
}

/// Most bytes taken into one group commit; more waits for the next sync.
const MAX_COMMIT_BYTES: usize = 16 << 20;

pub(crate) struct ShardWriter {
    dir: PathBuf,
    config: LocalLogConfig,
    /// Sealed segments, oldest first: (base offset, path).
    sealed: VecDeque<(u64, PathBuf)>,
    active: File,
    active_base: u64,
    active_len: u64,
    committed: Arc<AtomicU64>,
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

/// Writes a small file so that it survives a crash: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ShardWriter {
    pub fn open(dir: &Path, config: LocalLogConfig) -> Result<Self, LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments: VecDeque<_> = list_segments(dir)?.into();
        let (active_base, active_path) = match segments.pop_back() {
            Some(last) => last,
            None => {
                let path = segment_path(dir, 0);
                File::create(&path).map_err(io_err(&path))?;
                sync_dir(dir).map_err(io_err(dir))?;
                (0, path)
            }
        };
        let valid_len = recover(&active_path)?;
        let active = File::options().append(true).open(&active_path).map_err(io_err(&active_path))?;
        let mut writer = Self {
            dir: dir.to_owned(),
            config,
            sealed: segments,
            active,
            active_base,
            active_len: valid_len,
            committed: Arc::new(AtomicU64::new(active_base + valid_len)),
        };
        writer.enforce_retention();
        Ok(writer)
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
            let result = self.append(&batch, &mut buf).map_err(|e| {
                tracing::error!(dir = %self.dir.display(), error = %e, "The embedded log failed to commit a batch.");
                e.to_string()
            });
            telemetry.requests.inc();
            for job in batch {
                let _ = job.ack.send(result.clone());
            }
        }
        if let Err(e) = self.active.sync_data() {
            tracing::error!(dir = %self.dir.display(), error = %e, "The embedded log failed its final sync.");
        }
    }

    fn append(&mut self, batch: &[AppendJob], buf: &mut Vec<u8>) -> io::Result<()> {
        let timestamp_ms = crate::system_clock().as_i64();
        buf.clear();
        let mut pending_len = 0u64;
        for record in batch.iter().flat_map(|j| &j.records) {
            let len = frame::frame_len(&record.partition_key, &record.data) as u64;
            if self.active_len + pending_len > 0 && self.active_len + pending_len + len > self.config.segment_bytes {
                self.write_and_sync(buf, pending_len)?;
                pending_len = 0;
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
        let result = self.active.write_all(buf).and_then(|()| self.active.sync_data());
        buf.clear();
        match result {
            Ok(()) => {
                self.active_len += len;
                self.committed.store(self.active_base + self.active_len, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // Cut whatever part of the batch reached the file, so the next commit starts on a frame boundary.
                let _ = self.active.set_len(self.active_len);
                Err(e)
            }
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        let base = self.active_base + self.active_len;
        let path = segment_path(&self.dir, base);
        let file = File::options().create_new(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.sealed.push_back((self.active_base, segment_path(&self.dir, self.active_base)));
        self.active = file;
        self.active_base = base;
        self.active_len = 0;
        self.enforce_retention();
        Ok(())
    }

    /// Deletes sealed segments past the retention age or beyond the shard's byte budget, oldest first.
    fn enforce_retention(&mut self) {
        let now = SystemTime::now();
        let mut total =
            self.active_len + self.sealed.iter().map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len())).sum::<u64>();
        while let Some((_, path)) = self.sealed.front() {
            let meta = fs::metadata(path).ok();
            let len = meta.as_ref().map_or(0, fs::Metadata::len);
            let age = meta.and_then(|m| m.modified().ok()).and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
            if age <= self.config.retention && total <= self.config.max_shard_bytes {
                break;
            }
            match fs::remove_file(path) {
                Ok(()) => tracing::info!(segment = %path.display(), bytes = len, "Retention deleted a sealed segment."),
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "Retention could not delete a segment.");
                    break;
                }
            }
            total -= len;
            self.sealed.pop_front();
        }
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
