//! The gateway's fast path: a batch element that normalization would leave as sent, written straight to its record.
//!
//! The JS SDK sends its events already in the normalized shape: string and whole-number attributes and a history of
//! `{name, timestampMs}` entries. Parsing each into a `Value` tree, normalizing a tree that does not change and writing
//! it out again was most of the gateway's CPU. [`transcode`] reads the element with borrowed keys and raw values,
//! checks that [`normalize`](crate::event::normalize) would change nothing but the history cap, and writes the record
//! from the raw text. Whenever that is not certain (an escape in a string, a float, a string where a number belongs,
//! a mobile SDK's zero duration, anything invalid) it returns `None` and the caller takes the general path. A property
//! test and the `meeting_batch` fuzz target hold the two paths to the same bytes.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Limits, MAX_NAME_BYTES, id_is_valid, keys, normalize_status, timestamp_is_plausible};
use crate::json::BorrowedStr;
use crate::partition::partition_key;
use crate::record::{Ingest, MEETING_EVENT_PREFIX, RECORD_VERSION};

/// A batch element's stream record, with what the gateway needs besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcoded<'a> {
    pub meeting_id: &'a str,
    pub attendee_id: &'a str,
    pub partition_key: String,
    /// The record, byte for byte what `Record::encode` writes for the normalized event.
    pub data: Vec<u8>,
}

