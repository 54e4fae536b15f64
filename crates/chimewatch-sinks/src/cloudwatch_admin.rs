//! Dashboards and alarms in CloudWatch: PutDashboard/GetDashboard and PutMetricAlarm/DescribeAlarms, for
//! `chimewatch dashboards put` and `chimewatch alarms put`.
//!
//! An alarm goes out from its validated [`AlarmDefinition`] (so nothing PutMetricAlarm refuses is sent) and comes
//! back from DescribeAlarms as a definition too, read by the same strict rules: what CloudWatch holds can be compared
//! with what was put, field by field.

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, SdkError};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator as CwComparison, Dimension, Metric as CwMetric, MetricAlarm, MetricDataQuery,
    MetricStat as CwMetricStat, StandardUnit, Statistic as CwStatistic, Tag,
};
use chimewatch_metrics::alarm::{AlarmDefinition, AlarmMetric, Metric, MetricStat, QueryKind, Statistic};
use serde_json::{Value, json};

/// A CloudWatch call that failed: which one, on what, and CloudWatch's own words.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {name}: {message}")]
pub struct AdminError {
    pub operation: &'static str,
    pub name: String,
    pub message: String,
}

fn failed<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    name: &str,
) -> impl FnOnce(SdkError<E, R>) -> AdminError {
    move |e| AdminError { operation, name: name.to_owned(), message: DisplayErrorContext(&e).to_string() }
}

/// Puts one dashboard; returns CloudWatch's validation messages (a body with errors is refused with them).
pub async fn put_dashboard(client: &Client, name: &str, body: &str) -> Result<Vec<String>, AdminError> {
    let out = client
        .put_dashboard()
        .dashboard_name(name)
        .dashboard_body(body)
        .send()
        .await
        .map_err(failed("PutDashboard", name))?;
    Ok(out
        .dashboard_validation_messages()
        .iter()
        .map(|m| format!("{}: {}", m.data_path().unwrap_or("body"), m.message().unwrap_or("")))
        .collect())
}

/// The body CloudWatch holds for a dashboard.
pub async fn get_dashboard(client: &Client, name: &str) -> Result<String, AdminError> {
    let out = client.get_dashboard().dashboard_name(name).send().await.map_err(failed("GetDashboard", name))?;
    out.dashboard_body().map(str::to_owned).ok_or_else(|| AdminError {
        operation: "GetDashboard",
        name: name.to_owned(),
        message: "the answer has no DashboardBody".into(),
    })
}

/// Puts one alarm (creating it, or replacing the alarm of that name).
pub async fn put_metric_alarm(client: &Client, alarm: &AlarmDefinition) -> Result<(), AdminError> {
    let mut request = client
        .put_metric_alarm()
        .alarm_name(alarm.name())
        .set_alarm_description(alarm.description().map(str::to_owned))
        .actions_enabled(alarm.actions_enabled())
        .set_ok_actions(Some(alarm.ok_actions().to_vec()))
        .set_alarm_actions(Some(alarm.alarm_actions().to_vec()))
        .set_insufficient_data_actions(Some(alarm.insufficient_data_actions().to_vec()))
        .evaluation_periods(alarm.evaluation_periods() as i32)
        .set_datapoints_to_alarm(alarm.datapoints_to_alarm_given().map(|m| m as i32))
        .threshold(alarm.threshold())
        .comparison_operator(CwComparison::from(alarm.comparison().as_str()))
        .treat_missing_data(alarm.treat_missing_data().as_str())
        .set_evaluate_low_sample_count_percentile(alarm.low_sample_count().map(|l| l.as_str().to_owned()));
    if !alarm.tags().is_empty() {
        request =
            request.set_tags(Some(alarm.tags().iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()));
    }
    request = match alarm.metric() {
        AlarmMetric::Stat(stat) => {
            let request = request
                .namespace(&stat.metric.namespace)
                .metric_name(&stat.metric.metric_name)
                .set_dimensions(Some(dimensions(&stat.metric)))
                .period(stat.period_s as i32)
                .set_unit(stat.unit.as_deref().map(StandardUnit::from));
            match stat.stat {
                Statistic::Percentile(_) => request.extended_statistic(stat.stat.name()),
                _ => request.statistic(CwStatistic::from(stat.stat.name().as_str())),
            }
        }
        AlarmMetric::Math(queries) => request.set_metrics(Some(
            queries
                .iter()
                .map(|q| {
                    let query = MetricDataQuery::builder()
                        .id(&q.id)
                        .set_label(q.label.clone())
                        .return_data(q.return_data)
                        .set_period(q.period_s.map(|p| p as i32));
                    match &q.kind {
                        QueryKind::Stat(stat) => query.metric_stat(metric_stat(stat)),
                        QueryKind::Expression { text, .. } => query.expression(text),
                    }
                    .build()
                })
                .collect(),
        )),
    };
    request.send().await.map_err(failed("PutMetricAlarm", alarm.name()))?;
    Ok(())
}

