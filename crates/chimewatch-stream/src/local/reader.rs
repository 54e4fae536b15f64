//! Reading one shard of the embedded log from a sequence number, across segments, up to the committed end.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl ShardReader {
    pub(crate) fn open(dir: &Path, shard: u32, from: u64, committed: Option<Arc<AtomicU64>>) -> Result<Self, LogError> {
        Ok(Self { dir: dir.to_owned(), shard, position: from, committed })
    }

    /// The sequence number of the next record to read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads up to `max_records` records (and roughly `max_bytes`); an empty result means none are available yet.
    pub fn read(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<LogRecord>, LogError> {
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
            let mut file = File::open(path).map_err(io_err(path))?;
            file.seek(SeekFrom::Start(self.position - base)).map_err(io_err(path))?;
            let mut r = BufReader::with_capacity(256 << 10, file);
            loop {
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
                    Frame::End => break,
                    Frame::Torn { reason } => {
                        if limit.is_some() {
                            return Err(LogError::Corrupt {
                                path: path.clone(),
                                reason: format!("{reason} at offset {} below the committed end", self.position - base),
                            });
                        }
                        // Another process is mid-write, or crashed: stop at the last valid frame.
                        break 'segments;
                    }
                }
            }
            // End of this segment: continue in the next one when it starts exactly here.
            match segments.get(index + 1) {
                Some((next, _)) if *next == self.position => index += 1,
                _ => break,
            }
        }
        Ok(out)
    }
}
