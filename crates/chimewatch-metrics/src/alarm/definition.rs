//! Alarm definitions: CloudWatch's PutMetricAlarm request as the JSON `aws cloudwatch put-metric-alarm
//! --cli-input-json` takes, read strictly and checked with PutMetricAlarm's rules.
//!
//! The same files are deployed to AWS, so what CloudWatch would refuse is refused here, with the field and the rule
//! named (Amazon CloudWatch API Reference, `PutMetricAlarm` and `MetricDataQuery`):
//! - `AlarmName` 1 to 255 characters without control characters; `AlarmDescription` at most 1,024;
//! - exactly one of `Statistic`, `ExtendedStatistic` and `Metrics`; with `Metrics`, none of `MetricName`,
//!   `Namespace`, `Dimensions`, `Period`, `Unit`, `Statistic`, `ExtendedStatistic`;
//! - `Period` 10, 20, 30 or a multiple of 60; `EvaluationPeriods` × `Period` at most a day for periods under an
//!   hour, a week otherwise; `DatapointsToAlarm` from 1 to `EvaluationPeriods`;
//! - at most 30 dimensions, with unique names and the values CloudWatch takes;
//! - `Metrics`: at most 20 queries, 10 with `MetricStat` and 10 with `Expression`, each with exactly one of them;
//!   ids unique, starting with a lower case letter, then letters, digits and `_`; exactly one query with
//!   `ReturnData` true (omitted means true, as in the API);
//! - at most 5 actions per state, 50 tags.
//!
//! A key PutMetricAlarm does not have is an error that names it, so a typo in a definition file fails.
//! PutMetricAlarm parameters chimewatch does not evaluate (anomaly detection bands, `ThresholdMetricId`, PromQL
//! `EvaluationCriteria`, `EvaluationInterval`, `EvaluationWindow`, `WarmUpConfiguration`, `ActionConfiguration`,
//! cross-account `AccountId`, extended statistics other than percentiles) are refused with a rule that says so,
//! rather than evaluated differently than CloudWatch would. chimewatch also requires every `MetricStat` of one alarm
//! to share one period, because it evaluates an alarm over one series of periods.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use super::math::{self, Expr};
use crate::dimension;

/// Why a definition was refused: the field (`Metrics[1].Id`, empty for the JSON as a whole) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub field: String,
    pub rule: String,
}

impl DefinitionError {
    fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() { f.write_str(&self.rule) } else { write!(f, "{}: {}", self.field, self.rule) }
    }
}

impl std::error::Error for DefinitionError {}

/// A statistic of a period's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
    /// `p99` is `Percentile(99.0)`.
    Percentile(f64),
}

impl Statistic {
    /// A `Statistic` value of PutMetricAlarm (not a percentile).
    pub fn from_statistic(s: &str) -> Option<Self> {
        Some(match s {
            "SampleCount" => Self::SampleCount,
            "Average" => Self::Average,
            "Sum" => Self::Sum,
            "Minimum" => Self::Minimum,
            "Maximum" => Self::Maximum,
            _ => return None,
        })
    }

