//! Meeting events from the JS, Android and iOS SDKs, normalized to one shape and validated one by one.
//!
//! The normalized shape is the blog sample's `{name, attributes}` so its Logs Insights queries keep working; the
//! differences between SDKs (the README's "The gateway's API" lists them) are removed here and nowhere else:
//! numeric and boolean strings become numbers and booleans, the three history shapes become `[{name, timestampMs}]`,
//! iOS lowerCamel statuses become PascalCase, iOS `*Error` keys become `*ErrorMessage`, and the zero durations
//! Android and iOS send for meetings that never started are removed (JS omits them). Unknown names and attributes pass
//! through untouched. Every value that normalization changed is kept as sent in [`NormalizedEvent::original`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Caps applied by truncating (with a marker) rather than by rejecting the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct Limits {
    /// Most recent `meetingHistory` entries kept; the JS SDK repeats the whole, unbounded history in every event.
    pub max_history_entries: usize,
    /// Longest string attribute value, in bytes; longer values are cut at a character boundary.
    pub max_attribute_bytes: usize,
    /// Most attributes kept per event; unknown attributes beyond it are dropped by name, known ones never.
    pub max_attributes: usize,
    /// How far past the server's clock an event timestamp may lie before the event is rejected.
    pub max_future_skew_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_history_entries: 256,
            max_attribute_bytes: 4096,
            max_attributes: 256,
            max_future_skew_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// A normalized meeting event, shaped like the blog sample's messages: `{"name": ..., "attributes": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingEvent {
    pub name: String,
    pub attributes: Map<String, Value>,
}

impl MeetingEvent {
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
    pub fn num_attr(&self, key: &str) -> Option<f64> {
        self.attributes.get(key).and_then(Value::as_f64)
    }
    pub fn meeting_id(&self) -> Option<&str> {
        self.str_attr(keys::MEETING_ID)
    }
    pub fn attendee_id(&self) -> Option<&str> {
        self.str_attr(keys::ATTENDEE_ID)
    }
    pub fn sdk_name(&self) -> Option<&str> {
        self.str_attr(keys::SDK_NAME)
    }
    /// Event time in milliseconds since the epoch; always present on a validated event.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.attributes.get(keys::TIMESTAMP_MS).and_then(Value::as_i64)
    }
}

/// What [`normalize`] produces: the event, the values it changed as sent, and what the caps cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedEvent {
    pub event: MeetingEvent,
    /// Attributes whose value normalization changed or removed, as the client sent them (after the caps).
    pub original: Map<String, Value>,
    pub truncation: Truncation,
}

/// Markers of what the caps in [`Limits`] removed, so a reader knows the event is not whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Truncation {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_entries_dropped: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes_dropped: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_truncated: Vec<String>,
}

impl Truncation {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Attribute names with a meaning to chimewatch.
pub mod keys {
    pub const NAME: &str = "name";
    pub const ATTRIBUTES: &str = "attributes";
    pub const MEETING_ID: &str = "meetingId";
    pub const ATTENDEE_ID: &str = "attendeeId";
    pub const TIMESTAMP_MS: &str = "timestampMs";
    pub const SDK_NAME: &str = "sdkName";
    pub const MEETING_HISTORY: &str = "meetingHistory";
    pub const MEETING_STATUS: &str = "meetingStatus";
    pub const MEETING_START_DURATION_MS: &str = "meetingStartDurationMs";
    pub const MEETING_DURATION_MS: &str = "meetingDurationMs";

