//! The embedded metric and log store of `chimewatch up`: one SQLite file under the data directory. It takes what
//! CloudWatch would (the same datums, values with counts, the same log events) and answers the queries the CLI
//! offers: statistics and any percentile per period from the stored distributions, log events matching a Logs
//! Insights `filter`, and the Logs Insights queries of [`crate::logs_insights`]. Writes commit durably (WAL,
//! synchronous FULL) before they are acknowledged.
//!
//! It refuses what CloudWatch refuses ([`check_datum`], [`check_event`]), so `up` shows what AWS would do with the
//! same data; only the time range is not enforced, so that captures and fixtures of any date can be replayed.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chimewatch_metrics::distribution::percentile;
use chimewatch_metrics::window_start;
use rusqlite::{Connection, params};

use crate::logs::{LogEvent, LogSink, check_event};
use crate::logs_filter::Filter;
use crate::logs_insights::{Flow, InsightsQuery, QueryResults, SourceEvent};
use crate::metrics::{Datum, DatumValue, MetricSink, Outcome, SinkError, check_datum, check_namespace};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metric_values (
    namespace TEXT NOT NULL, name TEXT NOT NULL, unit TEXT NOT NULL, dimensions TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL, value REAL NOT NULL, count REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_values_by_name ON metric_values (namespace, name, timestamp_ms);
CREATE TABLE IF NOT EXISTS log_events (
    log_group TEXT NOT NULL, log_stream TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_time ON log_events (log_group, timestamp_ms);
";

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn store_error(path: &Path) -> impl Fn(rusqlite::Error) -> SinkError + '_ {
    move |e| SinkError::Fatal { operation: "embedded store", message: format!("{}: {e}", path.display()) }
}

/// One statistic the metric query computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    SampleCount,
    Sum,
    Min,
    Max,
    Average,
    /// `p50`, `p99.9`, ...
    Percentile(f64),
}

