//! The ingest handlers: read the body, judge each element on its own, put the valid ones, and answer only once
//! they are durable.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use chimewatch_model::event::{EventError, RejectKind, normalize};
use chimewatch_model::json::{parse_strict, parse_strict_batch, split_array_or_lines, split_batch, utf8};
use chimewatch_model::transcode::{Transcoded, transcode};
use chimewatch_model::{Ingest, Record, SipLogRecord, partition_key_for};
use chimewatch_stream::OutRecord;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::Principal;
use crate::body::{self, Accept};
use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::privacy::ExternalIds;
use crate::telemetry::{KindLabels, RejectLabels};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Rejection {
    pub index: usize,
    pub error: String,
}

/// The outcome of parsing a body: records to put and elements rejected.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<OutRecord>,
    pub rejected: Vec<(usize, EventError)>,
}

/// What a route parses its body into.
#[derive(Debug, Clone, Copy)]
struct Route {
    name: &'static str,
    kind: &'static str,
    accept: Accept,
    parse: fn(&[u8], &GatewayConfig, &Principal, i64) -> Result<Parsed, ApiError>,
}

const MEETING_EVENTS: Route =
    Route { name: "meeting_events", kind: "meeting_event", accept: Accept::Json, parse: parse_meeting_events };
const SIP_MESSAGES: Route =
    Route { name: "sip_messages", kind: "sip_message", accept: Accept::JsonOrLines, parse: parse_sip_messages };

/// `POST /v1/meeting-events` and the blog sample's `POST /meetingevents`: a JSON array of `{name, attributes}`.
pub async fn meeting_events(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    handle(state, MEETING_EVENTS, uri, headers, body).await
}

/// `POST /v1/sip-messages`: Voice Connector SIP log records, as a JSON array or newline-delimited JSON.
pub async fn sip_messages(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    handle(state, SIP_MESSAGES, uri, headers, body).await
}

async fn handle(state: AppState, route: Route, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let result = ingest(&state, route, &uri, &headers, body).await.map(Json);
    respond(&state, route.name, result)
}

/// Turns a handler's result into its response, logging refusals and counting the request by route and status.
pub(crate) fn respond(state: &AppState, route: &'static str, result: Result<impl IntoResponse, ApiError>) -> Response {
    let response = match result {
        Ok(ok) => ok.into_response(),
        Err(e) => {
            if e.status().is_server_error() || e.status().as_u16() == 429 {
                tracing::warn!(route, error = %e, "An ingest request could not be served.");
            } else {
                tracing::debug!(route, error = %e, "An ingest request was refused.");
            }
            e.into_response()
        }
    };
    state.telemetry.request(route, response.status().as_u16());
    response
}

/// Bodies larger than this are parsed on a blocking thread, off the async workers.
const INLINE_PARSE_BYTES: usize = 64 << 10;

/// Runs a body's parse inline when it is small, or on a blocking thread when parsing takes milliseconds of CPU.
pub(crate) async fn parse_off_workers<T: Send + 'static>(
    body_len: usize,
    parse: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body_len <= INLINE_PARSE_BYTES {
        return parse();
    }
    tokio::task::spawn_blocking(parse).await.map_err(|e| ApiError::Internal(e.to_string()))?
}

