//! Meeting events read from the stream for aggregation: the event's JSON kept as text, its attributes indexed in
//! place and each read only when asked for.
//!
//! Decoding a record into [`Record`] allocates a string for every key and value and hashes every key into an ordered
//! map, and the aggregator then reads a handful of attributes and writes the event out again as its log line. An
//! [`IndexedEvent`] is read in the record's one pass, which locates the name and each attribute's key and value;
//! their text is then copied once into the event's text, noting where each lies, and that text is its log line.
//! [`EventFields`] is what the catalogue reads, from either form.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use crate::event::{MeetingEvent, Truncation, keys};
use crate::json::BorrowedStr;
use crate::record::{
    DecodeError, Delivery, Ingest, MEETING_EVENT_PREFIX, MeetingEventRecord, RECORD_VERSION, Record, SipMessageRecord,
};

/// What is read of an event's attributes, whether it was decoded whole ([`MeetingEvent`]) or indexed
/// ([`IndexedEvent`]). Both answer alike for the same event; a property test holds them to it.
pub trait EventFields {
    fn event_name(&self) -> &str;
    /// A string attribute.
    fn text(&self, key: &str) -> Option<Cow<'_, str>>;
    /// A numeric attribute, as `serde_json::Value::as_f64` reads it.
    fn number(&self, key: &str) -> Option<f64>;
    /// A string, number or boolean attribute as text (numbers as serde_json writes them).
    fn scalar_text(&self, key: &str) -> Option<Cow<'_, str>>;
    fn has(&self, key: &str) -> bool;
    /// The string `name` of each object in an array attribute (`meetingHistory`), in order; an entry that is not
    /// an object, or has no string `name`, has none. `None` when the attribute is missing or not an array.
    fn entry_names(&self, key: &str) -> Option<Vec<Cow<'_, str>>>;
    /// Event time in milliseconds since the epoch (whole milliseconds only).
    fn event_time_ms(&self) -> Option<i64>;
}

impl EventFields for MeetingEvent {
    fn event_name(&self) -> &str {
        &self.name
    }
    fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        self.str_attr(key).map(Cow::Borrowed)
    }
    fn number(&self, key: &str) -> Option<f64> {
        self.num_attr(key)
    }
    fn scalar_text(&self, key: &str) -> Option<Cow<'_, str>> {
        match self.attributes.get(key)? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
    fn has(&self, key: &str) -> bool {
        self.attributes.contains_key(key)
    }
    fn entry_names(&self, key: &str) -> Option<Vec<Cow<'_, str>>> {
        let Value::Array(entries) = self.attributes.get(key)? else { return None };
        Some(entries.iter().filter_map(|e| e.get("name")?.as_str().map(Cow::Borrowed)).collect())
    }
    fn event_time_ms(&self) -> Option<i64> {
        self.timestamp_ms()
    }
}

/// Where a string lies: in the event's text when it needed no unescaping, else unescaped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    At(Range<usize>),
    Owned(Box<str>),
}

/// Writes `s` as a JSON string as serde_json writes it, and says where it lies: in the text when written as is.
fn push_string(out: &mut String, s: Cow<'_, str>) -> Text {
    match s {
        // Borrowed from JSON text, so it held no escape: no quote, backslash or control character to escape.
        Cow::Borrowed(s) => {
            out.push('"');
            let start = out.len();
            out.push_str(s);
            let at = start..out.len();
            out.push('"');
            Text::At(at)
        }
        Cow::Owned(s) => {
            let escaped = serde_json::to_string(&s).expect("a string serializes");
            let at = out.len() + 1..out.len() + escaped.len() - 1;
            out.push_str(&escaped);
            // Sent escaped, it may need no escape (`\u0041`): then it is found in the text as the rest are.
            if escaped.len() == s.len() + 2 { Text::At(at) } else { Text::Owned(s.into_boxed_str()) }
        }
    }
}

