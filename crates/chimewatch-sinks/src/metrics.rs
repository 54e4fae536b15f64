//! The metric sink port: what the services publish, in domain terms (no SDK types).

use async_trait::async_trait;
use chimewatch_model::UnixMillis;

pub use chimewatch_metrics::Unit;

#[derive(Debug, Clone, PartialEq)]
pub enum DatumValue {
    Single(f64),
    /// Distinct values with how often each occurred; CloudWatch computes any percentile from these.
    Distribution {
        values: Vec<f64>,
        counts: Vec<f64>,
    },
}

/// One metric value (or distribution) at one time, with its dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: String,
    pub unit: Unit,
    pub value: DatumValue,
    pub dimensions: Vec<(String, String)>,
    pub timestamp: UnixMillis,
    /// Stored at 1-second resolution (CloudWatch high-resolution metrics) rather than 1 minute.
    pub high_resolution: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying later (throttling, timeouts, 5xx); nothing was lost, the caller still holds the data.
    #[error("{operation} failed, retry later: {message}")]
    Transient { operation: &'static str, message: String },
    #[error("{operation} failed: {message}")]
    Fatal { operation: &'static str, message: String },
}

/// What became of the items handed to a sink: each one was taken, refused for its content, or not sent.
///
/// An item refused for its content can never be taken, so it is reported (to be dead-lettered and counted) rather
/// than retried; an item not sent is the caller's to retry. The rest were taken, so a retry never repeats them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Indices of the items refused for their content, with the reason.
    pub rejected: Vec<(usize, String)>,
    /// Indices of the items not (known to be) taken, in their order.
    pub unsent: Vec<usize>,
    /// What stopped the unsent ones.
    pub error: Option<SinkError>,
}

impl Outcome {
    /// Nothing of `n` items was sent, because of `error`.
    pub fn failed(n: usize, error: SinkError) -> Self {
        Self { rejected: Vec::new(), unsent: (0..n).collect(), error: Some(error) }
    }

    /// Every item was taken or refused (nothing left to retry).
    pub fn is_settled(&self) -> bool {
        self.unsent.is_empty()
    }
}

#[async_trait]
pub trait MetricSink: Send + Sync + std::fmt::Debug {
    /// Publishes the datums into `namespace`, in as many requests as the backend needs.
    async fn publish(&self, namespace: &str, datums: &[Datum]) -> Outcome;
}

/// CloudWatch takes values of this magnitude or 0 (Amazon CloudWatch API Reference, `MetricDatum`).
const MIN_MAGNITUDE: f64 = 8.515920e-109;
const MAX_MAGNITUDE: f64 = 1.174271e+108;
/// How far back and ahead of now PutMetricData takes a timestamp.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

fn check_number(what: &str, v: f64) -> Result<(), String> {
    let magnitude = v.abs();
    if !v.is_finite() || (magnitude != 0.0 && !(MIN_MAGNITUDE..=MAX_MAGNITUDE).contains(&magnitude)) {
        return Err(format!(
            "{what} {v} is not a number CloudWatch takes (0, or a magnitude from {MIN_MAGNITUDE:e} to {MAX_MAGNITUDE:e})"
        ));
    }
    Ok(())
}

/// Why CloudWatch would refuse the namespace, if it would (PutMetricData's `Namespace`).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    chimewatch_metrics::dimension::check_name(namespace).map_err(|e| format!("namespace {namespace:?} {e}"))?;
    if namespace.starts_with("AWS/") {
        return Err(format!("namespace {namespace:?} must not start with \"AWS/\""));
    }
    Ok(())
}

