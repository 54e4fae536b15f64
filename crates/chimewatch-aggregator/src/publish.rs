//! What the aggregator publishes: closed windows as CloudWatch datums (distributions in chunks of at most 150
//! values, counts as single values, means as one value weighted by its count, all at the window's start), and events as the blog sample's log lines.

use chimewatch_metrics::{ClosedWindow, SeriesValue};
use chimewatch_model::{IndexedEvent, UnixMillis};
use chimewatch_sinks::cloudwatch::MAX_VALUES_PER_DATUM;
use chimewatch_sinks::{Datum, DatumValue, LogEvent};

/// The datums of closed windows; windows shorter than a minute are stored at high resolution.
pub fn datums(windows: &[ClosedWindow], window_ms: i64) -> Vec<Datum> {
    let high_resolution = window_ms < 60_000;
    let mut out = Vec::new();
    for w in windows {
        for s in &w.series {
            let unit = s.unit;
            let datum = |value| Datum {
                name: s.metric.to_owned(),
                unit,
                value,
                dimensions: s.dimensions.clone(),
                timestamp: UnixMillis(w.start_ms),
                high_resolution,
            };
            match &s.value {
                SeriesValue::Count(n) => out.push(datum(DatumValue::Single(*n as f64))),
                // The mean, weighted by its count: CloudWatch's Average over any set of these is the exact mean.
                SeriesValue::Mean { sum, count } if *count > 0 => out.push(datum(DatumValue::Distribution {
                    values: vec![sum / *count as f64],
                    counts: vec![*count as f64],
                })),
                SeriesValue::Mean { .. } => {}
                SeriesValue::Distribution(d) => {
                    for (values, counts) in d.chunks(MAX_VALUES_PER_DATUM) {
                        out.push(datum(DatumValue::Distribution { values, counts }));
                    }
                }
            }
        }
    }
    out
}

/// An event as the blog sample logs it: `{"name": ..., "attributes": {...}}` at the event's own time.
pub fn log_line(event: &IndexedEvent, timestamp_ms: i64) -> LogEvent {
    // The event's text as the gateway wrote it, which is that message: nothing to build.
    LogEvent { timestamp: UnixMillis(timestamp_ms), message: event.shared_json() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_is_the_blog_samples_message_with_attributes_in_the_order_posted() {
        let attributes = serde_json::json!({
            "timestampMs": 1_763_712_000_000_i64, "meetingId": "m", "meetingHistory": [{"name": "x", "timestampMs": 1}],
            "attendeeId": "a\"quoted\"",
        });
        // As the gateway writes it to the stream and the aggregator reads it back.
        let event = chimewatch_model::MeetingEvent {
            name: "meetingEnded".into(),
            attributes: attributes.as_object().unwrap().clone(),
        };
        let record = chimewatch_model::Record::MeetingEvent(chimewatch_model::MeetingEventRecord {
            v: 1,
            received_at_ms: 1,
            ingest: chimewatch_model::Ingest::Batch,
            event,
            original: serde_json::json!({"timestampMs": "1763712000000"}).as_object().unwrap().clone(),
            truncation: Default::default(),
            delivery: None,
        });
        let Ok(chimewatch_model::IndexedRecord::MeetingEvent(read)) =
            chimewatch_model::IndexedRecord::decode(&record.encode())
        else {
            panic!("the record does not decode");
        };
        let line = log_line(&read.event, 1_763_712_000_000);
        assert_eq!(
            &*line.message,
            r#"{"name":"meetingEnded","attributes":{"timestampMs":1763712000000,"meetingId":"m","meetingHistory":[{"name":"x","timestampMs":1}],"attendeeId":"a\"quoted\""}}"#
        );
        assert_eq!(line.timestamp, UnixMillis(1_763_712_000_000));
    }
}
