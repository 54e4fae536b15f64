//! CloudWatch metric alarms evaluated the way CloudWatch evaluates them, sans-IO: `chimewatch up` can run the same
//! PutMetricAlarm definitions that are deployed to AWS against its embedded metric store.
//!
//! Data comes through [`MetricSource`] (a statistic of one metric per period) and time through `now_ms`, so an
//! evaluation is a pure function of its inputs.
//!
//! # How an alarm is evaluated
//!
//! After the Amazon CloudWatch User Guide, "Evaluating an alarm" (and "Alarm evaluation"), in our words:
//! - An alarm has a period, N = `EvaluationPeriods` and M = `DatapointsToAlarm` (N when omitted). Its evaluation
//!   range here is the N most recent complete periods: periods are aligned to the epoch (as the embedded store
//!   aggregates them), and the last one is the latest that ended at or before `now`.
//! - A datapoint breaches when `value <op> Threshold` holds (the value is the first operand). When at least M of the
//!   N breach, the alarm is in ALARM; otherwise it is OK.
//! - A new alarm starts in INSUFFICIENT_DATA ("Unchecked: Initial alarm creation"); an updated one keeps its state.
//! - A change of state carries a reason in CloudWatch's words ("Threshold Crossed: 3 out of the last 3 datapoints
//!   [...] were greater than or equal to the threshold (10.0) (minimum 3 datapoints for OK -> ALARM transition).")
//!   and `StateReasonData`-shaped JSON.
//!
//! # Missing data
//!
//! After "Configuring how CloudWatch alarms treat missing data", a period without a datapoint is treated as
//! `TreatMissingData` says:
//! - `breaching` / `notBreaching`: it counts as a breaching / a good datapoint;
//! - `missing` (the default): when all N are missing, the alarm goes to INSUFFICIENT_DATA; otherwise the datapoints
//!   that are there decide (M of them must breach for ALARM);
//! - `ignore`: when all N are missing, the alarm keeps its state; otherwise as `missing`.
//!
//! With `missing` and `ignore`, CloudWatch also avoids waiting for data that may never come ("Avoiding premature
//! transitions to alarm state"): the alarm goes to ALARM when the oldest breaching datapoint of the N is at least M
//! periods old and every later one is breaching or missing, even if fewer than M are there. chimewatch applies that
//! rule as stated.
//!
//! Where chimewatch departs: CloudWatch fetches more periods than N (its "evaluation range") and, when some of the
//! last N are missing, may evaluate the most recent N datapoints it did find further back. chimewatch looks at the
//! last N periods only, so an alarm here decides on the data of exactly the periods its definition names.
//!
//! # Percentiles with few samples
//!
//! After "Percentile-based alarms and low data samples": a percentile over fewer than 10/(1-p) samples (p ≥ 0.5) or
//! 10/p samples (p < 0.5) is not significant. With `EvaluateLowSampleCountPercentile: ignore`, a single-metric
//! percentile alarm whose evaluation range holds such a datapoint keeps its state; with `evaluate` (the default) it
//! is evaluated anyway. The sample counts come from a `SampleCount` query of the same metric.
//!
//! # Layout
//! - [`definition`]: PutMetricAlarm requests in JSON, validated with PutMetricAlarm's rules.
//! - [`math`]: the metric math subset (`+ - * /`, comparisons, `FILL`, `IF`).
//! - [`set`]: [`AlarmSet`], the alarms of `up` with their states, bounded history and SNS-shaped notifications.
//! - `format`: CloudWatch's ways of writing times and numbers.

pub mod definition;
mod format;
pub mod math;
pub mod set;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value as Json, json};

pub use definition::{
    AlarmDefinition, AlarmMetric, ComparisonOperator, DefinitionError, LowSampleCount, Metric, MetricQuery, MetricStat,
    QueryKind, Statistic, TreatMissingData,
};
pub use set::{AlarmSet, AlarmStatus, StateChange};

