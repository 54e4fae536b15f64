//! The archive's columns: one Arrow schema per table, shared by the Parquet and NDJSON writers, the compactor and
//! the Athena DDL in `deploy/athena/`. Changing a column here is a schema change for every analyst: add columns at
//! the end, never rename or retype one.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::layout::Table;
use crate::rows::{MeetingEventRow, Row, SipMessageRow, Source};

/// Timestamps are UTC instants (Parquet `isAdjustedToUTC`), named by offset so every Arrow reader accepts it.
const UTC: &str = "+00:00";

fn time(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())), false)
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn whole(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// The text columns of `meeting_events` taken from attributes, in column order.
const MEETING_TEXT: [&str; 15] = [
    "meeting_id",
    "attendee_id",
    "external_meeting_id",
    "external_user_id",
    "sdk_name",
    "sdk_version",
    "os_name",
    "os_version",
    "browser_name",
    "browser_major_version",
    "device_name",
    "meeting_status",
    "meeting_error_message",
    "audio_input_error_message",
    "video_input_error_message",
];

/// The whole-number columns of `meeting_events` taken from attributes (durations in milliseconds, counts).
const MEETING_WHOLE: [&str; 7] = [
    "meeting_start_duration_ms",
    "meeting_duration_ms",
    "signaling_open_duration_ms",
    "ice_gathering_duration_ms",
    "attendee_presence_duration_ms",
    "poor_connection_count",
    "retry_count",
];

fn source_fields() -> [Field; 4] {
    [
        text("shard_id", false),
        text("sequence_number", false),
        Field::new("sub_sequence_number", DataType::Int64, false),
        Field::new("log_event_index", DataType::Int64, false),
    ]
}

/// The schema of a table's files.
pub fn schema(table: Table) -> SchemaRef {
    let mut fields = vec![time("event_time"), time("received_at")];
    match table {
        Table::MeetingEvents => {
            fields.push(text("event_name", false));
            fields.extend(MEETING_TEXT.iter().map(|n| text(n, true)));
            fields.extend(MEETING_WHOLE.iter().map(|n| whole(n)));
            fields.extend([text("ingest", false), text("attributes", false), text("original", false)]);
        }
        Table::SipMessages => {
            fields.extend([
                text("voice_connector_id", false),
                text("region", false),
                text("call_id", false),
                text("sip_method", true),
                // Signed: Athena, Spark and Hive have no unsigned integers.
                Field::new("sip_status", DataType::Int32, true),
                text("cseq_method", true),
                text("sip_call_id", true),
                text("sip_message", false),
                text("ingest", false),
            ]);
        }
    }
    fields.extend(source_fields());
    Arc::new(Schema::new(fields))
}

fn meeting_text(r: &MeetingEventRow) -> [Option<&str>; 15] {
    [
        r.meeting_id.as_deref(),
        r.attendee_id.as_deref(),
        r.external_meeting_id.as_deref(),
        r.external_user_id.as_deref(),
        r.sdk_name.as_deref(),
        r.sdk_version.as_deref(),
        r.os_name.as_deref(),
        r.os_version.as_deref(),
        r.browser_name.as_deref(),
        r.browser_major_version.as_deref(),
        r.device_name.as_deref(),
        r.meeting_status.as_deref(),
        r.meeting_error_message.as_deref(),
        r.audio_input_error_message.as_deref(),
        r.video_input_error_message.as_deref(),
    ]
}

fn meeting_whole(r: &MeetingEventRow) -> [Option<i64>; 7] {
    [
        r.meeting_start_duration_ms,
        r.meeting_duration_ms,
        r.signaling_open_duration_ms,
        r.ice_gathering_duration_ms,
        r.attendee_presence_duration_ms,
        r.poor_connection_count,
        r.retry_count,
    ]
}

fn times<'a, T: 'a>(rows: &[&'a T], f: impl Fn(&T) -> i64) -> ArrayRef {
    let mut b = TimestampMillisecondBuilder::with_capacity(rows.len()).with_timezone(UTC);
    rows.iter().for_each(|r| b.append_value(f(r)));
    Arc::new(b.finish())
}

fn strings<'a, T: 'a>(rows: &[&'a T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
    rows.iter().for_each(|r| b.append_option(f(r)));
    Arc::new(b.finish())
}

fn wholes<'a, T: 'a>(rows: &[&'a T], f: impl Fn(&'a T) -> Option<i64>) -> ArrayRef {
    let mut b = Int64Builder::with_capacity(rows.len());
    rows.iter().for_each(|r| b.append_option(f(r)));
    Arc::new(b.finish())
}

fn source_columns<'a, T: 'a>(rows: &[&'a T], source: impl Fn(&'a T) -> &'a Source) -> [ArrayRef; 4] {
    [
        strings(rows, |r| Some(source(r).shard_id.as_str())),
        strings(rows, |r| Some(source(r).sequence_number.as_str())),
        wholes(rows, |r| i64::try_from(source(r).sub_sequence_number).ok()),
        wholes(rows, |r| i64::try_from(source(r).log_event_index).ok()),
    ]
}

fn meeting_batch(rows: &[&MeetingEventRow]) -> Result<RecordBatch, ArrowError> {
    let mut columns = vec![
        times(rows, |r| r.event_time_ms),
        times(rows, |r| r.received_at_ms),
        strings(rows, |r| Some(r.event_name.as_str())),
    ];
    columns.extend((0..MEETING_TEXT.len()).map(|i| strings(rows, |r| meeting_text(r)[i])));
    columns.extend((0..MEETING_WHOLE.len()).map(|i| wholes(rows, |r| meeting_whole(r)[i])));
    columns.push(strings(rows, |r| Some(r.ingest.as_str())));
    columns.push(strings(rows, |r| Some(r.attributes_json.as_str())));
    columns.push(strings(rows, |r| Some(r.original_json.as_str())));
    columns.extend(source_columns(rows, |r| &r.source));
    RecordBatch::try_new(schema(Table::MeetingEvents), columns)
}

fn sip_batch(rows: &[&SipMessageRow]) -> Result<RecordBatch, ArrowError> {
    let mut status = Int32Builder::with_capacity(rows.len());
    rows.iter().for_each(|r| status.append_option(r.sip_status.map(i32::from)));
    let mut columns = vec![
        times(rows, |r| r.event_time_ms),
        times(rows, |r| r.received_at_ms),
        strings(rows, |r| Some(r.voice_connector_id.as_str())),
        strings(rows, |r| Some(r.region.as_str())),
        strings(rows, |r| Some(r.call_id.as_str())),
        strings(rows, |r| r.sip_method.as_deref()),
        Arc::new(status.finish()),
        strings(rows, |r| r.cseq_method.as_deref()),
        strings(rows, |r| r.sip_call_id.as_deref()),
        strings(rows, |r| Some(r.sip_message.as_str())),
        strings(rows, |r| Some(r.ingest.as_str())),
    ];
    columns.extend(source_columns(rows, |r| &r.source));
    RecordBatch::try_new(schema(Table::SipMessages), columns)
}

/// The rows of `table` as one record batch; rows of the other table are an error, never silently left out.
pub fn batch(table: Table, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let mismatch = || ArrowError::InvalidArgumentError(format!("a row of another table in a {} batch", table.name()));
    match table {
        Table::MeetingEvents => {
            let rows = rows
                .iter()
                .map(|r| if let Row::Meeting(m) = r { Ok(m) } else { Err(mismatch()) })
                .collect::<Result<Vec<_>, _>>()?;
            meeting_batch(&rows)
        }
        Table::SipMessages => {
            let rows = rows
                .iter()
                .map(|r| if let Row::Sip(s) = r { Ok(s) } else { Err(mismatch()) })
                .collect::<Result<Vec<_>, _>>()?;
            sip_batch(&rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column list is the archive's contract with analysts (and `deploy/athena/*.sql`): this test fails on any
    /// change, so that a change is deliberate and the DDL follows.
    #[test]
    fn the_schemas_are_stable() {
        let columns = |t| {
            schema(t)
                .fields()
                .iter()
                .map(|f| format!("{} {}{}", f.name(), f.data_type(), if f.is_nullable() { "" } else { " not null" }))
                .collect::<Vec<_>>()
        };
        let ts = "Timestamp(ms, \"+00:00\") not null";
        let mut meeting =
            vec![format!("event_time {ts}"), format!("received_at {ts}"), "event_name Utf8 not null".into()];
        meeting.extend(MEETING_TEXT.iter().map(|n| format!("{n} Utf8")));
        meeting.extend(MEETING_WHOLE.iter().map(|n| format!("{n} Int64")));
        meeting
            .extend(["ingest Utf8 not null", "attributes Utf8 not null", "original Utf8 not null"].map(String::from));
        let source = [
            "shard_id Utf8 not null",
            "sequence_number Utf8 not null",
            "sub_sequence_number Int64 not null",
            "log_event_index Int64 not null",
        ];
        meeting.extend(source.map(String::from));
        assert_eq!(columns(Table::MeetingEvents), meeting);
        assert_eq!(meeting.len(), 32);

        let mut sip = vec![format!("event_time {ts}"), format!("received_at {ts}")];
        sip.extend(
            [
                "voice_connector_id Utf8 not null",
                "region Utf8 not null",
                "call_id Utf8 not null",
                "sip_method Utf8",
                "sip_status Int32",
                "cseq_method Utf8",
                "sip_call_id Utf8",
                "sip_message Utf8 not null",
                "ingest Utf8 not null",
            ]
            .map(String::from),
        );
        sip.extend(source.map(String::from));
        assert_eq!(columns(Table::SipMessages), sip);
    }

    /// `deploy/athena/<table>.sql` declares the same columns, in the same order, with the types Athena reads the
    /// Parquet columns as.
    #[test]
    fn the_athena_ddl_matches_the_schemas() {
        for table in [Table::MeetingEvents, Table::SipMessages] {
            let path = format!("{}/../../deploy/athena/{}.sql", env!("CARGO_MANIFEST_DIR"), table.name());
            let ddl = std::fs::read_to_string(&path).unwrap();
            let body = ddl.split_once(&format!("{} (\n", table.name())).unwrap().1.split_once("\n)\n").unwrap().0;
            let declared: Vec<(String, String)> = body
                .lines()
                .map(|l| {
                    let mut words = l.split("--").next().unwrap().split_whitespace();
                    (words.next().unwrap().to_owned(), words.next().unwrap().trim_end_matches(',').to_owned())
                })
                .collect();
            let expected: Vec<(String, String)> = schema(table)
                .fields()
                .iter()
                .map(|f| {
                    let athena = match f.data_type() {
                        DataType::Timestamp(..) => "timestamp",
                        DataType::Utf8 => "string",
                        DataType::Int64 => "bigint",
                        DataType::Int32 => "int",
                        other => panic!("no Athena type for {other}"),
                    };
                    (f.name().clone(), athena.to_owned())
                })
                .collect();
            assert_eq!(declared, expected, "{path}");
            assert!(ddl.contains("dt=${dt}/hour=${hour}"), "the partition layout of layout.rs");
        }
    }
}
