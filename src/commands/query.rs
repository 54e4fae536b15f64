//! `chimewatch metrics query` and `chimewatch logs query`: the embedded store of `up`, answered as JSON lines.

use std::io::Write;

use anyhow::{Context, bail};
use chimewatch_aggregator::config::{DEFAULT_LOG_GROUP, DEFAULT_NAMESPACE};
use chimewatch_sinks::embedded::{EmbeddedStore, MetricQuery, Stat};
use chimewatch_sinks::logs_insights::InsightsQuery;
use serde_json::{Map, Value, json};

use super::up::STORE_FILE;
use crate::cli::{LogsQueryArgs, MetricsListArgs, MetricsQueryArgs};
use crate::config::Settings;

fn open(settings: &Settings) -> anyhow::Result<EmbeddedStore> {
    let path = settings.data_dir().join(STORE_FILE);
    if !path.exists() {
        bail!("no embedded store at {}: run `chimewatch up` first (or pass --data-dir)", path.display());
    }
    EmbeddedStore::open(&path).with_context(|| format!("opening {}", path.display()))
}

pub fn metrics(args: MetricsQueryArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings)?;
    let dimensions = args
        .dimensions
        .iter()
        .map(|d| match d.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--dimension {d:?} is not name=value"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stats =
        args.stats.iter().map(|s| s.parse::<Stat>().map_err(anyhow::Error::msg)).collect::<anyhow::Result<Vec<_>>>()?;
    let period_ms = i64::try_from(args.period.as_millis()).unwrap_or(i64::MAX);
    if period_ms == 0 {
        bail!("--period must be at least 1s");
    }
    let now = chimewatch_stream::system_clock().as_i64();
    let namespace = settings.aggregator.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let query = MetricQuery {
        namespace,
        name: args.metric.clone(),
        dimensions: dimensions.clone(),
        since_ms: now.saturating_sub(i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX)),
        until_ms: now + 1,
        period_ms,
        stats,
    };
    let dims: Map<String, Value> = dimensions.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    let mut out = std::io::stdout().lock();
    for point in store.query_metrics(&query)? {
        let mut line =
            json!({ "timestampMs": point.timestamp_ms, "metric": args.metric, "dimensions": dims, "unit": point.unit });
        for (stat, value) in point.stats {
            line[stat.to_string()] = json!(value);
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

pub fn list_metrics(args: MetricsListArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = open(settings)?;
    let since = chimewatch_stream::system_clock().saturating_sub(args.since).as_i64();
    let mut out = std::io::stdout().lock();
    for s in store.list_metrics(args.namespace.as_deref(), args.metric.as_deref(), since)? {
        let dims: Map<String, Value> = s.dimensions.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        writeln!(out, "{}", json!({ "namespace": s.namespace, "metric": s.metric, "dimensions": dims }))?;
    }
    Ok(())
}

/// The query of `logs query` without one: every event, newest first.
const ALL_EVENTS: &str = "fields @timestamp, @message, @logStream, @log";

pub fn logs(args: LogsQueryArgs, settings: &Settings) -> anyhow::Result<()> {
    let text = args.query.as_deref().or(args.filter.as_deref()).unwrap_or(ALL_EVENTS);
    let mut query = InsightsQuery::parse(text)?;
    if let Some(rows) = args.limit {
        query = query.with_default_limit(usize::try_from(rows)?)?;
    }
    let store = open(settings)?;
    let group = settings.aggregator.log_group.clone().unwrap_or_else(|| DEFAULT_LOG_GROUP.to_owned());
    let now = chimewatch_stream::system_clock().as_i64();
    let since = now.saturating_sub(i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX));
    // Event time may run a little ahead of this clock (client clocks): CloudWatch accepts up to 2 h ahead.
    let results = store.insights(&[group], since, now + 2 * 3600 * 1000, &query)?;
    let mut out = std::io::stdout().lock();
    for row in results.rows {
        // serde_json keeps insertion order here (`preserve_order`): the fields print in column order.
        let line: Map<String, Value> = row.into_iter().map(|(field, value)| (field, Value::String(value))).collect();
        writeln!(out, "{}", Value::Object(line))?;
    }
    Ok(())
}
