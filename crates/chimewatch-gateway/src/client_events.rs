//! `POST /v1/client-events`: the Chime SDKs' own event ingestion protocol, so an app feeds chimewatch by changing
//! its ingestion URL only. And `POST /v1/admin/attendees`, where the customer's backend registers JoinTokens.
//!
//! Status codes follow what the SDKs do with them: any 2xx is success; 429 and 503 are retried (with the same body);
//! other 4xx are never retried, so they are kept for requests that can never succeed. Valid payloads of a batch are
//! kept even when others are rejected, and duplicates (retries, beacon re-sends) are dropped and counted.
//!
//! A request is authenticated from its headers and query before its body is read. Only a page-end beacon carries
//! its token in the body; its body is read within the browsers' beacon limit (64 KiB) before it is authenticated, so
//! no unauthenticated request costs more than that to parse.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use chimewatch_model::event::{EventError, RejectKind, describe};
use chimewatch_model::ingestion::{ClientBatch, ClientEvent, IngestionError, parse_client_events};
use chimewatch_model::json::{parse_strict, syntax_error, utf8};
use chimewatch_model::{Record, partition_key_for};
use chimewatch_stream::OutRecord;
use serde::Serialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::{JoinTokenRegistry, Principal};
use crate::body::{self, Accept};
use crate::error::ApiError;
use crate::ingest::{Rejection, parse_off_workers};
use crate::telemetry::{KindLabels, RejectLabels};

const ROUTE: &str = "client_events";
/// The SDKs send a few dozen events per request; a body larger than this is not one of theirs.
pub const MAX_CLIENT_BODY_BYTES: usize = 1 << 20;
/// `navigator.sendBeacon` sends at most 64 KiB (Chrome, Firefox and Safari), and a beacon is read before it is
/// authenticated, so it is read within that.
pub const MAX_BEACON_BODY_BYTES: usize = 64 << 10;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ClientEventsResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

pub async fn client_events(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let result = ingest(&state, &uri, &headers, body).await;
    crate::ingest::respond(&state, ROUTE, result)
}