/// An alarm's state, named as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Alarm => "ALARM",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One statistic of one metric per period, for the periods in `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatQuery {
    pub namespace: String,
    pub metric_name: String,
    /// The metric's exact dimension set, as CloudWatch matches it.
    pub dimensions: Vec<(String, String)>,
    pub stat: Statistic,
    /// Only data published with this unit; `None` takes every unit.
    pub unit: Option<String>,
    pub period_ms: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Where alarm data comes from: the embedded store in `up`, a map in tests.
pub trait MetricSource {
    /// `(period start ms, value)` for each period of the query that has data, in any order. A timestamp inside a
    /// period counts for that period; a later value for the same period replaces an earlier one.
    fn datapoints(&self, q: &StatQuery) -> Result<Vec<(i64, f64)>, String>;
}

/// How one datapoint of the evaluation range counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Breaching,
    NotBreaching,
    Missing,
    /// A percentile over too few samples, with `EvaluateLowSampleCountPercentile: ignore`.
    TooFewSamples,
}

/// One period of the evaluation range.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatedDatapoint {
    pub timestamp_ms: i64,
    pub value: Option<f64>,
    /// Known for percentile alarms that check their sample counts.
    pub sample_count: Option<f64>,
    pub verdict: Verdict,
}

/// The outcome of evaluating one alarm once.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The state after the evaluation (the state it started from when missing data is ignored, samples are too few
    /// or the evaluation failed).
    pub state: AlarmState,
    /// Why, in CloudWatch's words.
    pub reason: String,
    /// Shaped like CloudWatch's `StateReasonData`.
    pub reason_data: Json,
    /// The N periods of the evaluation range, newest first.
    pub datapoints: Vec<EvaluatedDatapoint>,
    /// What stopped the evaluation (the source failed); the state is then unchanged.
    pub failure: Option<String>,
}

/// The evaluation range `[start, end)` for `now_ms`: the N most recent complete periods.
pub fn evaluation_range(def: &AlarmDefinition, now_ms: i64) -> (i64, i64) {
    let p = def.period_ms();
    let end = now_ms.div_euclid(p).saturating_mul(p);
    (end.saturating_sub(p.saturating_mul(i64::from(def.evaluation_periods()))), end)
}

/// Evaluates a new alarm (in INSUFFICIENT_DATA) at `now_ms`.
pub fn evaluate(def: &AlarmDefinition, source: &dyn MetricSource, now_ms: i64) -> Evaluation {
    evaluate_from(def, source, now_ms, AlarmState::InsufficientData)
}

/// Evaluates an alarm in state `current` at `now_ms`.
pub fn evaluate_from(def: &AlarmDefinition, source: &dyn MetricSource, now_ms: i64, current: AlarmState) -> Evaluation {
    let p = def.period_ms();
    let (start, end) = evaluation_range(def, now_ms);
    let n = def.evaluation_periods() as usize;
    let slots: Vec<i64> = (0..n as i64).map(|i| start.saturating_add(i.saturating_mul(p))).collect();
    let fetched = fetch(def, source, start, end);
    let (values, samples) = match fetched {
        Ok(v) => v,
        Err(e) => {
            let datapoints = slots
                .iter()
                .rev()
                .map(|t| EvaluatedDatapoint {
                    timestamp_ms: *t,
                    value: None,
                    sample_count: None,
                    verdict: Verdict::Missing,
                })
                .collect();
            return Evaluation {
                state: current,
                reason: format!("Evaluation failed: {e}; the state stays {current}."),
                reason_data: reason_data(def, now_ms, start, &[]),
                datapoints,
                failure: Some(e),
            };
        }
    };
    let needed = match def.low_sample_count() {
        Some(LowSampleCount::Ignore) => def.percentile_stat().and_then(|s| s.min_significant_samples()),
        _ => None,
    };
    let oldest_first: Vec<EvaluatedDatapoint> = slots
        .iter()
        .map(|t| {
            let value = values.get(t).copied();
            let sample_count = samples.as_ref().map(|s| s.get(t).copied().unwrap_or(0.0));
            let verdict = match (value, needed, sample_count) {
                (None, _, _) => Verdict::Missing,
                (Some(_), Some(needed), Some(count)) if count < needed => Verdict::TooFewSamples,
                (Some(v), _, _) if def.comparison().breaches(v, def.threshold()) => Verdict::Breaching,
                (Some(_), _, _) => Verdict::NotBreaching,
            };
            EvaluatedDatapoint { timestamp_ms: *t, value, sample_count, verdict }
        })
        .collect();
    let outcome = decide(&oldest_first, def.datapoints_to_alarm() as usize, def.treat_missing_data());
    let state = match outcome {
        Outcome::TooFewSamples => current,
        Outcome::NoData => match def.treat_missing_data() {
            TreatMissingData::Missing => AlarmState::InsufficientData,
            TreatMissingData::Ignore => current,
            TreatMissingData::Breaching => AlarmState::Alarm,
            TreatMissingData::NotBreaching => AlarmState::Ok,
        },
        Outcome::Crossed { alarm: true, .. } => AlarmState::Alarm,
        Outcome::Crossed { alarm: false, .. } => AlarmState::Ok,
    };
    let reason = reason(def, current, state, &outcome, &oldest_first, needed);
    let reason_data = reason_data(def, now_ms, start, &oldest_first);
    let mut datapoints = oldest_first;
    datapoints.reverse();
    Evaluation { state, reason, reason_data, datapoints, failure: None }
}