/// Writes the record of a `{name, attributes}` element received at `now_ms`, when the general path
/// (`parse_strict`, `normalize`, `Record::meeting_event(.., Ingest::Batch, now_ms)`, `encode_bounded`) would accept
/// it unchanged but for the history cap. `None` says only "take the general path", never that the element is bad.
pub fn transcode<'a>(raw: &'a str, limits: &Limits, now_ms: i64, max_record_bytes: usize) -> Option<Transcoded<'a>> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let Element { name, mut attributes } = Element::deserialize(&mut de).ok()?;
    de.end().ok()?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES || attributes.len() > limits.max_attributes {
        return None;
    }
    let mut names: Vec<&str> = attributes.iter().map(|(k, _)| &**k).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }

    let mut fields = Fields::default();
    for (key, value) in &mut attributes {
        fields.check(key, value, limits)?;
    }
    let mobile = matches!(fields.sdk_name, Some("amazon-chime-sdk-android" | "amazon-chime-sdk-ios"));
    // Normalization removes a mobile SDK's zero durations, and then the record is not the element as sent.
    if mobile && (fields.start_duration == Some(0) || fields.duration == Some(0)) {
        return None;
    }
    let meeting_id = fields.meeting_id.filter(|s| id_is_valid(s))?;
    let attendee_id = fields.attendee_id.filter(|s| id_is_valid(s))?;
    if !fields.timestamp.is_some_and(|ts| timestamp_is_plausible(ts, limits, now_ms)) {
        return None;
    }

    let mut data = Vec::with_capacity(raw.len() + 128);
    data.extend_from_slice(MEETING_EVENT_PREFIX);
    // Writing to a Vec cannot fail; the `?`s only satisfy the signatures.
    let ingest = Ingest::Batch.as_str();
    write!(data, r#""v":{RECORD_VERSION},"receivedAtMs":{now_ms},"ingest":"{ingest}","event":{{"name":"#).ok()?;
    write_str(&mut data, &name);
    data.extend_from_slice(br#","attributes":{"#);
    for (i, (key, value)) in attributes.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        write_str(&mut data, key);
        data.push(b':');
        match value {
            Value::Raw(text) => data.extend_from_slice(text.as_bytes()),
            Value::History(entries) => {
                data.push(b'[');
                for (j, (name, ts)) in entries.iter().enumerate() {
                    if j > 0 {
                        data.push(b',');
                    }
                    data.extend_from_slice(br#"{"name":"#);
                    write_str(&mut data, name);
                    write!(data, r#","timestampMs":{ts}}}"#).ok()?;
                }
                data.push(b']');
            }
        }
    }
    data.extend_from_slice(b"}}");
    if fields.history_dropped > 0 {
        write!(data, r#","truncation":{{"historyEntriesDropped":{}}}"#, fields.history_dropped).ok()?;
    }
    data.push(b'}');
    if data.len() > max_record_bytes {
        return None;
    }
    Some(Transcoded { meeting_id, attendee_id, partition_key: partition_key(meeting_id, attendee_id), data })
}

/// Writes a string as JSON. One borrowed from the input had no escapes there, so it needs none (the parser refuses
/// control characters in strings): its text is copied between quotes.
#[expect(clippy::ptr_arg, reason = "whether the string was borrowed is what decides")]
fn write_str(data: &mut Vec<u8>, s: &Cow<str>) {
    match s {
        Cow::Borrowed(s) => {
            data.push(b'"');
            data.extend_from_slice(s.as_bytes());
            data.push(b'"');
        }
        // Serializing a string into a Vec cannot fail.
        Cow::Owned(s) => serde_json::to_writer(data, s).unwrap_or_default(),
    }
}

/// An attribute's value as the record will hold it.
enum Value<'a> {
    /// Any value but the history, as sent; the checks pass only strings without escapes, whole numbers and literals.
    Raw(&'a str),
    /// A history of `{name, timestampMs}` entries, the oldest beyond the cap removed.
    History(Vec<Entry<'a>>),
}

/// A history entry's name and timestamp.
type Entry<'a> = (Cow<'a, str>, i64);

/// What the checks after the attribute loop need, gathered on the way.
#[derive(Default)]
struct Fields<'a> {
    meeting_id: Option<&'a str>,
    attendee_id: Option<&'a str>,
    sdk_name: Option<&'a str>,
    timestamp: Option<i64>,
    start_duration: Option<i64>,
    duration: Option<i64>,
    history_dropped: usize,
}

impl<'a> Fields<'a> {
    /// Whether normalization would leave the value as sent (a history: but for the cap, which this applies).
    fn check(&mut self, key: &str, value: &mut Value<'a>, limits: &Limits) -> Option<()> {
        if keys::IOS_ERROR_ALIASES.iter().any(|(from, _)| *from == key) {
            return None;
        }
        let text = match value {
            Value::History(entries) => {
                // Cutting a name would change it.
                if entries.iter().any(|(name, _)| name.len() > limits.max_attribute_bytes) {
                    return None;
                }
                self.history_dropped = entries.len().saturating_sub(limits.max_history_entries);
                entries.drain(..self.history_dropped);
                return Some(());
            }
            Value::Raw(text) => *text,
        };
        let numeric = key == keys::TIMESTAMP_MS || keys::NON_NEGATIVE_NUMBERS.contains(&key);
        match scalar(text)? {
            // Numbers normalization would convert (from strings) or refuse (negative ones).
            Scalar::Int(n @ 0..) if numeric => match key {
                keys::TIMESTAMP_MS => self.timestamp = Some(n),
                keys::MEETING_START_DURATION_MS => self.start_duration = Some(n),
                keys::MEETING_DURATION_MS => self.duration = Some(n),
                _ => {}
            },
            _ if numeric => return None,
            // Booleans it would convert from strings, or refuse.
            _ if keys::BOOLEANS.contains(&key) && !matches!(text, "true" | "false") => return None,
            // Strings the cap would cut.
            Scalar::Str(s) if s.len() > limits.max_attribute_bytes => return None,
            Scalar::Str(s) => match key {
                keys::MEETING_STATUS if normalize_status(s) != s => return None,
                keys::MEETING_ID => self.meeting_id = Some(s),
                keys::ATTENDEE_ID => self.attendee_id = Some(s),
                keys::SDK_NAME => self.sdk_name = Some(s),
                _ => {}
            },
            // A status that is not a string, which it refuses.
            _ if key == keys::MEETING_STATUS => return None,
            _ => {}
        }
        Some(())
    }
}

/// A scalar whose text a `Value` would write back the same.
enum Scalar<'a> {
    /// A string's content; it has no escapes, so its text is the value.
    Str(&'a str),
    Int(i64),
    /// `true`, `false` or `null`.
    Literal,
}

/// `text` is one value's text as the parser took it (valid JSON, no surrounding whitespace), so its first byte tells
/// its kind and a string's content lies between its first and last bytes.
fn scalar(text: &str) -> Option<Scalar<'_>> {
    match text.as_bytes().first()? {
        b'"' => {
            let inner = text.get(1..text.len() - 1)?;
            (!inner.contains('\\')).then_some(Scalar::Str(inner))
        }
        b't' | b'f' | b'n' => Some(Scalar::Literal),
        _ => canonical_int(text).map(Scalar::Int),
    }
}

/// A whole number written as `Value` writes it: no sign on zero, no exponent or fraction, well inside i64.
fn canonical_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit());
    let zero_ok = !digits.starts_with('0') || (digits == "0" && digits.len() == text.len());
    if plain && zero_ok { text.parse().ok() } else { None }
}

