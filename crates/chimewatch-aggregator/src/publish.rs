//! What the aggregator publishes: closed windows as CloudWatch datums (distributions in chunks of at most 150
//! values, counts as single values, means as one value weighted by its count, all at the window's start), and events as the blog sample's log lines.

use chimewatch_metrics::{ClosedWindow, SeriesValue};
use chimewatch_model::{MeetingEvent, UnixMillis};
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
pub fn log_line(event: &MeetingEvent, timestamp_ms: i64) -> LogEvent {
    let message = serde_json::json!({ "name": event.name, "attributes": event.attributes }).to_string();
    LogEvent { timestamp: UnixMillis(timestamp_ms), message }
}
