//! The console's HTML: the frame (navigation, time range, refresh, search box, alarm strip), the dashboard grid and
//! each widget. Pages are built with maud, which escapes every value it interpolates; charts are inline SVG from
//! [`crate::chart`]. No script runs: refresh is the `refresh` meta tag, so the console works with scripts off.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::alarms::AlarmView;
use crate::body::{LogView, LogWidget, MetricView, MetricWidget, Widget, WidgetKind};
use crate::chart::{self, Series};
use crate::data::{self, Range};

/// Grid row height in pixels; a widget of height 6 is 6 rows.
const ROW_PX: u32 = 36;
/// The pixel width of one grid column when drawing charts (the page scales the SVG to the real width).
const COLUMN_PX: u32 = 56;

/// The time ranges the console offers, as (query value, milliseconds).
pub const RANGES: [(&str, i64); 6] = [
    ("15m", 900_000),
    ("1h", 3_600_000),
    ("3h", 10_800_000),
    ("12h", 43_200_000),
    ("1d", 86_400_000),
    ("1w", 604_800_000),
];
pub const REFRESHES: [(&str, u32); 4] = [("off", 0), ("10s", 10), ("1m", 60), ("5m", 300)];

/// What every page knows: where it is and the settings the links carry along.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub title: String,
    pub dashboards: &'a [String],
    pub current: &'a str,
    pub range: &'a str,
    pub refresh: &'a str,
    pub query: &'a str,
    pub alarms: &'a [AlarmView],
}