/// The error every visitor here gives for "not the plain shape": only `None` comes of it.
fn not_plain<E: de::Error>() -> E {
    E::custom("not the plain shape")
}

/// `{"name": ..., "attributes": {...}}`, each once, the attributes' values left raw.
struct Element<'a> {
    name: Cow<'a, str>,
    attributes: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element<'de>, A::Error> {
        let (mut name, mut attributes) = (None, None);
        while let Some(BorrowedStr(key)) = map.next_key()? {
            match &*key {
                keys::NAME if name.is_none() => name = Some(map.next_value::<BorrowedStr>()?.0),
                keys::ATTRIBUTES if attributes.is_none() => {
                    attributes = Some(map.next_value::<Attributes>()?.0);
                }
                _ => return Err(not_plain()),
            }
        }
        Ok(Element { name: name.ok_or_else(not_plain)?, attributes: attributes.ok_or_else(not_plain)? })
    }
}

/// An object's entries in order, the values raw but for a history in the JS SDK's form, read as it goes by (any
/// other history fails the read).
struct Attributes<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

impl<'de> Deserialize<'de> for Attributes<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = Attributes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(32));
        while let Some(BorrowedStr(key)) = map.next_key()? {
            let value = match &*key {
                keys::MEETING_HISTORY => Value::History(map.next_value::<History>()?.0),
                _ => Value::Raw(map.next_value::<&RawValue>()?.get()),
            };
            entries.push((key, value));
        }
        Ok(Attributes(entries))
    }
}

/// A history whose entries are each `{"name": string, "timestampMs": i64}`.
struct History<'a>(Vec<Entry<'a>>);

impl<'de> Deserialize<'de> for History<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(HistoryVisitor).map(History)
    }
}

struct HistoryVisitor;

impl<'de> Visitor<'de> for HistoryVisitor {
    type Value = Vec<Entry<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of history entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(HistoryEntry(name, ts)) = seq.next_element()? {
            entries.push((name, ts));
        }
        Ok(entries)
    }
}

/// `{"name": string, "timestampMs": i64}`, exactly these two in this order.
struct HistoryEntry<'a>(Cow<'a, str>, i64);

impl<'de> Deserialize<'de> for HistoryEntry<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HistoryEntryVisitor)
    }
}

struct HistoryEntryVisitor;

impl<'de> Visitor<'de> for HistoryEntryVisitor {
    type Value = HistoryEntry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a history entry")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HistoryEntry<'de>, A::Error> {
        expect_key(&mut map, "name")?;
        let BorrowedStr(name) = map.next_value()?;
        expect_key(&mut map, "timestampMs")?;
        let ts = map.next_value::<i64>()?;
        if map.next_key::<BorrowedStr>()?.is_some() {
            return Err(not_plain());
        }
        Ok(HistoryEntry(name, ts))
    }
}

fn expect_key<'de, A: MapAccess<'de>>(map: &mut A, expected: &str) -> Result<(), A::Error> {
    match map.next_key::<BorrowedStr>()? {
        Some(BorrowedStr(key)) if key == expected => Ok(()),
        _ => Err(not_plain()),
    }
}

#[cfg(test)]
mod tests;