async fn ingest(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<ClientEventsResponse, ApiError> {
    body::check_content_type(headers, Accept::Json)?;
    let now = (state.clock)().as_i64();
    let auth = &state.config.auth;
    let before_body = auth.authenticate_client(headers, uri.query(), &state.join_tokens, now)?;
    let limit = match before_body {
        Some(_) => state.config.max_body_bytes.min(MAX_CLIENT_BODY_BYTES),
        None => MAX_BEACON_BODY_BYTES,
    };
    let bytes = body::read(headers, body, limit, state.config.body_read_timeout).await?;
    state.telemetry.request_bytes.inc_by(bytes.len() as u64);
    if uri.query().is_some_and(|q| q.split(['&', '?']).any(|p| p == "beacon=1")) {
        state.telemetry.beacons.inc();
    }
    let config = Arc::clone(&state.config);
    let batch = parse_off_workers(bytes.len(), move || -> Result<ClientBatch, ApiError> {
        let value = parse_strict(utf8(&bytes)?).map_err(syntax_error)?;
        parse_client_events(value, &config.limits, now, config.max_events_per_request).map_err(|e| match e {
            IngestionError::Shape(m) => ApiError::BadRequest(m),
            IngestionError::Batch(b) => ApiError::Batch(b),
        })
    })
    .await?;
    let principal = match before_body {
        Some(principal) => principal,
        None => auth.authenticate_beacon(batch.authorization.as_deref(), &state.join_tokens, now)?,
    };

    let mut rejected: Vec<(usize, EventError)> = Vec::new();
    let mut candidates: Vec<(usize, ClientEvent)> = Vec::new();
    for (index, payload) in batch.payloads.into_iter().enumerate() {
        match payload.and_then(|e| check_scope(&principal, &state.join_tokens, e, now)) {
            Ok(e) => candidates.push((index, e)),
            Err(e) => rejected.push((index, e)),
        }
    }
    let keys: Vec<u128> = candidates.iter().map(|(_, e)| e.dedup_key).collect();
    let duplicate = state.dedup.duplicates(&keys, now);
    let mut records = Vec::new();
    let mut kept_keys = Vec::new();
    for ((index, mut event), is_duplicate) in candidates.into_iter().zip(duplicate.iter().copied()) {
        if is_duplicate {
            continue;
        }
        state.config.external_ids.apply(&mut event.normalized);
        let key = event.dedup_key;
        let record = Record::client_event(event, now);
        match record.encode_bounded(state.config.max_record_bytes) {
            Ok(data) => {
                records.push(OutRecord { partition_key: partition_key_for(&record), data });
                kept_keys.push(key);
            }
            Err(e) => rejected.push((index, e)),
        }
    }
    let duplicates = duplicate.iter().filter(|d| **d).count();
    for (_, e) in &rejected {
        state.telemetry.rejected.get(&RejectLabels { kind: "meeting_event", reason: e.kind.as_str() }).inc();
    }
    let accepted = records.len();
    if accepted > 0 {
        state.producer.put(records).await?;
        // Only now durable: a failed put's retry must not look like a duplicate.
        state.dedup.remember(&kept_keys, now);
    }
    state.telemetry.duplicates.inc_by(duplicates as u64);
    state.telemetry.accepted.get(&KindLabels { kind: "meeting_event" }).inc_by(accepted as u64);
    rejected.sort_by_key(|(i, _)| *i);
    let rejected = rejected.into_iter().map(|(index, e)| Rejection { index, error: e.to_string() }).collect();
    Ok(ClientEventsResponse { accepted, duplicates, rejected })
}

/// An attendee may post its own events, and events its device re-sends (with `ttl`) from the same person's earlier
/// sessions: those whose attendee was registered with the same `ExternalUserId` as the one the credentials name.
/// Another person's events are refused, whatever their `ttl`.
fn check_scope(
    principal: &Principal,
    registry: &JoinTokenRegistry,
    e: ClientEvent,
    now_ms: i64,
) -> Result<ClientEvent, EventError> {
    let Principal::Attendee { meeting_id, attendee_id, user } = principal else { return Ok(e) };
    let (m, a) = (e.normalized.event.meeting_id().unwrap_or(""), e.normalized.event.attendee_id().unwrap_or(""));
    if m == meeting_id && a == attendee_id {
        return Ok(e);
    }
    let same_person = e.ttl.is_some() && user.is_some() && registry.user_of(m, a, now_ms).as_ref() == user.as_ref();
    if same_person {
        return Ok(e);
    }
    Err(EventError::new(
        "",
        RejectKind::Forbidden,
        format!(
            "event is for meeting {m:?} attendee {a:?}, but the credentials are for meeting {meeting_id:?} attendee {attendee_id:?}{}",
            if e.ttl.is_some() {
                " (a re-sent event passes only for an earlier session of the same registered externalUserId)"
            } else {
                ""
            }
        ),
    ))
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub registered: usize,
}

/// `POST /v1/admin/attendees`: `{meetingId, attendeeId, joinToken, [externalUserId], [ttlSeconds]}` or an array of
/// them. Needs an API key when authentication is configured.
pub async fn register_attendees(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let result = register(&state, &uri, &headers, body).await;
    crate::ingest::respond(&state, "admin_attendees", result)
}

async fn register(state: &AppState, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<RegisterResponse, ApiError> {
    match state.config.auth.authenticate(headers, uri.query(), None)? {
        Principal::ApiKey(_) | Principal::Anonymous => {}
        Principal::Attendee { .. } => return Err(ApiError::Forbidden("registering attendees needs an API key".into())),
    }
    body::check_content_type(headers, Accept::Json)?;
    let bytes = body::read(headers, body, state.config.max_body_bytes, state.config.body_read_timeout).await?;
    let value =
        parse_strict(utf8(&bytes)?).map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let now = (state.clock)().as_i64();
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| -> Result<&str, ApiError> {
            match item.get(k) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s),
                other => Err(ApiError::BadRequest(format!(
                    "attendee {i}: {k}: expected a non-empty string, got {}",
                    other.map_or("nothing".into(), describe)
                ))),
            }
        };
        let ttl_ms = match item.get("ttlSeconds") {
            None => state.config.join_token_ttl_ms,
            Some(v) => v.as_i64().filter(|s| *s > 0).map(|s| s.saturating_mul(1000)).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "attendee {i}: ttlSeconds: expected a positive number, got {}",
                    describe(v)
                ))
            })?,
        };
        let user = match item.get("externalUserId") {
            None | Some(Value::Null) => None,
            Some(_) => Some(field("externalUserId")?),
        };
        entries.push((
            field("meetingId")?,
            field("attendeeId")?,
            field("joinToken")?,
            now.saturating_add(ttl_ms),
            user,
        ));
    }
    for (m, a, t, expires, user) in &entries {
        state.join_tokens.register(m, a, t, *expires, *user);
    }
    Ok(RegisterResponse { registered: entries.len() })
}

impl IntoResponse for RegisterResponse {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

impl IntoResponse for ClientEventsResponse {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

#[cfg(test)]
mod tests;