/// A meeting event as its JSON text `{"name": ..., "attributes": {...}}` and an index of its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEvent {
    /// Shared: it is also the aggregator's log line, which the sinks take without another copy.
    json: Arc<str>,
    name: Text,
    /// The span of the attributes object.
    object: Range<usize>,
    /// Each attribute's key and the span of its value's JSON text, in the order sent.
    attributes: Vec<Attribute>,
}

/// An attribute's key, where its value lies, and the key's [`tag`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    tag: u32,
    key: Text,
    value: Range<usize>,
}

/// A key's length and its first, middle and last bytes: equal for equal keys, and different for almost every pair
/// of the SDKs' keys, so a lookup compares a number per attribute and the bytes of (nearly) only the key it wants.
/// Many keys share a length and a prefix (`meetingId`, `meetingStatus`), and comparing their bytes was most of a
/// lookup.
fn tag(key: &[u8]) -> u32 {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else { return 0 };
    // The length's low byte is enough: the tag only sorts out keys, the bytes still decide.
    u32::from_le_bytes([key.len() as u8, first, key[key.len() / 2], last])
}

/// An event's parts, read in the record's own pass: the name, and each attribute's key and value's raw text, keys
/// borrowed where they need no unescaping. Derived as [`MeetingEvent`] is, so both take and refuse the same shapes.
#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow)]
    name: BorrowedStr<'a>,
    #[serde(borrow)]
    attributes: Entries<'a>,
}

/// An object's entries in order, keys borrowed where they need no unescaping and values as raw text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // serde_json gives no size hint; the SDKs' events hold 20 to 30 attributes.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some((BorrowedStr(k), v)) = map.next_entry::<BorrowedStr<'de>, &'de RawValue>()? {
                    check_value(v)?;
                    entries.push((k, v));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Refuses a value the whole decode refuses. A raw value is skipped, not read: neither its numbers' range (`1e400`)
/// nor its escapes' code points (a lone surrogate, `"\uD800"`) nor its nesting are checked. So a value that could be
/// wrong is read whole.
fn check_value<E: de::Error>(raw: &RawValue) -> Result<(), E> {
    let text = raw.get();
    let could_be_wrong = match text.as_bytes().first() {
        Some(b'"') => has_unicode_escape(text.as_bytes()),
        // Without an exponent, fewer than 309 characters hold fewer than 309 integer digits: below f64::MAX.
        Some(b'-' | b'0'..=b'9') => text.len() >= 309 || text.bytes().any(|b| b | 0x20 == b'e'),
        Some(b'[' | b'{') => container_could_be_wrong(text),
        _ => false,
    };
    if could_be_wrong { serde_json::from_str::<Checked>(text).map(drop).map_err(E::custom) } else { Ok(()) }
}

/// Whether an array or object could hold what the whole decode refuses, judged from its text (a false alarm only
/// costs a read): a `\u` escape (a lone surrogate); a number beyond f64's range, which has an exponent (its `e`
/// always follows a digit) or 309 integer digits in a row; nesting near serde_json's limit of 128 levels, which
/// takes at least as many opening brackets (counted anywhere, in strings too).
///
/// Each test is a pass without a branch per byte, which the compiler vectorizes: the history arrays are most of a
/// record, and `check_value` with a byte-at-a-time scan inlined took 7 % of `up`'s CPU.
fn container_could_be_wrong(text: &str) -> bool {
    let b = text.as_bytes();
    // Each byte with its successor (the last byte has none: a closing bracket, it opens nothing and starts no escape).
    let Some(next) = b.get(1..) else { return false };
    let (mut this, mut next) = (b[..next.len()].chunks_exact(32), next.chunks_exact(32));
    let (mut brackets, mut suspect) = (0usize, 0u8);
    // In chunks of a fixed size, which the compiler unrolls and vectorizes whole; then the rest.
    for (chunk, after) in (&mut this).zip(&mut next) {
        let (opening, bad) = could_be_wrong_in(chunk, after);
        brackets += usize::from(opening);
        suspect |= bad;
    }
    let (opening, bad) = could_be_wrong_in(this.remainder(), next.remainder());
    brackets += usize::from(opening);
    // 309 digits in a row fill at least one of the text's aligned 154-byte chunks (2 x 154 - 1 <= 309).
    let long_number = b.chunks_exact(154).any(|c| c.iter().all(u8::is_ascii_digit));
    brackets >= 100 || (suspect | bad) != 0 || long_number
}