/// How the evaluation range decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    TooFewSamples,
    /// All N missing: the treatment decides alone.
    NoData,
    /// `early`: ALARM by the rule that avoids premature transitions, with fewer than M breaching.
    Crossed {
        alarm: bool,
        early: bool,
    },
}

fn decide(points: &[EvaluatedDatapoint], m: usize, treat: TreatMissingData) -> Outcome {
    let count = |v: Verdict| points.iter().filter(|p| p.verdict == v).count();
    if count(Verdict::TooFewSamples) > 0 {
        return Outcome::TooFewSamples;
    }
    let (breaching, missing) = (count(Verdict::Breaching), count(Verdict::Missing));
    if missing == points.len() {
        return Outcome::NoData;
    }
    match treat {
        TreatMissingData::Breaching => Outcome::Crossed { alarm: breaching + missing >= m, early: false },
        TreatMissingData::NotBreaching => Outcome::Crossed { alarm: breaching >= m, early: false },
        TreatMissingData::Missing | TreatMissingData::Ignore => {
            if breaching >= m {
                return Outcome::Crossed { alarm: true, early: false };
            }
            let early = points.iter().position(|p| p.verdict == Verdict::Breaching).is_some_and(|oldest| {
                points.len() - oldest >= m && points[oldest..].iter().all(|p| p.verdict != Verdict::NotBreaching)
            });
            Outcome::Crossed { alarm: early, early }
        }
    }
}

/// The alarm's values per period start in `[start, end)`, and the sample counts when low counts matter.
type Fetched = (BTreeMap<i64, f64>, Option<BTreeMap<i64, f64>>);

fn fetch(def: &AlarmDefinition, source: &dyn MetricSource, start: i64, end: i64) -> Result<Fetched, String> {
    let p = def.period_ms();
    match def.metric() {
        AlarmMetric::Stat(stat) => {
            let values = series(source, stat, stat.stat, start, end, p)?;
            let samples = match (def.low_sample_count(), stat.stat.min_significant_samples()) {
                (Some(LowSampleCount::Ignore), Some(_)) => {
                    Some(series(source, stat, Statistic::SampleCount, start, end, p)?)
                }
                _ => None,
            };
            Ok((values, samples))
        }
        AlarmMetric::Math(queries) => {
            // FILL(.., REPEAT|LINEAR) needs values from before the range: look back N more periods.
            let lookback = queries
                .iter()
                .any(|q| matches!(&q.kind, QueryKind::Expression { expr, .. } if expr.fills_from_history()));
            let from = if lookback { start.saturating_sub(end.saturating_sub(start)) } else { start };
            let periods =
                (0..).map(|i: i64| from.saturating_add(i.saturating_mul(p))).take_while(|t| *t < end).collect();
            let mut resolver =
                Resolver { source, queries, from, end, period_ms: p, periods, cache: BTreeMap::new(), depth: 0 };
            let returned = queries.iter().find(|q| q.return_data).ok_or("no query has ReturnData true")?;
            let values = match math::Resolve::resolve(&mut resolver, &returned.id)? {
                math::Value::Series(s) => s.into_iter().filter(|(t, _)| (start..end).contains(t)).collect(),
                // A constant (`IF(1, 5, m1)`) holds in every period.
                math::Value::Scalar(Some(v)) => {
                    resolver.periods.iter().filter(|t| (start..end).contains(*t)).map(|t| (*t, v)).collect()
                }
                math::Value::Scalar(None) => BTreeMap::new(),
            };
            Ok((values, None))
        }
    }
}

