//! Each widget type rendered from a store with known contents: the values it shows are the ones put in.

use chimewatch_model::UnixMillis;
use chimewatch_sinks::embedded::EmbeddedStore;
use chimewatch_sinks::metrics::{Datum, DatumValue, MetricSink, Unit};
use chimewatch_sinks::{LogEvent, LogSink};
use serde_json::json;

use crate::body::{Dashboard, WidgetKind};
use crate::data::{self, Range};
use crate::page;

/// The start of a minute (1_790_000_040_000 is a multiple of 60,000), and a range of 20 minutes around it.
const T0: i64 = 1_790_000_040_000;
const RANGE: Range = Range { start_ms: T0 - 600_000, end_ms: T0 + 600_000 };

fn datum(name: &str, dims: &[(&str, &str)], at: i64, value: DatumValue) -> Datum {
    Datum {
        name: name.into(),
        unit: Unit::Count,
        value,
        dimensions: dims.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        timestamp: UnixMillis(at),
        high_resolution: false,
    }
}

async fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("s.sqlite")).unwrap();
    let datums = vec![
        datum("started", &[], T0, DatumValue::Single(4.0)),
        datum("started", &[], T0 + 60_000, DatumValue::Single(6.0)),
        datum("failed", &[], T0, DatumValue::Single(1.0)),
        datum("failed", &[], T0 + 60_000, DatumValue::Single(3.0)),
        datum(
            "duration",
            &[("sdkName", "js")],
            T0,
            DatumValue::Distribution { values: vec![100.0, 900.0], counts: vec![9.0, 1.0] },
        ),
        datum("duration", &[("sdkName", "ios")], T0, DatumValue::Single(500.0)),
        // Another dimension set: not part of the `{Ns,sdkName}` schema.
        datum("duration", &[("sdkName", "js"), ("osName", "x")], T0, DatumValue::Single(7.0)),
    ];
    assert!(store.publish("Ns", &datums).await.rejected.is_empty());
    let events: Vec<LogEvent> = [("js", "Windows"), ("js", "Mac OS"), ("ios", "iOS")]
        .iter()
        .enumerate()
        .map(|(i, (sdk, os))| LogEvent {
            timestamp: UnixMillis(T0 + i as i64 * 1000),
            message: json!({"name": "meetingStartRequested", "attributes": {"sdkName": sdk, "osName": os}})
                .to_string()
                .into(),
        })
        .collect();
    assert!(store.put("/g", "s", &events).await.rejected.is_empty());
    (dir, store)
}

fn widget(properties: serde_json::Value, kind: &str) -> crate::body::Widget {
    let mut properties = properties;
    if kind != "text" {
        properties["region"] = json!("local");
    }
    let body = json!({"widgets": [{"type": kind, "x": 0, "y": 0, "width": 12, "height": 6, "properties": properties}]});
    Dashboard::from_value(&body).unwrap().widgets.remove(0)
}