    /// A percentile as CloudWatch writes it: `p` and 0 to 100 with at most two decimals (`p99`, `p99.9`, `p100`).
    pub fn from_percentile(s: &str) -> Option<Self> {
        let n = s.strip_prefix('p')?;
        let (int, frac) = n.split_once('.').unwrap_or((n, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let ok = (n == "100") || ((1..=2).contains(&int.len()) && digits(int) && frac.len() <= 2 && digits(frac));
        if !ok {
            return None;
        }
        n.parse().ok().map(Self::Percentile)
    }

    /// Any statistic a `MetricStat`'s `Stat` may name that chimewatch computes.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_statistic(s).or_else(|| Self::from_percentile(s))
    }

    /// CloudWatch's name for it: `Average`, `p99.9`.
    pub fn name(&self) -> String {
        match self {
            Self::SampleCount => "SampleCount".into(),
            Self::Average => "Average".into(),
            Self::Sum => "Sum".into(),
            Self::Minimum => "Minimum".into(),
            Self::Maximum => "Maximum".into(),
            Self::Percentile(p) => format!("p{p}"),
        }
    }

    /// The fewest samples a period needs for this percentile to be significant, as CloudWatch counts them
    /// ("Percentile-based alarms and low data samples"): 10/(1-p) for p from 0.5 up to 1, 10/p below 0.5. `None`
    /// for the other statistics and for p0 and p100 (a minimum and a maximum, significant at any count).
    pub fn min_significant_samples(&self) -> Option<f64> {
        let Self::Percentile(p) = self else { return None };
        // In hundredths of a percent, so that p99 needs exactly 1,000 samples (10/(1-0.99) is 1000.0000000000009).
        let q = (p * 100.0).round();
        if q <= 0.0 || q >= 10_000.0 {
            return None;
        }
        Some(if q >= 5_000.0 { 100_000.0 / (10_000.0 - q) } else { 100_000.0 / q })
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The static-threshold operators; the anomaly band ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComparisonOperator {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl ComparisonOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GreaterThanOrEqualToThreshold => "GreaterThanOrEqualToThreshold",
            Self::GreaterThanThreshold => "GreaterThanThreshold",
            Self::LessThanThreshold => "LessThanThreshold",
            Self::LessThanOrEqualToThreshold => "LessThanOrEqualToThreshold",
        }
    }

    /// How a state reason says it: `greater than or equal to`.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Self::GreaterThanThreshold => "greater than",
            Self::LessThanThreshold => "less than",
            Self::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }

    /// Whether `value` breaches `threshold` (the value is the first operand).
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::GreaterThanOrEqualToThreshold => value >= threshold,
            Self::GreaterThanThreshold => value > threshold,
            Self::LessThanThreshold => value < threshold,
            Self::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    pub const ALL: [Self; 4] = [
        Self::GreaterThanOrEqualToThreshold,
        Self::GreaterThanThreshold,
        Self::LessThanThreshold,
        Self::LessThanOrEqualToThreshold,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TreatMissingData {
    #[default]
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissingData {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Ignore => "ignore",
            Self::Breaching => "breaching",
            Self::NotBreaching => "notBreaching",
        }
    }

    pub const ALL: [Self; 4] = [Self::Missing, Self::Ignore, Self::Breaching, Self::NotBreaching];
}

/// `EvaluateLowSampleCountPercentile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowSampleCount {
    Evaluate,
    Ignore,
}

impl LowSampleCount {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evaluate => "evaluate",
            Self::Ignore => "ignore",
        }
    }
}

/// One metric: namespace, name and its exact dimension set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
}

/// A statistic of a metric over periods of `period_s` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStat {
    pub metric: Metric,
    pub period_s: u32,
    pub stat: Statistic,
    /// `None` takes data of every unit, as CloudWatch does.
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryKind {
    Stat(MetricStat),
    Expression { text: String, expr: Expr },
}

/// One `MetricDataQuery` of a metric math alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub id: String,
    pub label: Option<String>,
    pub return_data: bool,
    pub kind: QueryKind,
    /// The query's own `Period`, as given (kept for the notification; a `MetricStat`'s period is what counts).
    pub period_s: Option<u32>,
}

/// What an alarm watches.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmMetric {
    /// `MetricName` with `Statistic` or `ExtendedStatistic` (a percentile).
    Stat(MetricStat),
    /// `Metrics`: the query with `ReturnData` true is the one watched.
    Math(Vec<MetricQuery>),
}

/// A validated alarm definition. Build it with [`AlarmDefinition::from_json`] or serde (`Deserialize` validates).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDefinition {
    name: String,
    description: Option<String>,
    actions_enabled: bool,
    ok_actions: Vec<String>,
    alarm_actions: Vec<String>,
    insufficient_data_actions: Vec<String>,
    metric: AlarmMetric,
    period_s: u32,
    evaluation_periods: u32,
    datapoints_to_alarm: Option<u32>,
    threshold: f64,
    comparison: ComparisonOperator,
    treat_missing_data: Option<TreatMissingData>,
    low_sample_count: Option<LowSampleCount>,
    tags: Vec<(String, String)>,
}