/// One `MetricStat` as values per period start, with what the source gave outside the range or not finite left out.
fn series(
    source: &dyn MetricSource,
    stat: &MetricStat,
    statistic: Statistic,
    start: i64,
    end: i64,
    period_ms: i64,
) -> Result<BTreeMap<i64, f64>, String> {
    let q = StatQuery {
        namespace: stat.metric.namespace.clone(),
        metric_name: stat.metric.metric_name.clone(),
        dimensions: stat.metric.dimensions.clone(),
        stat: statistic,
        unit: stat.unit.clone(),
        period_ms,
        start_ms: start,
        end_ms: end,
    };
    let points = source
        .datapoints(&q)
        .map_err(|e| format!("{} {} {statistic}: {e}", stat.metric.namespace, stat.metric.metric_name))?;
    Ok(points
        .into_iter()
        .map(|(t, v)| (t.div_euclid(period_ms).saturating_mul(period_ms), v))
        .filter(|(t, v)| (start..end).contains(t) && v.is_finite())
        .collect())
}

/// Resolves the ids of a metric math alarm, each once per evaluation.
struct Resolver<'a> {
    source: &'a dyn MetricSource,
    queries: &'a [MetricQuery],
    from: i64,
    end: i64,
    period_ms: i64,
    periods: Vec<i64>,
    cache: BTreeMap<String, math::Value>,
    depth: usize,
}

impl math::Resolve for Resolver<'_> {
    fn resolve(&mut self, id: &str) -> Result<math::Value, String> {
        if let Some(v) = self.cache.get(id) {
            return Ok(v.clone());
        }
        let queries = self.queries;
        let q = queries.iter().find(|q| q.id == id).ok_or_else(|| format!("no query has the id {id:?}"))?;
        // Validation refuses cycles; this bound keeps a definition built otherwise from recursing forever.
        if self.depth > queries.len() {
            return Err(format!("{id} reads itself"));
        }
        self.depth += 1;
        let value = match &q.kind {
            QueryKind::Stat(stat) => {
                series(self.source, stat, stat.stat, self.from, self.end, self.period_ms).map(math::Value::Series)
            }
            QueryKind::Expression { expr, .. } => {
                let periods = std::mem::take(&mut self.periods);
                let v = math::eval(expr, self, &periods);
                self.periods = periods;
                v
            }
        };
        self.depth -= 1;
        let value = value?;
        self.cache.insert(id.to_owned(), value.clone());
        Ok(value)
    }
}

fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn was(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

/// `[12.0 (12/01/26 17:00:00), ...]`, newest first, of the datapoints with `verdict`.
fn listed(oldest_first: &[EvaluatedDatapoint], verdict: Verdict) -> String {
    let items: Vec<String> = oldest_first
        .iter()
        .rev()
        .filter(|p| p.verdict == verdict)
        .filter_map(|p| p.value.map(|v| format!("{} ({})", format::java_double(v), format::short_time(p.timestamp_ms))))
        .collect();
    format!("[{}]", items.join(", "))
}

fn reason(
    def: &AlarmDefinition,
    current: AlarmState,
    state: AlarmState,
    outcome: &Outcome,
    points: &[EvaluatedDatapoint],
    needed: Option<f64>,
) -> String {
    let n = points.len();
    let m = def.datapoints_to_alarm() as usize;
    let count = |v: Verdict| points.iter().filter(|p| p.verdict == v).count();
    let missing = count(Verdict::Missing);
    let threshold = format::java_double(def.threshold());
    let op = def.comparison().phrase();
    let transition = |minimum: usize| {
        if current == state {
            String::new()
        } else {
            format!(" (minimum {} for {current} -> {state} transition)", plural(minimum, "datapoint"))
        }
    };
    let treat = def.treat_missing_data();
    match outcome {
        Outcome::TooFewSamples => format!(
            "Too few samples: {} of the last {n} had fewer than {} samples, too few for {} to be significant \
             (EvaluateLowSampleCountPercentile is ignore), so the state stays {current}.",
            plural(count(Verdict::TooFewSamples), "datapoint"),
            needed.map(format::java_double).unwrap_or_default(),
            def.percentile_stat().map(|s| s.name()).unwrap_or_default(),
        ),
        Outcome::NoData => match treat {
            TreatMissingData::Missing => format!("Insufficient Data: {} {} unknown.", plural(n, "datapoint"), was(n)),
            TreatMissingData::Ignore => format!(
                "No datapoints were received for {}, and missing data is ignored: the state stays {current}.",
                plural(n, "period")
            ),
            TreatMissingData::Breaching | TreatMissingData::NotBreaching => format!(
                "Threshold Crossed: no datapoints were received for {} and {} {} treated as [{}].",
                plural(n, "period"),
                plural(n, "missing datapoint"),
                was(n),
                if treat == TreatMissingData::Breaching { "Breaching" } else { "NonBreaching" }
            ),
        },
        Outcome::Crossed { alarm: true, early } => {
            let b = count(Verdict::Breaching);
            let mut s = format!(
                "Threshold Crossed: {b} out of the last {n} datapoints {} {} {op} the threshold ({threshold})",
                listed(points, Verdict::Breaching),
                was(b)
            );
            if treat == TreatMissingData::Breaching && missing > 0 {
                s += &format!(", and {} {} treated as [Breaching]", plural(missing, "missing datapoint"), was(missing));
            }
            if *early {
                s += &format!(
                    ", the oldest of them at least {} old and every later datapoint breaching or missing",
                    plural(m, "period")
                );
            }
            s + &transition(m) + "."
        }
        Outcome::Crossed { alarm: false, .. } => {
            let good = count(Verdict::NotBreaching);
            let mut s = format!(
                "Threshold Crossed: {good} out of the last {n} datapoints {} {} not {op} the threshold ({threshold})",
                listed(points, Verdict::NotBreaching),
                was(good)
            );
            if missing > 0 {
                s += &match treat {
                    TreatMissingData::NotBreaching => {
                        format!(
                            ", and {} {} treated as [NonBreaching]",
                            plural(missing, "missing datapoint"),
                            was(missing)
                        )
                    }
                    _ => format!(", and {} {} missing", plural(missing, "datapoint"), was(missing)),
                };
            }
            s + &transition(n + 1 - m) + "."
        }
    }
}

/// `StateReasonData`: the query, the datapoints that were there (oldest first) and each period evaluated (newest
/// first, with its value when there was one).
fn reason_data(def: &AlarmDefinition, now_ms: i64, start: i64, points: &[EvaluatedDatapoint]) -> Json {
    let mut o = Map::new();
    o.insert("version".into(), json!("1.0"));
    o.insert("queryDate".into(), json!(format::iso8601(now_ms)));
    o.insert("startDate".into(), json!(format::iso8601(start)));
    if let AlarmMetric::Stat(stat) = def.metric() {
        if let Some(unit) = &stat.unit {
            o.insert("unit".into(), json!(unit));
        }
        o.insert("statistic".into(), json!(stat.stat.name()));
    }
    o.insert("period".into(), json!(def.period_s()));
    o.insert("recentDatapoints".into(), points.iter().filter_map(|p| p.value).collect());
    o.insert("threshold".into(), json!(def.threshold()));
    let evaluated = points
        .iter()
        .rev()
        .map(|p| {
            let mut e = Map::new();
            e.insert("timestamp".into(), json!(format::iso8601(p.timestamp_ms)));
            if let Some(c) = p.sample_count {
                e.insert("sampleCount".into(), json!(c));
            }
            if let Some(v) = p.value {
                e.insert("value".into(), json!(v));
            }
            Json::Object(e)
        })
        .collect();
    o.insert("evaluatedDatapoints".into(), Json::Array(evaluated));
    Json::Object(o)
}
