//! Compaction: merges a partition's small files into large ones, sorted by event time, without losing or doubling
//! a row across crashes.
//!
//! Each merge is recorded first as an intent (`_chimewatch/compactions/<id>.json`: the inputs and the output key,
//! which is derived from the inputs). Then the output is written, then the inputs are deleted, then the intent. A
//! run that finds an intent finishes it: the inputs are deleted if the output exists, else the intent is dropped
//! and the inputs stay. Files the archiver may still rewrite are never merged: those of a shard's cut that is
//! claimed and not yet superseded, and any file younger than `min_age`.
//!
//! Readers listing a partition in the instant between the output's commit and the inputs' deletion can see its rows
//! twice: S3 has no multi-object transaction. Athena and DuckDB list once per query, so a query racing a merge of
//! its partition is the exposure.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_schema::ArrowError;
use bytes::Bytes;
use chimewatch_sinks::{ObjectError, ObjectInfo, ObjectStore};
use chimewatch_stream::consumer::SequenceNumber;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{CLAIMS_DIR, Claim, ClaimPosition};
use crate::encode::{BATCH_ROWS, EncodeError, FileWriter, read_file};
use crate::layout::{Format, Table, root};

/// Where merge intents are kept, beside the claims.
pub const INTENTS_DIR: &str = "_chimewatch/compactions";

#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub prefix: String,
    pub tables: Vec<Table>,
    pub format: Format,
    /// Files of this size or more are left alone; merged files aim at it.
    pub target_bytes: u64,
    /// Only files older than this are merged.
    pub min_age: Duration,
    /// Only partitions whose path starts with this (`dt=2026-11-21`, `dt=2026-11-21/hour=13`).
    pub partitions: Option<String>,
    /// Where inputs are downloaded and outputs built.
    pub work_dir: PathBuf,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub partitions_merged: u64,
    pub files_merged: u64,
    pub files_written: u64,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Intents of interrupted runs that this run finished (`completed`) or dropped.
    pub intents_completed: u64,
    pub intents_dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("merging {output}: {source}")]
    Arrow {
        output: String,
        #[source]
        source: ArrowError,
    },
    #[error("merging {output}: read {read} rows from its inputs but wrote {written}; nothing was deleted")]
    RowCount { output: String, read: u64, written: u64 },
    #[error("intent {key}: {message}")]
    Intent { key: String, message: String },
    #[error("work directory: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Intent {
    output: String,
    inputs: Vec<String>,
}

/// `(shard, first sequence number)` of a file the archiver named; `None` for other files (merged ones).
fn archived_range(file_name: &str, format: Format) -> Option<(String, SequenceNumber)> {
    let stem = file_name.strip_suffix(&format!(".{}", format.extension()))?;
    let mut parts = stem.rsplitn(3, '-');
    let _last = SequenceNumber::parse(parts.next()?).ok()?;
    let first = SequenceNumber::parse(parts.next()?).ok()?;
    Some((parts.next()?.to_owned(), first))
}

/// Per shard, the first row of its oldest live claim: files of the shard from there on may still be rewritten.
///
/// Claims are read from the newest back to the newest tombstone: a tombstone means the shard was checkpointed past
/// every older claim, so only the claims after it are live (usually one per shard, or none).
async fn live_claims(store: &dyn ObjectStore, root: &str) -> Result<HashMap<String, SequenceNumber>, ObjectError> {
    let prefix = format!("{root}{CLAIMS_DIR}/");
    let mut by_shard: HashMap<String, Vec<(ClaimPositionKey, String)>> = HashMap::new();
    for claim in store.list(&prefix).await? {
        let rest = claim.key.strip_prefix(&prefix).unwrap_or_default();
        let Some((shard, name)) = rest.rsplit_once('/') else { continue };
        let Some(first) = ClaimPosition::from_file_name(name) else { continue };
        by_shard.entry(shard.to_owned()).or_default().push(((first.sequence, first.sub_sequence), claim.key));
    }
    let mut oldest: HashMap<String, SequenceNumber> = HashMap::new();
    for (shard, mut claims) in by_shard {
        claims.sort();
        for ((sequence, _), key) in claims.into_iter().rev() {
            let tombstone = match store.get(&key).await? {
                Some(body) => serde_json::from_slice::<Claim>(&body).is_ok_and(|c| c.checkpointed_at_ms.is_some()),
                // Deleted since it was listed: it was done.
                None => true,
            };
            if tombstone {
                break;
            }
            oldest.insert(shard.clone(), sequence);
        }
    }
    Ok(oldest)
}

/// A claim's first row, ordered as the shard orders it.
type ClaimPositionKey = (SequenceNumber, u64);