fn metric(properties: serde_json::Value) -> crate::body::MetricWidget {
    match widget(properties, "metric").kind {
        WidgetKind::Metric(m) => m,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_time_series_has_one_point_per_period_and_math_combines_them() {
    let (_dir, store) = store().await;
    let m = metric(json!({"stat": "Sum", "period": 60, "metrics": [
        ["Ns", "failed", {"id": "f", "visible": false}],
        ["Ns", "started", {"id": "s"}],
        [{"expression": "100 * f / s", "id": "ratio", "label": "ratio"}]
    ]}));
    let series = data::metric_series(&store, &m, RANGE).unwrap();
    assert_eq!(series.len(), 2, "the hidden metric is not drawn");
    assert_eq!(series[0].points, vec![(T0, 4.0), (T0 + 60_000, 6.0)]);
    assert_eq!(series[1].label, "ratio");
    assert_eq!(series[1].points, vec![(T0, 25.0), (T0 + 60_000, 50.0)]);
    let html = page::widget(
        &store,
        &widget(
            json!({"stat": "Sum", "period": 60, "stacked": true, "metrics": [["Ns", "started"], ["Ns", "failed"]]}),
            "metric",
        ),
        RANGE,
    )
    .into_string();
    assert!(html.contains("data-points=\"4\"") && html.contains("data-sum=\"14\"") && html.contains("<svg"), "{html}");
}

#[tokio::test]
async fn a_search_draws_every_series_of_its_schema_with_any_percentile() {
    let (_dir, store) = store().await;
    let m = metric(
        json!({"metrics": [[{"expression": "SEARCH('{Ns,sdkName} MetricName=\"duration\"', 'p90', 300)", "id": "e", "label": "p90"}]]}),
    );
    let mut series = data::metric_series(&store, &m, RANGE).unwrap();
    series.sort_by(|a, b| a.label.cmp(&b.label));
    let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["p90 ios", "p90 js"]);
    assert_eq!(series[0].points[0].1, 500.0);
    // 9 values of 100 and one of 900: the 90th percentile is 100.
    assert_eq!(series[1].points[0].1, 100.0);
}

#[tokio::test]
async fn single_values_bars_and_pies_show_one_value_over_the_range() {
    let (_dir, store) = store().await;
    for view in ["singleValue", "bar", "pie"] {
        let w = widget(
            json!({"view": view, "stat": "Sum", "period": 60, "setPeriodToTimeRange": true, "metrics": [["Ns", "started"], ["Ns", "failed"]]}),
            "metric",
        );
        let WidgetKind::Metric(m) = &w.kind else { panic!() };
        let values = data::values(&data::metric_series(&store, m, RANGE).unwrap());
        assert_eq!(values, vec![("started".to_owned(), 10.0), ("failed".to_owned(), 4.0)], "{view}");
        let html = page::widget(&store, &w, RANGE).into_string();
        assert!(html.contains("data-sum=\"14\""), "{view}: {html}");
        if view == "singleValue" {
            assert!(html.contains(">10<") && html.contains(">4<"), "{html}");
        } else {
            assert!(html.contains("<svg"), "{view}: {html}");
        }
    }
}

#[tokio::test]
async fn log_widgets_show_rows_and_charts_of_their_stats() {
    let (_dir, store) = store().await;
    let query = "SOURCE '/g' | filter name = \"meetingStartRequested\" | stats count(*) as n by attributes.sdkName as sdk | sort n desc";
    let table = widget(json!({"query": query}), "log");
    let html = page::widget(&store, &table, RANGE).into_string();
    assert!(html.contains("<th>sdk</th><th>n</th>") && html.contains("<td>js</td><td>2</td>"), "{html}");
    for view in ["pie", "bar"] {
        let w = widget(json!({"query": query, "view": view}), "log");
        let WidgetKind::Log(l) = &w.kind else { panic!() };
        assert_eq!(
            data::row_values(&data::log_rows(&store, l, RANGE).unwrap()),
            vec![("js".to_owned(), 2.0), ("ios".to_owned(), 1.0)]
        );
        let html = page::widget(&store, &w, RANGE).into_string();
        assert!(html.contains("<svg") && html.contains("data-sum=\"3\""), "{view}: {html}");
    }
    // A query the subset cannot run is shown on the widget, not a failed page.
    let bad = widget(json!({"query": "SOURCE '/g' | parse @message \"*\" as x"}), "log");
    let html = page::widget(&store, &bad, RANGE).into_string();
    assert!(html.contains("class=\"error\"") && html.contains("parse"), "{html}");
}

#[tokio::test]
async fn text_widgets_are_markdown_with_raw_html_shown_as_text() {
    let (_dir, store) = store().await;
    let w = widget(json!({"markdown": "## Title\n**bold** <script>alert(1)</script>"}), "text");
    let html = page::widget(&store, &w, RANGE).into_string();
    assert!(html.contains("<h2>Title</h2>") && html.contains("<strong>bold</strong>"), "{html}");
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
}

#[tokio::test]
async fn a_widget_without_data_says_so() {
    let (_dir, store) = store().await;
    let w = widget(json!({"metrics": [["Ns", "nothing"]]}), "metric");
    let html = page::widget(&store, &w, RANGE).into_string();
    assert!(html.contains("data-points=\"0\"") && html.contains("No data in this range."), "{html}");
}