fn dimensions(metric: &Metric) -> Vec<Dimension> {
    metric.dimensions.iter().map(|(name, value)| Dimension::builder().name(name).value(value).build()).collect()
}

fn metric_stat(stat: &MetricStat) -> CwMetricStat {
    CwMetricStat::builder()
        .metric(
            CwMetric::builder()
                .namespace(&stat.metric.namespace)
                .metric_name(&stat.metric.metric_name)
                .set_dimensions(Some(dimensions(&stat.metric)))
                .build(),
        )
        .period(stat.period_s as i32)
        .stat(stat.stat.name())
        .set_unit(stat.unit.as_deref().map(StandardUnit::from))
        .build()
}

/// The alarms of these names that CloudWatch holds, each read back as a definition (the PutMetricAlarm request that
/// would make it), in the order CloudWatch lists them. Names CloudWatch does not know are missing from the answer.
pub async fn describe_alarms(client: &Client, names: &[String]) -> Result<Vec<AlarmDefinition>, AdminError> {
    let mut out = Vec::new();
    // DescribeAlarms takes at most 100 names per call.
    for chunk in names.chunks(100) {
        let mut pages = client.describe_alarms().set_alarm_names(Some(chunk.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(failed("DescribeAlarms", &chunk.join(", ")))?;
            for alarm in page.metric_alarms() {
                let name = alarm.alarm_name().unwrap_or_default().to_owned();
                let request = as_request(alarm);
                let definition = AlarmDefinition::from_json(&request.to_string()).map_err(|e| AdminError {
                    operation: "DescribeAlarms",
                    name,
                    message: format!("the alarm CloudWatch holds is not one chimewatch reads: {e}"),
                })?;
                out.push(definition);
            }
        }
    }
    Ok(out)
}

/// A described alarm as the PutMetricAlarm request JSON that would make it (state and timestamps left out).
fn as_request(a: &MetricAlarm) -> Value {
    let mut request = json!({
        "AlarmName": a.alarm_name(),
        "ActionsEnabled": a.actions_enabled(),
        "OKActions": a.ok_actions(),
        "AlarmActions": a.alarm_actions(),
        "InsufficientDataActions": a.insufficient_data_actions(),
        "EvaluationPeriods": a.evaluation_periods(),
        "Threshold": a.threshold(),
        "ComparisonOperator": a.comparison_operator().map(CwComparison::as_str),
    });
    let fields = [
        ("AlarmDescription", a.alarm_description().map(|d| json!(d))),
        ("DatapointsToAlarm", a.datapoints_to_alarm().map(|m| json!(m))),
        ("TreatMissingData", a.treat_missing_data().map(|t| json!(t))),
        ("EvaluateLowSampleCountPercentile", a.evaluate_low_sample_count_percentile().map(|e| json!(e))),
        ("Namespace", a.namespace().map(|n| json!(n))),
        ("MetricName", a.metric_name().map(|n| json!(n))),
        ("Statistic", a.statistic().map(|s| json!(s.as_str()))),
        ("ExtendedStatistic", a.extended_statistic().map(|s| json!(s))),
        ("Period", a.period().filter(|_| a.metrics().is_empty()).map(|p| json!(p))),
        ("Unit", a.unit().map(|u| json!(u.as_str()))),
        ("Dimensions", (!a.dimensions().is_empty()).then(|| dimensions_json(a.dimensions()))),
        ("Metrics", (!a.metrics().is_empty()).then(|| Value::Array(a.metrics().iter().map(query_json).collect()))),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            request[key] = value;
        }
    }
    request
}

fn dimensions_json(dimensions: &[Dimension]) -> Value {
    dimensions.iter().map(|d| json!({"Name": d.name(), "Value": d.value()})).collect()
}

fn query_json(q: &MetricDataQuery) -> Value {
    let mut query = json!({"Id": q.id(), "ReturnData": q.return_data().unwrap_or(true)});
    if let Some(label) = q.label() {
        query["Label"] = json!(label);
    }
    if let Some(period) = q.period() {
        query["Period"] = json!(period);
    }
    if let Some(expression) = q.expression() {
        query["Expression"] = json!(expression);
    }
    if let Some(stat) = q.metric_stat() {
        let metric = stat.metric();
        let mut s = json!({
            "Metric": {
                "Namespace": metric.and_then(CwMetric::namespace),
                "MetricName": metric.and_then(CwMetric::metric_name),
                "Dimensions": dimensions_json(metric.map(CwMetric::dimensions).unwrap_or_default()),
            },
            "Period": stat.period(),
            "Stat": stat.stat(),
        });
        if let Some(unit) = stat.unit() {
            s["Unit"] = json!(unit.as_str());
        }
        query["MetricStat"] = s;
    }
    query
}