/// Finishes or drops the intents an interrupted run left.
async fn finish_intents(store: &dyn ObjectStore, root: &str, report: &mut CompactReport) -> Result<(), CompactError> {
    for intent_object in store.list(&format!("{root}{INTENTS_DIR}/")).await? {
        let key = intent_object.key;
        let Some(body) = store.get(&key).await? else { continue };
        let intent: Intent = serde_json::from_slice(&body)
            .map_err(|e| CompactError::Intent { key: key.clone(), message: e.to_string() })?;
        let output_exists = store.list(&intent.output).await?.iter().any(|o| o.key == intent.output);
        if output_exists {
            store.delete(&intent.inputs).await?;
            report.intents_completed += 1;
        } else {
            report.intents_dropped += 1;
        }
        store.delete(std::slice::from_ref(&key)).await?;
    }
    Ok(())
}

/// Merges the small files of every partition the options select.
pub async fn compact(
    store: &dyn ObjectStore,
    options: &CompactOptions,
    progress: impl Fn(&str),
) -> Result<CompactReport, CompactError> {
    let root = root(&options.prefix);
    let mut report = CompactReport::default();
    finish_intents(store, &root, &mut report).await?;
    // Objects are listed before claims: a file listed was written after its claim, so its claim is seen.
    for &table in &options.tables {
        let table_prefix = format!("{root}{}/", table.name());
        let listed = store.list(&table_prefix).await?;
        let claims = live_claims(store, &root).await?;
        let mut partitions: BTreeMap<String, Vec<ObjectInfo>> = BTreeMap::new();
        for object in listed {
            let Some(rest) = object.key.strip_prefix(&table_prefix) else { continue };
            let Some((partition, name)) = rest.rsplit_once('/') else { continue };
            let eligible = name.ends_with(&format!(".{}", options.format.extension()))
                && !name.starts_with(['_', '.'])
                && options.partitions.as_deref().is_none_or(|p| partition.starts_with(p))
                && object.size < options.target_bytes
                && options.now_ms - object.last_modified_ms >= options.min_age.as_millis() as i64
                && archived_range(name, options.format)
                    .is_none_or(|(shard, first)| claims.get(&shard).is_none_or(|claimed| first < *claimed));
            if eligible {
                partitions.entry(partition.to_owned()).or_default().push(object);
            }
        }
        for (partition, files) in partitions {
            let mut merged_here = false;
            for group in groups(files, options.target_bytes) {
                let dir = format!("{table_prefix}{partition}");
                merge(store, options, &root, table, &dir, &group, &mut report).await?;
                merged_here = true;
                progress(&format!(
                    "{}/{partition}: merged {} files ({} bytes) into one",
                    table.name(),
                    group.len(),
                    group.iter().map(|f| f.size).sum::<u64>()
                ));
            }
            report.partitions_merged += u64::from(merged_here);
        }
    }
    Ok(report)
}

/// Consecutive files whose sizes add up to at most `target`, in groups of two or more.
fn groups(files: Vec<ObjectInfo>, target: u64) -> Vec<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    let mut current: Vec<ObjectInfo> = Vec::new();
    let mut size = 0;
    for f in files {
        if !current.is_empty() && size + f.size > target {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += f.size;
        current.push(f);
    }
    out.push(current);
    out.retain(|g| g.len() >= 2);
    out
}

async fn merge(
    store: &dyn ObjectStore,
    options: &CompactOptions,
    root: &str,
    table: Table,
    dir: &str,
    inputs: &[ObjectInfo],
    report: &mut CompactReport,
) -> Result<(), CompactError> {
    let keys: Vec<String> = inputs.iter().map(|o| o.key.clone()).collect();
    let id = hex::encode(&Sha256::digest(keys.join("\n").as_bytes())[..12]);
    let output = format!("{dir}/compacted-{id}.{}", options.format.extension());
    let intent_key = format!("{root}{INTENTS_DIR}/{id}.json");
    let intent = Intent { output: output.clone(), inputs: keys.clone() };
    let body = serde_json::to_vec(&intent)
        .map_err(|e| CompactError::Intent { key: intent_key.clone(), message: e.to_string() })?;
    store.put(&intent_key, Bytes::from(body)).await?;

    let work = tempfile::tempdir_in(&options.work_dir)?;
    let mut paths = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let path = work.path().join(format!("input-{i}"));
        store.download(key, &path).await?;
        paths.push(path);
    }
    let merged = work.path().join("merged");
    let (format, out_path, output_name) = (options.format, merged.clone(), output.clone());
    let (read, written) =
        tokio::task::spawn_blocking(move || merge_files(&paths, table, format, &out_path, &output_name))
            .await
            .map_err(|e| CompactError::Io(std::io::Error::other(e)))??;
    if read != written {
        return Err(CompactError::RowCount { output, read, written });
    }
    store.put_file(&output, &merged).await?;
    store.delete(&keys).await?;
    store.delete(std::slice::from_ref(&intent_key)).await?;

    report.files_merged += keys.len() as u64;
    report.files_written += 1;
    report.rows += written;
    report.bytes_before += inputs.iter().map(|o| o.size).sum::<u64>();
    report.bytes_after += std::fs::metadata(&merged)?.len();
    Ok(())
}

