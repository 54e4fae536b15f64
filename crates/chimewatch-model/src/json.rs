//! Strict JSON: duplicate object keys are errors, and a batch body splits into elements that are judged one by one.
//!
//! `serde_json` keeps the last of duplicate keys silently; for telemetry that is a lie about what the client sent
//! (`{"timestampMs": 1763712000000, "timestampMs": 1}`), so every element is parsed through [`parse_strict`], or
//! read by the gateway's fast path (`transcode`), which declines any element with a duplicate key.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Why a whole request body could not be split into elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("body is not valid UTF-8: invalid byte at offset {offset}")]
    NotUtf8 { offset: usize },
    #[error("body must be a JSON array of events, but it is {found}")]
    NotAnArray { found: &'static str },
    #[error("body is not valid JSON: {message} at line {line} column {column}")]
    Syntax { message: String, line: usize, column: usize },
    #[error("body holds {count} events; at most {limit} are accepted per request")]
    TooManyElements { count: usize, limit: usize },
}

/// Checks that `body` is UTF-8, as every JSON body must be.
pub fn utf8(body: &[u8]) -> Result<&str, BatchError> {
    std::str::from_utf8(body).map_err(|e| BatchError::NotUtf8 { offset: e.valid_up_to() })
}

/// Splits a JSON array into its raw elements without interpreting them, so one bad element cannot sink the batch.
pub fn split_batch(body: &str, max_elements: usize) -> Result<Vec<&RawValue>, BatchError> {
    let first = body.trim_start_matches(is_json_whitespace).chars().next();
    if let Some(found) = first.and_then(non_array_kind) {
        return Err(BatchError::NotAnArray { found });
    }
    let elements: Vec<&RawValue> = serde_json::from_str(body).map_err(syntax_error)?;
    if elements.len() > max_elements {
        return Err(BatchError::TooManyElements { count: elements.len(), limit: max_elements });
    }
    Ok(elements)
}

/// Splits a body that is either a JSON array or newline-delimited JSON (one value per non-blank line).
///
/// Each element is returned as its text with the 1-based line it started on, for error messages.
pub fn split_array_or_lines(body: &str, max_elements: usize) -> Result<Vec<&str>, BatchError> {
    let trimmed = body.trim_start_matches(is_json_whitespace);
    if trimmed.starts_with('[') {
        return Ok(split_batch(body, max_elements)?.into_iter().map(RawValue::get).collect());
    }
    let lines: Vec<&str> = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.len() > max_elements {
        return Err(BatchError::TooManyElements { count: lines.len(), limit: max_elements });
    }
    Ok(lines)
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn non_array_kind(c: char) -> Option<&'static str> {
    match c {
        '[' => None,
        '{' => Some("an object"),
        '"' => Some("a string"),
        't' | 'f' => Some("a boolean"),
        'n' => Some("null"),
        '-' | '0'..='9' => Some("a number"),
        // Anything else is a syntax error, which serde_json describes with its position.
        _ => None,
    }
}

/// A body-level JSON syntax error, with the reason and the position apart.
pub fn syntax_error(e: serde_json::Error) -> BatchError {
    let message = e.to_string();
    // serde_json appends " at line L column C"; keep the reason alone and carry the position as fields.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    BatchError::Syntax { message, line: e.line(), column: e.column() }
}

/// A string borrowed from the input when it has no escapes, copied otherwise (serde's `Cow<str>` always copies).
pub(crate) struct BorrowedStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BorrowedStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Parses one JSON value, rejecting duplicate object keys anywhere in it.
pub fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let StrictValue(value) = StrictValue::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses a batch body whole, in one pass, when it is an array of at most `max_elements` values without a
/// duplicate key anywhere: the common case, which then need not be split first. `None` means the body must be
/// judged element by element ([`split_batch`], then [`parse_strict`] per element), which also names what is wrong.
pub fn parse_strict_batch(body: &str, max_elements: usize) -> Option<Vec<Value>> {
    let mut de = serde_json::Deserializer::from_str(body);
    let values = de.deserialize_seq(StrictArray { max_elements }).ok()?;
    de.end().ok()?;
    Some(values)
}

