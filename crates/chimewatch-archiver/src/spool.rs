//! A shard's rows waiting for their files: appended to one temporary file on disk, with a small index per
//! (table, partition) in memory, so memory stays bounded however many partitions are open and however large the
//! files grow. A cut takes every row up to a position out of the index, sorted by event time.
//!
//! Rows are spooled in postcard, not JSON: the same process writes and reads them back, so nothing needs to be
//! self-describing. As JSON, writing rows and reading them back took about 15 % of `up`'s CPU under load.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use chimewatch_stream::consumer::Position;

use crate::layout::{Partition, Table};
use crate::rows::Row;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool file: {0}")]
    Io(#[from] std::io::Error),
    /// A write failed before: the file may hold part of a row, so no offset after it can be trusted.
    #[error("spool file failed earlier ({0}); its shard must start again from its checkpoint")]
    Failed(String),
    #[error("row does not encode for the spool: {0}")]
    Encode(#[source] postcard::Error),
    #[error("spooled row at byte {offset} does not decode: {source}")]
    Decode {
        offset: u64,
        #[source]
        source: postcard::Error,
    },
}

/// Where a spooled row is, and what it sorts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub event_time_ms: i64,
    /// The order the shard delivered rows in: the tie-break after event time, so a file's order is deterministic.
    pub ordinal: u64,
    pub position: Position,
    pub arrival_ms: i64,
    offset: u64,
    len: u32,
}

impl Entry {
    /// The row's bytes in the spool.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The rows of one (table, partition) a cut takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub table: Table,
    pub partition: Partition,
    /// Sorted by event time, then delivery order.
    pub entries: Vec<Entry>,
}

impl Part {
    /// The first and last positions among the part's rows.
    pub fn range(&self) -> Option<(&Position, &Position)> {
        let first = self.entries.iter().map(|e| &e.position).min()?;
        let last = self.entries.iter().map(|e| &e.position).max()?;
        Some((first, last))
    }
}

#[derive(Debug, Default)]
struct Buffer {
    entries: Vec<Entry>,
    bytes: u64,
}

/// Buffered rows of one shard.
#[derive(Debug)]
pub struct Spool {
    writer: BufWriter<File>,
    /// Bytes written to the file (live or already taken).
    written: u64,
    buffers: BTreeMap<(Table, Partition), Buffer>,
    next_ordinal: u64,
    /// Bytes of the rows still buffered.
    live_bytes: u64,
    live_rows: u64,
    /// The first I/O error: after it, every call that touches the file refuses rather than trust offsets a partial
    /// write may have moved.
    failed: Option<String>,
}

