//! Reading one shard of the embedded log from a sequence number, across segments, up to the committed end.
//!
//! Damaged frames (a bad checksum, an impossible length, a segment that ends before the next one begins) in data
//! that was committed are a loss to surface, not a reason to stop reading forever. The policy:
//! - in a sealed segment, the rest of that segment is lost: frames carry no resynchronisation marks, so reading
//!   resumes at the next segment;
//! - in the active segment, read by the writing process below its committed end, reading resumes at that end;
//! - in the active segment of another process's log, a bad frame may be a write in progress, or a tail recovery will
//!   cut: reading stops there, as at the end of data.
//!
//! A reader that skips reports it once: the read returns [`LogError::Corrupt`] naming the segment, the offset and
//! the bytes lost, logs it at error and counts the bytes; its position has moved past the damage, so its next read
//! goes on. Records read before the damage in the same call are returned first; the next call reports the damage.

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;

use super::frame::{self, Frame};
use super::writer::list_segments;
use super::{LogError, io_err};

/// One record read from the embedded log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub shard: u32,
    /// Byte offset of the record within its shard.
    pub sequence: u64,
    /// When the log committed the record, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct ShardReader {
    dir: PathBuf,
    shard: u32,
    position: u64,
    /// The writer's committed end when the writer is in this process; otherwise reading stops at the last valid frame.
    committed: Option<Arc<AtomicU64>>,
    /// Where skipped bytes are counted, when the log is open in this process.
    skipped: Option<Counter>,
}

/// What to do at a damaged spot.
enum Damage {
    /// Lost through `resume`: report, then read on from there.
    Skip { resume: u64, reason: String },
    /// Perhaps a write in progress: the end of what can be read now.
    Stop,
}

impl ShardReader {
    pub(crate) fn open(
        dir: &Path,
        shard: u32,
        from: u64,
        committed: Option<Arc<AtomicU64>>,
        skipped: Option<Counter>,
    ) -> Result<Self, LogError> {
        Ok(Self { dir: dir.to_owned(), shard, position: from, committed, skipped })
    }

    /// The sequence number of the next record to read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads up to `max_records` records (and roughly `max_bytes`); an empty result means none are available yet.
    /// A [`LogError::Corrupt`] reports records lost to damage; the reader has moved past them and may read on.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<LogRecord>, LogError> {
        // Loaded before listing: a segment the listing misses was created later, so it starts at or past the limit.
        let limit = self.committed.as_ref().map(|c| c.load(Ordering::Acquire));
        let segments = list_segments(&self.dir)?;
        let Some(first) = segments.first() else { return Ok(Vec::new()) };
        if self.position < first.0 {
            tracing::warn!(
                shard = self.shard,
                from = self.position,
                oldest = first.0,
                "Records before the oldest retained segment were deleted by retention."
            );
            self.position = first.0;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = segments.iter().rposition(|(base, _)| *base <= self.position).unwrap_or(0);
        'segments: while index < segments.len() {
            let (base, path) = &segments[index];
            let next = segments.get(index + 1).map(|(b, _)| *b);
            let mut file = match File::open(path) {
                Ok(f) => f,
                // Retention deleted it since the listing: the next read starts at the oldest segment left.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(LogError::Io { path: path.clone(), source: e }),
            };
            file.seek(SeekFrom::Start(self.position - base)).map_err(io_err(path))?;
            let mut r = BufReader::with_capacity(256 << 10, file);
            let damage = loop {
                if out.len() >= max_records || bytes >= max_bytes || limit.is_some_and(|l| self.position >= l) {
                    break 'segments;
                }
                match frame::read(&mut r).map_err(io_err(path))? {
                    Frame::Record { timestamp_ms, key, data, len } => {
                        bytes += data.len();
                        out.push(LogRecord {
                            shard: self.shard,
                            sequence: self.position,
                            timestamp_ms,
                            partition_key: key,
                            data,
                        });
                        self.position += len as u64;
                    }
                    Frame::End => match next {
                        // Continue in the next segment when it starts exactly here.
                        Some(next) if next == self.position => {
                            index += 1;
                            continue 'segments;
                        }
                        // Short of where the next segment (or the committed data) begins: bytes went missing.
                        _ => match self.at_damage(next, limit, "the segment ends early") {
                            Damage::Stop => break 'segments,
                            skip => break skip,
                        },
                    },
                    Frame::Torn { reason } => break self.at_damage(next, limit, reason),
                }
            };
            match damage {
                Damage::Stop => break,
                // Hand over what was read first; the next read reports the damage.
                Damage::Skip { .. } if !out.is_empty() => break,
                Damage::Skip { resume, reason } => return Err(self.skip(path, *base, resume, &reason)),
            }
        }
        Ok(out)
    }

    /// Decides what a bad frame at the reader's position means (see the module's policy).
    fn at_damage(&self, next: Option<u64>, limit: Option<u64>, reason: &str) -> Damage {
        match (next, limit) {
            (Some(next), _) if next > self.position => {
                Damage::Skip { resume: next, reason: format!("{reason} in a sealed segment") }
            }
            (None, Some(limit)) if limit > self.position => {
                Damage::Skip { resume: limit, reason: format!("{reason} below the committed end") }
            }
            _ => Damage::Stop,
        }
    }

    /// Moves past damaged bytes, logging and counting them, and returns the error that reports them.
    fn skip(&mut self, path: &Path, base: u64, resume: u64, reason: &str) -> LogError {
        let offset = self.position - base;
        let lost = resume - self.position;
        tracing::error!(
            shard = self.shard,
            segment = %path.display(),
            offset,
            lost_bytes = lost,
            resumes_at = resume,
            reason,
            "The embedded log is damaged: the records in these bytes are lost; reading goes on after them."
        );
        if let Some(c) = &self.skipped {
            c.inc_by(lost);
        }
        self.position = resume;
        LogError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "{reason} at offset {offset}: {lost} bytes of records are lost; reading resumes at sequence {resume}"
            ),
        }
    }
}