/// The elements of a JSON array, each a [`StrictValue`], failing past `max_elements`.
struct StrictArray {
    max_elements: usize,
}

impl<'de> Visitor<'de> for StrictArray {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {} values", self.max_elements)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            if items.len() == self.max_elements {
                return Err(de::Error::custom("too many elements"));
            }
            items.push(v);
        }
        Ok(items)
    }
}

/// A `serde_json::Value` whose deserialization fails on duplicate keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot express NaN or infinity, so this is always representable.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One hash per key: the entry both finds a duplicate (reported at the key) and takes the value.
            match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    let StrictValue(v) = map.next_value_seed(StrictSeed)?;
                    slot.insert(v);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!("duplicate key `{}`", slot.key())));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = StrictValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let err = parse_strict(r#"{"a":{"b":1,"b":2}}"#).unwrap_err().to_string();
        assert!(err.contains("duplicate key `b`"), "{err}");
        assert_eq!(parse_strict(r#"{"a":{"b":1,"c":[1,{"b":2}]}}"#).unwrap()["a"]["c"][1]["b"], 2);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("[{deep}]");
        let elements = split_batch(&body, 10).unwrap();
        let err = parse_strict(elements[0].get()).unwrap_err().to_string();
        assert!(err.contains("recursion limit"), "{err}");
    }

    #[test]
    fn batch_shape_errors_name_what_was_found() {
        let check = |body: &str, expect: &str| {
            let err = split_batch(body, 100).unwrap_err().to_string();
            assert_eq!(err, expect, "for {body}");
        };
        check(r#"{"name":"x"}"#, "body must be a JSON array of events, but it is an object");
        check("  \"x\"", "body must be a JSON array of events, but it is a string");
        check("[{\"a\":", "body is not valid JSON: EOF while parsing a value at line 1 column 6");
    }

    #[test]
    fn element_count_is_capped() {
        assert_eq!(split_batch("[1,2,3]", 2).unwrap_err(), BatchError::TooManyElements { count: 3, limit: 2 });
        assert_eq!(split_batch("[1,2,3]", 3).unwrap().len(), 3);
        assert_eq!(split_batch("[]", 3).unwrap().len(), 0);
    }

    #[test]
    fn a_batch_parses_in_one_pass_only_when_every_element_would_parse_alone() {
        let each = |body: &str| -> Vec<Value> {
            split_batch(body, 3).unwrap().iter().map(|raw| parse_strict(raw.get()).unwrap()).collect()
        };
        for body in [" [ ] ", r#"[{"a":{"b":[1,{"b":2}]}}, "x", 1.5e3]"#, "[null,{\"\\u0061\":1,\"a\\n\":2}]"] {
            assert_eq!(parse_strict_batch(body, 3), Some(each(body)), "for {body}");
        }
        let deep = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        for body in [
            r#"[{"a":1},{"a":1,"a":2}]"#, // a duplicate key in one element
            r#"[{"a":{"b":1,"b":2}}]"#,   // ... at depth
            r#"[{"\u0061":1,"a":2}]"#,    // ... spelled with an escape
            "[1,2,3,4]",                  // too many
            r#"{"name":"x"}"#,            // not an array
            "[1,2",                       // cut short
            "[1] [2]",                    // trailing characters
            &deep,                        // past the recursion limit
        ] {
            assert_eq!(parse_strict_batch(body, 3), None, "for {body}");
        }
    }

    #[test]
    fn utf8_errors_give_the_offset() {
        assert_eq!(utf8(b"[\xff]").unwrap_err(), BatchError::NotUtf8 { offset: 1 });
    }

    #[test]
    fn array_or_lines() {
        assert_eq!(split_array_or_lines("[{\"a\":1}, 2]", 10).unwrap(), vec!["{\"a\":1}", "2"]);
        assert_eq!(split_array_or_lines("{\"a\":1}\n\n {\"b\":2}\r\n", 10).unwrap(), vec!["{\"a\":1}", "{\"b\":2}"]);
    }
}
