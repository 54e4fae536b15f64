//! Reads the archive back for `chimewatch explain`: the meeting events of one attendee or meeting, or the SIP
//! messages of one call, from the hour partitions a time range covers, in S3 or under `up`'s data directory.
//!
//! It reads the archive's own columns (the contract in [`crate::schema`]) and no index: the partitions bound what is
//! read, and a filter on the id columns picks the rows. Rows a retry delivered twice are read once.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, RecordBatch, StringArray};
use chimewatch_model::MeetingEvent;
use chimewatch_sinks::{ObjectError, ObjectStore};
use serde_json::{Map, Value};

use crate::encode::{EncodeError, read_bytes};
use crate::layout::{Format, Partition, Table, root};

/// The longest range one lookup reads, in days (one listing per day of partitions).
pub const MAX_DAYS: i64 = 1_100;

const HOUR_MS: i64 = 3_600_000;

/// What to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// Events whose attendee id or external user id is this.
    Attendee(&'a str),
    /// Events whose meeting id or external meeting id is this.
    Meeting(&'a str),
    /// SIP messages whose Voice Connector call id or SIP Call-ID is this.
    Call(&'a str),
}

/// A SIP message as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSip {
    pub event_time_ms: i64,
    pub voice_connector_id: String,
    pub region: String,
    pub call_id: String,
    pub sip_message: String,
}

#[derive(Debug, Default)]
pub struct Found {
    pub meeting_events: Vec<MeetingEvent>,
    pub sip_messages: Vec<ArchivedSip>,
    pub files_read: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("archive object {key}: {message}")]
    Read { key: String, message: String },
    #[error("the range spans {0} days; at most {MAX_DAYS} are read at once (narrow --since)")]
    TooLong(i64),
}

fn strings<'a>(batch: &'a RecordBatch, key: &str, column: &str) -> Result<&'a StringArray, LookupError> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| LookupError::Read { key: key.to_owned(), message: format!("no text column {column}") })
}

