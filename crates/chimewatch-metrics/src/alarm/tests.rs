//! Tests of alarm definitions and evaluation: each comparison operator, M of N, each missing-data treatment,
//! percentiles and low sample counts, metric math, every validation rule, state transitions with their bounded
//! history and notifications, and property tests against a plainly written reference evaluation.

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use AlarmState::{Alarm, InsufficientData, Ok as Fine};

const MIN: i64 = 60_000;
/// 2026-01-12T17:00:00Z.
const T0: i64 = 1_768_237_200_000;

/// An in-memory metric store: points per (metric name, statistic name).
#[derive(Default)]
struct Store {
    points: BTreeMap<(String, String), Vec<(i64, f64)>>,
    failing: bool,
    /// Returns every point it holds, whatever the range asked.
    sloppy: bool,
    asked: RefCell<Vec<StatQuery>>,
}

impl Store {
    fn with(mut self, metric: &str, stat: &str, points: &[(i64, f64)]) -> Self {
        self.points.entry((metric.into(), stat.into())).or_default().extend_from_slice(points);
        self
    }

    fn asked(&self) -> Vec<StatQuery> {
        self.asked.borrow().clone()
    }
}

impl MetricSource for Store {
    fn datapoints(&self, q: &StatQuery) -> Result<Vec<(i64, f64)>, String> {
        self.asked.borrow_mut().push(q.clone());
        if self.failing {
            return Err("the store is unavailable".into());
        }
        let points = self.points.get(&(q.metric_name.clone(), q.stat.name())).cloned().unwrap_or_default();
        Ok(points.into_iter().filter(|(t, _)| self.sloppy || (q.start_ms..q.end_ms).contains(t)).collect())
    }
}

fn merge(base: &mut Json, extra: Json) {
    let (Some(base), Json::Object(extra)) = (base.as_object_mut(), extra) else { panic!("objects only") };
    for (k, v) in extra {
        if v.is_null() {
            base.remove(&k);
        } else {
            base.insert(k, v);
        }
    }
}

/// A request for `Latency` (Average, 1 minute, 3 of 3, ≥ 10), with `extra` keys set (or removed, when null).
fn request(extra: Json) -> Json {
    let mut base = json!({
        "AlarmName": "latency-high",
        "Namespace": "ChimeWatch",
        "MetricName": "Latency",
        "Statistic": "Average",
        "Period": 60,
        "EvaluationPeriods": 3,
        "Threshold": 10.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    });
    merge(&mut base, extra);
    base
}

fn alarm(extra: Json) -> AlarmDefinition {
    let text = request(extra).to_string();
    AlarmDefinition::from_json(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(extra: Json) -> DefinitionError {
    let text = request(extra).to_string();
    AlarmDefinition::from_json(&text).expect_err(&text)
}

/// `values[i]` at the i-th of the `values.len()` minutes before `T0`, oldest first; `None` is no datapoint.
fn minutes(values: &[Option<f64>]) -> Vec<(i64, f64)> {
    let n = values.len() as i64;
    values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (T0 - (n - i as i64) * MIN, v))).collect()
}

/// Evaluates at 17:00:10 (so the range is the minutes before 17:00) from `current`.
fn state(def: &AlarmDefinition, store: &Store, current: AlarmState) -> AlarmState {
    evaluate_from(def, store, T0 + 10_000, current).state
}

fn latency(values: &[Option<f64>]) -> Store {
    Store::default().with("Latency", "Average", &minutes(values))
}

#[test]
fn each_comparison_operator_breaches_on_its_side_of_the_threshold() {
    let expect = [
        ("GreaterThanOrEqualToThreshold", [Fine, Alarm, Alarm]),
        ("GreaterThanThreshold", [Fine, Fine, Alarm]),
        ("LessThanThreshold", [Alarm, Fine, Fine]),
        ("LessThanOrEqualToThreshold", [Alarm, Alarm, Fine]),
    ];
    for (op, states) in expect {
        let def = alarm(json!({"ComparisonOperator": op, "EvaluationPeriods": 1}));
        for (value, want) in [9.0, 10.0, 11.0].into_iter().zip(states) {
            assert_eq!(state(&def, &latency(&[Some(value)]), InsufficientData), want, "{op} {value}");
        }
    }
}

#[test]
fn m_of_n_alarms_once_m_of_the_last_n_breach() {
    let def = alarm(json!({"EvaluationPeriods": 5, "DatapointsToAlarm": 3}));
    let (hi, lo) = (Some(20.0), Some(0.0));
    assert_eq!(state(&def, &latency(&[hi, lo, hi, lo, hi]), Fine), Alarm);
    assert_eq!(state(&def, &latency(&[hi, hi, lo, lo, hi]), Fine), Alarm);
    assert_eq!(state(&def, &latency(&[hi, lo, hi, lo, lo]), Alarm), Fine);
    // Breaching datapoints outside the range (older, or in the period still under way) do not count.
    let store = latency(&[lo, lo, hi, lo, hi]).with("Latency", "Average", &[(T0 - 6 * MIN, 20.0), (T0, 20.0)]);
    assert_eq!(state(&def, &store, Fine), Fine);
    // Without DatapointsToAlarm, M is N.
    let def = alarm(json!({"EvaluationPeriods": 3}));
    assert_eq!(state(&def, &latency(&[hi, hi, lo]), InsufficientData), Fine);
    assert_eq!(state(&def, &latency(&[hi, hi, hi]), InsufficientData), Alarm);
}

#[test]
fn the_range_is_the_last_n_complete_periods() {
    let def = alarm(json!({"Period": 300, "EvaluationPeriods": 2}));
    let store = Store::default();
    let ev = evaluate(&def, &store, T0 + 299_999);
    let q = &store.asked()[0];
    assert_eq!((q.start_ms, q.end_ms, q.period_ms), (T0 - 600_000, T0, 300_000));
    assert_eq!(ev.datapoints.iter().map(|d| d.timestamp_ms).collect::<Vec<_>>(), [T0 - 300_000, T0 - 600_000]);
    // At the boundary the period that just ended is complete.
    let store = Store::default();
    evaluate(&def, &store, T0 + 300_000);
    assert_eq!((store.asked()[0].start_ms, store.asked()[0].end_ms), (T0 - 300_000, T0 + 300_000));
    assert_eq!(evaluation_range(&def, T0), (T0 - 600_000, T0));
    // The query carries the metric, its dimensions, the statistic and the unit.
    let def = alarm(json!({"Dimensions": [{"Name": "Region", "Value": "us-east-1"}], "Unit": "Milliseconds"}));
    let store = Store::default();
    evaluate(&def, &store, T0);
    let q = &store.asked()[0];
    assert_eq!((q.namespace.as_str(), q.metric_name.as_str(), q.stat), ("ChimeWatch", "Latency", Statistic::Average));
    assert_eq!(q.dimensions, [("Region".to_owned(), "us-east-1".to_owned())]);
    assert_eq!(q.unit.as_deref(), Some("Milliseconds"));
}

