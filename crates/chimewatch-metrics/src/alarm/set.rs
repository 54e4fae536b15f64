//! The alarms of `up`: their definitions, current states and a bounded history of state changes, stepped once per
//! evaluation, with each change shaped as the JSON CloudWatch publishes to SNS.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use super::definition::{AlarmDefinition, AlarmMetric, MetricStat, QueryKind, Statistic};
use super::{AlarmState, DefinitionError, Evaluation, MetricSource, evaluate_from, format};

/// State changes kept per alarm unless told otherwise.
pub const DEFAULT_HISTORY: usize = 100;

/// One alarm's change of state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub alarm_name: String,
    pub old_state: AlarmState,
    pub new_state: AlarmState,
    pub reason: String,
    pub reason_data: Json,
    pub time_ms: i64,
    /// The definition the change was evaluated with.
    pub definition: Arc<AlarmDefinition>,
    /// When that definition was put.
    pub configured_ms: i64,
}

impl StateChange {
    /// The message CloudWatch publishes to an SNS topic on this change (the `Message` of the notification, as JSON),
    /// for an alarm in `region` (`us-east-1`) of `account`. Whether to send it is the definition's
    /// `ActionsEnabled` and the new state's actions.
    pub fn notification(&self, region: &str, account: &str) -> Json {
        let def = &self.definition;
        let mut m = Map::new();
        m.insert("AlarmName".into(), json!(self.alarm_name));
        m.insert("AlarmDescription".into(), json!(def.description()));
        m.insert("AWSAccountId".into(), json!(account));
        m.insert("AlarmConfigurationUpdatedTimestamp".into(), json!(format::iso8601(self.configured_ms)));
        m.insert("NewStateValue".into(), json!(self.new_state.as_str()));
        m.insert("NewStateReason".into(), json!(self.reason));
        m.insert("StateChangeTime".into(), json!(format::iso8601(self.time_ms)));
        m.insert("Region".into(), json!(region_name(region)));
        m.insert("AlarmArn".into(), json!(format!("arn:aws:cloudwatch:{region}:{account}:alarm:{}", self.alarm_name)));
        m.insert("OldStateValue".into(), json!(self.old_state.as_str()));
        m.insert("OKActions".into(), json!(def.ok_actions()));
        m.insert("AlarmActions".into(), json!(def.alarm_actions()));
        m.insert("InsufficientDataActions".into(), json!(def.insufficient_data_actions()));
        m.insert("Trigger".into(), trigger(def));
        Json::Object(m)
    }
}

/// Region names as CloudWatch writes them in notifications; other regions appear as their code.
fn region_name(code: &str) -> &str {
    match code {
        "us-east-1" => "US East (N. Virginia)",
        "us-east-2" => "US East (Ohio)",
        "us-west-1" => "US West (N. California)",
        "us-west-2" => "US West (Oregon)",
        "ca-central-1" => "Canada (Central)",
        "eu-west-1" => "EU (Ireland)",
        "eu-west-2" => "EU (London)",
        "eu-central-1" => "EU (Frankfurt)",
        "ap-northeast-1" => "Asia Pacific (Tokyo)",
        "ap-northeast-2" => "Asia Pacific (Seoul)",
        "ap-southeast-1" => "Asia Pacific (Singapore)",
        "ap-southeast-2" => "Asia Pacific (Sydney)",
        "ap-south-1" => "Asia Pacific (Mumbai)",
        "sa-east-1" => "South America (Sao Paulo)",
        other => other,
    }
}

fn dimensions(dims: &[(String, String)]) -> Json {
    dims.iter().map(|(name, value)| json!({"value": value, "name": name})).collect()
}

/// The notification's `Trigger`: the alarm's configuration, as CloudWatch echoes it.
fn trigger(def: &AlarmDefinition) -> Json {
    let mut t = Map::new();
    match def.metric() {
        AlarmMetric::Stat(MetricStat { metric, stat, unit, .. }) => {
            t.insert("MetricName".into(), json!(metric.metric_name));
            t.insert("Namespace".into(), json!(metric.namespace));
            match stat {
                Statistic::Percentile(_) => {
                    t.insert("StatisticType".into(), json!("ExtendedStatistic"));
                    t.insert("ExtendedStatistic".into(), json!(stat.name()));
                }
                _ => {
                    t.insert("StatisticType".into(), json!("Statistic"));
                    t.insert("Statistic".into(), json!(stat.name().to_uppercase()));
                }
            }
            t.insert("Unit".into(), json!(unit));
            t.insert("Dimensions".into(), dimensions(&metric.dimensions));
        }
        AlarmMetric::Math(_) => {}
    }
    t.insert("Period".into(), json!(def.period_s()));
    t.insert("EvaluationPeriods".into(), json!(def.evaluation_periods()));
    if let Some(m) = def.datapoints_to_alarm_given() {
        t.insert("DatapointsToAlarm".into(), json!(m));
    }
    t.insert("ComparisonOperator".into(), json!(def.comparison().as_str()));
    t.insert("Threshold".into(), json!(def.threshold()));
    t.insert("TreatMissingData".into(), json!(def.treat_missing_data().as_str()));
    t.insert(
        "EvaluateLowSampleCountPercentile".into(),
        json!(def.low_sample_count().map(|l| l.as_str()).unwrap_or_default()),
    );
    if let AlarmMetric::Math(queries) = def.metric() {
        let metrics = queries
            .iter()
            .map(|q| {
                let mut o = Map::new();
                match &q.kind {
                    QueryKind::Expression { text, .. } => {
                        o.insert("Expression".into(), json!(text));
                        o.insert("Id".into(), json!(q.id));
                    }
                    QueryKind::Stat(s) => {
                        o.insert("Id".into(), json!(q.id));
                        let mut stat = Map::new();
                        stat.insert(
                            "Metric".into(),
                            json!({
                                "Dimensions": dimensions(&s.metric.dimensions),
                                "MetricName": s.metric.metric_name,
                                "Namespace": s.metric.namespace,
                            }),
                        );
                        stat.insert("Period".into(), json!(s.period_s));
                        stat.insert("Stat".into(), json!(s.stat.name()));
                        if let Some(unit) = &s.unit {
                            stat.insert("Unit".into(), json!(unit));
                        }
                        o.insert("MetricStat".into(), Json::Object(stat));
                    }
                }
                if let Some(label) = &q.label {
                    o.insert("Label".into(), json!(label));
                }
                if let Some(p) = q.period_s {
                    o.insert("Period".into(), json!(p));
                }
                o.insert("ReturnData".into(), json!(q.return_data));
                Json::Object(o)
            })
            .collect();
        t.insert("Metrics".into(), metrics);
    }
    Json::Object(t)
}