/// In one chunk of at most 255 bytes, each byte with its successor in `after`: how many brackets open, and whether
/// any digit is followed by an exponent's `e` or any backslash by `u`. No early exit, so that the loop vectorizes.
#[inline(always)]
fn could_be_wrong_in(chunk: &[u8], after: &[u8]) -> (u8, u8) {
    let (mut opening, mut bad) = (0u8, 0u8);
    for (&p, &c) in chunk.iter().zip(after) {
        opening += u8::from(p == b'[') | u8::from(p == b'{');
        bad |= (u8::from(p.wrapping_sub(b'0') < 10) & u8::from(c | 0x20 == b'e'))
            | (u8::from(p == b'\\') & u8::from(c == b'u'));
    }
    (opening, bad)
}

/// Whether a string's text holds a `\u` escape: most strings hold no backslash, which a pass without an early exit
/// finds in a few vector instructions (these strings are too short for a search to pay for its set-up).
fn has_unicode_escape(b: &[u8]) -> bool {
    b.iter().fold(0u8, |any, &c| any | u8::from(c == b'\\')) != 0 && b.windows(2).any(|w| w == b"\\u")
}

/// The names of an array's entries ([`EventFields::entry_names`]), read in passing: a history is most of a
/// record, and building it as a `Value` to count its reconnects took a fifth of the catalogue's work.
struct EntryNames<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for EntryNames<'a> {
    type Value = Vec<Cow<'a, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element_seed(Pick::<'a>(Want::Name, std::marker::PhantomData))? {
            names.extend(name);
        }
        Ok(names)
    }
}