#[test]
fn missing_data_all_missing_is_insufficient_data() {
    let def = alarm(json!({"TreatMissingData": "missing"}));
    for current in [Fine, Alarm, InsufficientData] {
        let ev = evaluate_from(&def, &latency(&[None, None, None]), T0 + 10_000, current);
        assert_eq!(ev.state, InsufficientData);
        assert_eq!(ev.reason, "Insufficient Data: 3 datapoints were unknown.");
    }
    // `missing` is the default.
    assert_eq!(state(&alarm(json!({})), &latency(&[]), Alarm), InsufficientData);
}

#[test]
fn missing_data_evaluates_the_datapoints_that_are_there() {
    let def = alarm(json!({"DatapointsToAlarm": 2}));
    let (hi, lo) = (Some(20.0), Some(0.0));
    assert_eq!(state(&def, &latency(&[hi, None, hi]), Fine), Alarm);
    assert_eq!(state(&def, &latency(&[None, None, lo]), Alarm), Fine);
    // A breaching datapoint followed by a good one: one of three, OK.
    assert_eq!(state(&def, &latency(&[hi, None, lo]), Alarm), Fine);
    // CloudWatch's early ALARM: the oldest breaching datapoint is 2 (M) periods old and nothing newer is good.
    let ev = evaluate_from(&def, &latency(&[lo, hi, None]), T0 + 10_000, Fine);
    assert_eq!(ev.state, Alarm);
    assert!(ev.reason.contains("the oldest of them at least 2 periods old"), "{}", ev.reason);
    // Only one period old: wait for more data.
    assert_eq!(state(&def, &latency(&[lo, None, hi]), Fine), Fine);
}

#[test]
fn ignore_keeps_the_state_when_all_data_is_missing() {
    let def = alarm(json!({"TreatMissingData": "ignore", "DatapointsToAlarm": 2}));
    for current in [Fine, Alarm, InsufficientData] {
        let ev = evaluate_from(&def, &latency(&[None, None, None]), T0 + 10_000, current);
        assert_eq!(ev.state, current);
        assert!(ev.reason.contains("missing data is ignored"), "{}", ev.reason);
    }
    // With some data, the data decides.
    assert_eq!(state(&def, &latency(&[Some(20.0), None, Some(20.0)]), Fine), Alarm);
    assert_eq!(state(&def, &latency(&[None, None, Some(0.0)]), Alarm), Fine);
}

#[test]
fn breaching_counts_missing_datapoints_as_breaching() {
    let def = alarm(json!({"TreatMissingData": "breaching", "DatapointsToAlarm": 2}));
    let ev = evaluate_from(&def, &latency(&[Some(0.0), None, None]), T0 + 10_000, Fine);
    assert_eq!(ev.state, Alarm);
    assert!(ev.reason.contains("and 2 missing datapoints were treated as [Breaching]"), "{}", ev.reason);
    assert_eq!(state(&def, &latency(&[Some(0.0), Some(0.0), None]), Alarm), Fine);
    let ev = evaluate_from(&def, &latency(&[]), T0 + 10_000, Fine);
    assert_eq!(ev.state, Alarm);
    assert_eq!(
        ev.reason,
        "Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints were treated as \
         [Breaching]."
    );
}

#[test]
fn not_breaching_counts_missing_datapoints_as_good() {
    let def = alarm(json!({"TreatMissingData": "notBreaching", "DatapointsToAlarm": 2}));
    let ev = evaluate_from(&def, &latency(&[Some(20.0), None, None]), T0 + 10_000, Alarm);
    assert_eq!(ev.state, Fine);
    assert!(ev.reason.contains("treated as [NonBreaching]"), "{}", ev.reason);
    assert_eq!(state(&def, &latency(&[Some(20.0), None, Some(20.0)]), Fine), Alarm);
    // No early ALARM: missing datapoints are good ones here.
    assert_eq!(state(&def, &latency(&[Some(0.0), Some(20.0), None]), Fine), Fine);
    assert_eq!(state(&def, &latency(&[]), Alarm), Fine);
}

#[test]
fn percentile_alarms_query_the_percentile() {
    let def = alarm(json!({"Statistic": null, "ExtendedStatistic": "p99.9", "EvaluationPeriods": 1}));
    let store = Store::default().with("Latency", "p99.9", &minutes(&[Some(250.0)]));
    assert_eq!(state(&def, &store, InsufficientData), Alarm);
    assert_eq!(store.asked().iter().map(|q| q.stat).collect::<Vec<_>>(), [Statistic::Percentile(99.9)]);
}

#[test]
fn low_sample_percentiles_keep_their_state_with_ignore() {
    let def = alarm(json!({
        "Statistic": null, "ExtendedStatistic": "p99", "EvaluationPeriods": 2,
        "EvaluateLowSampleCountPercentile": "ignore",
    }));
    let values = minutes(&[Some(50.0), Some(50.0)]);
    // p99 needs 1,000 samples a period; one period has 999.
    let few = || {
        let counts = minutes(&[Some(1000.0), Some(999.0)]);
        Store::default().with("Latency", "p99", &values).with("Latency", "SampleCount", &counts)
    };
    for current in [Fine, InsufficientData] {
        let ev = evaluate_from(&def, &few(), T0 + 10_000, current);
        assert_eq!(ev.state, current);
        assert!(
            ev.reason.starts_with("Too few samples: 1 datapoint of the last 2 had fewer than 1000.0 samples"),
            "{}",
            ev.reason
        );
        assert_eq!(ev.datapoints[0].verdict, Verdict::TooFewSamples);
        assert_eq!(ev.datapoints[0].sample_count, Some(999.0));
    }
    let enough = Store::default().with("Latency", "p99", &values).with(
        "Latency",
        "SampleCount",
        &minutes(&[Some(1000.0), Some(4000.0)]),
    );
    assert_eq!(state(&def, &enough, Fine), Alarm);
    // `evaluate` (and the default) evaluates whatever the count, and does not ask for it.
    for setting in [json!("evaluate"), Json::Null] {
        let def = alarm(json!({
            "Statistic": null, "ExtendedStatistic": "p99", "EvaluationPeriods": 2,
            "EvaluateLowSampleCountPercentile": setting,
        }));
        let store = few();
        assert_eq!(state(&def, &store, Fine), Alarm);
        assert_eq!(store.asked().iter().map(|q| q.stat).collect::<Vec<_>>(), [Statistic::Percentile(99.0)]);
    }
}

