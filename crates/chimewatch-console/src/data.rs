//! What each widget shows, read from the embedded store: the series of a metric widget (single metrics, `SEARCH`
//! schemas, metric math over them), the rows of a log widget (a Logs Insights query), and one value per series
//! over the whole range for single values, bars and pies.

use std::collections::BTreeMap;

use chimewatch_sinks::embedded::{EmbeddedStore, MetricQuery, Stat};
use chimewatch_sinks::logs_insights::{InsightsQuery, QueryResults};

use crate::body::{LogWidget, MetricView, MetricWidget, SeriesSpec};
use crate::chart::Series;
use crate::search;

/// A time range `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A period that puts every point of the range into one bucket: a value over the whole range.
const WHOLE_RANGE: i64 = i64::MAX;

fn stat(text: &str) -> Result<Stat, String> {
    text.parse::<Stat>()
}

fn dimension_text(dimensions: &[(String, String)]) -> String {
    dimensions.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" ")
}

/// Points of one stored series: one statistic per period over `[since_ms, until_ms)`, periods without a finite
/// value left out. The alarms read the store through this too (`alarms::StoreSource`).
pub(crate) fn points(
    store: &EmbeddedStore,
    (namespace, name, dimensions): (&str, &str, &[(String, String)]),
    stat: Stat,
    period_ms: i64,
    (since_ms, until_ms): (i64, i64),
) -> Result<Vec<(i64, f64)>, String> {
    let query = MetricQuery {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        dimensions: dimensions.to_vec(),
        since_ms,
        until_ms,
        period_ms,
        stats: vec![stat],
    };
    let found = store.query_metrics(&query).map_err(|e| e.to_string())?;
    Ok(found
        .into_iter()
        .filter_map(|p| p.stats.first().map(|(_, v)| (p.timestamp_ms, *v)))
        .filter(|p| p.1.is_finite())
        .collect())
}

/// The visible series of a metric widget over `range`, labelled as CloudWatch labels them.
pub fn metric_series(store: &EmbeddedStore, widget: &MetricWidget, range: Range) -> Result<Vec<Series>, String> {
    let one_value = widget.whole_range || matches!(widget.view, MetricView::Pie);
    let period_of = |p: Option<u64>| {
        if one_value { WHOLE_RANGE } else { i64::try_from(p.unwrap_or(widget.period_s) * 1000).unwrap_or(WHOLE_RANGE) }
    };
    let span = (range.start_ms, range.end_ms);
    let mut by_id: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut shown = Vec::new();
    for spec in &widget.series {
        match spec {
            SeriesSpec::Metric { id, namespace, name, dimensions, stat: s, period_s, label, visible } => {
                let stat_text = s.as_deref().unwrap_or(&widget.stat);
                let found = points(store, (namespace, name, dimensions), stat(stat_text)?, period_of(*period_s), span)?;
                if let Some(id) = id {
                    by_id.insert(id.clone(), found.clone());
                }
                if *visible {
                    let label = label
                        .clone()
                        .unwrap_or_else(|| format!("{name} {}", dimension_text(dimensions)).trim().to_owned());
                    shown.push(Series { label, points: found });
                }
            }
            SeriesSpec::Expression { id, expression, label, visible } => match search::parse(expression)? {
                Some(search) => {
                    let (period, search_stat) = (period_of(Some(search.period_s)), stat(&search.stat)?);
                    let listed = store
                        .list_metrics(Some(&search.namespace), Some(&search.metric), range.start_ms)
                        .map_err(|e| e.to_string())?;
                    for series in listed.into_iter().filter(|s| search.matches(&s.dimensions)) {
                        let found = points(
                            store,
                            (&search.namespace, &search.metric, &series.dimensions),
                            search_stat,
                            period,
                            span,
                        )?;
                        if *visible && !found.is_empty() {
                            let what = dimension_text(&series.dimensions);
                            let label = label.as_ref().map_or_else(|| what.clone(), |l| format!("{l} {what}"));
                            shown.push(Series { label, points: found });
                        }
                    }
                }
                None => {
                    let period = period_of(None);
                    let found = crate::math::evaluate(expression, &by_id, &periods(range, period))
                        .map_err(|e| format!("{id}: {e}"))?;
                    by_id.insert(id.clone(), found.clone());
                    if *visible {
                        shown.push(Series { label: label.clone().unwrap_or_else(|| id.clone()), points: found });
                    }
                }
            },
        }
    }
    Ok(shown)
}

/// The period starts of `range`, aligned as the store aligns them.
fn periods(range: Range, period_ms: i64) -> Vec<i64> {
    if period_ms == WHOLE_RANGE {
        return vec![0];
    }
    let first = range.start_ms - range.start_ms.rem_euclid(period_ms);
    (0..).map(|i| first + i * period_ms).take_while(|p| *p < range.end_ms).take(100_000).collect()
}

/// One value per series (its only point when the widget asks for a value over the whole range, else its latest).
pub fn values(series: &[Series]) -> Vec<(String, f64)> {
    series.iter().map(|s| (s.label.clone(), s.points.last().map_or(0.0, |p| p.1))).collect()
}

/// The rows of a log widget's query over `range`.
pub fn log_rows(store: &EmbeddedStore, widget: &LogWidget, range: Range) -> Result<QueryResults, String> {
    let query = InsightsQuery::parse(&widget.query).map_err(|e| e.to_string())?;
    store.insights(&widget.groups, range.start_ms, range.end_ms, &query).map_err(|e| e.to_string())
}

/// A stats result as labelled values for a pie or bar: the value is the last column whose every value is a number,
/// the label the other columns joined.
pub fn row_values(results: &QueryResults) -> Vec<(String, f64)> {
    let numeric = results.columns.iter().rposition(|c| {
        results.rows.iter().all(|row| row.iter().find(|(f, _)| f == c).is_some_and(|(_, v)| v.parse::<f64>().is_ok()))
    });
    let Some(numeric) = numeric else { return Vec::new() };
    let value_column = &results.columns[numeric];
    results
        .rows
        .iter()
        .map(|row| {
            let label =
                row.iter().filter(|(f, _)| f != value_column).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" ");
            let value = row.iter().find(|(f, _)| f == value_column).and_then(|(_, v)| v.parse().ok()).unwrap_or(0.0);
            (if label.is_empty() { "(none)".to_owned() } else { label }, value)
        })
        .collect()
}