impl Frame<'_> {
    fn link(&self, path: &str, range: &str, refresh: &str) -> String {
        format!("{path}?range={range}&refresh={refresh}")
    }
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f2f3f3;color:#16191f}
header{background:#232f3e;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
header a{color:#d5dbdb;text-decoration:none}header a.on{color:#fff;font-weight:600;border-bottom:2px solid #ec7211}
header .brand{font-weight:700;color:#fff}header form{margin-left:auto}
header input{padding:4px 8px;border-radius:3px;border:0;width:260px}
.bar{padding:6px 16px;display:flex;gap:14px;align-items:center;background:#fff;border-bottom:1px solid #d5dbdb;flex-wrap:wrap}
.bar a{color:#0073bb;text-decoration:none}.bar a.on{font-weight:700;color:#16191f}
.grid{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:36px;gap:8px;padding:12px 16px}
.w{background:#fff;border:1px solid #d5dbdb;border-radius:4px;padding:6px 10px;overflow:auto;display:flex;flex-direction:column}
.w h2{font-size:14px;margin:0 0 4px}.w svg{width:100%;height:auto;flex:1 1 auto;min-height:0}
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:2px 12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse;font-size:12px;width:100%}th,td{text-align:left;padding:2px 6px;border-bottom:1px solid #eaeded;white-space:nowrap}
.single{display:flex;gap:24px;flex-wrap:wrap;align-items:baseline}.single b{font-size:28px;display:block}
.error{color:#d13212}.empty{color:#687078}
.state{padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.ALARM{background:#d13212}.OK{background:#1d8102}.INSUFFICIENT_DATA{background:#687078}
.page td{white-space:normal;vertical-align:top}.page{padding:12px 16px}.page section{background:#fff;border:1px solid #d5dbdb;border-radius:4px;padding:10px;margin-bottom:12px}
.timeline li{margin:2px 0}.muted{color:#687078}
"#;

pub fn frame(f: &Frame<'_>, refresh_s: u32, content: Markup) -> Markup {
    let firing = f.alarms.iter().filter(|a| a.state == "ALARM").count();
    let path = if f.current == "alarms" {
        "/alarms".to_owned()
    } else if f.current == "search" {
        "/search".to_owned()
    } else {
        format!("/dashboards/{}", f.current)
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if refresh_s > 0 { meta http-equiv="refresh" content=(refresh_s); }
                title { (f.title) " - chimewatch" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "chimewatch" }
                    @for d in f.dashboards {
                        a class=(if d == f.current { "on" } else { "" }) href=(f.link(&format!("/dashboards/{d}"), f.range, f.refresh)) { (d) }
                    }
                    a class=(if f.current == "alarms" { "on" } else { "" }) href=(f.link("/alarms", f.range, f.refresh)) {
                        "alarms" @if firing > 0 { " " span.state.ALARM data-firing=(firing) { (firing) " in alarm" } }
                    }
                    form action="/search" method="get" {
                        input type="search" name="q" value=(f.query) placeholder="attendee or meeting id" aria-label="search one attendee or meeting";
                        input type="hidden" name="range" value=(f.range);
                    }
                }
                div.bar {
                    span.muted { "range" }
                    @for (name, _) in RANGES {
                        a class=(if name == f.range { "on" } else { "" }) href=(format!("{}&q={}", f.link(&path, name, f.refresh), encode(f.query))) { (name) }
                    }
                    span.muted { "refresh" }
                    @for (name, _) in REFRESHES {
                        a class=(if name == f.refresh { "on" } else { "" }) href=(format!("{}&q={}", f.link(&path, f.range, name), encode(f.query))) { (name) }
                    }
                    span.muted { "times in UTC" }
                }
                (content)
            }
        }
    }
}

/// The console's search of `id` (which explains it).
pub(crate) fn search_link(id: &str) -> String {
    format!("/search?q={}", encode(id))
}

/// Percent-encodes a query value for a link.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn size(w: &Widget, reserved_rows_px: u32) -> (u32, u32) {
    let width = u32::try_from(w.width).unwrap_or(24) * COLUMN_PX;
    let height = (u32::try_from(w.height).unwrap_or(6) * (ROW_PX + 8)).saturating_sub(reserved_rows_px).max(80);
    (width, height)
}

fn legend(series: &[Series]) -> Markup {
    html! {
        div.legend {
            @for (i, s) in series.iter().enumerate() {
                span { i style=(format!("background:{}", chart::css_color(i))) {} (s.label) }
            }
        }
    }
}

fn failure(message: &str) -> Markup {
    html! { p.error data-error="true" { (message) } }
}

/// A widget's content, with how many datapoints or rows it shows and their sum (for tests and curious readers).
struct Shown {
    content: Markup,
    points: usize,
    sum: f64,
}

impl Shown {
    fn nothing(content: Markup) -> Self {
        Self { content, points: 0, sum: 0.0 }
    }
}

fn metric_content(
    store: &chimewatch_sinks::embedded::EmbeddedStore,
    w: &Widget,
    m: &MetricWidget,
    range: Range,
) -> Shown {
    let series = match data::metric_series(store, m, range) {
        Ok(s) => s,
        Err(e) => return Shown::nothing(failure(&e)),
    };
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    if points == 0 {
        return Shown::nothing(html! { p.empty { "No data in this range." } });
    }
    let sum = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).sum();
    let drawn = match m.view {
        MetricView::TimeSeries => chart::time_series(&series, range.start_ms, range.end_ms, m.stacked, size(w, 70))
            .map(|svg| html! { (PreEscaped(svg)) (legend(&series)) }),
        MetricView::Bar => {
            let values = data::values(&series);
            chart::bars(&values, size(w, 40)).map(|svg| html! { (PreEscaped(svg)) })
        }
        MetricView::Pie => {
            let values = data::values(&series);
            chart::pie(&values, size(w, 70)).map(|svg| html! { (PreEscaped(svg)) (legend(&series)) })
        }
        MetricView::SingleValue => Ok(html! {
            div.single {
                @for (label, value) in data::values(&series) {
                    div { span.muted { (label) } b data-value=(value) { (chart::short(value)) } }
                }
            }
        }),
    };
    Shown { content: drawn.unwrap_or_else(|e| failure(&e)), points, sum }
}

/// Columns whose values the search explains: they link to it.
const EXPLAINED: [&str; 6] = ["attendee", "attendeeId", "meeting", "meetingId", "call", "callId"];

fn cell(column: &str, value: &str) -> Markup {
    let linked = !value.is_empty()
        && EXPLAINED.iter().any(|c| column.eq_ignore_ascii_case(c) || column.ends_with(&format!(".{c}")));
    html! {
        @if linked { a href=(search_link(value)) title="explain" { (value) } } @else { (value) }
    }
}

fn log_content(store: &chimewatch_sinks::embedded::EmbeddedStore, w: &Widget, l: &LogWidget, range: Range) -> Shown {
    let results = match data::log_rows(store, l, range) {
        Ok(r) => r,
        Err(e) => return Shown::nothing(failure(&e)),
    };
    let rows = results.rows.len();
    if rows == 0 {
        return Shown::nothing(html! { p.empty { "No matching log events in this range." } });
    }
    let sum = data::row_values(&results).iter().map(|v| v.1).sum();
    let drawn = match l.view {
        LogView::Table => Ok(html! {
            table {
                thead { tr { @for c in &results.columns { th { (c) } } } }
                tbody {
                    @for row in &results.rows {
                        tr { @for c in &results.columns { td { (cell(c, row.iter().find(|(f, _)| f == c).map_or("", |(_, v)| v.as_str()))) } } }
                    }
                }
            }
        }),
        LogView::Pie => {
            let values = data::row_values(&results);
            let series: Vec<Series> =
                values.iter().map(|(l, _)| Series { label: l.clone(), points: Vec::new() }).collect();
            chart::pie(&values, size(w, 70)).map(|svg| html! { (PreEscaped(svg)) (legend(&series)) })
        }
        LogView::Bar => chart::bars(&data::row_values(&results), size(w, 40)).map(|svg| html! { (PreEscaped(svg)) }),
    };
    Shown { content: drawn.unwrap_or_else(|e| failure(&e)), points: rows, sum }
}

fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Parser, html::push_html};
    // The files are ours, but raw HTML in them is shown as text all the same: the console never passes markup through.
    let events = Parser::new(text).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        other => other,
    });
    let mut out = String::new();
    push_html(&mut out, events);
    out
}

/// One widget in its grid cell. `data-points` counts the datapoints or rows it shows and `data-sum` adds their
/// values, for tests and for readers.
pub fn widget(store: &chimewatch_sinks::embedded::EmbeddedStore, w: &Widget, range: Range) -> Markup {
    let style = format!("grid-column:{} / span {};grid-row:{} / span {}", w.x + 1, w.width, w.y + 1, w.height);
    let (kind, title, shown) = match &w.kind {
        WidgetKind::Metric(m) => ("metric", m.title.as_str(), metric_content(store, w, m, range)),
        WidgetKind::Log(l) => ("log", l.title.as_str(), log_content(store, w, l, range)),
        WidgetKind::Text(t) => ("text", "", Shown { content: PreEscaped(markdown(t)), points: 1, sum: 0.0 }),
    };
    html! {
        div.w style=(style) data-kind=(kind) data-title=(title) data-points=(shown.points) data-sum=(shown.sum) {
            @if !title.is_empty() { h2 { (title) } }
            (shown.content)
        }
    }
}

pub fn dashboard(store: &chimewatch_sinks::embedded::EmbeddedStore, widgets: &[Widget], range: Range) -> Markup {
    html! { div.grid { @for w in widgets { (widget(store, w, range)) } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendee_and_meeting_cells_link_to_their_explanation_and_others_do_not() {
        assert_eq!(
            cell("attendee", "a 1&b").into_string(),
            r#"<a href="/search?q=a%201%26b" title="explain">a 1&amp;b</a>"#
        );
        assert!(cell("attributes.meetingId", "m-1").into_string().contains(r#"href="/search?q=m-1""#));
        assert_eq!(cell("sdk", "amazon-chime-sdk-js").into_string(), "amazon-chime-sdk-js");
        assert_eq!(cell("attendee", "").into_string(), "");
    }
}