#[test]
fn significant_sample_counts_follow_cloudwatchs_formula() {
    let needed = |s: &str| Statistic::parse(s).and_then(|s| s.min_significant_samples());
    assert_eq!(needed("p99"), Some(1000.0));
    assert_eq!(needed("p99.9"), Some(10_000.0));
    assert_eq!(needed("p90"), Some(100.0));
    assert_eq!(needed("p50"), Some(20.0));
    assert_eq!(needed("p25"), Some(40.0));
    assert_eq!(needed("p10"), Some(100.0));
    assert_eq!((needed("p0"), needed("p100"), needed("Average")), (None, None, None));
}

/// Errors (Sum) over calls (Sum) in percent, 3 of 3 minutes.
fn error_rate(expression: &str, extra: Json) -> AlarmDefinition {
    let metric =
        |name: &str| json!({"Metric": {"Namespace": "ChimeWatch", "MetricName": name}, "Period": 60, "Stat": "Sum"});
    let mut base = json!({
        "Statistic": null, "Namespace": null, "MetricName": null, "Period": null,
        "Metrics": [
            {"Id": "e1", "Expression": expression, "Label": "error rate", "ReturnData": true},
            {"Id": "m1", "MetricStat": metric("Errors"), "ReturnData": false},
            {"Id": "m2", "MetricStat": metric("Calls"), "ReturnData": false},
        ],
    });
    merge(&mut base, extra);
    alarm(base)
}

fn calls(errors: &[Option<f64>], calls: &[Option<f64>]) -> Store {
    Store::default().with("Errors", "Sum", &minutes(errors)).with("Calls", "Sum", &minutes(calls))
}

#[test]
fn a_ratio_of_two_metrics() {
    let def = error_rate("100 * m1 / m2", json!({"DatapointsToAlarm": 2}));
    let store = calls(&[Some(1.0), Some(20.0), Some(30.0)], &[Some(100.0); 3]);
    let ev = evaluate(&def, &store, T0 + 10_000);
    assert_eq!(ev.state, Alarm);
    assert!(
        ev.reason.starts_with(
            "Threshold Crossed: 2 out of the last 3 datapoints [30.0 (12/01/26 16:59:00), 20.0 (12/01/26 16:58:00)]"
        ),
        "{}",
        ev.reason
    );
    assert_eq!(ev.datapoints.iter().map(|d| d.value).collect::<Vec<_>>(), [Some(30.0), Some(20.0), Some(1.0)]);
    // Each metric was asked for once, over the range.
    let asked = store.asked();
    assert_eq!(asked.iter().map(|q| q.metric_name.as_str()).collect::<Vec<_>>(), ["Errors", "Calls"]);
    assert!(asked.iter().all(|q| (q.start_ms, q.end_ms, q.stat) == (T0 - 3 * MIN, T0, Statistic::Sum)));
    // A period where one of the two is missing has no ratio.
    let store = calls(&[Some(50.0), None, Some(50.0)], &[Some(100.0), Some(100.0), None]);
    assert_eq!(
        evaluate(&def, &store, T0 + 10_000).datapoints.iter().map(|d| d.value).collect::<Vec<_>>(),
        [None, None, Some(50.0)]
    );
}

#[test]
fn division_by_zero_yields_no_datapoint() {
    let def = error_rate("m1 / m2", json!({}));
    let store = calls(&[Some(5.0); 3], &[Some(0.0), Some(0.0), Some(0.0)]);
    assert_eq!(state(&def, &store, Fine), InsufficientData);
    let def = error_rate("m1 / m2", json!({"TreatMissingData": "notBreaching"}));
    assert_eq!(state(&def, &store, Alarm), Fine);
    let store = calls(&[Some(5.0); 3], &[Some(0.0), Some(0.5), Some(0.0)]);
    let ev = evaluate(&error_rate("m1 / m2", json!({})), &store, T0 + 10_000);
    assert_eq!(ev.datapoints.iter().map(|d| d.value).collect::<Vec<_>>(), [None, Some(10.0), None]);
}

#[test]
fn fill_turns_missing_periods_into_values() {
    // Errors published only when there are some: no errors is zero, not missing.
    let def = error_rate("FILL(m1, 0)", json!({"ComparisonOperator": "LessThanOrEqualToThreshold", "Threshold": 0.0}));
    assert_eq!(state(&def, &calls(&[], &[]), InsufficientData), Alarm);
    let def = error_rate("m1", json!({"ComparisonOperator": "LessThanOrEqualToThreshold", "Threshold": 0.0}));
    assert_eq!(state(&def, &calls(&[], &[]), Alarm), InsufficientData);
    // REPEAT carries the last value forward, from before the range if need be (the query reaches N periods back).
    let def = error_rate("FILL(m1, REPEAT)", json!({}));
    let store = Store::default().with("Errors", "Sum", &[(T0 - 5 * MIN, 12.0)]);
    assert_eq!(state(&def, &store, InsufficientData), Alarm);
    assert_eq!(store.asked()[0].start_ms, T0 - 6 * MIN);
}