/// The entries' names of a history laid out exactly as the SDKs send it and serde_json writes it,
/// `[{"name":"...","timestampMs":123},...]`, with no escape in a name; `None` for any other layout, which
/// [`EntryNames`] reads. `raw` is a value the record's read already took as JSON, so a name that holds no quote or
/// backslash is the string itself, and an entry with exactly these two keys has one `name`. At 8,700 instructions for
/// a history of 7 entries, reading through serde was a quarter of an ending event's path.
fn plain_history_names(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    let mut rest = raw.strip_prefix('[')?;
    let mut names = Vec::new();
    if rest == "]" {
        return Some(names);
    }
    loop {
        rest = rest.strip_prefix(r#"{"name":""#)?;
        let end = rest.bytes().position(|b| b == b'"' || b == b'\\')?;
        let (name, after) = rest.split_at(end);
        rest = after.strip_prefix(r#"","timestampMs":"#)?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest = rest.get(digits..).filter(|_| digits > 0)?.strip_prefix('}')?;
        names.push(Cow::Borrowed(name));
        match rest {
            "]" => return Some(names),
            _ => rest = rest.strip_prefix(',')?,
        }
    }
}

/// What [`Pick`] takes of a value; anything else is skipped.
#[derive(Clone, Copy)]
enum Want {
    /// An object's string `name` (the last, as `Value` keeps the last of repeated keys).
    Name,
    /// A string.
    Text,
}

/// One value skipped but for what is wanted of it.
struct Pick<'a>(Want, std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for Pick<'a> {
    type Value = Option<Cow<'a, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Pick<'a> {
    type Value = Option<Cow<'a, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(matches!(self.0, Want::Text).then_some(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(matches!(self.0, Want::Text).then(|| Cow::Owned(s.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name = None;
        while let Some(BorrowedStr(key)) = map.next_key()? {
            if matches!(self.0, Want::Name) && key == "name" {
                name = map.next_value_seed(Pick(Want::Text, std::marker::PhantomData))?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(name)
    }
}

/// Any JSON value, read as the whole decode reads it (numbers included), and kept nowhere.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object's text, or none when the field is absent: the record's `original` values.
#[derive(Default)]
struct ObjectText<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for ObjectText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        // An object, as the whole decode's map requires (`null` included in what it refuses), read as it would be.
        if !raw.get().starts_with('{') {
            return Err(de::Error::custom("expected an object"));
        }
        check_value(raw)?;
        Ok(ObjectText(Some(raw)))
    }
}

impl IndexedEvent {
    /// Indexes an event's JSON text; errors say what is not an event, as decoding a [`MeetingEvent`] would.
    pub fn new(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(|parts| Self::from_parts(parts, json))
    }

    /// Indexes an event decoded whole (as those read from CloudWatch Logs envelopes are).
    pub fn of(event: &MeetingEvent) -> Self {
        let json = serde_json::to_string(event).expect("an event serializes: its map keys are strings");
        Self::new(&json).expect("a serialized event has an event's shape")
    }

    /// The event's text from its parts, noting where each lies: `{"name":...,"attributes":{...}}`, compact, with
    /// keys and the name as serde_json writes them and values as they were sent. For a record serde_json wrote whose
    /// name and keys need no escape (the SDKs' events), that is the event's text on the stream, found in `source`
    /// (the text the parts were read from) and copied whole; otherwise it is written from the parts. Either way this
    /// is the only copy.
    fn from_parts(parts: Parts<'_>, source: &str) -> Self {
        Self::found_in(&parts, source).unwrap_or_else(|| Self::written_from(parts))
    }

    /// The event's text when `source` holds it as [`Self::written_from`] would write it. Each part lies in `source`
    /// (borrowed), so only the punctuation between parts is compared: where it is exactly the compact form's, so is
    /// the whole, and a record of serde_json's costs one copy instead of a write per attribute.
    fn found_in(parts: &Parts<'_>, source: &str) -> Option<Self> {
        let (base, bytes) = (source.as_ptr() as usize, source.as_bytes());
        // Where a borrowed part starts in `source`; `None` for a part unescaped on its own.
        let at = |part: &Cow<'_, str>| match part {
            Cow::Borrowed(s) => (s.as_ptr() as usize).checked_sub(base).filter(|&o| o + s.len() <= source.len()),
            Cow::Owned(_) => None,
        };
        let is_at = |o: usize, punctuation: &[u8]| bytes.get(o..o + punctuation.len()) == Some(punctuation);
        let Parts { name: BorrowedStr(name), attributes: Entries(entries) } = parts;
        let name_at = at(name)?;
        let start = name_at.checked_sub(br#"{"name":""#.len()).filter(|&s| is_at(s, br#"{"name":""#))?;
        let mut cursor = name_at + name.len();
        is_at(cursor, br#"","attributes":{"#).then_some(())?;
        cursor += br#"","attributes":{"#.len();
        let object_start = cursor - 1;
        let mut attributes = Vec::with_capacity(entries.len());
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                is_at(cursor, b",").then_some(())?;
                cursor += 1;
            }
            (at(key)? == cursor + 1 && is_at(cursor, b"\"")).then_some(())?;
            let key_at = cursor + 1..cursor + 1 + key.len();
            cursor = key_at.end;
            is_at(cursor, b"\":").then_some(())?;
            cursor += 2;
            let value = value.get();
            (at(&Cow::Borrowed(value))? == cursor).then_some(())?;
            attributes.push(Attribute {
                tag: tag(key.as_bytes()),
                key: Text::At(key_at.start - start..key_at.end - start),
                value: cursor - start..cursor + value.len() - start,
            });
            cursor += value.len();
        }
        is_at(cursor, b"}}").then_some(())?;
        let end = cursor + 2;
        Some(Self {
            json: source[start..end].into(),
            name: Text::At(name_at - start..name_at + name.len() - start),
            object: object_start - start..end - 1 - start,
            attributes,
        })
    }

    /// Writes the event's text from its parts (see [`Self::from_parts`]).
    fn written_from(parts: Parts<'_>) -> Self {
        let Parts { name: BorrowedStr(name), attributes: Entries(entries) } = parts;
        let values: usize = entries.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut json = String::with_capacity(name.len() + values + 32);
        json.push_str(r#"{"name":"#);
        let name = push_string(&mut json, name);
        json.push_str(r#","attributes":"#);
        let object_start = json.len();
        json.push('{');
        let mut attributes = Vec::with_capacity(entries.len());
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            // Tagged before `push_string` takes the key: the tag is of the key as looked up, unescaped.
            let key_tag = tag(key.as_bytes());
            let key = push_string(&mut json, key);
            json.push(':');
            let start = json.len();
            json.push_str(value.get());
            attributes.push(Attribute { tag: key_tag, key, value: start..json.len() });
        }
        json.push('}');
        let object = object_start..json.len();
        json.push('}');
        Self { json: json.into(), name, object, attributes }
    }

    /// The event as JSON, as it was on the stream when serde_json wrote it (values always as sent): the blog
    /// sample's log message.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The event's text, shared (the aggregator's log line).
    pub fn shared_json(&self) -> Arc<str> {
        Arc::clone(&self.json)
    }

    /// The attributes object as JSON, as it was on the stream.
    pub fn attributes_json(&self) -> &str {
        &self.json[self.object.clone()]
    }

    fn str_of<'s>(&'s self, t: &'s Text) -> &'s str {
        match t {
            Text::At(r) => &self.json[r.clone()],
            Text::Owned(s) => s,
        }
    }

    /// The raw JSON text of an attribute's value; the last of repeated keys, as a decoded map keeps.
    fn raw(&self, key: &str) -> Option<&str> {
        let wanted = tag(key.as_bytes());
        // Keys compared as bytes: slicing the text as `str` would check char boundaries on every key.
        let is_key = |a: &Attribute| {
            a.tag == wanted
                && match &a.key {
                    Text::At(r) => self.json.as_bytes().get(r.clone()) == Some(key.as_bytes()),
                    Text::Owned(s) => **s == *key,
                }
        };
        self.attributes.iter().rev().find(|a| is_key(a)).map(|a| &self.json[a.value.clone()])
    }
}

/// A JSON number's text read as serde_json reads it, so both forms agree to the last bit.
fn number(raw: &str) -> Option<Number> {
    match raw.as_bytes().first() {
        // Most are whole and not negative (times, durations, counts): read as serde_json reads them (a `u64`; 19
        // digits cannot overflow it) without setting up a deserializer, which cost ten times the reading.
        Some(b'0'..=b'9') if plain_whole(raw) => raw.parse().ok().map(|n: u64| Number::from(n)),
        Some(b'-' | b'0'..=b'9') => serde_json::from_str(raw).ok(),
        _ => None,
    }
}

/// Whether `raw` is 1 to 19 digits, as JSON writes a number (no leading zero).
fn plain_whole(raw: &str) -> bool {
    (1..=19).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw.len() == 1 || !raw.starts_with('0'))
}

/// A JSON string's text read as serde_json reads it; `None` for any other value.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') { serde_json::from_str(raw).ok().map(Cow::Owned) } else { Some(Cow::Borrowed(inner)) }
}

