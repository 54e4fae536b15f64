//! The search of one attendee or meeting, which the blog sample could only describe ("run this Logs Insights
//! query"): every event whose attendee, meeting or external id is the one searched, in time order, with the SDK's
//! own meeting history from the latest event, as a list and as a strip of dots in time.

use chimewatch_metrics::explain::Tone;
use chimewatch_model::{MeetingEvent, SipLogRecord};
use chimewatch_sinks::embedded::{EmbeddedStore, StoredLogEvent};
use chimewatch_sinks::logs_filter::{Filter, Literal, Op};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use crate::chart;

/// Most events one search shows.
pub const MAX_EVENTS: usize = 2_000;

/// The ids an event can be found by.
const ID_FIELDS: [&str; 4] = ["attendeeId", "meetingId", "externalUserId", "externalMeetingId"];
/// The ids that name an attendee, and those that name a meeting.
pub const ATTENDEE_FIELDS: [&str; 2] = ["attendeeId", "externalUserId"];
pub const MEETING_FIELDS: [&str; 2] = ["meetingId", "externalMeetingId"];

/// Events of `group` in `[since, until)` with `id` in any id field, oldest first.
pub fn find(
    store: &EmbeddedStore,
    group: &str,
    id: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<StoredLogEvent>, String> {
    find_in(store, group, &ID_FIELDS, id, since_ms, until_ms)
}

/// Events of `group` in `[since, until)` with `id` in one of the attributes `fields`, oldest first. The filter is
/// built as a value, not as query text, so no id can change the query.
pub fn find_in(
    store: &EmbeddedStore,
    group: &str,
    fields: &[&str],
    id: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<StoredLogEvent>, String> {
    let field = |name: &str| Filter::Compare {
        field: vec!["attributes".to_owned(), name.to_owned()],
        op: Op::Eq,
        value: Literal::Str(id.to_owned()),
    };
    let filter = Filter::Or(fields.iter().map(|name| field(name)).collect());
    store.query_logs(group, Some(&filter), since_ms, until_ms, MAX_EVENTS).map_err(|e| e.to_string())
}

/// The stored events as meeting events (a line that is not one is skipped: the group holds nothing else).
pub fn meeting_events(events: &[StoredLogEvent]) -> Vec<MeetingEvent> {
    events.iter().filter_map(|e| serde_json::from_str::<MeetingEvent>(&e.message).ok()).collect()
}

/// The SIP message records of call `call_id` (Voice Connector's call id) in `group`, oldest first.
pub fn find_call(
    store: &EmbeddedStore,
    group: &str,
    call_id: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<SipLogRecord>, String> {
    let filter =
        Filter::Compare { field: vec!["call_id".to_owned()], op: Op::Eq, value: Literal::Str(call_id.to_owned()) };
    let events = store.query_logs(group, Some(&filter), since_ms, until_ms, MAX_EVENTS).map_err(|e| e.to_string())?;
    Ok(events.iter().filter_map(|e| serde_json::from_str::<SipLogRecord>(&e.message).ok()).collect())
}

/// The chart colour of an event's tone: red for failures, amber for trouble, green for the happy path, grey else.
fn tone(name: &str) -> usize {
    match chimewatch_metrics::explain::tone(name) {
        Tone::Failure => 3,
        Tone::Trouble => 1,
        Tone::Good => 2,
        Tone::Neutral => 0,
    }
}

/// The attribute that says most about an event of this name, for the list.
fn detail(attributes: &serde_json::Map<String, Value>) -> String {
    let keys = [
        "meetingStatus",
        "meetingStartDurationMs",
        "meetingDurationMs",
        "attendeePresenceDurationMs",
        "audioInputErrorMessage",
        "videoInputErrorMessage",
        "meetingErrorMessage",
        "poorConnectionCount",
        "retryCount",
    ];
    keys.iter()
        .filter_map(|k| {
            attributes.get(*k).map(|v| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn strip(events: &[(i64, String)], width: u32) -> String {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return String::new() };
    let span = (last.0 - first.0).max(1) as f64;
    let usable = f64::from(width - 40);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 46" role="img"><line x1="20" y1="20" x2="{}" y2="20" stroke="#aab7b8"/>"##,
        width - 20
    );
    for (t, name) in events {
        let x = 20.0 + usable * (t - first.0) as f64 / span;
        svg.push_str(&format!(
            r#"<circle cx="{x:.1}" cy="20" r="5" fill="{}"><title>{} {}</title></circle>"#,
            chart::css_color(tone(name)),
            chart::clock(*t, false),
            maud::html! { (name) }.into_string()
        ));
    }
    svg.push_str(&format!(
        r#"<text x="20" y="42" font-size="11">{}</text><text x="{}" y="42" font-size="11" text-anchor="end">{}</text></svg>"#,
        chart::clock(first.0, true),
        width - 20,
        chart::clock(last.0, true)
    ));
    svg
}

pub fn page(id: &str, events: &[StoredLogEvent]) -> Markup {
    let parsed: Vec<(i64, String, serde_json::Map<String, Value>)> = events
        .iter()
        .filter_map(|e| {
            let v: Value = serde_json::from_str(&e.message).ok()?;
            let name = v.get("name")?.as_str()?.to_owned();
            let attributes = v.get("attributes")?.as_object()?.clone();
            Some((e.timestamp_ms, name, attributes))
        })
        .collect();
    let dots: Vec<(i64, String)> = parsed.iter().map(|(t, n, _)| (*t, n.clone())).collect();
    let history = parsed.iter().rev().find_map(|(_, _, a)| a.get("meetingHistory").and_then(Value::as_array).cloned());
    html! {
        div.page {
            @if id.is_empty() {
                section { p { "Type an attendee id, meeting id or external id into the search box." } }
            } @else if parsed.is_empty() {
                section data-events="0" { p { "No events with the id " code { (id) } " in this range. Widen the range, or check the id." } }
            } @else {
                section data-events=(parsed.len()) {
                    h2 { (parsed.len()) " events with the id " code { (id) } }
                    (PreEscaped(strip(&dots, 1200)))
                    table.timeline {
                        thead { tr { th { "time (UTC)" } th { "event" } th { "attendee" } th { "meeting" } th { "SDK" } th { "details" } } }
                        tbody {
                            @for (t, name, a) in &parsed {
                                tr {
                                    td { (chart::clock(*t, true)) ":" (format!("{:02}.{:03}", t.div_euclid(1000).rem_euclid(60), t.rem_euclid(1000))) }
                                    td { span.state style=(format!("background:{}", chart::css_color(tone(name)))) { (name) } }
                                    td { (a.get("attendeeId").and_then(Value::as_str).unwrap_or("")) }
                                    td { (a.get("meetingId").and_then(Value::as_str).unwrap_or("")) }
                                    td { (a.get("sdkName").and_then(Value::as_str).unwrap_or("")) " " (a.get("sdkVersion").and_then(Value::as_str).unwrap_or("")) }
                                    td { (detail(a)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(history) = history {
                    section {
                        h2 { "Meeting history, as the SDK recorded it (latest event)" }
                        ol.timeline {
                            @for item in &history {
                                li {
                                    (item.get("name").and_then(Value::as_str).unwrap_or("?"))
                                    @if let Some(t) = item.get("timestampMs").and_then(Value::as_i64) { span.muted { " at " (chart::clock(t, true)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
