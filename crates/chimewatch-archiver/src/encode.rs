//! The file formats: Parquet with ZSTD (the default; columnar and splittable) or gzip NDJSON, both written from the
//! same Arrow schema so their columns agree, and read back the same way (for compaction and tests).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use flate2::Compression as Gzip;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;

use crate::layout::{Format, Table};
use crate::schema::schema;
use crate::spool::{Entry, Spool, SpoolError};

/// Rows per record batch when writing or reading.
pub const BATCH_ROWS: usize = 8192;

/// A row group is flushed once its encoded size passes this: what a writer holds in memory.
const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: String,
        #[source]
        source: ArrowError,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

fn props() -> WriterProperties {
    let zstd = ZstdLevel::try_new(3).map(Compression::ZSTD).unwrap_or(Compression::SNAPPY);
    WriterProperties::builder()
        .set_compression(zstd)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        // Rows are sorted by event time (column 0): readers may use it to skip row groups.
        .set_sorting_columns(Some(vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }]))
        .build()
}

enum Inner {
    Parquet(Box<ArrowWriter<File>>),
    Ndjson(Box<GzEncoder<BufWriter<File>>>),
}

/// One archive file being written.
pub struct FileWriter {
    inner: Inner,
    path: String,
    rows: u64,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter").field("path", &self.path).field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl FileWriter {
    pub fn create(path: &Path, table: Table, format: Format) -> Result<Self, EncodeError> {
        let shown = path.display().to_string();
        let file = File::create(path).map_err(|source| EncodeError::Io { path: shown.clone(), source })?;
        let inner = match format {
            Format::Parquet => Inner::Parquet(Box::new(
                ArrowWriter::try_new(file, schema(table), Some(props()))
                    .map_err(|source| EncodeError::Parquet { path: shown.clone(), source })?,
            )),
            Format::NdjsonGzip => Inner::Ndjson(Box::new(GzEncoder::new(BufWriter::new(file), Gzip::default()))),
        };
        Ok(Self { inner, path: shown, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        let path = &self.path;
        match &mut self.inner {
            Inner::Parquet(w) => {
                w.write(batch).map_err(|source| EncodeError::Parquet { path: path.clone(), source })?
            }
            Inner::Ndjson(w) => crate::ndjson::write_batch(w.as_mut(), batch)
                .map_err(|source| EncodeError::Arrow { path: path.clone(), source })?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file and syncs it; returns the rows written.
    pub fn finish(self) -> Result<u64, EncodeError> {
        let path = self.path;
        let io = |source| EncodeError::Io { path: path.clone(), source };
        let file = match self.inner {
            Inner::Parquet(w) => {
                w.into_inner().map_err(|source| EncodeError::Parquet { path: path.clone(), source })?
            }
            Inner::Ndjson(gz) => gz.finish().map_err(io)?.into_inner().map_err(|e| io(e.into_error()))?,
        };
        file.sync_all().map_err(io)?;
        Ok(self.rows)
    }
}

/// Writes a cut's rows of one partition (already in file order) from the spool to `path`; returns the rows written.
pub fn write_entries(
    spool: &mut Spool,
    entries: &[Entry],
    table: Table,
    format: Format,
    path: &Path,
) -> Result<u64, EncodeError> {
    let mut writer = FileWriter::create(path, table, format)?;
    for chunk in entries.chunks(BATCH_ROWS) {
        let rows = spool.read(chunk)?;
        let batch = crate::schema::batch(table, &rows)
            .map_err(|source| EncodeError::Arrow { path: path.display().to_string(), source })?;
        writer.write(&batch)?;
    }
    writer.finish()
}

/// Reads an archive file back as record batches of its table's schema.
pub fn read_file(
    path: &Path,
    table: Table,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>, EncodeError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| EncodeError::Io { path: shown.clone(), source })?;
    match format {
        Format::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|source| EncodeError::Parquet { path: shown, source })?;
            Ok(Box::new(reader))
        }
        Format::NdjsonGzip => {
            let input = BufReader::new(MultiGzDecoder::new(BufReader::new(file)));
            Ok(Box::new(crate::ndjson::read_batches(input, schema(table), BATCH_ROWS)))
        }
    }
}

/// Reads an archive object's bytes (as fetched from the store) as record batches of its table's schema.
pub fn read_bytes(
    key: &str,
    bytes: bytes::Bytes,
    table: Table,
    format: Format,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>, EncodeError> {
    match format {
        Format::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|source| EncodeError::Parquet { path: key.to_owned(), source })?;
            Ok(Box::new(reader))
        }
        Format::NdjsonGzip => {
            let input = BufReader::new(MultiGzDecoder::new(std::io::Cursor::new(bytes)));
            Ok(Box::new(crate::ndjson::read_batches(input, schema(table), BATCH_ROWS)))
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;

    use super::*;
    use crate::rows::Row;
    use crate::spool::tests::row;

    fn round_trip(format: Format) -> Vec<RecordBatch> {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Row> = (0..20_000u64).map(|i| row(i, 1_763_712_000_000 + (i as i64 % 977))).collect();
        let batch = crate::schema::batch(Table::MeetingEvents, &rows).unwrap();
        let path = dir.path().join(format!("f.{}", format.extension()));
        let mut w = FileWriter::create(&path, Table::MeetingEvents, format).unwrap();
        w.write(&batch).unwrap();
        assert_eq!(w.finish().unwrap(), 20_000);
        let back: Vec<RecordBatch> =
            read_file(&path, Table::MeetingEvents, format).unwrap().collect::<Result<_, _>>().unwrap();
        let all = arrow_select_concat(&back);
        assert_eq!(all, batch, "{format:?} reads back exactly what was written");
        back
    }

    fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
        let schema = batches[0].schema();
        arrow_select::concat::concat_batches(&schema, batches).unwrap()
    }

    #[test]
    fn parquet_files_read_back_with_their_schema_and_times() {
        let back = round_trip(Format::Parquet);
        let times = back[0].column(0).as_primitive::<TimestampMillisecondType>();
        assert_eq!(times.value(1), 1_763_712_000_001);
    }

    #[test]
    fn ndjson_files_read_back_with_their_schema() {
        round_trip(Format::NdjsonGzip);
    }

    #[test]
    fn ndjson_lines_carry_the_column_names_and_utc_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ndjson.gz");
        let batch = crate::schema::batch(Table::MeetingEvents, &[row(7, 1_763_712_000_123)]).unwrap();
        let mut w = FileWriter::create(&path, Table::MeetingEvents, Format::NdjsonGzip).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut MultiGzDecoder::new(File::open(&path).unwrap()), &mut text).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["event_time"], "2025-11-21T08:00:00.123Z");
        assert_eq!((line["meeting_id"].as_str(), line["sequence_number"].as_str()), (Some("m-7"), Some("7")));
        assert!(line.get("os_name").is_none(), "absent values are left out of the line");
    }
}
