//! The Embedded Metric Format as a metric sink: each datum becomes a JSON log line that CloudWatch turns into the
//! metric, for users who prefer logs-based metrics (one PutLogEvents instead of PutMetricData, and the values stay
//! searchable in Logs Insights). Distributions go as `{Values, Counts, Max, Min, Count, Sum}` with at most 100
//! values per line (EMF's limit), split over several lines for the same timestamp, which CloudWatch merges.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::logs::{LogEvent, LogSink};
use crate::metrics::{Datum, DatumValue, MetricSink, Outcome, check_datum, check_namespace};

/// Most values of one EMF distribution.
pub const MAX_EMF_VALUES: usize = 100;

#[derive(Debug, Clone)]
pub struct EmfSink {
    logs: Arc<dyn LogSink>,
    group: String,
    stream: String,
}

impl EmfSink {
    /// Writes to `stream` of `group` through `logs`; against CloudWatch Logs, that sink must send the
    /// `x-amzn-logs-format: json/emf` header (see [`CloudWatchLogsSink::emf`](crate::cloudwatch_logs)).
    pub fn new(logs: Arc<dyn LogSink>, group: impl Into<String>, stream: impl Into<String>) -> Self {
        Self { logs, group: group.into(), stream: stream.into() }
    }
}

/// The EMF lines of one datum.
pub fn lines(namespace: &str, d: &Datum) -> Vec<String> {
    let values: Vec<Value> = match &d.value {
        DatumValue::Single(v) => vec![json!(v)],
        DatumValue::Distribution { values, counts } => values
            .chunks(MAX_EMF_VALUES)
            .zip(counts.chunks(MAX_EMF_VALUES))
            .map(|(v, c)| {
                let count: f64 = c.iter().sum();
                let sum: f64 = v.iter().zip(c).map(|(v, c)| v * c).sum();
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                json!({ "Values": v, "Counts": c, "Max": max, "Min": min, "Count": count, "Sum": sum })
            })
            .collect(),
    };
    let names: Vec<&str> = d.dimensions.iter().map(|(k, _)| k.as_str()).collect();
    values
        .into_iter()
        .map(|value| {
            let mut line = Map::new();
            line.insert(
                "_aws".into(),
                json!({
                    "Timestamp": d.timestamp.as_i64(),
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [names],
                        "Metrics": [{ "Name": d.name, "Unit": d.unit.as_str(), "StorageResolution": if d.high_resolution { 1 } else { 60 } }],
                    }],
                }),
            );
            for (k, v) in &d.dimensions {
                line.insert(k.clone(), Value::String(v.clone()));
            }
            line.insert(d.name.clone(), value);
            Value::Object(line).to_string()
        })
        .collect()
}

#[async_trait]
impl MetricSink for EmfSink {
    /// CloudWatch drops EMF metrics it would refuse through PutMetricData without a word, so the same rules apply
    /// here first; a datum is taken when all its lines were, and rejected or unsent with the first of its lines.
    async fn publish(&self, namespace: &str, datums: &[Datum]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut events = Vec::new();
        let mut owner = Vec::new();
        for (i, d) in datums.iter().enumerate() {
            if let Err(reason) = check_namespace(namespace).and_then(|()| check_datum(d, None)) {
                outcome.rejected.push((i, reason));
                continue;
            }
            for message in lines(namespace, d) {
                events.push(LogEvent { timestamp: d.timestamp, message: message.into() });
                owner.push(i);
            }
        }
        let lines = self.logs.put(&self.group, &self.stream, &events).await;
        let mut settled = vec![false; datums.len()];
        for (line, reason) in lines.rejected {
            if !std::mem::replace(&mut settled[owner[line]], true) {
                outcome.rejected.push((owner[line], reason));
            }
        }
        for line in lines.unsent {
            if !std::mem::replace(&mut settled[owner[line]], true) {
                outcome.unsent.push(owner[line]);
            }
        }
        outcome.error = lines.error;
        outcome.rejected.sort_by_key(|(i, _)| *i);
        outcome.unsent.sort_unstable();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Unit;
    use chimewatch_model::UnixMillis;

    #[test]
    fn a_wide_distribution_becomes_lines_of_at_most_100_values_that_add_up() {
        let values: Vec<f64> = (0..250).map(f64::from).collect();
        let d = Datum {
            name: "meetingStartDurationMs".into(),
            unit: Unit::Milliseconds,
            value: DatumValue::Distribution { values: values.clone(), counts: vec![2.0; 250] },
            dimensions: vec![("sdkName".into(), "amazon-chime-sdk-js".into())],
            timestamp: UnixMillis(1_763_712_000_000),
            high_resolution: false,
        };
        let lines: Vec<Value> =
            lines("AmazonChimeSDKMeetingEvents", &d).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        let total: f64 = lines.iter().map(|l| l["meetingStartDurationMs"]["Count"].as_f64().unwrap()).sum();
        assert_eq!(total, 500.0);
        for l in &lines {
            assert!(l["meetingStartDurationMs"]["Values"].as_array().unwrap().len() <= MAX_EMF_VALUES);
            assert_eq!(l["sdkName"], "amazon-chime-sdk-js");
            let m = &l["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(
                (m["Namespace"].as_str(), m["Dimensions"][0][0].as_str()),
                (Some("AmazonChimeSDKMeetingEvents"), Some("sdkName"))
            );
            assert_eq!(
                (m["Metrics"][0]["Unit"].as_str(), l["_aws"]["Timestamp"].as_i64()),
                (Some("Milliseconds"), Some(1_763_712_000_000))
            );
        }
        assert_eq!(lines[2]["meetingStartDurationMs"]["Max"], 249.0);
    }

    #[test]
    fn a_single_value_is_the_metric_itself() {
        let d = Datum {
            name: "meetingStartRequested".into(),
            unit: Unit::Count,
            value: DatumValue::Single(7.0),
            dimensions: vec![],
            timestamp: UnixMillis(0),
            high_resolution: true,
        };
        let line: Value = serde_json::from_str(&lines("N", &d)[0]).unwrap();
        assert_eq!(line["meetingStartRequested"], 7.0);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"], 1);
    }
}