#[test]
fn a_metric_stat_can_be_the_watched_query() {
    let def = error_rate("m1 * 2", json!({}));
    let AlarmMetric::Math(queries) = def.metric() else { panic!("math") };
    assert_eq!(queries.iter().filter(|q| q.return_data).count(), 1);
    let mut text = request(json!({"Statistic": null, "Namespace": null, "MetricName": null, "Period": null}));
    merge(
        &mut text,
        json!({"Metrics": [{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "ChimeWatch", "MetricName": "Latency"}, "Period": 60, "Stat": "p90"}}]}),
    );
    let def = AlarmDefinition::from_json(&text.to_string()).unwrap();
    let store = Store::default().with("Latency", "p90", &minutes(&[Some(11.0); 3]));
    assert_eq!(state(&def, &store, Fine), Alarm);
}

#[test]
fn the_reason_reads_like_cloudwatchs() {
    let def = alarm(json!({}));
    let ev = evaluate(&def, &latency(&[Some(15.0), Some(11.0), Some(12.0)]), T0 + 10_000);
    assert_eq!(
        ev.reason,
        "Threshold Crossed: 3 out of the last 3 datapoints [12.0 (12/01/26 16:59:00), 11.0 (12/01/26 16:58:00), \
         15.0 (12/01/26 16:57:00)] were greater than or equal to the threshold (10.0) (minimum 3 datapoints for \
         INSUFFICIENT_DATA -> ALARM transition)."
    );
    let ev = evaluate_from(&def, &latency(&[Some(5.0), Some(12.5), Some(5.0)]), T0 + 10_000, Alarm);
    assert_eq!(
        ev.reason,
        "Threshold Crossed: 2 out of the last 3 datapoints [5.0 (12/01/26 16:59:00), 5.0 (12/01/26 16:57:00)] were \
         not greater than or equal to the threshold (10.0) (minimum 1 datapoint for ALARM -> OK transition)."
    );
    let def = alarm(json!({"EvaluationPeriods": 1, "ComparisonOperator": "LessThanThreshold", "Threshold": 0.5}));
    let ev = evaluate_from(&def, &latency(&[Some(0.25)]), T0 + 10_000, Fine);
    assert_eq!(
        ev.reason,
        "Threshold Crossed: 1 out of the last 1 datapoints [0.25 (12/01/26 16:59:00)] was less than the threshold \
         (0.5) (minimum 1 datapoint for OK -> ALARM transition)."
    );
    // No transition, no minimum.
    let ev = evaluate_from(&def, &latency(&[Some(0.25)]), T0 + 10_000, Alarm);
    assert!(ev.reason.ends_with("was less than the threshold (0.5)."), "{}", ev.reason);
}