impl Spool {
    /// A spool in an unnamed temporary file under `dir` (removed by the OS when dropped, even after a crash).
    pub fn new(dir: &Path) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self::over(tempfile::tempfile_in(dir)?, 256 * 1024))
    }

    fn over(file: File, buffer: usize) -> Self {
        Self {
            writer: BufWriter::with_capacity(buffer, file),
            written: 0,
            buffers: BTreeMap::new(),
            next_ordinal: 0,
            live_bytes: 0,
            live_rows: 0,
            failed: None,
        }
    }

    /// Runs one I/O step of the file, unless one failed before; a failure is remembered.
    fn io<T>(&mut self, step: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<T>) -> Result<T, SpoolError> {
        if let Some(earlier) = &self.failed {
            return Err(SpoolError::Failed(earlier.clone()));
        }
        step(&mut self.writer).map_err(|e| {
            self.failed = Some(e.to_string());
            SpoolError::Io(e)
        })
    }

    pub fn append(&mut self, row: &Row, position: Position, arrival_ms: i64) -> Result<(), SpoolError> {
        let bytes = postcard::to_allocvec(row).map_err(SpoolError::Encode)?;
        // Checked before anything is written, so a refused row leaves the offsets of the rest true.
        let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("a row of 4 GiB or more"))?;
        self.io(|w| w.write_all(&bytes))?;
        let entry = Entry {
            event_time_ms: row.event_time_ms(),
            ordinal: self.next_ordinal,
            position,
            arrival_ms,
            offset: self.written,
            len,
        };
        self.next_ordinal += 1;
        self.written += u64::from(len);
        self.live_bytes += u64::from(len);
        self.live_rows += 1;
        let buffer = self.buffers.entry((row.table(), row.partition())).or_default();
        buffer.bytes += u64::from(len);
        buffer.entries.push(entry);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.live_rows == 0
    }

    pub fn rows(&self) -> u64 {
        self.live_rows
    }

    pub fn bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Open (table, partition) buffers.
    pub fn partitions(&self) -> usize {
        self.buffers.len()
    }

    /// The largest buffer of each table, in spooled bytes.
    pub fn largest(&self, table: Table) -> u64 {
        self.buffers.iter().filter(|((t, _), _)| *t == table).map(|(_, b)| b.bytes).max().unwrap_or(0)
    }

    /// The position of the first buffered row (rows are spooled in shard order).
    pub fn first_position(&self) -> Option<Position> {
        self.buffers.values().filter_map(|b| b.entries.first()).min_by_key(|e| e.ordinal).map(|e| e.position.clone())
    }

    /// Takes every row at or before `through` out of the buffers, as parts sorted for their files.
    pub fn take_through(&mut self, through: &Position) -> Vec<Part> {
        let mut parts = Vec::new();
        for (&(table, partition), buffer) in &mut self.buffers {
            let (mut taken, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut buffer.entries).into_iter().partition(|e| &e.position <= through);
            buffer.entries = kept;
            if taken.is_empty() {
                continue;
            }
            let bytes: u64 = taken.iter().map(|e| u64::from(e.len)).sum();
            buffer.bytes -= bytes;
            self.live_bytes -= bytes;
            self.live_rows -= taken.len() as u64;
            taken.sort_by_key(|e| (e.event_time_ms, e.ordinal));
            parts.push(Part { table, partition, entries: taken });
        }
        self.buffers.retain(|_, b| !b.entries.is_empty());
        parts
    }

    /// Reads the rows of `entries` back, in the order given.
    pub fn read(&mut self, entries: &[Entry]) -> Result<Vec<Row>, SpoolError> {
        self.io(BufWriter::flush)?;
        let file = self.writer.get_ref();
        let mut bytes = Vec::new();
        entries
            .iter()
            .map(|e| {
                bytes.resize(e.len as usize, 0);
                file.read_exact_at(&mut bytes, e.offset)?;
                postcard::from_bytes(&bytes).map_err(|source| SpoolError::Decode { offset: e.offset, source })
            })
            .collect()
    }

    /// Once every row was taken, starts the file over, so a long-running shard's spool does not grow.
    pub fn reclaim(&mut self) -> Result<(), SpoolError> {
        if self.is_empty() && self.written > 0 {
            self.io(|w| {
                w.flush()?;
                w.get_mut().set_len(0)?;
                w.get_mut().rewind()
            })?;
            self.written = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord};
    use serde_json::json;

    use super::*;
    use crate::rows::{MeetingEventRow, Source};

    pub(crate) fn row(seq: u64, event_ms: i64) -> Row {
        let record = MeetingEventRecord {
            v: 1,
            received_at_ms: event_ms + 5,
            ingest: Ingest::Batch,
            event: MeetingEvent {
                name: "meetingStartSucceeded".into(),
                attributes: json!({ "timestampMs": event_ms, "meetingId": format!("m-{seq}") })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
            original: Default::default(),
            truncation: Default::default(),
            delivery: None,
        };
        let source = Source {
            shard_id: "shard-0000".into(),
            sequence_number: seq.to_string(),
            sub_sequence_number: 0,
            log_event_index: 0,
        };
        Row::Meeting(MeetingEventRow::new(&record.into(), source))
    }

    fn at(seq: u64) -> Position {
        Position::parse(&seq.to_string(), 0).unwrap()
    }

    #[test]
    fn a_cut_takes_rows_through_a_position_sorted_by_event_time_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path()).unwrap();
        let hour = 1_763_712_000_000;
        for (seq, t) in [(1, hour + 30), (2, hour + 10), (3, hour - 1), (4, hour + 10), (5, hour + 20)] {
            spool.append(&row(seq, t), at(seq), 0).unwrap();
        }
        assert_eq!((spool.rows(), spool.partitions()), (5, 2));

        let parts = spool.take_through(&at(4));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].partition, Partition::of(hour - 1));
        let later = &parts[1];
        let seqs: Vec<_> = later.entries.iter().map(|e| e.position.sequence.to_string()).collect();
        assert_eq!(seqs, ["2", "4", "1"], "by event time, ties in delivery order");
        assert_eq!(later.range().map(|(a, b)| (a.clone(), b.clone())), Some((at(1), at(4))));
        let rows = spool.read(&later.entries).unwrap();
        assert_eq!(rows[2], row(1, hour + 30), "rows read back as spooled");

        assert_eq!((spool.rows(), spool.partitions()), (1, 1), "row 5 stays for the next cut");
        spool.reclaim().unwrap();
        let rest = spool.take_through(&at(9));
        assert_eq!(spool.read(&rest[0].entries).unwrap(), [row(5, hour + 20)], "not reclaimed while rows are live");
        spool.reclaim().unwrap();
        assert!(spool.is_empty() && spool.bytes() == 0);
        spool.append(&row(6, hour), at(6), 0).unwrap();
        let again = spool.take_through(&at(6));
        assert_eq!(spool.read(&again[0].entries).unwrap(), [row(6, hour)], "the file starts over after a reclaim");
    }

    #[test]
    fn after_a_failed_write_the_spool_refuses_every_call_that_touches_the_file() {
        // A file open for reading only: every write fails, and with no buffer it fails at once.
        let mut spool = Spool::over(File::open("/dev/null").unwrap(), 0);
        let first = spool.append(&row(1, 0), at(1), 0).unwrap_err();
        assert!(matches!(first, SpoolError::Io(_)), "{first}");
        let later = spool.append(&row(2, 0), at(2), 0).unwrap_err().to_string();
        assert!(later.contains("failed earlier") && later.contains("checkpoint"), "{later}");
        assert!(matches!(spool.read(&[]), Err(SpoolError::Failed(_))));
        assert_eq!(spool.rows(), 0, "the row whose write failed was not indexed");
    }
}
