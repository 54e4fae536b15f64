//! The Chime SDKs' own event ingestion protocol (how `amazon-chime-sdk-js`, `-android` and `-ios` upload meeting
//! events to a meeting's `EventIngestionUrl`; see the README's "Zero-code clients"), mapped to the same normalized
//! events as the blog upload format.
//!
//! Body: `{"metadata": {...}, "events": [{"type": "Meet", "v": 1, ["metadata": {meetingId, attendeeId}],
//! "payloads": [{"name", "ts", ["id"], ["ttl"], ...attributes}]}], ["authorization": "<JoinToken>"]}`. The root
//! metadata (device, SDK, meeting and attendee) fills the common attributes, a group's metadata overrides it
//! (Android and iOS), and `ts` becomes `timestampMs`. `id` and `ttl` are delivery details, not attributes: they are
//! kept on the [`ClientEvent`], and `ttl` marks a re-send of events stored on the device.

use md5::{Digest, Md5};
use serde_json::{Map, Value};

use crate::event::{self, EventError, Limits, NormalizedEvent, RejectKind, describe};
use crate::json::BatchError;

/// The one event group type the SDKs send.
const GROUP_TYPE: &str = "Meet";
const IOS_SDK: &str = "amazon-chime-sdk-ios";

/// A parsed ingestion body: its payloads, each normalized or rejected, and the token a beacon carries in the body.
#[derive(Debug)]
pub struct ClientBatch {
    /// The raw JoinToken of a beacon (`navigator.sendBeacon` cannot set headers).
    pub authorization: Option<String>,
    /// The meeting and attendee the root metadata names, for authentication.
    pub meeting_id: Option<String>,
    pub attendee_id: Option<String>,
    pub payloads: Vec<Result<ClientEvent, EventError>>,
}

/// One payload, normalized, with what deduplication needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    pub normalized: NormalizedEvent,
    /// The payload's `id` (Android and iOS); iOS keeps it on re-send, Android does not.
    pub id: Option<String>,
    /// Set on events re-sent from the device's store: their expiry, in milliseconds since the epoch.
    pub ttl: Option<i64>,
    /// Equal for two deliveries of the same event: the iOS payload id, or else a digest of the event's content.
    pub dedup_key: u128,
}

/// Parses an ingestion body given as a strictly parsed JSON value.
pub fn parse_client_events(
    body: Value,
    limits: &Limits,
    now_ms: i64,
    max_payloads: usize,
) -> Result<ClientBatch, IngestionError> {
    let Value::Object(mut root) = body else {
        return Err(IngestionError::Shape(format!(
            "body must be an object {{metadata, events}}, got {}",
            describe(&body)
        )));
    };
    let metadata = match root.remove("metadata") {
        Some(Value::Object(m)) => m,
        None => Map::new(),
        Some(other) => {
            return Err(IngestionError::Shape(format!("metadata: expected an object, got {}", describe(&other))));
        }
    };
    let groups = match root.remove("events") {
        Some(Value::Array(g)) => g,
        Some(other) => {
            return Err(IngestionError::Shape(format!("events: expected an array, got {}", describe(&other))));
        }
        None => return Err(IngestionError::Shape("events: missing".into())),
    };
    let authorization = match root.remove("authorization") {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(IngestionError::Shape(format!("authorization: expected a string, got {}", describe(&other))));
        }
    };
    let count: usize = groups.iter().map(|g| g.get("payloads").and_then(Value::as_array).map_or(1, Vec::len)).sum();
    if count > max_payloads {
        return Err(IngestionError::Batch(BatchError::TooManyElements { count, limit: max_payloads }));
    }
    let string = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut batch = ClientBatch {
        authorization,
        meeting_id: string(&metadata, "meetingId"),
        attendee_id: string(&metadata, "attendeeId"),
        payloads: Vec::with_capacity(count),
    };
    for (g, group) in groups.into_iter().enumerate() {
        match group_payloads(group, g) {
            Ok((group_meta, payloads)) => {
                for (p, payload) in payloads.into_iter().enumerate() {
                    let path = format!("events[{g}].payloads[{p}]");
                    batch.payloads.push(
                        map_payload(payload, &metadata, &group_meta, limits, now_ms).map_err(|e| prefix(e, &path)),
                    );
                }
            }
            Err(e) => batch.payloads.push(Err(e)),
        }
    }
    Ok(batch)
}

/// Why an ingestion body as a whole cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestionError {
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