#[test]
fn the_reason_data_is_shaped_like_state_reason_data() {
    let def = alarm(json!({"Unit": "Milliseconds", "EvaluationPeriods": 2}));
    let ev = evaluate(&def, &latency(&[None, Some(12.5)]), T0 + 1_234);
    assert_eq!(
        ev.reason_data,
        json!({
            "version": "1.0",
            "queryDate": "2026-01-12T17:00:01.234+0000",
            "startDate": "2026-01-12T16:58:00.000+0000",
            "unit": "Milliseconds",
            "statistic": "Average",
            "period": 60,
            "recentDatapoints": [12.5],
            "threshold": 10.0,
            "evaluatedDatapoints": [
                {"timestamp": "2026-01-12T16:59:00.000+0000", "value": 12.5},
                {"timestamp": "2026-01-12T16:58:00.000+0000"},
            ],
        })
    );
    // Key order as CloudWatch writes it.
    let text = ev.reason_data.to_string();
    assert!(text.starts_with(r#"{"version":"1.0","queryDate":"#), "{text}");
}

#[test]
fn a_failing_source_keeps_the_state() {
    let def = alarm(json!({}));
    let store = Store { failing: true, ..Store::default() };
    let ev = evaluate_from(&def, &store, T0, Alarm);
    assert_eq!(ev.state, Alarm);
    assert_eq!(ev.failure.as_deref(), Some("ChimeWatch Latency Average: the store is unavailable"));
    let mut set = AlarmSet::with_definitions([def], T0).unwrap();
    assert!(set.step(&store, T0).is_empty());
    let status = set.get("latency-high").unwrap();
    assert_eq!(status.state, InsufficientData);
    assert!(status.last_evaluation.as_ref().and_then(|e| e.failure.as_ref()).is_some());
}

#[test]
fn an_alarm_set_steps_through_state_changes() {
    let def = alarm(json!({"EvaluationPeriods": 2}));
    let mut set = AlarmSet::with_definitions([def], T0).unwrap();
    let status = set.get("latency-high").unwrap();
    assert_eq!((status.state, status.reason.as_str()), (InsufficientData, "Unchecked: Initial alarm creation"));
    // Minute by minute: 20, 20, 1, then nothing.
    let store = Store::default().with("Latency", "Average", &[(T0, 20.0), (T0 + MIN, 20.0), (T0 + 2 * MIN, 1.0)]);
    let at = |m: i64| T0 + m * MIN + 5_000;
    let mut seen = Vec::new();
    for m in 1..=6 {
        for c in set.step(&store, at(m)) {
            seen.push((m, c.old_state, c.new_state));
        }
    }
    // m=1: one of two (the other missing, the breaching one only 1 period old): OK. m=2: ALARM. m=3: OK. m=5: both
    // periods missing: INSUFFICIENT_DATA.
    assert_eq!(seen, [(1, InsufficientData, Fine), (2, Fine, Alarm), (3, Alarm, Fine), (5, Fine, InsufficientData)]);
    let status = set.get("latency-high").unwrap();
    let history: Vec<_> = status.history().map(|c| (c.time_ms, c.new_state)).collect();
    assert_eq!(history, [(at(1), Fine), (at(2), Alarm), (at(3), Fine), (at(5), InsufficientData)]);
    assert_eq!((status.state, status.state_updated_ms), (InsufficientData, at(5)));
    assert_eq!(status.reason, "Insufficient Data: 2 datapoints were unknown.");
    assert_eq!(status.last_evaluation.as_ref().map(|e| e.state), Some(InsufficientData));
}

#[test]
fn the_history_is_bounded() {
    let def = alarm(json!({"EvaluationPeriods": 1}));
    let mut set = AlarmSet::new(3);
    set.put(def, T0);
    // Alternating minutes: a change every step.
    let points: Vec<(i64, f64)> = (0..10).map(|m| (T0 + m * MIN, if m % 2 == 0 { 20.0 } else { 1.0 })).collect();
    let store = Store::default().with("Latency", "Average", &points);
    let changes: usize = (1..=10).map(|m| set.step(&store, T0 + m * MIN).len()).sum();
    assert_eq!(changes, 10);
    let history: Vec<_> = set.get("latency-high").unwrap().history().map(|c| c.time_ms).collect();
    assert_eq!(history, [T0 + 8 * MIN, T0 + 9 * MIN, T0 + 10 * MIN]);
}

#[test]
fn putting_a_definition_again_keeps_the_state() {
    let mut set = AlarmSet::default();
    set.put(alarm(json!({"EvaluationPeriods": 1})), T0);
    let store = latency(&[Some(20.0)]);
    assert_eq!(set.step(&store, T0 + 10_000).len(), 1);
    set.put(alarm(json!({"EvaluationPeriods": 1, "Threshold": 15.0})), T0 + 20_000);
    let status = set.get("latency-high").unwrap();
    assert_eq!((status.state, status.configured_ms, status.definition.threshold()), (Alarm, T0 + 20_000, 15.0));
    assert_eq!(status.history().len(), 1);
    assert!(set.remove("latency-high").is_some() && set.is_empty());
    let twice = AlarmSet::with_definitions([alarm(json!({})), alarm(json!({}))], T0).unwrap_err();
    assert_eq!(twice.to_string(), r#"AlarmName: "latency-high" names two definitions"#);
}

#[test]
fn notifications_are_shaped_like_cloudwatchs() {
    let def = alarm(json!({
        "AlarmDescription": "Join latency too high",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:ops"],
        "Dimensions": [{"Name": "Region", "Value": "us-east-1"}],
        "EvaluationPeriods": 1,
    }));
    let mut set = AlarmSet::with_definitions([def], T0 - MIN).unwrap();
    let change = set.step(&latency(&[Some(12.0)]), T0 + 10_000).remove(0);
    assert_eq!(
        change.notification("us-east-1", "123456789012"),
        json!({
            "AlarmName": "latency-high",
            "AlarmDescription": "Join latency too high",
            "AWSAccountId": "123456789012",
            "AlarmConfigurationUpdatedTimestamp": "2026-01-12T16:59:00.000+0000",
            "NewStateValue": "ALARM",
            "NewStateReason": "Threshold Crossed: 1 out of the last 1 datapoints [12.0 (12/01/26 16:59:00)] was greater \
                               than or equal to the threshold (10.0) (minimum 1 datapoint for INSUFFICIENT_DATA -> ALARM \
                               transition).",
            "StateChangeTime": "2026-01-12T17:00:10.000+0000",
            "Region": "US East (N. Virginia)",
            "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:latency-high",
            "OldStateValue": "INSUFFICIENT_DATA",
            "OKActions": [],
            "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:ops"],
            "InsufficientDataActions": [],
            "Trigger": {
                "MetricName": "Latency",
                "Namespace": "ChimeWatch",
                "StatisticType": "Statistic",
                "Statistic": "AVERAGE",
                "Unit": null,
                "Dimensions": [{"value": "us-east-1", "name": "Region"}],
                "Period": 60,
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 10.0,
                "TreatMissingData": "missing",
                "EvaluateLowSampleCountPercentile": "",
            },
        })
    );
    // A percentile alarm names its extended statistic; a metric math alarm lists its queries.
    let def = alarm(
        json!({"Statistic": null, "ExtendedStatistic": "p99", "DatapointsToAlarm": 2, "TreatMissingData": "notBreaching"}),
    );
    let mut set = AlarmSet::with_definitions([def], T0).unwrap();
    let trigger = set.step(&Store::default(), T0)[0].notification("eu-south-9", "1")["Trigger"].clone();
    assert_eq!(
        (trigger["StatisticType"].clone(), trigger["ExtendedStatistic"].clone()),
        (json!("ExtendedStatistic"), json!("p99"))
    );
    assert_eq!(
        (trigger["DatapointsToAlarm"].clone(), trigger["TreatMissingData"].clone()),
        (json!(2), json!("notBreaching"))
    );
    assert!(trigger.get("Statistic").is_none());
    let mut set = AlarmSet::with_definitions([error_rate("100 * m1 / m2", json!({}))], T0).unwrap();
    let n = set.step(&calls(&[Some(50.0); 3], &[Some(100.0); 3]), T0 + 10_000)[0].notification("eu-south-9", "1");
    assert_eq!(n["Region"], json!("eu-south-9"));
    assert_eq!(
        n["Trigger"],
        json!({
            "Period": 60, "EvaluationPeriods": 3, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 10.0,
            "TreatMissingData": "missing", "EvaluateLowSampleCountPercentile": "",
            "Metrics": [
                {"Expression": "100 * m1 / m2", "Id": "e1", "Label": "error rate", "ReturnData": true},
                {"Id": "m1", "MetricStat": {"Metric": {"Dimensions": [], "MetricName": "Errors", "Namespace": "ChimeWatch"}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
                {"Id": "m2", "MetricStat": {"Metric": {"Dimensions": [], "MetricName": "Calls", "Namespace": "ChimeWatch"}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
            ],
        })
    );
}

#[test]
fn a_put_metric_alarm_request_is_read() {
    let text = r#"{
        "AlarmName": "join-failures",
        "AlarmDescription": "Meeting joins failing",
        "ActionsEnabled": false,
        "OKActions": ["arn:aws:sns:us-east-1:123456789012:ops"],
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:ops"],
        "InsufficientDataActions": [],
        "MetricName": "meetingJoinFailed",
        "Namespace": "ChimeWatch/Meetings",
        "Statistic": "Sum",
        "Dimensions": [{"Name": "sdkName", "Value": "amazon-chime-sdk-js"}],
        "Period": 300,
        "Unit": "Count",
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 5,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "EvaluateLowSampleCountPercentile": "evaluate",
        "Tags": [{"Key": "team", "Value": "media"}]
    }"#;
    let def = AlarmDefinition::from_json(text).unwrap();
    assert_eq!(
        (def.name(), def.description(), def.actions_enabled()),
        ("join-failures", Some("Meeting joins failing"), false)
    );
    assert_eq!((def.period_s(), def.evaluation_periods(), def.datapoints_to_alarm()), (300, 3, 2));
    assert_eq!((def.threshold(), def.comparison()), (5.0, ComparisonOperator::GreaterThanThreshold));
    assert_eq!(
        (def.treat_missing_data(), def.low_sample_count()),
        (TreatMissingData::NotBreaching, Some(LowSampleCount::Evaluate))
    );
    assert_eq!((def.alarm_actions().len(), def.tags()), (1, &[("team".to_owned(), "media".to_owned())][..]));
    let AlarmMetric::Stat(stat) = def.metric() else { panic!("a single metric") };
    assert_eq!(
        (stat.metric.metric_name.as_str(), stat.stat, stat.unit.as_deref()),
        ("meetingJoinFailed", Statistic::Sum, Some("Count"))
    );
    assert_eq!(stat.metric.dimensions, [("sdkName".to_owned(), "amazon-chime-sdk-js".to_owned())]);
    // serde validates too.
    assert_eq!(serde_json::from_str::<AlarmDefinition>(text).unwrap(), def);
    let bad = serde_json::from_str::<AlarmDefinition>(&request(json!({"Period": 45})).to_string()).unwrap_err();
    assert!(bad.to_string().contains("Period: must be 10, 20, 30 or a multiple of 60 seconds, is 45"), "{bad}");
}

#[test]
fn unknown_keys_are_named() {
    let e = refused(json!({"Thresold": 3}));
    assert!(e.field.is_empty() && e.rule.starts_with("unknown field `Thresold`"), "{e}");
    let e = refused(json!({"Dimensions": [{"Name": "a", "Vaule": "b"}]}));
    assert!(e.rule.starts_with("unknown field `Vaule`"), "{e}");
    let e = AlarmDefinition::from_json(
        r#"{"AlarmName": "x", "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "n", "MetricName": "m", "Dimension": []},
                                                    "Period": 60, "Stat": "Sum"}}]}"#,
    )
    .unwrap_err();
    assert!(e.rule.starts_with("unknown field `Dimension`"), "{e}");
    // Keys are case-sensitive, as in the API.
    assert!(refused(json!({"threshold": 3})).rule.starts_with("unknown field `threshold`"));
    // The position is named too.
    assert!(refused(json!({"Thresold": 3})).rule.contains("line 1 column"));
}

#[test]
fn each_rule_names_its_field() {
    let metrics = |queries: Json| json!({"Statistic": null, "Namespace": null, "MetricName": null, "Period": null, "Metrics": queries});
    let stat = |name: &str, period: i64| json!({"Metric": {"Namespace": "ChimeWatch", "MetricName": name}, "Period": period, "Stat": "Sum"});
    let mut long_math = metrics(json!([{"Id": "m1", "MetricStat": stat("a", 300)}]));
    merge(&mut long_math, json!({"EvaluationPeriods": 289}));
    let cases = [
        (json!({"AlarmName": null}), "AlarmName", "is required"),
        (json!({"AlarmName": ""}), "AlarmName", "must be 1 to 255 characters, has 0"),
        (json!({"AlarmName": "x".repeat(256)}), "AlarmName", "must be 1 to 255 characters, has 256"),
        (json!({"AlarmName": "a\nb"}), "AlarmName", "must not contain control characters"),
        (json!({"AlarmDescription": "d".repeat(1025)}), "AlarmDescription", "must be 0 to 1024 characters"),
        (json!({"Statistic": null}), "Statistic", "one of Statistic, ExtendedStatistic and Metrics is required"),
        (json!({"ExtendedStatistic": "p99"}), "ExtendedStatistic", "must not be given with Statistic"),
        (json!({"Statistic": "Median"}), "Statistic", "\"Median\" is not one of SampleCount"),
        (json!({"Statistic": null, "ExtendedStatistic": "tm90"}), "ExtendedStatistic", "not computed by chimewatch"),
        (json!({"Statistic": null, "ExtendedStatistic": "p99.999"}), "ExtendedStatistic", "is not a percentile"),
        (json!({"Statistic": null, "ExtendedStatistic": "p101"}), "ExtendedStatistic", "is not a percentile"),
        (json!({"Namespace": null}), "Namespace", "is required"),
        (json!({"Namespace": ":x"}), "Namespace", "must not start with ':'"),
        (json!({"MetricName": ""}), "MetricName", "must be 1 to 255 characters"),
        (json!({"Period": null}), "Period", "is required"),
        (json!({"Period": 45}), "Period", "must be 10, 20, 30 or a multiple of 60 seconds, is 45"),
        (json!({"Period": 0}), "Period", "must be 10, 20, 30 or a multiple of 60 seconds, is 0"),
        (json!({"Unit": "Furlongs"}), "Unit", "\"Furlongs\" is not a CloudWatch unit"),
        (json!({"EvaluationPeriods": null}), "EvaluationPeriods", "is required"),
        (json!({"EvaluationPeriods": 0}), "EvaluationPeriods", "must be at least 1, is 0"),
        (
            json!({"EvaluationPeriods": 1441}),
            "EvaluationPeriods",
            "at most 86400 seconds (one day, for periods under an hour), is 1441 × 60 = 86460",
        ),
        (json!({"Period": 10, "EvaluationPeriods": 8641}), "EvaluationPeriods", "at most 86400 seconds"),
        (json!({"Period": 3600, "EvaluationPeriods": 169}), "EvaluationPeriods", "at most 604800 seconds (seven days)"),
        (json!({"DatapointsToAlarm": 4}), "DatapointsToAlarm", "must be at most EvaluationPeriods (3), is 4"),
        (json!({"DatapointsToAlarm": 0}), "DatapointsToAlarm", "must be at least 1, is 0"),
        (json!({"Threshold": null}), "Threshold", "is required"),
        (json!({"ComparisonOperator": null}), "ComparisonOperator", "is required"),
        (
            json!({"ComparisonOperator": "Above"}),
            "ComparisonOperator",
            "\"Above\" is not one of GreaterThanOrEqualToThreshold",
        ),
        (
            json!({"TreatMissingData": "zero"}),
            "TreatMissingData",
            "\"zero\" is not one of missing, ignore, breaching, notBreaching",
        ),
        (
            json!({"EvaluateLowSampleCountPercentile": "skip"}),
            "EvaluateLowSampleCountPercentile",
            "is not one of evaluate, ignore",
        ),
        (json!({"ThresholdMetricId": "ad1"}), "ThresholdMetricId", "chimewatch does not evaluate"),
        (json!({"EvaluationInterval": 60}), "EvaluationInterval", "chimewatch does not evaluate"),
        (json!({"AlarmActions": ["a", "b", "c", "d", "e", "f"]}), "AlarmActions", "at most 5 actions, has 6"),
        (json!({"OKActions": [""]}), "OKActions[0]", "must be 1 to 1024 characters"),
        (json!({"Tags": [{"Key": "", "Value": "v"}]}), "Tags[0].Key", "must be 1 to 128 characters"),
        (
            json!({"Dimensions": (0..31).map(|i| json!({"Name": format!("d{i}"), "Value": "v"})).collect::<Vec<_>>()}),
            "Dimensions",
            "at most 30 dimensions, has 31",
        ),
        (
            json!({"Dimensions": [{"Name": "a", "Value": "1"}, {"Name": "a", "Value": "2"}]}),
            "Dimensions[1].Name",
            "\"a\" appears twice",
        ),
        (json!({"Dimensions": [{"Name": "a", "Value": ""}]}), "Dimensions[0].Value", "must be 1 to 1024 characters"),
        (json!({"Metrics": []}), "MetricName", "must be left out with Metrics"),
        (metrics(json!([])), "Metrics", "must hold 1 to 20 queries, holds 0"),
        (
            metrics(
                json!([{"Id": "m1", "MetricStat": stat("a", 60)}, {"Id": "m1", "MetricStat": stat("b", 60), "ReturnData": false}]),
            ),
            "Metrics[1].Id",
            "\"m1\" is the id of an earlier query",
        ),
        (
            metrics(json!([{"Id": "M1", "MetricStat": stat("a", 60)}])),
            "Metrics[0].Id",
            "\"M1\" must start with a lower case letter",
        ),
        (
            metrics(json!([{"Id": "m-1", "MetricStat": stat("a", 60)}])),
            "Metrics[0].Id",
            "may hold only letters, digits and '_'",
        ),
        (metrics(json!([{"Id": "m1"}])), "Metrics[0]", "must have exactly one of MetricStat and Expression"),
        (
            metrics(json!([{"Id": "m1", "MetricStat": stat("a", 60), "Expression": "1"}])),
            "Metrics[0]",
            "must have exactly one of MetricStat and Expression",
        ),
        (
            metrics(json!([{"Id": "m1", "MetricStat": stat("a", 60)}, {"Id": "m2", "MetricStat": stat("b", 60)}])),
            "Metrics",
            "exactly one query must have ReturnData true (an omitted ReturnData is true), 2 have: m1, m2",
        ),
        (
            metrics(json!([{"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}])),
            "Metrics",
            "exactly one query must have ReturnData true",
        ),
        (
            metrics(
                json!([{"Id": "e1", "Expression": "m1 +"}, {"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}]),
            ),
            "Metrics[0].Expression",
            "at character 5: expected a number",
        ),
        (
            metrics(
                json!([{"Id": "e1", "Expression": "m9 * 2"}, {"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}]),
            ),
            "Metrics[0].Expression",
            "\"m9\" is not the id of a query in Metrics",
        ),
        (
            metrics(
                json!([{"Id": "e1", "Expression": "e2 + m1"}, {"Id": "e2", "Expression": "e1 * 2", "ReturnData": false}, {"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}]),
            ),
            "Metrics[0].Expression",
            "reads itself: e1 -> e2 -> e1",
        ),
        (
            metrics(
                json!([{"Id": "e1", "Expression": "2 * 3"}, {"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}]),
            ),
            "Metrics[0]",
            "must be a time series, not a constant",
        ),
        (
            metrics(
                json!([{"Id": "e1", "Expression": "m1 / m2"}, {"Id": "m1", "MetricStat": stat("a", 60), "ReturnData": false}, {"Id": "m2", "MetricStat": stat("b", 300), "ReturnData": false}]),
            ),
            "Metrics",
            "every MetricStat must have the same Period",
        ),
        (metrics(json!([{"Id": "m1", "MetricStat": stat("a", 45)}])), "Metrics[0].MetricStat.Period", "is 45"),
        (
            metrics(
                json!([{"Id": "m1", "MetricStat": {"Metric": {"Namespace": "n", "MetricName": "m"}, "Period": 60, "Stat": "IQM"}}]),
            ),
            "Metrics[0].MetricStat.Stat",
            "\"IQM\" is not a statistic chimewatch computes",
        ),
        (
            metrics(json!([{"Id": "m1", "MetricStat": {"Metric": {"MetricName": "m"}, "Period": 60, "Stat": "Sum"}}])),
            "Metrics[0].MetricStat.Metric.Namespace",
            "is required",
        ),
        (
            metrics(json!([{"Id": "m1", "MetricStat": stat("a", 60), "AccountId": "123456789012"}])),
            "Metrics[0].AccountId",
            "another account",
        ),
        (
            metrics(json!(
                (0..11)
                    .map(|i| json!({"Id": format!("m{i}"), "MetricStat": stat("a", 60), "ReturnData": i == 0}))
                    .collect::<Vec<_>>()
            )),
            "Metrics",
            "at most 10 queries with MetricStat, has 11",
        ),
        (
            metrics(json!(
                (0..21)
                    .map(|i| json!({"Id": format!("m{i}"), "MetricStat": stat("a", 60), "ReturnData": i == 0}))
                    .collect::<Vec<_>>()
            )),
            "Metrics",
            "must hold 1 to 20 queries, holds 21",
        ),
        (long_math, "EvaluationPeriods", "is 289 × 300 = 86700"),
    ];
    for (extra, field, rule) in cases {
        let e = refused(extra.clone());
        assert_eq!(e.field, field, "{extra}: {e}");
        assert!(e.rule.contains(rule), "{extra}: {e:?} does not say {rule:?}");
        assert_eq!(e.to_string(), format!("{field}: {}", e.rule));
    }
}

#[test]
fn anomaly_band_operators_are_refused_clearly() {
    for op in ["LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"] {
        let e = refused(json!({"ComparisonOperator": op}));
        assert_eq!(
            e.to_string(),
            format!(
                "ComparisonOperator: {op} compares against an anomaly detection band, which chimewatch does not evaluate"
            )
        );
    }
}

/// The state CloudWatch's rules give, written plainly: `window` is the N most recent periods, newest first.
fn reference(
    window: &[Option<f64>],
    m: usize,
    op: ComparisonOperator,
    threshold: f64,
    treat: TreatMissingData,
    current: AlarmState,
) -> AlarmState {
    let n = window.len();
    let breaches = |v: f64| match op {
        ComparisonOperator::GreaterThanOrEqualToThreshold => v >= threshold,
        ComparisonOperator::GreaterThanThreshold => v > threshold,
        ComparisonOperator::LessThanThreshold => v < threshold,
        ComparisonOperator::LessThanOrEqualToThreshold => v <= threshold,
    };
    let mut breaching = 0;
    let mut missing = 0;
    for v in window {
        match v {
            Some(v) if breaches(*v) => breaching += 1,
            Some(_) => {}
            None => missing += 1,
        }
    }
    if missing == n {
        return match treat {
            TreatMissingData::Missing => InsufficientData,
            TreatMissingData::Ignore => current,
            TreatMissingData::Breaching => Alarm,
            TreatMissingData::NotBreaching => Fine,
        };
    }
    let alarm = match treat {
        TreatMissingData::Breaching => breaching + missing >= m,
        TreatMissingData::NotBreaching => breaching >= m,
        TreatMissingData::Missing | TreatMissingData::Ignore => {
            if breaching >= m {
                true
            } else {
                // Walk from the oldest: the first breaching datapoint must be at least M periods old, and no later
                // datapoint may be within the threshold.
                let oldest_first: Vec<Option<f64>> = window.iter().rev().copied().collect();
                let mut early = false;
                for i in 0..n {
                    if let Some(v) = oldest_first[i]
                        && breaches(v)
                    {
                        let age = n - i;
                        let rest_fine = oldest_first[i + 1..].iter().all(|v| v.is_none() || breaches(v.unwrap()));
                        early = age >= m && rest_fine;
                        break;
                    }
                }
                early
            }
        }
    };
    if alarm { Alarm } else { Fine }
}

fn any_operator() -> impl Strategy<Value = ComparisonOperator> {
    prop::sample::select(ComparisonOperator::ALL.to_vec())
}

fn any_treatment() -> impl Strategy<Value = TreatMissingData> {
    prop::sample::select(TreatMissingData::ALL.to_vec())
}

fn any_state() -> impl Strategy<Value = AlarmState> {
    prop::sample::select(vec![Fine, Alarm, InsufficientData])
}

/// N, M, the values of N + 3 periods oldest first (two before the range, N in it, one under way), and where in
/// each period its datapoint is stamped.
fn any_series() -> impl Strategy<Value = (usize, usize, Vec<Option<i8>>, Vec<i64>)> {
    (1_usize..=6).prop_flat_map(|n| {
        (
            Just(n),
            1..=n,
            prop::collection::vec(prop::option::weighted(0.7, -4_i8..=4), n + 3),
            prop::collection::vec(0_i64..1_000, n + 3),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluate_agrees_with_a_plain_reference(
        (n, m, values, jitter) in any_series(),
        op in any_operator(),
        treat in any_treatment(),
        threshold in -2_i8..=2,
        current in any_state(),
        period in prop::sample::select(vec![10_i64, 60, 300]),
        into_period in 0.0_f64..1.0,
        sloppy in any::<bool>(),
    ) {
        let def = alarm(json!({
            "Period": period, "EvaluationPeriods": n, "DatapointsToAlarm": m, "Threshold": threshold,
            "ComparisonOperator": op.as_str(), "TreatMissingData": treat.as_str(),
        }));
        let p = period * 1000;
        let end = T0 + 7 * p;
        let now = end + (into_period * p as f64) as i64;
        // values[j] is the datapoint of the period starting at end - (n + 2 - j) periods, stamped inside it.
        let points: Vec<(i64, f64)> = values.iter().zip(&jitter).enumerate()
            .filter_map(|(j, (v, jit))| v.map(|v| (end - (n as i64 + 2 - j as i64) * p + jit * p / 1000, f64::from(v))))
            .collect();
        let store = Store { sloppy, ..Store::default() }.with("Latency", "Average", &points);
        let ev = evaluate_from(&def, &store, now, current);
        let window: Vec<Option<f64>> = (0..n).map(|k| values[n + 1 - k].map(f64::from)).collect();
        prop_assert_eq!(ev.state, reference(&window, m, op, f64::from(threshold), treat, current), "{}", ev.reason);
        prop_assert_eq!(ev.datapoints.iter().map(|d| d.value).collect::<Vec<_>>(), window);
        let starts: Vec<i64> = (1..=n as i64).map(|k| end - k * p).collect();
        prop_assert_eq!(ev.datapoints.iter().map(|d| d.timestamp_ms).collect::<Vec<_>>(), starts);
        prop_assert!(ev.failure.is_none());
    }

    #[test]
    fn low_sample_counts_hold_the_state_only_with_ignore(
        (n, m, values, _jitter) in any_series(),
        counts in prop::collection::vec(0_u16..2_500, 9),
        percentile in prop::sample::select(vec!["p10", "p50", "p90", "p99", "p99.9"]),
        current in any_state(),
    ) {
        let def = |setting: &str| alarm(json!({
            "Statistic": null, "ExtendedStatistic": percentile, "EvaluationPeriods": n, "DatapointsToAlarm": m,
            "Threshold": 0, "EvaluateLowSampleCountPercentile": setting,
        }));
        let window: Vec<Option<f64>> = values[2..n + 2].iter().map(|v| v.map(f64::from)).collect();
        let samples: Vec<Option<f64>> = counts[..n].iter().map(|c| Some(f64::from(*c))).collect();
        let store = Store::default().with("Latency", percentile, &minutes(&window)).with("Latency", "SampleCount", &minutes(&samples));
        let evaluated = evaluate_from(&def("evaluate"), &store, T0 + 10_000, current);
        let ignored = evaluate_from(&def("ignore"), &store, T0 + 10_000, current);
        let needed = Statistic::from_percentile(percentile).and_then(|s| s.min_significant_samples()).unwrap();
        let low = window.iter().zip(&samples).any(|(v, c)| v.is_some() && c.unwrap() < needed);
        prop_assert_eq!(ignored.state, if low { current } else { evaluated.state });
    }
}