impl AlarmDefinition {
    /// Reads and validates one PutMetricAlarm request in JSON.
    pub fn from_json(text: &str) -> Result<Self, DefinitionError> {
        let raw: RawAlarm = serde_json::from_str(text).map_err(|e| DefinitionError::new("", e.to_string()))?;
        validate(raw)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Whether the state's actions run on a change (the notification is built either way).
    pub fn actions_enabled(&self) -> bool {
        self.actions_enabled
    }
    pub fn ok_actions(&self) -> &[String] {
        &self.ok_actions
    }
    pub fn alarm_actions(&self) -> &[String] {
        &self.alarm_actions
    }
    pub fn insufficient_data_actions(&self) -> &[String] {
        &self.insufficient_data_actions
    }
    pub fn metric(&self) -> &AlarmMetric {
        &self.metric
    }
    /// The alarm's period: `Period`, or the period of its `MetricStat`s.
    pub fn period_s(&self) -> u32 {
        self.period_s
    }
    pub fn period_ms(&self) -> i64 {
        i64::from(self.period_s) * 1000
    }
    /// N.
    pub fn evaluation_periods(&self) -> u32 {
        self.evaluation_periods
    }
    /// M: `DatapointsToAlarm`, or N when omitted.
    pub fn datapoints_to_alarm(&self) -> u32 {
        self.datapoints_to_alarm.unwrap_or(self.evaluation_periods)
    }
    /// `DatapointsToAlarm` as given.
    pub fn datapoints_to_alarm_given(&self) -> Option<u32> {
        self.datapoints_to_alarm
    }
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
    pub fn comparison(&self) -> ComparisonOperator {
        self.comparison
    }
    pub fn treat_missing_data(&self) -> TreatMissingData {
        self.treat_missing_data.unwrap_or_default()
    }
    pub fn low_sample_count(&self) -> Option<LowSampleCount> {
        self.low_sample_count
    }
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// The percentile of a single-metric percentile alarm, whose low sample counts
    /// `EvaluateLowSampleCountPercentile` governs.
    pub fn percentile_stat(&self) -> Option<Statistic> {
        match &self.metric {
            AlarmMetric::Stat(s @ MetricStat { stat: Statistic::Percentile(_), .. }) => Some(s.stat),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for AlarmDefinition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        validate(RawAlarm::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

// The request as JSON. Every key of PutMetricAlarm is known, so that an unknown one is a typo; the ones chimewatch
// does not evaluate are read only to be refused by name.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawAlarm {
    alarm_name: Option<String>,
    alarm_description: Option<String>,
    actions_enabled: Option<bool>,
    #[serde(rename = "OKActions")]
    ok_actions: Option<Vec<String>>,
    alarm_actions: Option<Vec<String>>,
    insufficient_data_actions: Option<Vec<String>>,
    metric_name: Option<String>,
    namespace: Option<String>,
    statistic: Option<String>,
    extended_statistic: Option<String>,
    dimensions: Option<Vec<RawDimension>>,
    period: Option<i64>,
    unit: Option<String>,
    evaluation_periods: Option<i64>,
    datapoints_to_alarm: Option<i64>,
    threshold: Option<f64>,
    comparison_operator: Option<String>,
    treat_missing_data: Option<String>,
    evaluate_low_sample_count_percentile: Option<String>,
    metrics: Option<Vec<RawQuery>>,
    tags: Option<Vec<RawTag>>,
    threshold_metric_id: Option<serde_json::Value>,
    evaluation_criteria: Option<serde_json::Value>,
    evaluation_interval: Option<serde_json::Value>,
    evaluation_window: Option<serde_json::Value>,
    warm_up_configuration: Option<serde_json::Value>,
    action_configuration: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawDimension {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawTag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawQuery {
    id: Option<String>,
    metric_stat: Option<RawMetricStat>,
    expression: Option<String>,
    label: Option<String>,
    return_data: Option<bool>,
    period: Option<i64>,
    account_id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMetricStat {
    metric: Option<RawMetric>,
    period: Option<i64>,
    stat: Option<String>,
    unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RawMetric {
    namespace: Option<String>,
    metric_name: Option<String>,
    dimensions: Option<Vec<RawDimension>>,
}

/// CloudWatch's `StandardUnit` values.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

const MAX_ACTIONS: usize = 5;
const MAX_TAGS: usize = 50;
const MAX_QUERIES: usize = 20;
const MAX_STAT_QUERIES: usize = 10;
const MAX_EXPRESSIONS: usize = 10;

type Check<T> = Result<T, DefinitionError>;

fn required<T>(field: &str, v: Option<T>) -> Check<T> {
    v.ok_or_else(|| DefinitionError::new(field, "is required"))
}

fn check_length(field: &str, s: &str, min: usize, max: usize) -> Check<()> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(DefinitionError::new(field, format!("must be {min} to {max} characters, has {n}")));
    }
    Ok(())
}

fn check_no_controls(field: &str, s: &str) -> Check<()> {
    match s.chars().find(char::is_ascii_control) {
        Some(c) => Err(DefinitionError::new(field, format!("must not contain control characters, has {c:?}"))),
        None => Ok(()),
    }
}

/// 10, 20, 30 or a multiple of 60 seconds.
fn check_period(field: &str, p: i64) -> Check<u32> {
    let ok = matches!(p, 10 | 20 | 30) || (p > 0 && p % 60 == 0);
    match u32::try_from(p) {
        Ok(p) if ok => Ok(p),
        _ => Err(DefinitionError::new(field, format!("must be 10, 20, 30 or a multiple of 60 seconds, is {p}"))),
    }
}

fn check_unit(field: &str, unit: Option<String>) -> Check<Option<String>> {
    match unit {
        Some(u) if !UNITS.contains(&u.as_str()) => {
            Err(DefinitionError::new(field, format!("{u:?} is not a CloudWatch unit (one of {})", UNITS.join(", "))))
        }
        u => Ok(u),
    }
}

fn check_namespace(field: &str, ns: &str) -> Check<()> {
    check_length(field, ns, 1, 255)?;
    if ns.starts_with(':') {
        return Err(DefinitionError::new(field, "must not start with ':'"));
    }
    if let Some(c) = ns.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(DefinitionError::new(field, format!("must be ASCII without control characters, has {c:?}")));
    }
    Ok(())
}

fn check_metric_name(field: &str, name: &str) -> Check<()> {
    dimension::check_name(name).map_err(|rule| DefinitionError::new(field, rule))
}

fn check_dimensions(field: &str, dims: Option<Vec<RawDimension>>) -> Check<Vec<(String, String)>> {
    let dims = dims.unwrap_or_default();
    if dims.len() > dimension::MAX_DIMENSIONS {
        return Err(DefinitionError::new(
            field,
            format!("at most {} dimensions, has {}", dimension::MAX_DIMENSIONS, dims.len()),
        ));
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(dims.len());
    for (i, d) in dims.into_iter().enumerate() {
        dimension::check_name(&d.name).map_err(|rule| DefinitionError::new(format!("{field}[{i}].Name"), rule))?;
        dimension::check_value(&d.value).map_err(|rule| DefinitionError::new(format!("{field}[{i}].Value"), rule))?;
        if !names.insert(d.name.clone()) {
            return Err(DefinitionError::new(format!("{field}[{i}].Name"), format!("{:?} appears twice", d.name)));
        }
        out.push((d.name, d.value));
    }
    Ok(out)
}

fn check_actions(field: &str, actions: Option<Vec<String>>) -> Check<Vec<String>> {
    let actions = actions.unwrap_or_default();
    if actions.len() > MAX_ACTIONS {
        return Err(DefinitionError::new(field, format!("at most {MAX_ACTIONS} actions, has {}", actions.len())));
    }
    for (i, a) in actions.iter().enumerate() {
        check_length(&format!("{field}[{i}]"), a, 1, 1024)?;
    }
    Ok(actions)
}

fn check_tags(tags: Option<Vec<RawTag>>) -> Check<Vec<(String, String)>> {
    let tags = tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(DefinitionError::new("Tags", format!("at most {MAX_TAGS} tags, has {}", tags.len())));
    }
    let mut out = Vec::with_capacity(tags.len());
    for (i, t) in tags.into_iter().enumerate() {
        check_length(&format!("Tags[{i}].Key"), &t.key, 1, 128)?;
        check_length(&format!("Tags[{i}].Value"), &t.value, 0, 256)?;
        out.push((t.key, t.value));
    }
    Ok(out)
}

fn check_comparison(op: Option<String>) -> Check<ComparisonOperator> {
    let op = required("ComparisonOperator", op)?;
    if let Some(found) = ComparisonOperator::ALL.iter().find(|o| o.as_str() == op) {
        return Ok(*found);
    }
    let rule = match op.as_str() {
        "LessThanLowerOrGreaterThanUpperThreshold" | "LessThanLowerThreshold" | "GreaterThanUpperThreshold" => {
            format!("{op} compares against an anomaly detection band, which chimewatch does not evaluate")
        }
        _ => format!(
            "{op:?} is not one of {}",
            ComparisonOperator::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    Err(DefinitionError::new("ComparisonOperator", rule))
}

fn check_id(field: &str, id: &str) -> Check<()> {
    check_length(field, id, 1, 255)?;
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(DefinitionError::new(field, format!("{id:?} must start with a lower case letter")));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '_') {
        return Err(DefinitionError::new(field, format!("{id:?} may hold only letters, digits and '_', has {c:?}")));
    }
    Ok(())
}

fn check_metric_stat(field: &str, raw: RawMetricStat) -> Check<MetricStat> {
    let metric = required(&format!("{field}.Metric"), raw.metric)?;
    let namespace = required(&format!("{field}.Metric.Namespace"), metric.namespace)?;
    check_namespace(&format!("{field}.Metric.Namespace"), &namespace)?;
    let metric_name = required(&format!("{field}.Metric.MetricName"), metric.metric_name)?;
    check_metric_name(&format!("{field}.Metric.MetricName"), &metric_name)?;
    let dimensions = check_dimensions(&format!("{field}.Metric.Dimensions"), metric.dimensions)?;
    let period_s = check_period(&format!("{field}.Period"), required(&format!("{field}.Period"), raw.period)?)?;
    let stat_text = required(&format!("{field}.Stat"), raw.stat)?;
    let stat = Statistic::parse(&stat_text).ok_or_else(|| {
        DefinitionError::new(
            format!("{field}.Stat"),
            format!(
                "{stat_text:?} is not a statistic chimewatch computes (SampleCount, Average, Sum, Minimum, Maximum \
                 or a percentile such as p99)"
            ),
        )
    })?;
    let unit = check_unit(&format!("{field}.Unit"), raw.unit)?;
    Ok(MetricStat { metric: Metric { namespace, metric_name, dimensions }, period_s, stat, unit })
}

/// Checks the `Metrics` array and returns its queries and their common period.
fn check_queries(raw: Vec<RawQuery>) -> Check<(Vec<MetricQuery>, u32)> {
    if raw.is_empty() || raw.len() > MAX_QUERIES {
        return Err(DefinitionError::new(
            "Metrics",
            format!("must hold 1 to {MAX_QUERIES} queries, holds {}", raw.len()),
        ));
    }
    let mut queries = Vec::with_capacity(raw.len());
    let mut seen = BTreeSet::new();
    for (i, q) in raw.into_iter().enumerate() {
        let field = format!("Metrics[{i}]");
        let id = required(&format!("{field}.Id"), q.id)?;
        check_id(&format!("{field}.Id"), &id)?;
        if !seen.insert(id.clone()) {
            return Err(DefinitionError::new(format!("{field}.Id"), format!("{id:?} is the id of an earlier query")));
        }
        if q.account_id.is_some() {
            return Err(DefinitionError::new(
                format!("{field}.AccountId"),
                "watches another account's metric, which chimewatch's store does not hold",
            ));
        }
        let period_s = q.period.map(|p| check_period(&format!("{field}.Period"), p)).transpose()?;
        let kind = match (q.metric_stat, q.expression) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(DefinitionError::new(field, "must have exactly one of MetricStat and Expression"));
            }
            (Some(stat), None) => QueryKind::Stat(check_metric_stat(&format!("{field}.MetricStat"), stat)?),
            (None, Some(text)) => {
                check_length(&format!("{field}.Expression"), &text, 1, 2048)?;
                let expr = math::parse(&text)
                    .map_err(|e| DefinitionError::new(format!("{field}.Expression"), e.to_string()))?;
                QueryKind::Expression { text, expr }
            }
        };
        queries.push(MetricQuery { id, label: q.label, return_data: q.return_data.unwrap_or(true), kind, period_s });
    }
    let stats = queries.iter().filter(|q| matches!(q.kind, QueryKind::Stat(_))).count();
    if stats > MAX_STAT_QUERIES {
        return Err(DefinitionError::new(
            "Metrics",
            format!("at most {MAX_STAT_QUERIES} queries with MetricStat, has {stats}"),
        ));
    }
    if queries.len() - stats > MAX_EXPRESSIONS {
        return Err(DefinitionError::new(
            "Metrics",
            format!("at most {MAX_EXPRESSIONS} queries with Expression, has {}", queries.len() - stats),
        ));
    }
    let returned: Vec<usize> = (0..queries.len()).filter(|i| queries[*i].return_data).collect();
    if returned.len() != 1 {
        return Err(DefinitionError::new(
            "Metrics",
            format!(
                "exactly one query must have ReturnData true (an omitted ReturnData is true), {} have: {}",
                returned.len(),
                returned.iter().map(|i| queries[*i].id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Every id an expression reads exists, and no expression reads itself through others.
    let index: BTreeMap<&str, usize> = queries.iter().enumerate().map(|(i, q)| (q.id.as_str(), i)).collect();
    for (i, q) in queries.iter().enumerate() {
        if let QueryKind::Expression { expr, .. } = &q.kind
            && let Some(unknown) = expr.ids().into_iter().find(|id| !index.contains_key(id))
        {
            return Err(DefinitionError::new(
                format!("Metrics[{i}].Expression"),
                format!("{unknown:?} is not the id of a query in Metrics"),
            ));
        }
    }
    if let Some((i, cycle)) = find_cycle(&queries, &index) {
        return Err(DefinitionError::new(format!("Metrics[{i}].Expression"), format!("reads itself: {cycle}")));
    }
    let returned = returned[0];
    if !series_queries(&queries, &index)[returned] {
        return Err(DefinitionError::new(
            format!("Metrics[{returned}]"),
            "the query with ReturnData true must be a time series, not a constant",
        ));
    }
    let periods: BTreeSet<u32> = queries
        .iter()
        .filter_map(|q| match &q.kind {
            QueryKind::Stat(s) => Some(s.period_s),
            QueryKind::Expression { .. } => None,
        })
        .collect();
    let period = match periods.len() {
        1 => periods.into_iter().next().unwrap_or_default(),
        0 => return Err(DefinitionError::new("Metrics", "must hold at least one query with MetricStat")),
        _ => {
            return Err(DefinitionError::new(
                "Metrics",
                format!(
                    "every MetricStat must have the same Period (chimewatch evaluates one series of periods), has {}",
                    periods.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    };
    Ok((queries, period))
}

/// A cycle of expressions reading each other, as the index of a query on it and the ids around it.
fn find_cycle(queries: &[MetricQuery], index: &BTreeMap<&str, usize>) -> Option<(usize, String)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        i: usize,
        queries: &[MetricQuery],
        index: &BTreeMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<(usize, String)> {
        marks[i] = Mark::OnPath;
        path.push(i);
        if let QueryKind::Expression { expr, .. } = &queries[i].kind {
            // Each id once: an expression may name one id hundreds of times.
            let ids: BTreeSet<&str> = expr.ids().into_iter().collect();
            for j in ids.into_iter().filter_map(|id| index.get(id).copied()) {
                match marks[j] {
                    Mark::OnPath => {
                        let from = path.iter().position(|k| *k == j).unwrap_or(0);
                        let mut names: Vec<&str> = path[from..].iter().map(|k| queries[*k].id.as_str()).collect();
                        names.push(&queries[j].id);
                        return Some((j, names.join(" -> ")));
                    }
                    Mark::New => {
                        if let Some(found) = visit(j, queries, index, marks, path) {
                            return Some(found);
                        }
                    }
                    Mark::Done => {}
                }
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; queries.len()];
    for i in 0..queries.len() {
        if marks[i] == Mark::New
            && let Some(found) = visit(i, queries, index, &mut marks, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

/// Which queries yield a series: a `MetricStat`, or an expression reading one. A fixed point over the array, so
/// shared sub-expressions cost nothing extra.
fn series_queries(queries: &[MetricQuery], index: &BTreeMap<&str, usize>) -> Vec<bool> {
    let mut series: Vec<bool> = queries.iter().map(|q| matches!(q.kind, QueryKind::Stat(_))).collect();
    for _ in 0..queries.len() {
        for (i, q) in queries.iter().enumerate() {
            if let QueryKind::Expression { expr, .. } = &q.kind
                && !series[i]
            {
                series[i] = expr.ids().into_iter().any(|id| index.get(id).is_some_and(|j| series[*j]));
            }
        }
    }
    series
}

fn validate(raw: RawAlarm) -> Check<AlarmDefinition> {
    for (field, present) in [
        ("ThresholdMetricId", raw.threshold_metric_id.is_some()),
        ("EvaluationCriteria", raw.evaluation_criteria.is_some()),
        ("EvaluationInterval", raw.evaluation_interval.is_some()),
        ("EvaluationWindow", raw.evaluation_window.is_some()),
        ("WarmUpConfiguration", raw.warm_up_configuration.is_some()),
        ("ActionConfiguration", raw.action_configuration.is_some()),
    ] {
        if present {
            return Err(DefinitionError::new(
                field,
                "is a PutMetricAlarm parameter chimewatch does not evaluate; leave it out of alarms chimewatch runs",
            ));
        }
    }
    let name = required("AlarmName", raw.alarm_name)?;
    check_length("AlarmName", &name, 1, 255)?;
    check_no_controls("AlarmName", &name)?;
    if let Some(d) = &raw.alarm_description {
        check_length("AlarmDescription", d, 0, 1024)?;
    }
    let ok_actions = check_actions("OKActions", raw.ok_actions)?;
    let alarm_actions = check_actions("AlarmActions", raw.alarm_actions)?;
    let insufficient_data_actions = check_actions("InsufficientDataActions", raw.insufficient_data_actions)?;
    let tags = check_tags(raw.tags)?;

    let (metric, period_s) = if let Some(metrics) = raw.metrics {
        for (field, present) in [
            ("MetricName", raw.metric_name.is_some()),
            ("Namespace", raw.namespace.is_some()),
            ("Dimensions", raw.dimensions.is_some()),
            ("Period", raw.period.is_some()),
            ("Unit", raw.unit.is_some()),
            ("Statistic", raw.statistic.is_some()),
            ("ExtendedStatistic", raw.extended_statistic.is_some()),
        ] {
            if present {
                return Err(DefinitionError::new(
                    field,
                    "must be left out with Metrics (the metrics are described in the Metrics array)",
                ));
            }
        }
        let (queries, period) = check_queries(metrics)?;
        (AlarmMetric::Math(queries), period)
    } else {
        let stat = match (raw.statistic, raw.extended_statistic) {
            (Some(_), Some(_)) => {
                return Err(DefinitionError::new(
                    "ExtendedStatistic",
                    "must not be given with Statistic (give one of them)",
                ));
            }
            (None, None) => {
                return Err(DefinitionError::new(
                    "Statistic",
                    "one of Statistic, ExtendedStatistic and Metrics is required",
                ));
            }
            (Some(s), None) => Statistic::from_statistic(&s).ok_or_else(|| {
                DefinitionError::new(
                    "Statistic",
                    format!("{s:?} is not one of SampleCount, Average, Sum, Minimum, Maximum"),
                )
            })?,
            (None, Some(e)) => Statistic::from_percentile(&e).ok_or_else(|| {
                DefinitionError::new(
                    "ExtendedStatistic",
                    format!(
                        "{e:?} is not a percentile (p0 to p100, at most two decimals); CloudWatch's other extended \
                         statistics (tm, wm, tc, ts, IQM, PR) are not computed by chimewatch"
                    ),
                )
            })?,
        };
        let namespace = required("Namespace", raw.namespace)?;
        check_namespace("Namespace", &namespace)?;
        let metric_name = required("MetricName", raw.metric_name)?;
        check_metric_name("MetricName", &metric_name)?;
        let dimensions = check_dimensions("Dimensions", raw.dimensions)?;
        let period_s = check_period("Period", required("Period", raw.period)?)?;
        let unit = check_unit("Unit", raw.unit)?;
        let metric = Metric { namespace, metric_name, dimensions };
        (AlarmMetric::Stat(MetricStat { metric, period_s, stat, unit }), period_s)
    };

    let n = required("EvaluationPeriods", raw.evaluation_periods)?;
    if n < 1 {
        return Err(DefinitionError::new("EvaluationPeriods", format!("must be at least 1, is {n}")));
    }
    let limit = if period_s < 3600 { 86_400 } else { 604_800 };
    let total = n.saturating_mul(i64::from(period_s));
    if total > limit {
        return Err(DefinitionError::new(
            "EvaluationPeriods",
            format!(
                "EvaluationPeriods × Period must be at most {limit} seconds ({}), is {n} × {period_s} = {total}",
                if limit == 86_400 { "one day, for periods under an hour" } else { "seven days" }
            ),
        ));
    }
    // The limit above keeps N far below u32::MAX.
    let evaluation_periods = u32::try_from(n).unwrap_or(u32::MAX);
    let datapoints_to_alarm = match raw.datapoints_to_alarm {
        None => None,
        Some(m) if m < 1 => {
            return Err(DefinitionError::new("DatapointsToAlarm", format!("must be at least 1, is {m}")));
        }
        Some(m) if m > n => {
            return Err(DefinitionError::new(
                "DatapointsToAlarm",
                format!("must be at most EvaluationPeriods ({n}), is {m}"),
            ));
        }
        Some(m) => Some(u32::try_from(m).unwrap_or(evaluation_periods)),
    };
    let threshold = required("Threshold", raw.threshold)?;
    let comparison = check_comparison(raw.comparison_operator)?;
    let treat_missing_data = match raw.treat_missing_data {
        None => None,
        Some(t) => Some(*TreatMissingData::ALL.iter().find(|v| v.as_str() == t).ok_or_else(|| {
            DefinitionError::new(
                "TreatMissingData",
                format!("{t:?} is not one of missing, ignore, breaching, notBreaching"),
            )
        })?),
    };
    let low_sample_count = match raw.evaluate_low_sample_count_percentile.as_deref() {
        None => None,
        Some("evaluate") => Some(LowSampleCount::Evaluate),
        Some("ignore") => Some(LowSampleCount::Ignore),
        Some(other) => {
            return Err(DefinitionError::new(
                "EvaluateLowSampleCountPercentile",
                format!("{other:?} is not one of evaluate, ignore"),
            ));
        }
    };
    Ok(AlarmDefinition {
        name,
        description: raw.alarm_description,
        actions_enabled: raw.actions_enabled.unwrap_or(true),
        ok_actions,
        alarm_actions,
        insufficient_data_actions,
        metric,
        period_s,
        evaluation_periods,
        datapoints_to_alarm,
        threshold,
        comparison,
        treat_missing_data,
        low_sample_count,
        tags,
    })
}