async fn ingest(
    state: &AppState,
    route: Route,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<IngestResponse, ApiError> {
    let principal = state.config.auth.authenticate(headers, uri.query(), None)?;
    body::check_content_type(headers, route.accept)?;
    let bytes = body::read(headers, body, state.config.max_body_bytes, state.config.body_read_timeout).await?;
    state.telemetry.request_bytes.inc_by(bytes.len() as u64);
    let now = (state.clock)().as_i64();
    let config = Arc::clone(&state.config);
    let parsed = parse_off_workers(bytes.len(), move || (route.parse)(&bytes, &config, &principal, now)).await?;
    for (_, e) in &parsed.rejected {
        state.telemetry.rejected.get(&RejectLabels { kind: route.kind, reason: e.kind.as_str() }).inc();
    }
    let accepted = parsed.records.len();
    if accepted > 0 {
        state.producer.put(parsed.records).await?;
    }
    state.telemetry.accepted.get(&KindLabels { kind: route.kind }).inc_by(accepted as u64);
    let rejected = parsed.rejected.into_iter().map(|(index, e)| Rejection { index, error: e.to_string() }).collect();
    Ok(IngestResponse { accepted, rejected })
}

fn syntax(e: &serde_json::Error) -> EventError {
    EventError::new("", RejectKind::Syntax, e.to_string())
}

/// Parses a `{name, attributes}` batch; an event outside an attendee token's scope fails the whole request.
pub fn parse_meeting_events(
    bytes: &[u8],
    config: &GatewayConfig,
    principal: &Principal,
    now_ms: i64,
) -> Result<Parsed, ApiError> {
    let text = utf8(bytes)?;
    let elements = split_batch(text, config.max_events_per_request)?;
    // Events as the JS SDK sends them go straight to their records. A policy that rewrites external ids needs the
    // general path, which applies it.
    let fast = matches!(config.external_ids, ExternalIds::Keep);
    let transcoded: Vec<Option<Transcoded>> = elements
        .iter()
        .map(|raw| fast.then(|| transcode(raw.get(), &config.limits, now_ms, config.max_record_bytes)).flatten())
        .collect();
    // The others are parsed into values: in one pass over the body when all of it parses (the fast path's elements
    // too, which is cheaper than splitting a body whose elements mostly need values), else one by one.
    let mut values: Vec<Option<Value>> = if transcoded.iter().all(Option::is_some) {
        Vec::new()
    } else {
        parse_strict_batch(text, elements.len()).unwrap_or_default().into_iter().map(Some).collect()
    };
    let mut parsed = Parsed::default();
    for (index, (raw, fast)) in elements.iter().zip(transcoded).enumerate() {
        let result = match fast {
            Some(t) => check_scope(principal, index, Some(t.meeting_id), Some(t.attendee_id))
                .map(|()| OutRecord { partition_key: t.partition_key, data: t.data }),
            None => match values.get_mut(index).and_then(Option::take) {
                Some(value) => Ok(value),
                None => parse_strict(raw.get()).map_err(|e| syntax(&e)),
            }
            .and_then(|value| meeting_event_record(value, config, principal, index, now_ms)),
        };
        match result {
            Ok(r) => parsed.records.push(r),
            Err(e) if e.kind == RejectKind::Forbidden => return Err(ApiError::Forbidden(e.detail)),
            Err(e) => parsed.rejected.push((index, e)),
        }
    }
    Ok(parsed)
}

/// The general path: normalize, check the token's scope, apply the external-id policy, and encode.
fn meeting_event_record(
    value: Value,
    config: &GatewayConfig,
    principal: &Principal,
    index: usize,
    now_ms: i64,
) -> Result<OutRecord, EventError> {
    let mut n = normalize(value, &config.limits, now_ms)?;
    check_scope(principal, index, n.event.meeting_id(), n.event.attendee_id())?;
    config.external_ids.apply(&mut n);
    let record = Record::meeting_event(n, Ingest::Batch, now_ms);
    let data = record.encode_bounded(config.max_record_bytes)?;
    Ok(OutRecord { partition_key: partition_key_for(&record), data })
}

fn check_scope(
    principal: &Principal,
    index: usize,
    meeting: Option<&str>,
    attendee: Option<&str>,
) -> Result<(), EventError> {
    let Principal::Attendee { meeting_id, attendee_id, .. } = principal else { return Ok(()) };
    if meeting == Some(meeting_id.as_str()) && attendee == Some(attendee_id.as_str()) {
        return Ok(());
    }
    Err(EventError::new(
        "",
        RejectKind::Forbidden,
        format!(
            "event {index} is for meeting {:?} attendee {:?}, but the token is for meeting {meeting_id:?} attendee {attendee_id:?}",
            meeting.unwrap_or(""),
            attendee.unwrap_or("")
        ),
    ))
}

/// Parses SIP log records. Attendee tokens do not cover SIP records: those come from the customer's backend.
pub fn parse_sip_messages(
    bytes: &[u8],
    config: &GatewayConfig,
    principal: &Principal,
    now_ms: i64,
) -> Result<Parsed, ApiError> {
    if matches!(principal, Principal::Attendee { .. }) {
        return Err(ApiError::Forbidden("attendee tokens cannot post SIP message records; use an API key".into()));
    }
    let text = utf8(bytes)?;
    let mut parsed = Parsed::default();
    for (index, raw) in split_array_or_lines(text, config.max_events_per_request)?.into_iter().enumerate() {
        let result = parse_strict(raw).map_err(|e| syntax(&e)).and_then(SipLogRecord::from_value).and_then(|r| {
            let record = Record::sip_message(r, Ingest::SipPost, now_ms);
            let data = record.encode_bounded(config.max_record_bytes)?;
            Ok(OutRecord { partition_key: partition_key_for(&record), data })
        });
        match result {
            Ok(r) => parsed.records.push(r),
            Err(e) => parsed.rejected.push((index, e)),
        }
    }
    Ok(parsed)
}

#[cfg(test)]
pub(crate) mod tests;