/// Why PutMetricData would refuse the datum, if it would: the rules of the Amazon CloudWatch API Reference for
/// `MetricDatum` and `Dimension` (names, values, at most 30 dimensions, at most 150 values with as many counts,
/// numbers CloudWatch takes), and, given `now`, a timestamp at most two weeks old and two hours ahead.
pub fn check_datum(d: &Datum, now: Option<UnixMillis>) -> Result<(), String> {
    use chimewatch_metrics::dimension::{MAX_DIMENSIONS, check_name, check_value};
    check_name(&d.name).map_err(|e| format!("metric name {:?} {e}", d.name))?;
    if d.dimensions.len() > MAX_DIMENSIONS {
        return Err(format!("{} dimensions, more than {MAX_DIMENSIONS}", d.dimensions.len()));
    }
    for (i, (name, value)) in d.dimensions.iter().enumerate() {
        check_name(name).map_err(|e| format!("dimension name {name:?} {e}"))?;
        check_value(value).map_err(|e| format!("dimension {name} value {value:?} {e}"))?;
        if d.dimensions[..i].iter().any(|(n, _)| n == name) {
            return Err(format!("dimension {name} appears twice"));
        }
    }
    match &d.value {
        DatumValue::Single(v) => check_number("value", *v)?,
        DatumValue::Distribution { values, counts } => {
            if values.is_empty() || values.len() > 150 {
                return Err(format!("{} values; CloudWatch takes 1 to 150 per datum", values.len()));
            }
            if counts.len() != values.len() {
                return Err(format!("{} counts for {} values", counts.len(), values.len()));
            }
            for v in values {
                check_number("value", *v)?;
            }
            if let Some(c) = counts.iter().find(|c| !c.is_finite() || **c < 0.0) {
                return Err(format!("count {c} is not a non-negative number"));
            }
        }
    }
    if let Some(now) = now {
        let t = d.timestamp.as_i64();
        if t < now.as_i64() - MAX_AGE_MS || t > now.as_i64() + MAX_AHEAD_MS {
            return Err(format!("timestamp {t} is outside two weeks back and two hours ahead of now ({now})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum() -> Datum {
        Datum {
            name: "meetingStartDurationMs".into(),
            unit: Unit::Milliseconds,
            value: DatumValue::Distribution { values: vec![1.0, 2.0], counts: vec![3.0, 1.0] },
            dimensions: vec![("sdkName".into(), "amazon-chime-sdk-js".into())],
            timestamp: UnixMillis(1_763_712_000_000),
            high_resolution: false,
        }
    }

    #[test]
    fn datums_cloudwatch_would_refuse_are_named_with_the_reason() {
        let now = Some(UnixMillis(1_763_712_000_000));
        assert_eq!(check_datum(&datum(), now), Ok(()));
        let refused = |d: Datum| check_datum(&d, now).unwrap_err();
        let dims = |v: &str| Datum { dimensions: vec![("sdkName".into(), v.into())], ..datum() };
        assert!(refused(dims("   ")).contains("whitespace"));
        assert!(refused(dims("caf\u{e9}")).contains("ASCII"));
        assert!(refused(dims(&"x".repeat(1025))).contains("1 to 1024"));
        let many = Datum { dimensions: (0..31).map(|i| (format!("d{i}"), "v".into())).collect(), ..datum() };
        assert!(refused(many).contains("more than 30"));
        let twice = Datum { dimensions: vec![("a".into(), "1".into()), ("a".into(), "2".into())], ..datum() };
        assert!(refused(twice).contains("twice"));
        let wide =
            Datum { value: DatumValue::Distribution { values: vec![1.0; 151], counts: vec![1.0; 151] }, ..datum() };
        assert!(refused(wide).contains("1 to 150"));
        assert!(refused(Datum { value: DatumValue::Single(f64::NAN), ..datum() }).contains("not a number"));
        assert!(
            refused(Datum { timestamp: UnixMillis(1_763_712_000_000 - 15 * 86_400_000), ..datum() })
                .contains("two weeks")
        );
        assert!(
            refused(Datum { timestamp: UnixMillis(1_763_712_000_000 + 3 * 3_600_000), ..datum() })
                .contains("two hours")
        );
        assert_eq!(check_datum(&Datum { timestamp: UnixMillis(0), ..datum() }, None), Ok(()), "no clock, no range");
        assert!(
            check_namespace("AWS/Chime").is_err() && check_namespace("").is_err() && check_namespace("Team/M").is_ok()
        );
    }
}
