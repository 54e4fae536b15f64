//! The console's routes, merged into `up`'s HTTP surface: `/` (the first dashboard), `/dashboards/{name}`,
//! `/search?q=ID` (an attendee, meeting or call explained), `/alarms`, and `/api/alarms` (states and history as JSON). Pages are rendered on the blocking
//! pool, because the embedded store answers synchronously.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chimewatch_sinks::embedded::EmbeddedStore;
use maud::{Markup, html};
use serde::Deserialize;

use crate::alarms::Alarms;
use crate::body::Dashboard;
use crate::data::Range;
use crate::page::{self, Frame, RANGES, REFRESHES};
use crate::{explain, timeline};

/// What the console shows: the store, the dashboards by name (in menu order), and the alarms `up` evaluates.
#[derive(Debug)]
pub struct Console {
    pub store: EmbeddedStore,
    pub dashboards: Vec<(String, Dashboard)>,
    /// Where meeting events are logged: the search reads it.
    pub log_group: String,
    /// Where SIP message records are logged: the search finds calls there.
    pub sip_log_group: String,
    pub alarms: Arc<Alarms>,
    /// The wall clock in ms (a parameter so that tests can pin it).
    pub now: fn() -> i64,
}

#[derive(Debug, Deserialize, Default)]
struct View {
    range: Option<String>,
    refresh: Option<String>,
    q: Option<String>,
}

impl View {
    fn range(&self) -> (&'static str, i64) {
        let wanted = self.range.as_deref().unwrap_or("3h");
        RANGES.iter().copied().find(|(n, _)| *n == wanted).unwrap_or(("3h", 10_800_000))
    }

    fn refresh(&self) -> (&'static str, u32) {
        let wanted = self.refresh.as_deref().unwrap_or("1m");
        REFRESHES.iter().copied().find(|(n, _)| *n == wanted).unwrap_or(("1m", 60))
    }
}

pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/dashboards/{name}", get(dashboard))
        .route("/search", get(search))
        .route("/alarms", get(alarms))
        .route("/api/alarms", get(alarms_json))
        .with_state(console)
}

async fn home(State(console): State<Arc<Console>>) -> Response {
    match console.dashboards.first() {
        Some((name, _)) => Redirect::to(&format!("/dashboards/{name}")).into_response(),
        None => (StatusCode::NOT_FOUND, "no dashboards").into_response(),
    }
}

/// Renders a page on the blocking pool with the frame around `content`.
async fn render(
    console: Arc<Console>,
    view: View,
    current: String,
    title: String,
    content: impl FnOnce(&Console, Range, &str) -> Markup + Send + 'static,
) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let (range_name, range_ms) = view.range();
        let (refresh_name, refresh_s) = view.refresh();
        let now = (console.now)();
        let range = Range { start_ms: now - range_ms, end_ms: now + 1 };
        let query = view.q.clone().unwrap_or_default();
        let names: Vec<String> = console.dashboards.iter().map(|(n, _)| n.clone()).collect();
        let alarms = console.alarms.views();
        let frame = Frame {
            title,
            dashboards: &names,
            current: &current,
            range: range_name,
            refresh: refresh_name,
            query: &query,
            alarms: &alarms,
        };
        let body = content(&console, range, query.trim());
        page::frame(&frame, refresh_s, body).into_string()
    })
    .await;
    match rendered {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering the page: {e}")).into_response(),
    }
}

async fn dashboard(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    Query(view): Query<View>,
) -> Response {
    if !console.dashboards.iter().any(|(n, _)| *n == name) {
        return (StatusCode::NOT_FOUND, format!("no dashboard {name:?}")).into_response();
    }
    let title = name.clone();
    render(console, view, name.clone(), title, move |console, range, _| {
        let widgets =
            console.dashboards.iter().find(|(n, _)| *n == name).map(|(_, d)| d.widgets.as_slice()).unwrap_or_default();
        page::dashboard(&console.store, widgets, range)
    })
    .await
}

async fn search(State(console): State<Arc<Console>>, Query(view): Query<View>) -> Response {
    render(console, view, "search".into(), "search".into(), |console, range, q| {
        if q.is_empty() {
            return timeline::page("", &[]);
        }
        let error = |e: String| html! { div.page { section { p.error { (e) } } } };
        let events = match timeline::find(&console.store, &console.log_group, q, range.start_ms, range.end_ms) {
            Ok(events) => events,
            Err(e) => return error(e),
        };
        if events.is_empty() {
            // Not an attendee or a meeting: perhaps a call.
            match timeline::find_call(&console.store, &console.sip_log_group, q, range.start_ms, range.end_ms) {
                Ok(records) if !records.is_empty() => {
                    let messages: Vec<(i64, String)> =
                        records.into_iter().map(|r| (r.event_timestamp, r.sip_message)).collect();
                    if let Some(x) = explain::explain_call(&messages, (console.now)()) {
                        return html! { div.page { (explain::call(q, &x)) } };
                    }
                }
                Ok(_) => {}
                Err(e) => return error(e),
            }
        }
        let meeting_events = timeline::meeting_events(&events);
        let is_meeting = meeting_events
            .iter()
            .any(|e| timeline::MEETING_FIELDS.iter().any(|f| e.attributes.get(*f).and_then(|v| v.as_str()) == Some(q)));
        let explanation = if is_meeting {
            chimewatch_metrics::explain::meeting(&meeting_events).map(|m| explain::meeting(&m))
        } else {
            let (latest, _) = chimewatch_metrics::explain::latest_attendee(&meeting_events);
            chimewatch_metrics::explain::attendee(&latest).map(|x| explain::attendee(&x))
        };
        html! {
            @if let Some(x) = explanation { div.page { (x) } }
            (timeline::page(q, &events))
        }
    })
    .await
}

async fn alarms(State(console): State<Arc<Console>>, Query(view): Query<View>) -> Response {
    render(console, view, "alarms".into(), "alarms".into(), |console, _, _| {
        crate::alarms::page(&console.alarms.views())
    })
    .await
}

async fn alarms_json(State(console): State<Arc<Console>>) -> Response {
    axum::Json(console.alarms.views()).into_response()
}