fn prefix(mut e: EventError, path: &str) -> EventError {
    // Payload attributes sit at the payload's top level, not under "attributes".
    let field = e.path.strip_prefix("attributes.").unwrap_or(&e.path);
    let field = match field {
        "timestampMs" => "ts",
        f => f,
    };
    e.path = if field.is_empty() { path.to_owned() } else { format!("{path}.{field}") };
    e
}

fn group_payloads(group: Value, g: usize) -> Result<(Map<String, Value>, Vec<Value>), EventError> {
    let path = format!("events[{g}]");
    let Value::Object(mut group) = group else {
        return Err(EventError::new(
            path,
            RejectKind::Shape,
            format!("expected an event group object, got {}", describe(&group)),
        ));
    };
    match group.get("type") {
        Some(Value::String(t)) if t == GROUP_TYPE => {}
        Some(other) => {
            return Err(EventError::new(
                format!("{path}.type"),
                RejectKind::OutOfRange,
                format!("expected \"{GROUP_TYPE}\", got {}", describe(other)),
            ));
        }
        None => return Err(EventError::new(format!("{path}.type"), RejectKind::Missing, "missing")),
    }
    let meta = match group.remove("metadata") {
        Some(Value::Object(m)) => m,
        None => Map::new(),
        Some(other) => {
            return Err(EventError::new(
                format!("{path}.metadata"),
                RejectKind::WrongType,
                format!("expected an object, got {}", describe(&other)),
            ));
        }
    };
    match group.remove("payloads") {
        Some(Value::Array(p)) => Ok((meta, p)),
        Some(other) => Err(EventError::new(
            format!("{path}.payloads"),
            RejectKind::WrongType,
            format!("expected an array, got {}", describe(&other)),
        )),
        None => Err(EventError::new(format!("{path}.payloads"), RejectKind::Missing, "missing")),
    }
}

fn map_payload(
    payload: Value,
    root_meta: &Map<String, Value>,
    group_meta: &Map<String, Value>,
    limits: &Limits,
    now_ms: i64,
) -> Result<ClientEvent, EventError> {
    let Value::Object(mut payload) = payload else {
        return Err(EventError::new(
            "",
            RejectKind::Shape,
            format!("expected a payload object {{name, ts, ...}}, got {}", describe(&payload)),
        ));
    };
    let name = event::event_name(payload.remove("name"), "attributes.name")?;
    let ts = payload
        .remove("ts")
        .ok_or_else(|| EventError::new("attributes.timestampMs", RejectKind::Missing, "missing"))?;
    let id = match payload.remove("id") {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(EventError::new(
                "attributes.id",
                RejectKind::WrongType,
                format!("expected a string, got {}", describe(&other)),
            ));
        }
    };
    let ttl = match payload.remove("ttl") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            EventError::new(
                "attributes.ttl",
                RejectKind::WrongType,
                format!("expected milliseconds since the epoch, got {}", describe(&v)),
            )
        })?),
    };
    let mut attrs = Map::with_capacity(root_meta.len() + group_meta.len() + payload.len() + 2);
    for (k, v) in root_meta.iter().chain(group_meta.iter()) {
        attrs.insert(k.clone(), v.clone());
    }
    // The blog format carries browserMajorVersion; the native metadata only browserVersion ("127.0").
    if !attrs.contains_key("browserMajorVersion")
        && let Some(major) = attrs
            .get("browserVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.split('.').next())
            .filter(|m| !m.is_empty())
    {
        attrs.insert("browserMajorVersion".into(), Value::String(major.to_owned()));
    }
    attrs.insert("timestampMs".into(), ts);
    attrs.extend(payload);
    let normalized = event::normalize_attributes(name, attrs, limits, now_ms)?;
    let dedup_key = match (&id, normalized.event.sdk_name()) {
        (Some(id), Some(IOS_SDK)) => digest(&[b"id", id.as_bytes()]),
        _ => content_key(&normalized),
    };
    Ok(ClientEvent { normalized, id, ttl, dedup_key })
}

/// A digest of what makes an event the same event: who, what, when, and its attributes in a canonical order.
pub fn content_key(n: &NormalizedEvent) -> u128 {
    let e = &n.event;
    let mut sorted: Vec<(&String, &Value)> = e.attributes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let attrs = serde_json::to_vec(&sorted).unwrap_or_default();
    digest(&[e.name.as_bytes(), &attrs])
}

fn digest(parts: &[&[u8]]) -> u128 {
    let mut h = Md5::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u128::from_be_bytes(h.finalize().into())
}

#[cfg(test)]
mod tests;