impl EventFields for IndexedEvent {
    fn event_name(&self) -> &str {
        self.str_of(&self.name)
    }
    fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        string(self.raw(key)?)
    }
    fn number(&self, key: &str) -> Option<f64> {
        number(self.raw(key)?)?.as_f64()
    }
    fn scalar_text(&self, key: &str) -> Option<Cow<'_, str>> {
        match self.raw(key)? {
            "true" => Some(Cow::Borrowed("true")),
            "false" => Some(Cow::Borrowed("false")),
            raw if raw.starts_with('"') => string(raw),
            raw => number(raw).map(|n| Cow::Owned(n.to_string())),
        }
    }
    fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }
    fn entry_names(&self, key: &str) -> Option<Vec<Cow<'_, str>>> {
        let raw = self.raw(key).filter(|r| r.starts_with('['))?;
        plain_history_names(raw).or_else(|| {
            serde_json::Deserializer::from_str(raw).deserialize_seq(EntryNames(std::marker::PhantomData)).ok()
        })
    }
    fn event_time_ms(&self) -> Option<i64> {
        number(self.raw(keys::TIMESTAMP_MS)?)?.as_i64()
    }
}

/// A meeting event record as the aggregator and the archiver read it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedEventRecord {
    pub received_at_ms: i64,
    pub ingest: Ingest,
    pub truncation: Truncation,
    pub event: IndexedEvent,
    /// The values normalization changed, as sent: a JSON object's text, `None` when the record has none.
    pub original: Option<Box<str>>,
}