    /// Durations (ms) and counts: non-negative numbers, sent as strings by iOS.
    pub const NON_NEGATIVE_NUMBERS: &[&str] = &[
        MEETING_START_DURATION_MS,
        MEETING_DURATION_MS,
        "meetingReconnectDurationMs",
        "signalingOpenDurationMs",
        "iceGatheringDurationMs",
        "attendeePresenceDurationMs",
        "maxVideoTileCount",
        "poorConnectionCount",
        "retryCount",
        "signalingCloseCode",
        "batteryLevel",
    ];
    pub const BOOLEANS: &[&str] = &["lowPowerModeEnabled", "signalingCloseWasClean"];
    /// iOS code names device errors `*Error` where the guides and the other SDKs say `*ErrorMessage`.
    pub const IOS_ERROR_ALIASES: &[(&str, &str)] = &[
        ("audioInputError", "audioInputErrorMessage"),
        ("videoInputError", "videoInputErrorMessage"),
        ("signalingDroppedError", "signalingDroppedErrorMessage"),
        ("contentShareError", "contentShareErrorMessage"),
    ];
    /// Keys never dropped by the attribute-count cap.
    pub const KNOWN: &[&str] = &[
        MEETING_ID,
        ATTENDEE_ID,
        TIMESTAMP_MS,
        SDK_NAME,
        "sdkVersion",
        MEETING_HISTORY,
        MEETING_STATUS,
        "meetingErrorMessage",
        "externalMeetingId",
        "externalUserId",
        "osName",
        "osVersion",
        "browserName",
        "browserMajorVersion",
        "browserVersion",
        "deviceName",
        "audioInputErrorMessage",
        "videoInputErrorMessage",
    ];
}

/// The kind of a rejection, a small closed set fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    Syntax,
    Shape,
    Missing,
    WrongType,
    OutOfRange,
    TooLarge,
    Forbidden,
}

impl RejectKind {
    pub const ALL: [Self; 7] =
        [Self::Syntax, Self::Shape, Self::Missing, Self::WrongType, Self::OutOfRange, Self::TooLarge, Self::Forbidden];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Shape => "shape",
            Self::Missing => "missing",
            Self::WrongType => "wrong_type",
            Self::OutOfRange => "out_of_range",
            Self::TooLarge => "too_large",
            Self::Forbidden => "forbidden",
        }
    }
}

/// Why one event was rejected: the field (a JSON path within the event) and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct EventError {
    pub path: String,
    pub kind: RejectKind,
    pub detail: String,
}

impl EventError {
    pub fn new(path: impl Into<String>, kind: RejectKind, detail: impl Into<String>) -> Self {
        Self { path: path.into(), kind, detail: detail.into() }
    }
}

/// Describes a JSON value for an error message, briefly.
pub fn describe(v: &Value) -> String {
    let text = match v {
        Value::Null => return "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::String(s.clone())),
        Value::Array(a) => return format!("an array of {} items", a.len()),
        Value::Object(_) => return "an object".into(),
    };
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

/// Epoch milliseconds of 2000-01-01: earlier timestamps are seconds sent as milliseconds, or garbage.
const EARLIEST_PLAUSIBLE_MS: i64 = 946_684_800_000;

/// Normalizes and validates one element of a `{name, attributes}` batch. `now_ms` is the server's receive time.
pub fn normalize(value: Value, limits: &Limits, now_ms: i64) -> Result<NormalizedEvent, EventError> {
    let Value::Object(mut root) = value else {
        return Err(EventError::new(
            "",
            RejectKind::Shape,
            format!("expected an object {{\"name\", \"attributes\"}}, got {}", describe(&value)),
        ));
    };
    let name = event_name(root.remove(keys::NAME), "name")?;
    let attributes = match root.remove(keys::ATTRIBUTES) {
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(EventError::new(
                "attributes",
                RejectKind::WrongType,
                format!("expected an object, got {}", describe(&other)),
            ));
        }
        None => {
            return Err(EventError::new("attributes", RejectKind::Missing, "missing"));
        }
    };
    if let Some(key) = root.keys().next() {
        return Err(EventError::new(
            key.as_str(),
            RejectKind::Shape,
            "unexpected field: an event has only \"name\" and \"attributes\"",
        ));
    }
    normalize_attributes(name, attributes, limits, now_ms)
}

/// Longest event name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;
/// Longest meeting or attendee id, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 256;

/// Validates an event name: a non-empty string of at most 128 bytes. `path` names the field in errors.
pub fn event_name(value: Option<Value>, path: &str) -> Result<String, EventError> {
    match value {
        Some(Value::String(s)) if s.is_empty() => {
            Err(EventError::new(path, RejectKind::OutOfRange, "must not be empty"))
        }
        Some(Value::String(s)) if s.len() > MAX_NAME_BYTES => {
            Err(EventError::new(path, RejectKind::TooLarge, format!("is {} bytes; at most {MAX_NAME_BYTES}", s.len())))
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(EventError::new(path, RejectKind::WrongType, format!("expected a string, got {}", describe(&other))))
        }
        None => Err(EventError::new(path, RejectKind::Missing, "missing")),
    }
}

