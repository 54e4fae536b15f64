//! Newline-delimited JSON for the archive's columns, written from and read into Arrow record batches.
//!
//! A general Arrow JSON codec (arrow-json) brings arrow-cast and arrow-ord into the build, about 110 CPU-seconds of
//! every cold release build (BENCHMARKS.md, "Build times"); the archive has four column types (UTC timestamps,
//! strings, 64- and 32-bit integers), so it has a codec of its own. A line holds the row's non-null columns by name,
//! in schema order, with timestamps as RFC 3339 UTC with milliseconds (`2025-11-21T08:00:00.123Z`), which Athena's
//! JSON SerDe, DuckDB and Spark read as timestamps.

use std::io::{BufRead, Write};

use arrow_array::builder::{ArrayBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, SchemaRef, TimeUnit};
use serde_json::{Map, Value};

use chimewatch_model::time::{Civil, days_from_civil};

/// `2025-11-21T08:00:00.123Z` for milliseconds since the epoch, for any instant.
pub fn format_time(ms: i64) -> String {
    let c = Civil::of(ms);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// The inverse of [`format_time`]; `None` for anything else.
pub fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    // The year may carry a sign or more digits; what follows it is fixed.
    let dash = text.get(1..)?.find('-')? + 1;
    let rest = &b[dash..];
    if rest.len() != 20 || rest[0] != b'-' || rest[3] != b'-' || rest[6] != b'T' || rest[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { std::str::from_utf8(&rest[r]).ok()?.parse().ok() };
    let year: i64 = text[..dash].parse().ok()?;
    let (month, day) = (num(1..3)?, num(4..6)?);
    let (h, m, s, milli) = (num(7..9)?, num(10..12)?, num(13..15)?, num(16..19)?);
    let separators = rest[9] == b':' && rest[12] == b':' && rest[15] == b'.';
    if !separators || !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    Some(days * 86_400_000 + h * 3_600_000 + m * 60_000 + s * 1000 + milli)
}

/// Writes each row of `batch` as one line to `out`.
pub fn write_batch(out: &mut impl Write, batch: &RecordBatch) -> Result<(), ArrowError> {
    let schema = batch.schema();
    let mut line = Vec::with_capacity(1024);
    for row in 0..batch.num_rows() {
        let mut object = Map::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if column.is_null(row) {
                continue;
            }
            let value = match field.data_type() {
                DataType::Utf8 => Value::String(column.as_string::<i32>().value(row).to_owned()),
                DataType::Int64 => column.as_primitive::<Int64Type>().value(row).into(),
                DataType::Int32 => column.as_primitive::<Int32Type>().value(row).into(),
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    Value::String(format_time(column.as_primitive::<TimestampMillisecondType>().value(row)))
                }
                other => return Err(ArrowError::JsonError(format!("column {} has type {other}", field.name()))),
            };
            object.insert(field.name().clone(), value);
        }
        line.clear();
        serde_json::to_writer(&mut line, &object).map_err(|e| ArrowError::JsonError(e.to_string()))?;
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// Reads lines of `input` into batches of up to `batch_rows` rows of `schema`; an error names the line and column.
pub fn read_batches(
    input: impl BufRead + Send + 'static,
    schema: SchemaRef,
    batch_rows: usize,
) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send {
    let mut lines = input.lines().enumerate();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut builders: Vec<Box<dyn ArrayBuilder>> =
            schema.fields().iter().map(|f| builder(f.data_type(), batch_rows)).collect();
        let mut rows = 0;
        while rows < batch_rows {
            let Some((number, line)) = lines.next() else {
                done = true;
                break;
            };
            let parsed = line.map_err(ArrowError::from).and_then(|line| {
                if line.trim().is_empty() {
                    return Ok(false);
                }
                let object: Map<String, Value> = serde_json::from_str(&line)
                    .map_err(|e| ArrowError::JsonError(format!("line {}: {e}", number + 1)))?;
                for (field, b) in schema.fields().iter().zip(builders.iter_mut()) {
                    append(b.as_mut(), field.data_type(), object.get(field.name()), field.is_nullable()).map_err(
                        |e| ArrowError::JsonError(format!("line {}, column {}: {e}", number + 1, field.name())),
                    )?;
                }
                Ok(true)
            });
            match parsed {
                Ok(true) => rows += 1,
                Ok(false) => {}
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        if rows == 0 {
            return None;
        }
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
        Some(RecordBatch::try_new(schema.clone(), columns))
    })
}

fn builder(data_type: &DataType, capacity: usize) -> Box<dyn ArrayBuilder> {
    match data_type {
        DataType::Int64 => Box::new(Int64Builder::with_capacity(capacity)),
        DataType::Int32 => Box::new(Int32Builder::with_capacity(capacity)),
        DataType::Timestamp(_, zone) => {
            Box::new(TimestampMillisecondBuilder::with_capacity(capacity).with_timezone_opt(zone.clone()))
        }
        _ => Box::new(StringBuilder::with_capacity(capacity, capacity * 32)),
    }
}

fn append(b: &mut dyn ArrayBuilder, data_type: &DataType, value: Option<&Value>, nullable: bool) -> Result<(), String> {
    let value = value.filter(|v| !v.is_null());
    if value.is_none() && !nullable {
        return Err("missing".into());
    }
    let any = b.as_any_mut();
    let wrong = |want: &str| format!("expected {want}, got {}", value.map_or("null".into(), Value::to_string));
    match data_type {
        DataType::Utf8 => {
            let b = any.downcast_mut::<StringBuilder>().ok_or("builder")?;
            match value {
                None => b.append_null(),
                Some(Value::String(s)) => b.append_value(s),
                Some(_) => return Err(wrong("a string")),
            }
        }
        DataType::Int64 => {
            let b = any.downcast_mut::<Int64Builder>().ok_or("builder")?;
            match value {
                None => b.append_null(),
                Some(v) => b.append_value(v.as_i64().ok_or_else(|| wrong("an integer"))?),
            }
        }
        DataType::Int32 => {
            let b = any.downcast_mut::<Int32Builder>().ok_or("builder")?;
            match value {
                None => b.append_null(),
                Some(v) => {
                    let n = v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| wrong("a 32-bit integer"))?;
                    b.append_value(n)
                }
            }
        }
        DataType::Timestamp(..) => {
            let b = any.downcast_mut::<TimestampMillisecondBuilder>().ok_or("builder")?;
            match value {
                None => b.append_null(),
                Some(v) => {
                    b.append_value(v.as_str().and_then(parse_time).ok_or_else(|| wrong("an RFC 3339 UTC time"))?)
                }
            }
        }
        other => return Err(format!("type {other} is not one of the archive's")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn times_read_as_they_are_written() {
        assert_eq!(format_time(1_763_712_000_123), "2025-11-21T08:00:00.123Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_time("2025-11-21T08:00:00.123Z"), Some(1_763_712_000_123));
        for bad in ["", "2025-11-21", "2025-13-21T08:00:00.123Z", "2025-11-21T08:00:00.123", "x025-11-21T08:00:00.123Z"]
        {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_instant_round_trips(ms in -62_000_000_000_000i64..253_000_000_000_000) {
            prop_assert_eq!(parse_time(&format_time(ms)), Some(ms));
        }
    }
}