/// One input of a merge: its batches, the current one, and the next row in it.
struct Cursor {
    batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    current: RecordBatch,
    row: usize,
}

impl Cursor {
    fn time(&self) -> i64 {
        self.current.column(0).as_primitive::<TimestampMillisecondType>().value(self.row)
    }

    /// Moves to the next row; `false` once the input is exhausted.
    fn advance(&mut self) -> Result<bool, ArrowError> {
        self.row += 1;
        while self.row >= self.current.num_rows() {
            match self.batches.next().transpose()? {
                Some(b) => (self.current, self.row) = (b, 0),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

/// Merges sorted files into one sorted file, holding a batch per input; returns the rows read and written.
fn merge_files(
    inputs: &[PathBuf],
    table: Table,
    format: Format,
    output: &Path,
    output_key: &str,
) -> Result<(u64, u64), CompactError> {
    let arrow = |source| CompactError::Arrow { output: output_key.to_owned(), source };
    let mut cursors: Vec<Cursor> = Vec::new();
    let mut read = 0u64;
    for path in inputs {
        let mut batches = read_file(path, table, format)?;
        while let Some(first) = batches.next().transpose().map_err(arrow)? {
            read += first.num_rows() as u64;
            if first.num_rows() > 0 {
                cursors.push(Cursor { batches, current: first, row: 0 });
                break;
            }
        }
    }
    let mut writer = FileWriter::create(output, table, format)?;
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> =
        cursors.iter().enumerate().map(|(i, c)| Reverse((c.time(), i))).collect();
    // The batches the pending output rows point into, and each cursor's slot among them.
    let mut slots: Vec<RecordBatch> = cursors.iter().map(|c| c.current.clone()).collect();
    let mut slot_of: Vec<usize> = (0..cursors.len()).collect();
    let mut indices: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
    while let Some(Reverse((_, i))) = heap.pop() {
        let cursor = &mut cursors[i];
        indices.push((slot_of[i], cursor.row));
        let more = cursor.advance().map_err(arrow)?;
        if more {
            if cursor.row == 0 {
                read += cursor.current.num_rows() as u64;
                slots.push(cursor.current.clone());
                slot_of[i] = slots.len() - 1;
            }
            heap.push(Reverse((cursor.time(), i)));
        }
        if indices.len() == BATCH_ROWS || heap.is_empty() {
            let refs: Vec<&RecordBatch> = slots.iter().collect();
            let batch = arrow_select::interleave::interleave_record_batch(&refs, &indices).map_err(arrow)?;
            writer.write(&batch)?;
            indices.clear();
            slots = cursors.iter().map(|c| c.current.clone()).collect();
            slot_of = (0..cursors.len()).collect();
        }
    }
    // Batches after an input's last row (empty ones) were counted as read; nothing else remains.
    let written = writer.finish()?;
    Ok((read, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_file_names_give_the_shard_and_first_sequence_number() {
        let (shard, first) = archived_range("shardId-000000000001-4968-4971.parquet", Format::Parquet).unwrap();
        assert_eq!((shard.as_str(), first.as_str()), ("shardId-000000000001", "4968"));
        assert_eq!(archived_range("shard-0002-0-812.ndjson.gz", Format::NdjsonGzip).unwrap().0, "shard-0002");
        assert_eq!(archived_range("compacted-ab12.parquet", Format::Parquet), None);
        assert_eq!(archived_range("shard-0002-0-812.parquet", Format::NdjsonGzip), None);
    }

    #[test]
    fn groups_fill_up_to_the_target_and_leave_singletons() {
        let f = |n: &str, size| ObjectInfo { key: n.into(), size, last_modified_ms: 0 };
        let g = groups(vec![f("a", 40), f("b", 40), f("c", 40), f("d", 90), f("e", 5)], 100);
        let names: Vec<Vec<&str>> = g.iter().map(|g| g.iter().map(|o| o.key.as_str()).collect()).collect();
        assert_eq!(names, [vec!["a", "b"], vec!["d", "e"]], "c would overflow both neighbours, so it stays");
    }
}
