//! Dashboard bodies in the JSON that CloudWatch's PutDashboard takes, checked against the rules of CloudWatch's
//! "Dashboard Body Structure and Syntax" reference, and parsed into what the console renders.
//!
//! The files under `deploy/dashboards/` are both deployed to CloudWatch and rendered by `up`, so a body is refused
//! here for anything CloudWatch would refuse and for anything the console cannot draw (widget types `alarm`,
//! `explorer` and `custom`, the `gauge` and `table` views of metric widgets). Errors name the JSON path.

use serde_json::{Map, Value};

/// CloudWatch's grid is 24 columns wide.
pub const GRID_COLUMNS: u64 = 24;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct BodyError {
    /// JSON path of the offending value, e.g. `widgets[3].properties.metrics[1]`.
    pub at: String,
    pub message: String,
}

fn err(at: impl Into<String>, message: impl Into<String>) -> BodyError {
    BodyError { at: at.into(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The default time range, an ISO 8601 duration before now such as `-PT3H`.
    pub start: Option<String>,
    pub widgets: Vec<Widget>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Widget {
    pub x: u64,
    pub y: u64,
    pub width: u64,
    pub height: u64,
    pub kind: WidgetKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WidgetKind {
    Metric(MetricWidget),
    Log(LogWidget),
    /// Markdown.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricView {
    TimeSeries,
    SingleValue,
    Bar,
    Pie,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricWidget {
    pub title: String,
    pub view: MetricView,
    pub stacked: bool,
    /// The widget's default statistic (`Average` in CloudWatch).
    pub stat: String,
    pub period_s: u64,
    /// `setPeriodToTimeRange`: one value over the whole range (single value, bar and pie views).
    pub whole_range: bool,
    pub series: Vec<SeriesSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeriesSpec {
    Metric {
        id: Option<String>,
        namespace: String,
        name: String,
        dimensions: Vec<(String, String)>,
        stat: Option<String>,
        period_s: Option<u64>,
        label: Option<String>,
        visible: bool,
    },
    Expression {
        id: String,
        expression: String,
        label: Option<String>,
        visible: bool,
    },
}

impl SeriesSpec {
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Metric { id, .. } => id.as_deref(),
            Self::Expression { id, .. } => Some(id),
        }
    }

    pub fn visible(&self) -> bool {
        match self {
            Self::Metric { visible, .. } | Self::Expression { visible, .. } => *visible,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogView {
    Table,
    Bar,
    Pie,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogWidget {
    pub title: String,
    pub view: LogView,
    /// The log groups of the query's `SOURCE` clauses.
    pub groups: Vec<String>,
    /// The Logs Insights query after its `SOURCE` clauses.
    pub query: String,
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, BodyError> {
    v.as_object().ok_or_else(|| err(at, "must be an object"))
}

fn string(v: &Value, at: &str) -> Result<String, BodyError> {
    v.as_str().map(str::to_owned).ok_or_else(|| err(at, "must be a string"))
}

fn unsigned(v: &Value, at: &str) -> Result<u64, BodyError> {
    v.as_u64().ok_or_else(|| err(at, "must be a whole number of at least 0"))
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), BodyError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(format!("{at}.{k}"), format!("unknown key; expected one of {}", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// CloudWatch's periods: 1, 5, 10, 30 or a multiple of 60 seconds.
fn period(v: &Value, at: &str) -> Result<u64, BodyError> {
    let p = unsigned(v, at)?;
    if matches!(p, 1 | 5 | 10 | 30) || (p > 0 && p % 60 == 0) {
        Ok(p)
    } else {
        Err(err(at, format!("period {p} is not 1, 5, 10, 30 or a multiple of 60 seconds")))
    }
}

/// A metric math id: a lowercase letter, then letters, digits and underscores.
fn check_id(id: &str, at: &str) -> Result<(), BodyError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 255;
    if ok {
        Ok(())
    } else {
        Err(err(at, format!("id {id:?} must start with a lowercase letter, then letters, digits or _")))
    }
}

/// Statistic names CloudWatch graphs: the five basic ones and percentiles `p0`..`p100`.
fn check_stat(stat: &str, at: &str) -> Result<(), BodyError> {
    let basic = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
    let percentile =
        stat.strip_prefix('p').and_then(|q| q.parse::<f64>().ok()).is_some_and(|q| (0.0..=100.0).contains(&q));
    if basic.contains(&stat) || percentile {
        Ok(())
    } else {
        Err(err(at, format!("unknown statistic {stat:?}: use {} or pNN", basic.join(", "))))
    }
}

impl Dashboard {
    pub fn parse(text: &str) -> Result<Self, BodyError> {
        let v: Value = serde_json::from_str(text).map_err(|e| err("body", format!("not JSON: {e}")))?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &Value) -> Result<Self, BodyError> {
        let top = object(v, "body")?;
        only_keys(top, &["start", "end", "periodOverride", "widgets", "variables"], "body")?;
        if let Some(p) = top.get("periodOverride")
            && !matches!(p.as_str(), Some("auto" | "inherit"))
        {
            return Err(err("periodOverride", "must be \"auto\" or \"inherit\""));
        }
        let start = top.get("start").map(|s| string(s, "start")).transpose()?;
        let widgets =
            top.get("widgets").and_then(Value::as_array).ok_or_else(|| err("widgets", "an array is required"))?;
        let widgets = widgets
            .iter()
            .enumerate()
            .map(|(i, w)| widget(w, &format!("widgets[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { start, widgets })
    }
}

fn widget(v: &Value, at: &str) -> Result<Widget, BodyError> {
    let w = object(v, at)?;
    only_keys(w, &["type", "x", "y", "width", "height", "properties"], at)?;
    let dim = |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> Result<u64, BodyError> {
        let at = format!("{at}.{key}");
        let n = w.get(key).map(|v| unsigned(v, &at)).transpose()?.unwrap_or(default);
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(err(at, format!("{n} is outside {}..={}", range.start(), range.end())))
        }
    };
    // CloudWatch places a widget without x and y itself; the console needs them, so the files must give them.
    for key in ["x", "y"] {
        if !w.contains_key(key) {
            return Err(err(format!("{at}.{key}"), "required (the console places widgets where the file says)"));
        }
    }
    let (x, y) = (dim("x", 0, 0..=GRID_COLUMNS - 1)?, dim("y", 0, 0..=u64::from(u32::MAX))?);
    let (width, height) = (dim("width", 6, 1..=GRID_COLUMNS)?, dim("height", 6, 1..=1000)?);
    if x + width > GRID_COLUMNS {
        return Err(err(
            format!("{at}.width"),
            format!("x {x} + width {width} is wider than the grid's {GRID_COLUMNS}"),
        ));
    }
    let props_at = format!("{at}.properties");
    let props = object(w.get("properties").ok_or_else(|| err(&props_at, "required"))?, &props_at)?;
    let kind = match w.get("type").and_then(Value::as_str) {
        Some("metric") => WidgetKind::Metric(metric_widget(props, &props_at)?),
        Some("log") => WidgetKind::Log(log_widget(props, &props_at)?),
        Some("text") => {
            only_keys(props, &["markdown", "background"], &props_at)?;
            WidgetKind::Text(string(props.get("markdown").unwrap_or(&Value::Null), &format!("{props_at}.markdown"))?)
        }
        Some(other @ ("alarm" | "explorer" | "custom")) => {
            return Err(err(format!("{at}.type"), format!("{other:?} widgets are not rendered by the console")));
        }
        _ => return Err(err(format!("{at}.type"), "must be \"metric\", \"log\" or \"text\"")),
    };
    Ok(Widget { x, y, width, height, kind })
}

fn title(props: &Map<String, Value>, at: &str) -> Result<String, BodyError> {
    props.get("title").map(|t| string(t, &format!("{at}.title"))).transpose().map(Option::unwrap_or_default)
}

fn region(props: &Map<String, Value>, at: &str) -> Result<(), BodyError> {
    let at = format!("{at}.region");
    let r = string(props.get("region").unwrap_or(&Value::Null), &at)?;
    // A region is lowercase letters, digits and dashes (us-east-1); a leftover `${Region}` is not one.
    if r.is_empty() || !r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(err(at, format!("{r:?} is not a region name")));
    }
    Ok(())
}

fn metric_widget(props: &Map<String, Value>, at: &str) -> Result<MetricWidget, BodyError> {
    only_keys(
        props,
        &[
            "metrics",
            "region",
            "title",
            "view",
            "stacked",
            "stat",
            "period",
            "setPeriodToTimeRange",
            "yAxis",
            "legend",
            "liveData",
            "annotations",
            "labels",
            "sparkline",
            "trend",
            "timezone",
            "accountId",
        ],
        at,
    )?;
    region(props, at)?;
    let view = match props.get("view").map(|v| v.as_str()) {
        None | Some(Some("timeSeries")) => MetricView::TimeSeries,
        Some(Some("singleValue")) => MetricView::SingleValue,
        Some(Some("bar")) => MetricView::Bar,
        Some(Some("pie")) => MetricView::Pie,
        _ => return Err(err(format!("{at}.view"), "must be timeSeries, singleValue, bar or pie")),
    };
    let stacked = match props.get("stacked") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| err(format!("{at}.stacked"), "must be true or false"))?,
    };
    let stat = match props.get("stat") {
        None => "Average".to_owned(),
        Some(v) => string(v, &format!("{at}.stat"))?,
    };
    check_stat(&stat, &format!("{at}.stat"))?;
    let period_s = props.get("period").map(|p| period(p, &format!("{at}.period"))).transpose()?.unwrap_or(300);
    let whole_range = props.get("setPeriodToTimeRange").and_then(Value::as_bool).unwrap_or(false);
    let rows = props
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| err(format!("{at}.metrics"), "an array is required"))?;
    let mut series: Vec<SeriesSpec> = Vec::with_capacity(rows.len());
    let mut previous: Vec<String> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let row_at = format!("{at}.metrics[{i}]");
        let spec = metric_row(row, &row_at, &mut previous)?;
        if let Some(id) = spec.id()
            && series.iter().any(|s| s.id() == Some(id))
        {
            return Err(err(row_at, format!("id {id:?} is used twice")));
        }
        series.push(spec);
    }
    if series.is_empty() {
        return Err(err(format!("{at}.metrics"), "at least one metric is required"));
    }
    Ok(MetricWidget { title: title(props, at)?, view, stacked, stat, period_s, whole_range, series })
}

/// One row of `metrics`: `[Namespace, MetricName, DimName, DimValue, ..., {options}]`, where `"."` repeats the
/// previous row's value at that position, or `[{"expression": ..., "id": ...}]`.
fn metric_row(row: &Value, at: &str, previous: &mut Vec<String>) -> Result<SeriesSpec, BodyError> {
    let items = row.as_array().ok_or_else(|| err(at, "must be an array"))?;
    let (strings, options) = match items.last() {
        Some(Value::Object(o)) => (&items[..items.len() - 1], Some(o)),
        _ => (&items[..], None),
    };
    let options_at = format!("{at}[{}]", strings.len());
    let empty = Map::new();
    let options = options.unwrap_or(&empty);
    only_keys(
        options,
        &["expression", "id", "label", "stat", "period", "visible", "color", "yAxis", "region", "accountId"],
        &options_at,
    )?;
    let opt_string = |key: &str| options.get(key).map(|v| string(v, &format!("{options_at}.{key}"))).transpose();
    let id = opt_string("id")?;
    if let Some(id) = &id {
        check_id(id, &format!("{options_at}.id"))?;
    }
    let label = opt_string("label")?;
    let visible = options.get("visible").and_then(Value::as_bool).unwrap_or(true);
    if let Some(expression) = opt_string("expression")? {
        if !strings.is_empty() {
            return Err(err(at, "an expression row has only its options object"));
        }
        let id = id.ok_or_else(|| err(format!("{options_at}.id"), "an expression needs an id"))?;
        return Ok(SeriesSpec::Expression { id, expression, label, visible });
    }
    if strings.len() < 2 || strings.len() % 2 != 0 {
        return Err(err(at, "a metric is [Namespace, MetricName, then name and value of each dimension, {options}]"));
    }
    let mut values = Vec::with_capacity(strings.len());
    for (j, s) in strings.iter().enumerate() {
        let s = string(s, &format!("{at}[{j}]"))?;
        let s = if s == "." {
            previous.get(j).cloned().ok_or_else(|| err(format!("{at}[{j}]"), "\".\" with no value above it"))?
        } else {
            s
        };
        if s.is_empty() || s.len() > 255 {
            return Err(err(format!("{at}[{j}]"), "must be 1 to 255 characters"));
        }
        values.push(s);
    }
    *previous = values.clone();
    let dimensions: Vec<(String, String)> = values[2..].chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    if dimensions.len() > 30 {
        return Err(err(at, "at most 30 dimensions"));
    }
    let stat = opt_string("stat")?;
    if let Some(stat) = &stat {
        check_stat(stat, &format!("{options_at}.stat"))?;
    }
    let period_s = options.get("period").map(|p| period(p, &format!("{options_at}.period"))).transpose()?;
    Ok(SeriesSpec::Metric {
        id,
        namespace: values[0].clone(),
        name: values[1].clone(),
        dimensions,
        stat,
        period_s,
        label,
        visible,
    })
}

fn log_widget(props: &Map<String, Value>, at: &str) -> Result<LogWidget, BodyError> {
    only_keys(props, &["query", "region", "title", "view", "stacked", "accountId"], at)?;
    region(props, at)?;
    let view = match props.get("view").map(|v| v.as_str()) {
        None | Some(Some("table")) => LogView::Table,
        Some(Some("bar")) => LogView::Bar,
        Some(Some("pie")) => LogView::Pie,
        _ => return Err(err(format!("{at}.view"), "must be table, bar or pie")),
    };
    let query_at = format!("{at}.query");
    let text = string(props.get("query").unwrap_or(&Value::Null), &query_at)?;
    let (groups, query) = split_sources(&text).map_err(|m| err(&query_at, m))?;
    Ok(LogWidget { title: title(props, at)?, view, groups, query })
}

/// `SOURCE 'a' | SOURCE 'b' | rest` into `([a, b], rest)`; a log widget's query must name its groups this way.
pub fn split_sources(text: &str) -> Result<(Vec<String>, String), String> {
    let mut rest = text.trim_start();
    let mut groups = Vec::new();
    while let Some(after) = rest.strip_prefix("SOURCE") {
        let after = after.trim_start();
        let quoted = after.strip_prefix('\'').ok_or("SOURCE must be followed by a quoted log group")?;
        let end = quoted.find('\'').ok_or("unterminated log group name after SOURCE")?;
        let group = &quoted[..end];
        if group.is_empty() || group.len() > 512 {
            return Err("a log group name is 1 to 512 characters".into());
        }
        groups.push(group.to_owned());
        rest = quoted[end + 1..].trim_start();
        rest = rest.strip_prefix('|').ok_or("expected | after the SOURCE clause")?.trim_start();
    }
    if groups.is_empty() {
        return Err("a log widget's query starts with SOURCE '<log group>' |".into());
    }
    Ok((groups, rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metric_body(metrics: Value) -> Value {
        json!({"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
            "properties": {"region": "us-east-1", "metrics": metrics}}]})
    }

    #[test]
    fn dots_repeat_the_row_above_and_options_apply() {
        let body = metric_body(json!([
            ["Ns", "a", "sdkName", "js", {"stat": "p95", "id": "m1"}],
            [".", "b", ".", ".", {"visible": false, "id": "m2"}],
            [{"expression": "m1 / m2", "id": "e1", "label": "ratio"}]
        ]));
        let d = Dashboard::from_value(&body).unwrap();
        let WidgetKind::Metric(m) = &d.widgets[0].kind else { panic!() };
        assert_eq!(m.stat, "Average");
        assert_eq!(m.period_s, 300);
        let SeriesSpec::Metric { namespace, name, dimensions, visible, .. } = &m.series[1] else { panic!() };
        assert_eq!((namespace.as_str(), name.as_str(), *visible), ("Ns", "b", false));
        assert_eq!(dimensions, &[("sdkName".to_owned(), "js".to_owned())]);
        assert!(matches!(&m.series[2], SeriesSpec::Expression { id, .. } if id == "e1"));
    }

    #[test]
    fn errors_name_the_path_and_the_rule() {
        let cases = [
            (metric_body(json!([["Ns"]])), "widgets[0].properties.metrics[0]"),
            (metric_body(json!([[".", "a"]])), "widgets[0].properties.metrics[0][0]"),
            (metric_body(json!([["Ns", "a", {"stat": "p101"}]])), "widgets[0].properties.metrics[0][2].stat"),
            (metric_body(json!([["Ns", "a", {"period": 45}]])), "widgets[0].properties.metrics[0][2].period"),
            (metric_body(json!([["Ns", "a", {"id": "M1"}]])), "widgets[0].properties.metrics[0][2].id"),
            (metric_body(json!([["Ns", "a", {"colour": "#fff"}]])), "widgets[0].properties.metrics[0][2].colour"),
            (metric_body(json!([[{"expression": "m1"}]])), "widgets[0].properties.metrics[0][0].id"),
            (metric_body(json!([])), "widgets[0].properties.metrics"),
            (
                json!({"widgets": [{"type": "metric", "x": 20, "y": 0, "width": 6, "properties": {}}]}),
                "widgets[0].width",
            ),
            (json!({"widgets": [{"type": "alarm", "x": 0, "y": 0, "properties": {}}]}), "widgets[0].type"),
            (json!({"widgets": [{"type": "text", "y": 0, "properties": {"markdown": "x"}}]}), "widgets[0].x"),
            (
                json!({"widgets": [{"type": "log", "x": 0, "y": 0, "properties": {"region": "${Region}", "query": "SOURCE 'g' | fields a"}}]}),
                "widgets[0].properties.region",
            ),
            (
                json!({"widgets": [{"type": "log", "x": 0, "y": 0, "properties": {"region": "eu-west-1", "query": "fields a"}}]}),
                "widgets[0].properties.query",
            ),
            (json!({"widgets": [], "colour": 1}), "body.colour"),
        ];
        for (body, at) in cases {
            let e = Dashboard::from_value(&body).expect_err(&body.to_string());
            assert_eq!(e.at, at, "{e}");
        }
    }

    #[test]
    fn sources_are_split_from_the_query() {
        assert_eq!(
            split_sources("SOURCE '/a' | SOURCE '/b' | filter x = 1").unwrap(),
            (vec!["/a".to_owned(), "/b".to_owned()], "filter x = 1".to_owned())
        );
        assert!(split_sources("SOURCE '/a' filter").is_err());
        assert!(split_sources("SOURCE ''|x").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_json_gets_a_dashboard_or_an_error(text in ".{0,200}") {
            let _ = Dashboard::parse(&text);
        }
    }
}