/// One alarm of the set.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStatus {
    pub definition: Arc<AlarmDefinition>,
    pub configured_ms: i64,
    pub state: AlarmState,
    /// The reason of the latest change (CloudWatch's `StateReason`).
    pub reason: String,
    pub reason_data: Json,
    pub state_updated_ms: i64,
    /// The latest evaluation, failed or not.
    pub last_evaluation: Option<Evaluation>,
    history: VecDeque<StateChange>,
}

impl AlarmStatus {
    /// The latest state changes, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &StateChange> + ExactSizeIterator {
        self.history.iter()
    }
}

/// The alarms `up` evaluates, by name.
#[derive(Debug, Clone)]
pub struct AlarmSet {
    alarms: BTreeMap<String, AlarmStatus>,
    history_limit: usize,
}

impl Default for AlarmSet {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY)
    }
}

impl AlarmSet {
    /// An empty set that keeps the latest `history_limit` state changes of each alarm.
    pub fn new(history_limit: usize) -> Self {
        Self { alarms: BTreeMap::new(), history_limit }
    }

    /// A set of `definitions`, all new at `now_ms`; two definitions with one name are an error, as they would
    /// overwrite each other in CloudWatch.
    pub fn with_definitions(
        definitions: impl IntoIterator<Item = AlarmDefinition>,
        now_ms: i64,
    ) -> Result<Self, DefinitionError> {
        let mut set = Self::default();
        for def in definitions {
            if set.alarms.contains_key(def.name()) {
                return Err(DefinitionError {
                    field: "AlarmName".into(),
                    rule: format!("{:?} names two definitions", def.name()),
                });
            }
            set.put(def, now_ms);
        }
        Ok(set)
    }

    /// Creates or updates an alarm, as PutMetricAlarm does: a new alarm starts in INSUFFICIENT_DATA, an updated
    /// one keeps its state and history.
    pub fn put(&mut self, definition: AlarmDefinition, now_ms: i64) {
        let definition = Arc::new(definition);
        match self.alarms.get_mut(definition.name()) {
            Some(status) => {
                status.definition = definition;
                status.configured_ms = now_ms;
            }
            None => {
                let status = AlarmStatus {
                    definition: Arc::clone(&definition),
                    configured_ms: now_ms,
                    state: AlarmState::InsufficientData,
                    reason: "Unchecked: Initial alarm creation".into(),
                    reason_data: Json::Null,
                    state_updated_ms: now_ms,
                    last_evaluation: None,
                    history: VecDeque::new(),
                };
                self.alarms.insert(definition.name().to_owned(), status);
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<AlarmStatus> {
        self.alarms.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&AlarmStatus> {
        self.alarms.get(name)
    }

    /// The alarms, by name.
    pub fn iter(&self) -> impl Iterator<Item = &AlarmStatus> {
        self.alarms.values()
    }

    pub fn len(&self) -> usize {
        self.alarms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alarms.is_empty()
    }

    /// Evaluates every alarm at `now_ms` and returns the changes of state, by alarm name.
    pub fn step(&mut self, source: &dyn MetricSource, now_ms: i64) -> Vec<StateChange> {
        let mut changes = Vec::new();
        for status in self.alarms.values_mut() {
            let ev = evaluate_from(&status.definition, source, now_ms, status.state);
            if ev.state != status.state {
                let change = StateChange {
                    alarm_name: status.definition.name().to_owned(),
                    old_state: status.state,
                    new_state: ev.state,
                    reason: ev.reason.clone(),
                    reason_data: ev.reason_data.clone(),
                    time_ms: now_ms,
                    definition: Arc::clone(&status.definition),
                    configured_ms: status.configured_ms,
                };
                status.state = ev.state;
                status.reason.clone_from(&ev.reason);
                status.reason_data = ev.reason_data.clone();
                status.state_updated_ms = now_ms;
                status.history.push_back(change.clone());
                while status.history.len() > self.history_limit {
                    status.history.pop_front();
                }
                changes.push(change);
            }
            status.last_evaluation = Some(ev);
        }
        changes
    }
}