/// Normalizes an event given as its name and raw attributes (the form every upload format maps to).
pub fn normalize_attributes(
    name: String,
    mut attrs: Map<String, Value>,
    limits: &Limits,
    now_ms: i64,
) -> Result<NormalizedEvent, EventError> {
    let mut original = Map::new();
    let mut truncation = Truncation::default();

    cap_attribute_count(&mut attrs, limits.max_attributes, &mut truncation);
    for (key, v) in &attrs {
        let levels = depth(v);
        if levels > MAX_ATTRIBUTE_DEPTH {
            return Err(EventError::new(
                attr_path(key),
                RejectKind::TooLarge,
                format!("nests {levels} levels of arrays and objects; at most {MAX_ATTRIBUTE_DEPTH}"),
            ));
        }
    }

    for (from, to) in keys::IOS_ERROR_ALIASES {
        if !attrs.contains_key(*to)
            && let Some(v) = attrs.remove(*from)
        {
            original.insert((*from).to_owned(), v.clone());
            attrs.insert((*to).to_owned(), v);
        }
    }

    for key in keys::NON_NEGATIVE_NUMBERS.iter().chain([&keys::TIMESTAMP_MS]) {
        if let Some(v) = attrs.get_mut(*key) {
            let n = to_number(v).ok_or_else(|| {
                EventError::new(
                    attr_path(key),
                    RejectKind::WrongType,
                    format!("expected a number, got {}", describe(v)),
                )
            })?;
            if n.as_f64().is_some_and(|f| f < 0.0) {
                return Err(EventError::new(
                    attr_path(key),
                    RejectKind::OutOfRange,
                    format!("must not be negative, got {n}"),
                ));
            }
            replace(&mut original, key, v, Value::Number(n));
        }
    }

    for key in keys::BOOLEANS {
        if let Some(v) = attrs.get_mut(*key) {
            let b = match &*v {
                Value::Bool(b) => *b,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                other => {
                    return Err(EventError::new(
                        attr_path(key),
                        RejectKind::WrongType,
                        format!("expected a boolean, got {}", describe(other)),
                    ));
                }
            };
            replace(&mut original, key, v, Value::Bool(b));
        }
    }

    if let Some(v) = attrs.get_mut(keys::MEETING_STATUS) {
        match &*v {
            Value::String(s) => {
                let status = normalize_status(s);
                replace(&mut original, keys::MEETING_STATUS, v, Value::String(status));
            }
            other => {
                return Err(EventError::new(
                    attr_path(keys::MEETING_STATUS),
                    RejectKind::WrongType,
                    format!("expected a status name, got {}", describe(other)),
                ));
            }
        }
    }

    if let Some(v) = attrs.get_mut(keys::MEETING_HISTORY) {
        if let Value::Array(items) = v
            && items.iter().all(is_canonical_entry)
        {
            // As the JS SDK sends it: only the cap can change it, in place, and the truncation marker says so.
            let dropped = items.len().saturating_sub(limits.max_history_entries);
            items.drain(..dropped);
            truncation.history_entries_dropped = dropped;
        } else {
            let (history, dropped) = normalize_history(v, limits.max_history_entries)?;
            truncation.history_entries_dropped = dropped;
            if is_canonical_history(v) {
                // Only the cap changed it, and the truncation marker says so: nothing else to keep.
                *v = history;
            } else {
                replace(&mut original, keys::MEETING_HISTORY, v, history);
            }
        }
    }

    let mobile = attrs
        .get(keys::SDK_NAME)
        .and_then(Value::as_str)
        .is_some_and(|s| s == "amazon-chime-sdk-android" || s == "amazon-chime-sdk-ios");
    if mobile {
        // Android and iOS report 0 for durations of a meeting that never started; JS omits them, so do we.
        for key in [keys::MEETING_START_DURATION_MS, keys::MEETING_DURATION_MS] {
            if attrs.get(key).and_then(Value::as_f64) == Some(0.0)
                && let Some(v) = attrs.remove(key)
            {
                original.entry(key.to_owned()).or_insert(v);
            }
        }
    }

    validate_required(&attrs, limits, now_ms)?;

    for (key, v) in attrs.iter_mut() {
        if cap_strings(v, limits) {
            truncation.values_truncated.push(key.clone());
        }
    }
    for v in original.values_mut() {
        cap_strings(v, limits);
        if let Value::Array(items) = v
            && items.len() > limits.max_history_entries
        {
            items.drain(..items.len() - limits.max_history_entries);
        }
    }

    Ok(NormalizedEvent { event: MeetingEvent { name, attributes: attrs }, original, truncation })
}