impl FromStr for Stat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "SampleCount" => Self::SampleCount,
            "Sum" => Self::Sum,
            "Minimum" | "Min" => Self::Min,
            "Maximum" | "Max" => Self::Max,
            "Average" | "Avg" => Self::Average,
            _ => match s.strip_prefix('p').and_then(|q| q.parse::<f64>().ok()) {
                Some(q) if (0.0..=100.0).contains(&q) => Self::Percentile(q),
                _ => {
                    return Err(format!(
                        "unknown statistic {s:?}: use SampleCount, Sum, Minimum, Maximum, Average or pNN (e.g. p99.9)"
                    ));
                }
            },
        })
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SampleCount => f.write_str("SampleCount"),
            Self::Sum => f.write_str("Sum"),
            Self::Min => f.write_str("Minimum"),
            Self::Max => f.write_str("Maximum"),
            Self::Average => f.write_str("Average"),
            Self::Percentile(q) => write!(f, "p{q}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub namespace: String,
    pub name: String,
    /// The series' exact dimension set, as CloudWatch matches it (empty = the fleet-wide series).
    pub dimensions: Vec<(String, String)>,
    pub since_ms: i64,
    pub until_ms: i64,
    pub period_ms: i64,
    pub stats: Vec<Stat>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub timestamp_ms: i64,
    pub unit: String,
    pub stats: Vec<(Stat, f64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogEvent {
    pub group: String,
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

/// Dimensions as stored and matched: sorted `[name, value]` pairs in JSON.
/// One stored series: what `metrics list` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesId {
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
}

fn dimension_key(dimensions: &[(String, String)]) -> String {
    let mut d: Vec<&(String, String)> = dimensions.iter().collect();
    d.sort();
    serde_json::to_string(&d).unwrap_or_default()
}

impl EmbeddedStore {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SinkError::Fatal {
                operation: "embedded store",
                message: format!("{}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(&path).map_err(store_error(&path))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(store_error(&path))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(store_error(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(store_error(&path))?;
        conn.execute_batch(SCHEMA).map_err(store_error(&path))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let mut conn = self.conn.lock().map_err(|_| SinkError::Fatal {
            operation: "embedded store",
            message: "the store's lock is poisoned".into(),
        })?;
        f(&mut conn, &self.path)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with(f))
            .await
            .map_err(|e| SinkError::Fatal { operation: "embedded store", message: e.to_string() })?
    }

    /// Statistics per period of one series.
    /// The series with values since `since_ms`, as ListMetrics gives them: namespace, metric name, dimensions;
    /// optionally of one namespace and one metric.
    pub fn list_metrics(
        &self,
        namespace: Option<&str>,
        metric: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<SeriesId>, SinkError> {
        let (namespace, metric) = (namespace.map(str::to_owned), metric.map(str::to_owned));
        self.with(move |conn, path| {
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT namespace, name, dimensions FROM metric_values
                     WHERE timestamp_ms >= ?1 AND (?2 IS NULL OR namespace = ?2) AND (?3 IS NULL OR name = ?3)
                     ORDER BY namespace, name, dimensions",
                )
                .map_err(store_error(path))?;
            let rows = stmt
                .query_map(params![since_ms, namespace, metric], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(store_error(path))?;
            let mut out = Vec::new();
            for row in rows {
                let (namespace, name, dims) = row.map_err(store_error(path))?;
                let dims: Vec<(String, String)> = serde_json::from_str(&dims).map_err(|e| SinkError::Fatal {
                    operation: "embedded store",
                    message: format!("{}: stored dimensions {dims:?}: {e}", path.display()),
                })?;
                out.push(SeriesId { namespace, metric: name, dimensions: dims });
            }
            Ok(out)
        })
    }

    pub fn query_metrics(&self, q: &MetricQuery) -> Result<Vec<MetricPoint>, SinkError> {
        let q = q.clone();
        self.with(move |conn, path| {
            let mut stmt = conn
                .prepare(
                    "SELECT unit, timestamp_ms, value, count FROM metric_values
                     WHERE namespace = ?1 AND name = ?2 AND dimensions = ?3 AND timestamp_ms >= ?4 AND timestamp_ms < ?5
                     ORDER BY timestamp_ms",
                )
                .map_err(store_error(path))?;
            let rows = stmt
                .query_map(params![q.namespace, q.name, dimension_key(&q.dimensions), q.since_ms, q.until_ms], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, f64>(3)?))
                })
                .map_err(store_error(path))?;
            let mut periods: std::collections::BTreeMap<i64, (String, Vec<(f64, f64)>)> = Default::default();
            for row in rows {
                let (unit, t, value, count) = row.map_err(store_error(path))?;
                periods
                    .entry(window_start(t, q.period_ms))
                    .or_insert_with(|| (unit, Vec::new()))
                    .1
                    .push((value, count));
            }
            Ok(periods
                .into_iter()
                .map(|(timestamp_ms, (unit, values))| MetricPoint {
                    timestamp_ms,
                    unit,
                    stats: q.stats.iter().map(|s| (*s, statistic(*s, &values))).collect(),
                })
                .collect())
        })
    }

    /// Log events of `group` in `[since, until)` matching `filter`, oldest first, at most `limit`.
    pub fn query_logs(
        &self,
        group: &str,
        filter: Option<&Filter>,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredLogEvent>, SinkError> {
        let (group, filter) = (group.to_owned(), filter.cloned());
        self.with(move |conn, path| {
            let mut stmt = conn
                .prepare(
                    "SELECT log_stream, timestamp_ms, message FROM log_events
                     WHERE log_group = ?1 AND timestamp_ms >= ?2 AND timestamp_ms < ?3 ORDER BY timestamp_ms, rowid",
                )
                .map_err(store_error(path))?;
            let rows = stmt
                .query_map(params![group, since_ms, until_ms], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(store_error(path))?;
            let mut out = Vec::new();
            for row in rows {
                let (stream, timestamp_ms, message) = row.map_err(store_error(path))?;
                let keep = filter
                    .as_ref()
                    .is_none_or(|f| serde_json::from_str::<serde_json::Value>(&message).is_ok_and(|v| f.matches(&v)));
                if keep {
                    out.push(StoredLogEvent { group: group.clone(), stream, timestamp_ms, message });
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Runs a Logs Insights query over the events of `groups` in `[since, until)`.
    ///
    /// Events stream from SQLite, selected there by group and time, newest first when the query needs an order;
    /// only what the query keeps is held (its groups, or the rows its `limit` allows). It reads on a connection of
    /// its own: in WAL mode a reader does not hold up the writers, so a long query does not stall the aggregator.
    pub fn insights(
        &self,
        groups: &[String],
        since_ms: i64,
        until_ms: i64,
        query: &InsightsQuery,
    ) -> Result<QueryResults, SinkError> {
        let mut run = query.start();
        let mut groups = groups.to_vec();
        groups.sort();
        groups.dedup();
        if groups.is_empty() {
            return Ok(run.finish());
        }
        let path = self.path.as_path();
        let conn = Connection::open(path).map_err(store_error(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(store_error(path))?;
        let marks = vec!["?"; groups.len()].join(", ");
        let order = if run.newest_first() { " ORDER BY timestamp_ms DESC, rowid DESC" } else { "" };
        let mut stmt = conn
            .prepare(&format!(
                "SELECT log_group, log_stream, timestamp_ms, message FROM log_events
                 WHERE log_group IN ({marks}) AND timestamp_ms >= ? AND timestamp_ms < ?{order}"
            ))
            .map_err(store_error(path))?;
        let params = groups
            .iter()
            .map(|g| rusqlite::types::Value::Text(g.clone()))
            .chain([since_ms, until_ms].map(rusqlite::types::Value::Integer));
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(store_error(path))?;
        // One shared name per group rather than a copy per event.
        let names: Vec<Rc<str>> = groups.iter().map(|g| Rc::from(g.as_str())).collect();
        while let Some(row) = rows.next().map_err(store_error(path))? {
            let group: String = row.get(0).map_err(store_error(path))?;
            let Some(group) = names.iter().find(|n| ***n == *group).cloned() else { continue };
            let event = SourceEvent {
                group,
                stream: row.get(1).map_err(store_error(path))?,
                timestamp_ms: row.get(2).map_err(store_error(path))?,
                message: row.get(3).map_err(store_error(path))?,
            };
            if run.push(event) == Flow::Done {
                break;
            }
        }
        Ok(run.finish())
    }
}

fn statistic(stat: Stat, values: &[(f64, f64)]) -> f64 {
    let count: f64 = values.iter().map(|(_, c)| c).sum();
    let sum: f64 = values.iter().map(|(v, c)| v * c).sum();
    match stat {
        Stat::SampleCount => count,
        Stat::Sum => sum,
        Stat::Min => values.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min),
        Stat::Max => values.iter().map(|(v, _)| *v).fold(f64::NEG_INFINITY, f64::max),
        Stat::Average => sum / count,
        Stat::Percentile(q) => percentile(values, q).unwrap_or(f64::NAN),
    }
}

/// The outcome of a write of `n` items of which `rejected` were refused: the rest taken, or none on `result`'s error.
fn settle(n: usize, rejected: Vec<(usize, String)>, result: Result<(), SinkError>) -> Outcome {
    match result {
        Ok(()) => Outcome { rejected, ..Outcome::default() },
        Err(e) => {
            let unsent = (0..n).filter(|i| !rejected.iter().any(|(r, _)| r == i)).collect();
            Outcome { rejected, unsent, error: Some(e) }
        }
    }
}

#[async_trait]
impl MetricSink for EmbeddedStore {
    async fn publish(&self, namespace: &str, datums: &[Datum]) -> Outcome {
        let mut rejected = Vec::new();
        let mut taken = Vec::new();
        for (i, d) in datums.iter().enumerate() {
            match check_namespace(namespace).and_then(|()| check_datum(d, None)) {
                Ok(()) => taken.push(d.clone()),
                Err(reason) => rejected.push((i, reason)),
            }
        }
        let namespace = namespace.to_owned();
        let result = self
            .blocking(move |conn, path| {
                let tx = conn.transaction().map_err(store_error(path))?;
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO metric_values (namespace, name, unit, dimensions, timestamp_ms, value, count)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )
                        .map_err(store_error(path))?;
                    for d in taken {
                        let dims = dimension_key(&d.dimensions);
                        let pairs: Vec<(f64, f64)> = match d.value {
                            DatumValue::Single(v) => vec![(v, 1.0)],
                            DatumValue::Distribution { values, counts } => values.into_iter().zip(counts).collect(),
                        };
                        for (value, count) in pairs {
                            insert
                                .execute(params![
                                    namespace,
                                    d.name,
                                    d.unit.as_str(),
                                    dims,
                                    d.timestamp.as_i64(),
                                    value,
                                    count
                                ])
                                .map_err(store_error(path))?;
                        }
                    }
                }
                tx.commit().map_err(store_error(path))
            })
            .await;
        settle(datums.len(), rejected, result)
    }
}

#[async_trait]
impl LogSink for EmbeddedStore {
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Outcome {
        let mut rejected = Vec::new();
        let mut taken = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match check_event(e, None) {
                Ok(()) => taken.push(e.clone()),
                Err(reason) => rejected.push((i, reason)),
            }
        }
        taken.sort_by_key(|e| e.timestamp);
        let (group, stream) = (group.to_owned(), stream.to_owned());
        let result = self
            .blocking(move |conn, path| {
                let tx = conn.transaction().map_err(store_error(path))?;
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO log_events (log_group, log_stream, timestamp_ms, message) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(store_error(path))?;
                    for e in taken {
                        insert
                            .execute(params![group, stream, e.timestamp.as_i64(), &*e.message])
                            .map_err(store_error(path))?;
                    }
                }
                tx.commit().map_err(store_error(path))
            })
            .await;
        settle(events.len(), rejected, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Unit;
    use chimewatch_model::UnixMillis;

    fn datum(name: &str, dims: &[(&str, &str)], t: i64, value: DatumValue) -> Datum {
        Datum {
            name: name.into(),
            unit: Unit::Milliseconds,
            value,
            dimensions: dims.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            timestamp: UnixMillis(t),
            high_resolution: false,
        }
    }

    #[tokio::test]
    async fn metrics_come_back_as_statistics_per_period_for_the_exact_dimension_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store/embedded.sqlite")).unwrap();
        let js = [("sdkName", "amazon-chime-sdk-js")];
        let dist = |values: Vec<f64>, counts: Vec<f64>| DatumValue::Distribution { values, counts };
        let datums = [
            datum("meetingStartDurationMs", &js, 60_000, dist(vec![100.0, 200.0], vec![3.0, 1.0])),
            // A second datum for the same minute (a late value, or a 150-value chunk) merges.
            datum("meetingStartDurationMs", &js, 60_000, dist(vec![1_000.0], vec![1.0])),
            datum("meetingStartDurationMs", &js, 120_000, DatumValue::Single(50.0)),
            datum("meetingStartDurationMs", &[], 60_000, DatumValue::Single(7.0)),
        ];
        assert_eq!(store.publish("AmazonChimeSDKMeetingEvents", &datums).await, Outcome::default());
        let q = MetricQuery {
            namespace: "AmazonChimeSDKMeetingEvents".into(),
            name: "meetingStartDurationMs".into(),
            dimensions: vec![("sdkName".into(), "amazon-chime-sdk-js".into())],
            since_ms: 0,
            until_ms: 600_000,
            period_ms: 60_000,
            stats: ["SampleCount", "Sum", "Minimum", "Maximum", "Average", "p50", "p99"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        };
        let points = store.query_metrics(&q).unwrap();
        assert_eq!(points.len(), 2);
        let first: Vec<f64> = points[0].stats.iter().map(|(_, v)| *v).collect();
        assert_eq!(first, [5.0, 1_500.0, 100.0, 1_000.0, 300.0, 100.0, 1_000.0]);
        assert_eq!((points[0].timestamp_ms, points[0].unit.as_str()), (60_000, "Milliseconds"));
        let hourly = store.query_metrics(&MetricQuery { period_ms: 3_600_000, ..q.clone() }).unwrap();
        assert_eq!(hourly.len(), 1);
        assert_eq!(hourly[0].stats[0].1, 6.0);
        let fleet = store.query_metrics(&MetricQuery { dimensions: vec![], ..q }).unwrap();
        assert_eq!(fleet[0].stats[0].1, 1.0, "the fleet-wide series is its own");
    }

    #[tokio::test]
    async fn log_events_are_found_by_filter_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("embedded.sqlite")).unwrap();
        let msg = |name: &str, attendee: &str| {
            serde_json::json!({ "name": name, "attributes": { "attendeeId": attendee } }).to_string()
        };
        let events = [
            LogEvent { timestamp: UnixMillis(3), message: msg("meetingFailed", "a-1").into() },
            LogEvent { timestamp: UnixMillis(1), message: msg("meetingStartRequested", "a-1").into() },
            LogEvent { timestamp: UnixMillis(2), message: msg("meetingFailed", "a-2").into() },
        ];
        assert_eq!(store.put("/chimewatch/meeting-events", "w1/shard-0000", &events).await, Outcome::default());
        let f = Filter::parse(r#"name = "meetingFailed" and attributes.attendeeId = "a-1""#).unwrap();
        let found = store.query_logs("/chimewatch/meeting-events", Some(&f), 0, 10, 100).unwrap();
        assert_eq!(found.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(), [3]);
        let all = store.query_logs("/chimewatch/meeting-events", None, 0, 10, 2).unwrap();
        assert_eq!(all.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(), [1, 2], "oldest first, up to the limit");
        assert!(store.query_logs("/other", None, 0, 10, 100).unwrap().is_empty());
    }

    #[tokio::test]
    async fn it_refuses_what_cloudwatch_refuses_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("embedded.sqlite")).unwrap();
        let datums = [
            datum("meetingFailed", &[("meetingStatus", "   ")], 60_000, DatumValue::Single(1.0)),
            datum("meetingFailed", &[("meetingStatus", "caf\u{e9}")], 60_000, DatumValue::Single(1.0)),
            datum("meetingFailed", &[("meetingStatus", &"x".repeat(2000))], 60_000, DatumValue::Single(1.0)),
            datum("meetingFailed", &[("meetingStatus", "TaskFailed")], 60_000, DatumValue::Single(1.0)),
        ];
        let outcome = store.publish("AmazonChimeSDKMeetingEvents", &datums).await;
        assert_eq!(outcome.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(outcome.is_settled());
        let q = MetricQuery {
            namespace: "AmazonChimeSDKMeetingEvents".into(),
            name: "meetingFailed".into(),
            dimensions: vec![("meetingStatus".into(), "TaskFailed".into())],
            since_ms: 0,
            until_ms: 600_000,
            period_ms: 60_000,
            stats: vec![Stat::Sum],
        };
        assert_eq!(store.query_metrics(&q).unwrap()[0].stats[0].1, 1.0);
        let listed = store.list_metrics(Some("AmazonChimeSDKMeetingEvents"), None, 0).unwrap();
        assert_eq!(
            listed,
            [SeriesId {
                namespace: "AmazonChimeSDKMeetingEvents".to_owned(),
                metric: "meetingFailed".to_owned(),
                dimensions: vec![("meetingStatus".to_owned(), "TaskFailed".to_owned())]
            }],
            "only what was stored"
        );
        assert!(store.list_metrics(None, Some("other"), 0).unwrap().is_empty());
        assert!(store.list_metrics(None, None, 120_000).unwrap().is_empty(), "nothing since");
        let empty = store.put("g", "s", &[LogEvent { timestamp: UnixMillis(1), message: "".into() }]).await;
        assert_eq!(empty.rejected.len(), 1);
    }

    #[test]
    fn statistics_parse_by_cloudwatch_name_and_percentile() {
        assert_eq!("p99.9".parse::<Stat>(), Ok(Stat::Percentile(99.9)));
        assert_eq!("Maximum".parse::<Stat>(), Ok(Stat::Max));
        assert!("p101".parse::<Stat>().unwrap_err().contains("unknown statistic"));
        assert!("median".parse::<Stat>().is_err());
    }
}