fn value(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Finds what `key` names in `[since_ms, until_ms)` of the archive under `prefix`, reporting each file read.
pub async fn find(
    store: &dyn ObjectStore,
    prefix: &str,
    key: Key<'_>,
    since_ms: i64,
    until_ms: i64,
    mut progress: impl FnMut(&str),
) -> Result<Found, LookupError> {
    let table = if matches!(key, Key::Call(_)) { Table::SipMessages } else { Table::MeetingEvents };
    let (first_hour, last_hour) = (since_ms.div_euclid(HOUR_MS), (until_ms - 1).div_euclid(HOUR_MS));
    let (first_day, last_day) = (first_hour.div_euclid(24), last_hour.div_euclid(24));
    if last_day - first_day >= MAX_DAYS {
        return Err(LookupError::TooLong(last_day - first_day + 1));
    }
    let mut found = Found::default();
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    for day in first_day..=last_day {
        // One listing per day; the hours outside the range are skipped by their partition.
        let path = Partition::of(day * 24 * HOUR_MS).path();
        let dir = format!("{}{}/{}/", root(prefix), table.name(), path.split('/').next().unwrap_or_default());
        for object in store.list(&dir).await? {
            let hour = object.key.split("/hour=").nth(1).and_then(|h| h.get(..2)).and_then(|h| h.parse::<i64>().ok());
            if hour.is_some_and(|h| !(first_hour..=last_hour).contains(&(day * 24 + h))) {
                continue;
            }
            let format = if object.key.ends_with(".parquet") {
                Format::Parquet
            } else if object.key.ends_with(".ndjson.gz") {
                Format::NdjsonGzip
            } else {
                continue;
            };
            let Some(bytes) = store.get(&object.key).await? else { continue };
            progress(&object.key);
            found.files_read += 1;
            for batch in read_bytes(&object.key, bytes, table, format)? {
                let batch = batch.map_err(|e| LookupError::Read { key: object.key.clone(), message: e.to_string() })?;
                match key {
                    Key::Call(id) => sip_rows(&batch, &object.key, id, (since_ms, until_ms), &mut seen, &mut found)?,
                    _ => meeting_rows(&batch, &object.key, key, (since_ms, until_ms), &mut seen, &mut found)?,
                }
            }
        }
    }
    found.meeting_events.sort_by_key(MeetingEvent::timestamp_ms);
    found.sip_messages.sort_by_key(|m| m.event_time_ms);
    Ok(found)
}

fn times(batch: &RecordBatch, key: &str) -> Result<Vec<i64>, LookupError> {
    let column = batch
        .column_by_name("event_time")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
        .ok_or_else(|| LookupError::Read { key: key.to_owned(), message: "no event_time column".into() })?;
    Ok(column.values().to_vec())
}

fn meeting_rows(
    batch: &RecordBatch,
    key: &str,
    wanted: Key<'_>,
    (since, until): (i64, i64),
    seen: &mut HashSet<(i64, String)>,
    found: &mut Found,
) -> Result<(), LookupError> {
    let (ids, id) = match wanted {
        Key::Attendee(id) => (["attendee_id", "external_user_id"], id),
        Key::Meeting(id) => (["meeting_id", "external_meeting_id"], id),
        Key::Call(_) => return Ok(()),
    };
    let columns = [strings(batch, key, ids[0])?, strings(batch, key, ids[1])?];
    let (names, attributes, times) =
        (strings(batch, key, "event_name")?, strings(batch, key, "attributes")?, times(batch, key)?);
    for (i, &t) in times.iter().enumerate() {
        if !(since..until).contains(&t) || !columns.iter().any(|c| value(c, i) == Some(id)) {
            continue;
        }
        if !seen.insert((t, format!("{}{}", names.value(i), attributes.value(i)))) {
            continue;
        }
        let attributes: Map<String, Value> = serde_json::from_str(attributes.value(i))
            .map_err(|e| LookupError::Read { key: key.to_owned(), message: format!("row {i} attributes: {e}") })?;
        found.meeting_events.push(MeetingEvent { name: names.value(i).to_owned(), attributes });
    }
    Ok(())
}

fn sip_rows(
    batch: &RecordBatch,
    key: &str,
    id: &str,
    (since, until): (i64, i64),
    seen: &mut HashSet<(i64, String)>,
    found: &mut Found,
) -> Result<(), LookupError> {
    let (call_ids, sip_call_ids) = (strings(batch, key, "call_id")?, strings(batch, key, "sip_call_id")?);
    let (connectors, regions, messages) = (
        strings(batch, key, "voice_connector_id")?,
        strings(batch, key, "region")?,
        strings(batch, key, "sip_message")?,
    );
    let times = times(batch, key)?;
    for (i, &t) in times.iter().enumerate() {
        let matches = call_ids.value(i) == id || value(sip_call_ids, i) == Some(id);
        if !matches || !(since..until).contains(&t) || !seen.insert((t, messages.value(i).to_owned())) {
            continue;
        }
        found.sip_messages.push(ArchivedSip {
            event_time_ms: t,
            voice_connector_id: connectors.value(i).to_owned(),
            region: regions.value(i).to_owned(),
            call_id: call_ids.value(i).to_owned(),
            sip_message: messages.value(i).to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chimewatch_sinks::LocalObjects;

    use super::*;
    use crate::encode::FileWriter;
    use crate::layout::object_key;
    use crate::rows::Row;
    use crate::spool::tests::row;

    const T0: i64 = 1_763_712_000_000;

    async fn write(store: &LocalObjects, rows: &[Row], format: Format, first: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = FileWriter::create(&path, Table::MeetingEvents, format).unwrap();
        w.write(&crate::schema::batch(Table::MeetingEvents, rows).unwrap()).unwrap();
        w.finish().unwrap();
        let partition = rows[0].partition();
        let key = object_key("archive", Table::MeetingEvents, partition, "shard-0000", first, first, format);
        store.put_file(&key, &path).await.unwrap();
    }

    #[tokio::test]
    async fn a_meetings_rows_are_found_in_the_hours_asked_for_in_either_format_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjects::new(dir.path());
        // m-1 in two hours (Parquet, then NDJSON), m-2 beside it; the NDJSON file repeats one row (a retry).
        write(&store, &[row(1, T0), row(2, T0 + 10)], Format::Parquet, "1").await;
        write(&store, &[row(1, T0 + 3_600_000), row(1, T0 + 3_600_000), row(1, T0)], Format::NdjsonGzip, "3").await;
        let mut files = Vec::new();
        let found = find(&store, "archive", Key::Meeting("m-1"), T0, T0 + 2 * 3_600_000, |k| files.push(k.to_owned()))
            .await
            .unwrap();
        let times: Vec<Option<i64>> = found.meeting_events.iter().map(MeetingEvent::timestamp_ms).collect();
        // The NDJSON file lies in the second hour's partition (its first row's); its copy of the first row is read once.
        assert_eq!(times, [Some(T0), Some(T0 + 3_600_000)], "{files:?}");
        assert_eq!(found.files_read, 2);
        // Only the first hour: the second row's hour is outside.
        let found = find(&store, "archive", Key::Meeting("m-1"), T0, T0 + 3_600_000, |_| {}).await.unwrap();
        assert_eq!(found.meeting_events.len(), 1);
        let none = find(&store, "archive", Key::Attendee("m-1"), T0, T0 + 3_600_000, |_| {}).await.unwrap();
        assert!(none.meeting_events.is_empty());
        let err = find(&store, "archive", Key::Call("c"), T0, T0 + (MAX_DAYS + 1) * 24 * 3_600_000, |_| {}).await;
        assert!(matches!(err, Err(LookupError::TooLong(_))), "{err:?}");
    }
}