fn attr_path(key: &str) -> String {
    format!("attributes.{key}")
}

/// Sets `*slot = new`, remembering the value as sent when it differs.
fn replace(original: &mut Map<String, Value>, key: &str, slot: &mut Value, new: Value) {
    if *slot != new {
        let old = std::mem::replace(slot, new);
        original.entry(key.to_owned()).or_insert(old);
    }
}

fn to_number(v: &Value) -> Option<serde_json::Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Some(i.into())
            } else {
                s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64)
            }
        }
        _ => None,
    }
}

/// iOS sends lowerCamel status names ("audioCallEnded", "ok"); JS and Android send PascalCase ("AudioCallEnded", "OK").
pub fn normalize_status(s: &str) -> String {
    match s {
        "ok" => "OK".into(),
        // iOS spells Android's NetworkBecamePoor this way.
        "networkBecomePoor" => "NetworkBecamePoor".into(),
        _ => {
            let mut chars = s.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

/// Turns any of the three history shapes into `[{name, timestampMs}]`, keeping the most recent `max` entries.
fn normalize_history(v: &Value, max: usize) -> Result<(Value, usize), EventError> {
    let path = attr_path(keys::MEETING_HISTORY);
    let mut entries: Vec<(String, i64)> = match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                history_entry(item).ok_or_else(|| {
                    EventError::new(
                        format!("{path}[{i}]"),
                        RejectKind::Shape,
                        format!(
                            "expected {{name, timestampMs}} or {{meetingHistoryEventName, timestamp}}, got {}",
                            describe(item)
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) => {
            parse_ios_history(s).map_err(|detail| EventError::new(path.clone(), RejectKind::Shape, detail))?
        }
        other => {
            return Err(EventError::new(
                path,
                RejectKind::WrongType,
                format!("expected an array, got {}", describe(other)),
            ));
        }
    };
    let dropped = entries.len().saturating_sub(max);
    entries.drain(..dropped);
    let out = entries
        .into_iter()
        .map(|(name, ts)| {
            let mut m = Map::with_capacity(2);
            m.insert("name".into(), Value::String(name));
            m.insert("timestampMs".into(), Value::from(ts));
            Value::Object(m)
        })
        .collect();
    Ok((Value::Array(out), dropped))
}

/// Whether a history is already `[{name, timestampMs}]` with whole-number timestamps (the JS shape).
fn is_canonical_history(v: &Value) -> bool {
    v.as_array().is_some_and(|items| {
        items.iter().all(|item| {
            item.as_object().is_some_and(|o| {
                o.len() == 2
                    && o.get("name").is_some_and(Value::is_string)
                    && o.get("timestampMs").is_some_and(|t| t.is_i64() || t.is_u64())
            })
        })
    })
}

/// `{"name": "...", "timestampMs": <integer>}` in that order: an entry normalization would write back unchanged.
fn is_canonical_entry(item: &Value) -> bool {
    let Some(o) = item.as_object() else { return false };
    let mut fields = o.iter();
    o.len() == 2
        && matches!(fields.next(), Some((k, Value::String(_))) if k == "name")
        && matches!(fields.next(), Some((k, t)) if k == "timestampMs" && t.is_i64())
}

fn history_entry(item: &Value) -> Option<(String, i64)> {
    let obj = item.as_object()?;
    let name = obj.get("name").or_else(|| obj.get("meetingHistoryEventName"))?.as_str()?;
    let ts = to_number(obj.get("timestampMs").or_else(|| obj.get("timestamp"))?)?.as_i64()?;
    Some((name.to_owned(), ts))
}

/// Parses the iOS guide's stringified history: `"[audioInputSelected: 1612166400000, meetingStartRequested: ...]"`.
fn parse_ios_history(s: &str) -> Result<Vec<(String, i64)>, String> {
    let inner = s
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| "expected an array or a string like \"[name: timestampMs, ...]\"".to_owned())?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .enumerate()
        .map(|(i, item)| {
            let (name, ts) = item
                .split_once(':')
                .ok_or_else(|| format!("entry {i} ({:?}) is not \"name: timestampMs\"", item.trim()))?;
            let ts = ts
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("entry {i} has a timestamp that is not a number: {:?}", ts.trim()))?;
            Ok((name.trim().to_owned(), ts))
        })
        .collect()
}

/// A meeting or attendee id the event may carry: not blank, and at most [`MAX_ID_BYTES`].
pub(crate) fn id_is_valid(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_ID_BYTES
}

/// A timestamp [`validate_required`] accepts: after 2000-01-01 and not too far past the server's clock.
pub(crate) fn timestamp_is_plausible(ts: i64, limits: &Limits, now_ms: i64) -> bool {
    (EARLIEST_PLAUSIBLE_MS..=now_ms.saturating_add(limits.max_future_skew_ms)).contains(&ts)
}

fn validate_required(attrs: &Map<String, Value>, limits: &Limits, now_ms: i64) -> Result<(), EventError> {
    for key in [keys::MEETING_ID, keys::ATTENDEE_ID] {
        match attrs.get(key) {
            Some(Value::String(s)) if id_is_valid(s) => {}
            Some(Value::String(s)) if s.len() > MAX_ID_BYTES => {
                return Err(EventError::new(
                    attr_path(key),
                    RejectKind::TooLarge,
                    format!("is {} bytes; at most {MAX_ID_BYTES}", s.len()),
                ));
            }
            Some(Value::String(_)) => {
                return Err(EventError::new(attr_path(key), RejectKind::OutOfRange, "must not be empty"));
            }
            Some(other) => {
                return Err(EventError::new(
                    attr_path(key),
                    RejectKind::WrongType,
                    format!("expected a string, got {}", describe(other)),
                ));
            }
            None => {
                return Err(EventError::new(attr_path(key), RejectKind::Missing, "missing"));
            }
        }
    }
    // Built only for an error: most events have none.
    let path = || attr_path(keys::TIMESTAMP_MS);
    let ts = match attrs.get(keys::TIMESTAMP_MS) {
        None => return Err(EventError::new(path(), RejectKind::Missing, "missing")),
        Some(v) => v.as_i64().ok_or_else(|| {
            EventError::new(
                path(),
                RejectKind::WrongType,
                format!("expected whole milliseconds since the epoch, got {}", describe(v)),
            )
        })?,
    };
    if ts < EARLIEST_PLAUSIBLE_MS {
        return Err(EventError::new(
            path(),
            RejectKind::OutOfRange,
            format!("{ts} is before 2000-01-01; timestamps are milliseconds since the epoch"),
        ));
    }
    if ts > now_ms.saturating_add(limits.max_future_skew_ms) {
        return Err(EventError::new(
            path(),
            RejectKind::OutOfRange,
            format!("{ts} is more than {} s ahead of the server's clock ({now_ms})", limits.max_future_skew_ms / 1000),
        ));
    }
    Ok(())
}

/// Drops unknown attributes beyond the cap, last by name first; known attributes are never dropped.
fn cap_attribute_count(attrs: &mut Map<String, Value>, max: usize, truncation: &mut Truncation) {
    if attrs.len() <= max {
        return;
    }
    let mut droppable: Vec<String> = attrs.keys().filter(|k| !keys::KNOWN.contains(&k.as_str())).cloned().collect();
    droppable.sort_unstable();
    let excess = attrs.len() - max;
    let cut = droppable.len().saturating_sub(excess);
    for key in droppable.drain(cut..) {
        attrs.remove(&key);
        truncation.attributes_dropped.push(key);
    }
}

/// How deeply an attribute's value may nest arrays and objects. Chime's attributes are scalars, or a history of flat
/// entries (two levels). The cap keeps every accepted event far inside what its stream record decodes: serde_json
/// refuses more than 128 levels, three of them the record's own.
pub const MAX_ATTRIBUTE_DEPTH: usize = 32;

/// Levels of arrays and objects in `v` (0 for a scalar). Parsing bounded them, so the recursion is bounded too.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Cuts strings (at any depth) longer than the cap at a character boundary; says whether anything was cut.
fn cap_strings(v: &mut Value, limits: &Limits) -> bool {
    match v {
        Value::String(s) if s.len() > limits.max_attribute_bytes => {
            let mut cut = limits.max_attribute_bytes;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |acc, item| cap_strings(item, limits) | acc),
        Value::Object(m) => m.values_mut().fold(false, |acc, item| cap_strings(item, limits) | acc),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