/// A record as the aggregator reads it: a meeting event indexed, or a SIP message decoded whole.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexedRecord {
    MeetingEvent(IndexedEventRecord),
    SipMessage(SipMessageRecord),
}

impl From<MeetingEventRecord> for IndexedEventRecord {
    fn from(r: MeetingEventRecord) -> Self {
        IndexedEventRecord {
            received_at_ms: r.received_at_ms,
            ingest: r.ingest,
            truncation: r.truncation,
            event: IndexedEvent::of(&r.event),
            // As the record is written: no `original` when it is empty.
            original: (!r.original.is_empty())
                .then(|| serde_json::to_string(&r.original).expect("a JSON map serializes").into_boxed_str()),
        }
    }
}

impl From<Record> for IndexedRecord {
    fn from(record: Record) -> Self {
        match record {
            Record::MeetingEvent(r) => Self::MeetingEvent(r.into()),
            Record::SipMessage(r) => Self::SipMessage(r),
        }
    }
}

impl IndexedRecord {
    /// Decodes what [`Record::decode`] decodes, and refuses what it refuses, reading the event's attributes only
    /// as far as to find where each lies.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        /// Every field of a meeting event record, the unread ones checked for their shape only.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head<'a> {
            v: u32,
            received_at_ms: i64,
            ingest: Ingest,
            #[serde(borrow)]
            event: Parts<'a>,
            #[serde(default, borrow)]
            original: ObjectText<'a>,
            #[serde(default)]
            truncation: Truncation,
            #[serde(default, rename = "delivery")]
            _delivery: Option<Delivery>,
        }
        if !bytes.starts_with(MEETING_EVENT_PREFIX) {
            // SIP messages, and records another writer laid out differently: rare enough to decode whole.
            return Record::decode(bytes).map(Self::from);
        }
        // Checked as UTF-8 once, whole: read from bytes, serde_json would check every string and raw value apart.
        let text = std::str::from_utf8(bytes).ok();
        let head = text.and_then(|t| Some((serde_json::from_str::<Head<'_>>(t).ok()?, t)));
        let indexed = head.filter(|(h, _)| h.v <= RECORD_VERSION).map(|(h, text)| {
            let event = IndexedEvent::from_parts(h.event, text);
            let original = h.original.0.map(|o| o.get().into());
            IndexedEventRecord {
                received_at_ms: h.received_at_ms,
                ingest: h.ingest,
                truncation: h.truncation,
                event,
                original,
            }
        });
        match indexed {
            Some(r) => Ok(Self::MeetingEvent(r)),
            // Not a record of this version: the whole decode names the reason.
            None => Record::decode(bytes).map(Self::from),
        }
    }
}

/// What a consumer decodes each record of the stream into: the whole [`Record`], or an [`IndexedRecord`].
pub trait FromStream: Sized + Send + 'static {
    /// Decodes a chimewatch record's bytes.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Takes a record decoded from elsewhere (a CloudWatch Logs envelope).
    fn from_record(record: Record) -> Self;
}

impl FromStream for Record {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Record::decode(bytes)
    }
    fn from_record(record: Record) -> Self {
        record
    }
}

impl FromStream for IndexedRecord {
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        IndexedRecord::decode(bytes)
    }
    fn from_record(record: Record) -> Self {
        record.into()
    }
}

#[cfg(test)]
mod tests;
