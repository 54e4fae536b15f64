//! Tests of the indexed read: it answers as the whole decode does, for every SDK's fixtures and arbitrary records,
//! and takes and refuses the same bytes.

use super::*;
use crate::event::{Limits, normalize};
use crate::json::{parse_strict, split_batch};
use proptest::prelude::*;
use serde_json::{Map, json};

const NOW: i64 = 1_795_300_000_000;

/// Both forms of the record in `bytes` answer every read alike, and the indexed one keeps the event's text.
fn assert_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (Ok(Record::MeetingEvent(whole)), Ok(IndexedRecord::MeetingEvent(indexed))) =
        (Record::decode(bytes), IndexedRecord::decode(bytes))
    else {
        return Err(TestCaseError::fail("not a meeting event record, or the indexed decode refused it"));
    };
    prop_assert_eq!(indexed.event.json(), serde_json::to_string(&whole.event).unwrap());
    prop_assert_eq!(indexed.event.attributes_json(), serde_json::to_string(&whole.event.attributes).unwrap());
    found_as_written(bytes)?;
    assert_read_alike(&whole, &indexed)
}

/// Whether the record's event was found in its text whole; if so, it is the event written from its parts.
fn found_as_written(bytes: &[u8]) -> Result<bool, TestCaseError> {
    #[derive(Deserialize)]
    struct Holder<'a> {
        #[serde(borrow)]
        event: Parts<'a>,
    }
    let text = std::str::from_utf8(bytes).unwrap();
    let Holder { event } = serde_json::from_str(text).unwrap();
    let found = IndexedEvent::found_in(&event, text);
    let written = IndexedEvent::written_from(event);
    prop_assert!(found.is_none() || found.as_ref() == Some(&written), "found {:?}, written {:?}", found, written);
    Ok(found.is_some())
}

/// Every read answers alike, for the event's keys and for keys it lacks.
fn assert_read_alike(whole: &crate::MeetingEventRecord, indexed: &IndexedEventRecord) -> Result<(), TestCaseError> {
    let (w, i) = (&whole.event, &indexed.event);
    let as_value: Value = serde_json::from_str(i.json()).unwrap();
    prop_assert_eq!(as_value, serde_json::to_value(w).unwrap());
    let attributes: Value = serde_json::from_str(i.attributes_json()).unwrap();
    prop_assert_eq!(attributes, Value::Object(w.attributes.clone()));
    let original: Option<Value> = indexed.original.as_deref().map(|o| serde_json::from_str(o).unwrap());
    prop_assert_eq!(original.unwrap_or_else(|| json!({})), Value::Object(whole.original.clone()));
    prop_assert_eq!(indexed.ingest, whole.ingest);
    prop_assert_eq!(i.event_name(), w.event_name());
    prop_assert_eq!(i.event_time_ms(), w.event_time_ms());
    prop_assert_eq!(indexed.received_at_ms, whole.received_at_ms);
    prop_assert_eq!(&indexed.truncation, &whole.truncation);
    let absent = ["", "absent", "meetingid"];
    for key in w.attributes.keys().map(String::as_str).chain(absent) {
        prop_assert_eq!(i.text(key), w.text(key), "text of {:?}", key);
        prop_assert_eq!(i.number(key).map(f64::to_bits), w.number(key).map(f64::to_bits), "number of {:?}", key);
        prop_assert_eq!(i.scalar_text(key), w.scalar_text(key), "scalar text of {:?}", key);
        prop_assert_eq!(i.has(key), w.has(key), "has {:?}", key);
        prop_assert_eq!(i.entry_names(key), w.entry_names(key), "entry names of {:?}", key);
    }
    Ok(())
}

#[test]
fn every_sdks_events_read_alike_either_way() {
    let mut seen = 0;
    // Built in, as `sip.rs` takes its fixture: nothing is read at run time.
    let bodies = [
        include_str!("../../../../fixtures/meeting-events/js-mixed-meetings.json"),
        include_str!("../../../../fixtures/meeting-events/android-session.json"),
        include_str!("../../../../fixtures/meeting-events/ios-session-stringified.json"),
    ];
    for body in bodies {
        for raw in split_batch(body, 10_000).unwrap() {
            let n = normalize(parse_strict(raw.get()).unwrap(), &Limits::default(), NOW).unwrap();
            let bytes = Record::meeting_event(n, Ingest::Batch, NOW).encode();
            assert_agree(&bytes).unwrap();
            // serde_json wrote it and nothing in it needed an escape, so the event is copied from the record whole.
            assert!(found_as_written(&bytes).unwrap(), "written from parts: {}", String::from_utf8_lossy(&bytes));
            seen += 1;
        }
    }
    assert!(seen >= 12, "only {seen} fixture events");
}

#[test]
fn escaped_keys_and_strings_are_unescaped() {
    let event = json!({"name": "meeting\"Ended\"", "attributes": {
        "meetingId": "m\u{e9}\n1", "attendeeId": "a", "timestampMs": 1_763_712_000_000_i64, "k\\ey": "v\"",
    }});
    let n = normalize(event, &Limits::default(), NOW).unwrap();
    let bytes = Record::meeting_event(n, Ingest::Batch, NOW).encode();
    assert_agree(&bytes).unwrap();
    // Escaped keys and names are unescaped on their own, so the event's text is written from its parts.
    assert!(!found_as_written(&bytes).unwrap());
    let Ok(IndexedRecord::MeetingEvent(r)) = IndexedRecord::decode(&bytes) else { panic!("refused") };
    assert_eq!(r.event.event_name(), "meeting\"Ended\"");
    assert_eq!(r.event.text("k\\ey").as_deref(), Some("v\""));
    assert_eq!(r.event.text("meetingId").as_deref(), Some("m\u{e9}\n1"));
}

#[test]
fn an_event_laid_out_otherwise_reads_as_the_whole_decode_writes_it() {
    // Whitespace, another field order, an unknown field, the event as an array (which serde's derive takes too):
    // the event's text is written from its parts, as serde_json writes the event, values as they were sent.
    let head = r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":"#;
    let events = [
        r#"{ "attributes" : { "b":[1,2] , "a":"x" }, "extra":{"y":1}, "name" : "n" }"#,
        r#"["n", {"b":[1,2], "a":"x"}]"#,
        r#"{"name":"n","attributes":{"b":[1,2],"a":"x"}}"#,
    ];
    for event in events {
        let bytes = format!("{head}{event}}}");
        let (Ok(Record::MeetingEvent(whole)), Ok(IndexedRecord::MeetingEvent(indexed))) =
            (Record::decode(bytes.as_bytes()), IndexedRecord::decode(bytes.as_bytes()))
        else {
            panic!("refused: {bytes}");
        };
        assert_eq!(indexed.event.json(), r#"{"name":"n","attributes":{"b":[1,2],"a":"x"}}"#, "{event}");
        assert_eq!(indexed.event, IndexedEvent::of(&whole.event), "{event}");
        // Found in the text whole only when laid out as serde_json writes it, which the last one is.
        let compact = event == events[2];
        assert_eq!(found_as_written(bytes.as_bytes()).map_err(|e| e.to_string()), Ok(compact), "{event}");
        assert_read_alike(&whole, &indexed).unwrap();
    }
}

#[test]
fn the_event_is_copied_whole_only_when_laid_out_compactly() {
    // (event, whether it is found in the record whole): the copy gives up at the first part out of place, even after
    // parts that matched, and the event is then written from its parts, alike either way.
    let head = r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":"#;
    let events = [
        (r#"{"name":"","attributes":{}}"#, true),
        (r#"{"name":"n","attributes":{"":"","a":1}}"#, true),
        (r#"{"name":"é","attributes":{"日":"é","b":[{"c":null}]}}"#, true),
        (r#"{"name":"n","attributes":{"a":1,"b":2,"c" :3}}"#, false),
        (r#"{"name":"n","attributes":{"a":1,"b":2, "c":3}}"#, false),
        (r#"{"name":"n","attributes":{"a":1,"b":2,"\u0063":3}}"#, false),
        (r#"{"name":"n","attributes":{"a":1},"extra":0}"#, false),
        (r#"{"name":"n\n","attributes":{"a":1}}"#, false),
        (r#"{"name":"n","attributes":{"a":1} }"#, false),
    ];
    for (event, whole) in events {
        let bytes = format!("{head}{event}}}");
        let (Ok(Record::MeetingEvent(w)), Ok(IndexedRecord::MeetingEvent(i))) =
            (Record::decode(bytes.as_bytes()), IndexedRecord::decode(bytes.as_bytes()))
        else {
            panic!("refused: {bytes}");
        };
        assert_eq!(found_as_written(bytes.as_bytes()).map_err(|e| e.to_string()), Ok(whole), "{event}");
        assert_eq!(i.event, IndexedEvent::of(&w.event), "{event}");
        assert_read_alike(&w, &i).unwrap();
    }
}

#[test]
fn history_names_are_read_as_the_whole_decode_reads_them() {
    // A repeated name (the last counts), names that are not strings, entries that are not objects, escapes in a
    // name and in the key `name`.
    let history = r#"[{"name":"a","name":"b"},{"name":1},{"name":"c","name":null},"d",["e"],{"x":{"name":"f"}},{"name":"g\u0068"},{"na\u006de":"i"}]"#;
    let bytes = format!(
        r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"n","attributes":{{"meetingHistory":{history},"s":"t"}}}}}}"#
    );
    let (Ok(Record::MeetingEvent(whole)), Ok(IndexedRecord::MeetingEvent(indexed))) =
        (Record::decode(bytes.as_bytes()), IndexedRecord::decode(bytes.as_bytes()))
    else {
        panic!("refused: {bytes}");
    };
    assert_read_alike(&whole, &indexed).unwrap();
    assert_eq!(indexed.event.entry_names("meetingHistory"), Some(vec!["b".into(), "gh".into(), "i".into()]));
    assert_eq!(indexed.event.entry_names("s"), None);
}

#[test]
fn a_history_laid_out_as_the_sdks_send_it_is_read_without_serde_and_alike() {
    // (history, whether the layout is the plain one read without serde): each is read as the whole decode reads it.
    let cases = [
        (r#"[{"name":"a","timestampMs":1},{"name":"meetingEnded","timestampMs":1795248569920}]"#, true),
        (r#"[]"#, true),
        (r#"[{"name":"é日","timestampMs":1}]"#, true),
        (r#"[{"name":"","timestampMs":0}]"#, true),
        (r#"[{"name":"a\"b","timestampMs":1}]"#, false),
        (r#"[{"name":"a\u0062","timestampMs":1}]"#, false),
        (r#"[{"name":"a","timestampMs":-1}]"#, false),
        (r#"[{"name":"a","timestampMs":1.5}]"#, false),
        (r#"[{"name":"a","timestampMs":1,"name":"b"}]"#, false),
        (r#"[{"name":"a","timestampMs":1}, {"name":"b","timestampMs":2}]"#, false),
        (r#"[{"timestampMs":1,"name":"a"}]"#, false),
        (r#"[{"name":"a","timestampMs":{"name":"b"}}]"#, false),
        (r#"[{"name":"a","timestampMs":1},"b"]"#, false),
        (r#"[ ]"#, false),
    ];
    for (history, plain) in cases {
        assert_eq!(plain_history_names(history).is_some(), plain, "{history}");
        let bytes = format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"n","attributes":{{"meetingHistory":{history}}}}}}}"#
        );
        let (Ok(Record::MeetingEvent(whole)), Ok(IndexedRecord::MeetingEvent(indexed))) =
            (Record::decode(bytes.as_bytes()), IndexedRecord::decode(bytes.as_bytes()))
        else {
            panic!("refused: {bytes}");
        };
        assert_read_alike(&whole, &indexed).unwrap();
    }
}

/// Records the whole decode refuses, for each field the indexed decode reads only for its shape.
#[test]
fn both_refuse_the_same_malformed_records() {
    let good = r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{}}"#;
    let cases = [
        format!("{good}}}"),
        format!("{good},\"original\":null}}"),
        format!("{good},\"original\":7}}"),
        format!("{good},\"original\":{{\"a\":[1]}}}}"),
        format!("{good},\"delivery\":{{\"ttl\":\"soon\"}}}}"),
        format!("{good},\"truncation\":{{\"historyEntriesDropped\":-1}}}}"),
        format!("{good},\"v\":1}}"),
        r#"{"kind":"meetingEvent","v":2,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{}}}"#
            .into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"event":{"name":"x","attributes":{}}}"#.into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":7,"attributes":{}}}"#.into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":[]}}"#
            .into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"fax","event":{"name":"x","attributes":{}}}"#.into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{"a":}}}"#
            .into(),
        // Numbers beyond f64's range, which a raw value skips without reading: in an attribute, nested in one, and
        // in the original values.
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{"a":1e400}}}"#
            .into(),
        format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":[{{"b":-{}}}]}}}}}}"#,
            "9".repeat(400)
        ),
        format!("{good},\"original\":{{\"a\":[2e-400,1E+309]}}}}"),
        // A lone surrogate, which a raw value's escapes are not checked for either.
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{"a":"x\uD800"}}}"#
            .into(),
        r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{"name":"x","attributes":{"a":[{"\uDC00":1}]}}}"#
            .into(),
        format!("{good},\"original\":{{\"\\uD800\":1}}}}"),
        // A lone surrogate in a container, its backslash the last byte of a chunk of the check (at offsets 63 and
        // 127), the `u` the first of the next.
        format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":["{}\uD800"]}}}}}}"#,
            "x".repeat(61)
        ),
        format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":["{}\uD800"]}}}}}}"#,
            "x".repeat(125)
        ),
        format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":{}.5}}}}}}"#,
            "9".repeat(309)
        ),
        // Nesting past serde_json's limit, which a raw value's skip does not count.
        format!(
            r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":{}{}}}}}}}"#,
            "[".repeat(130),
            "]".repeat(130)
        ),
        format!("{good},\"original\":{{\"a\":{}{}}}}}", "[".repeat(130), "]".repeat(130)),
    ];
    let mut accepted = 0;
    for case in &cases {
        let whole = Record::decode(case.as_bytes());
        let indexed = IndexedRecord::decode(case.as_bytes());
        assert_eq!(indexed, whole.clone().map(IndexedRecord::from), "{case}");
        accepted += usize::from(whole.is_ok());
    }
    assert_eq!(accepted, 2, "the well-formed cases are the first and the one with an original");

    // The largest numbers within f64's range are taken by both, and read alike.
    let largest = format!(
        r#"{{"kind":"meetingEvent","v":1,"receivedAtMs":1,"ingest":"batch","event":{{"name":"x","attributes":{{"a":17976931348623157{},"b":[1.7976931348623157E308]}}}}}}"#,
        "0".repeat(292)
    );
    let (Ok(Record::MeetingEvent(whole)), Ok(IndexedRecord::MeetingEvent(indexed))) =
        (Record::decode(largest.as_bytes()), IndexedRecord::decode(largest.as_bytes()))
    else {
        panic!("both decodes take {largest}")
    };
    assert_eq!(indexed.event.number("a"), Some(f64::MAX));
    assert_eq!(indexed.event.number("a"), whole.event.number("a"));
}

fn arbitrary_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        "[a-z\"\\\\\n\u{e9}]{0,6}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    scalar.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arbitrary_record() -> impl Strategy<Value = Vec<u8>> {
    let history = prop::collection::vec(("[a-zA-Z]{1,12}", 1_000_000_000_000_i64..2_000_000_000_000), 0..5)
        .prop_map(|h| json!(h.into_iter().map(|(n, t)| json!({"name": n, "timestampMs": t})).collect::<Vec<_>>()));
    // A history normalization would refuse (no timestamps), put in after it: escaped and control-character names
    // (written `\u0001`), names that are not strings, entries that are not objects.
    let odd_entry = prop_oneof![
        ("[a-z\"\\\\\n\u{1}\u{e9}]{0,6}", arbitrary_value()).prop_map(|(n, v)| json!({"name": n, "x": v})),
        arbitrary_value().prop_map(|v| json!({"name": v})),
        // Close to the plain layout read without serde: an odd name or timestamp.
        ("[a-z\"\\\\\n\u{1}\u{e9}]{0,6}", arbitrary_value()).prop_map(|(n, t)| json!({"name": n, "timestampMs": t})),
        arbitrary_value(),
    ];
    let odd_history = prop::collection::vec(odd_entry, 0..4).prop_map(Value::from);
    (
        "[a-zA-Z\"]{1,20}",
        prop::collection::btree_map("[a-zA-Z\\\\\"]{1,8}", arbitrary_value(), 0..8),
        prop::option::of(history),
        prop::option::of(odd_history),
        1_000_000_000_000_i64..2_000_000_000_000,
        "[0-9a-f-]{1,36}",
    )
        .prop_filter_map("valid events only", |(name, attrs, history, odd_history, ts, id)| {
            let mut m: Map<String, Value> = attrs.into_iter().collect();
            m.insert("meetingId".into(), id.clone().into());
            m.insert("attendeeId".into(), id.into());
            m.insert("timestampMs".into(), ts.into());
            if let Some(h) = history {
                m.insert("meetingHistory".into(), h);
            }
            let mut n = crate::event::normalize_attributes(name, m, &Limits::default(), 2_000_000_000_000).ok()?;
            if let Some(h) = odd_history {
                n.event.attributes.insert("meetingHistory".into(), h);
            }
            Some(Record::meeting_event(n, Ingest::SdkIngestion, ts).encode())
        })
}

proptest! {
    #[test]
    fn arbitrary_records_read_alike_either_way(bytes in arbitrary_record()) {
        assert_agree(&bytes)?;
    }

    /// A record cut or changed anywhere is taken by both decodes or by neither, and read alike when taken.
    #[test]
    fn damaged_records_are_taken_or_refused_alike(
        bytes in arbitrary_record(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut damaged = bytes.clone();
        let i = at.index(damaged.len());
        if cut { damaged.truncate(i) } else { damaged[i] = byte }
        // The text may no longer be as serde_json writes it (`1E20`, `\/`), so the reads are compared, not the text.
        match (Record::decode(&damaged), IndexedRecord::decode(&damaged)) {
            (Ok(Record::MeetingEvent(w)), Ok(IndexedRecord::MeetingEvent(i))) => {
                assert_read_alike(&w, &i)?;
                // A layout one byte from the compact one is where copying the event whole could go wrong.
                found_as_written(&damaged)?;
            }
            (whole, indexed) => prop_assert_eq!(indexed, whole.map(IndexedRecord::from)),
        }
    }

    #[test]
    fn indexed_decode_is_total(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = IndexedRecord::decode(&bytes);
    }
}

#[test]
fn a_number_read_without_a_deserializer_is_the_one_serde_json_reads() {
    let texts = [
        "0",
        "7",
        "1795300000000",
        "1234567890123456789",
        "9999999999999999999",
        "12345678901234567890",
        "10000000000000000000",
        "18446744073709551616",
        "00",
        "0123",
        "-0",
        "-1",
        "1.5",
        "1e3",
        "",
        "12a",
    ];
    for text in texts {
        let (read, expected) = (number(text), serde_json::from_str::<Number>(text).ok());
        assert_eq!(read, expected, "{text:?}");
        assert_eq!(read.as_ref().and_then(Number::as_f64), expected.as_ref().and_then(Number::as_f64), "{text:?}");
        assert_eq!(read.as_ref().and_then(Number::as_i64), expected.as_ref().and_then(Number::as_i64), "{text:?}");
    }
    assert!(plain_whole("1234567890123456789") && !plain_whole("12345678901234567890") && !plain_whole("01"));
    assert!(!plain_whole(""));
}

#[test]
fn keys_that_share_a_tag_or_need_unescaping_are_found() {
    // Keys of one length whose first, middle and last bytes agree, a key 256 bytes longer with the same tag,
    // non-ASCII keys, an escape that unescapes to plain text and keys that stay escaped.
    let long = format!("a{}b", "m".repeat(257));
    let json = format!(
        r#"{{"name":"e","attributes":{{"axmb":1,"aymb":2,"\u0061zmb":3,"{long}":4,"café":5,"\u00e9t\u00e9":6,"q\"k":7,"amb":8}}}}"#
    );
    assert_eq!(tag(b"amb"), tag(long.as_bytes()));
    assert_eq!(tag(b"axmb"), tag(b"aymb"));
    for decoded in [IndexedEvent::new(&json).unwrap(), IndexedEvent::of(&serde_json::from_str(&json).unwrap())] {
        let found = [("axmb", 1.0), ("aymb", 2.0), ("azmb", 3.0), (&long, 4.0), ("café", 5.0), ("été", 6.0)];
        for (key, value) in found.into_iter().chain([("q\"k", 7.0), ("amb", 8.0)]) {
            assert_eq!(decoded.number(key), Some(value), "{key}");
        }
        assert_eq!(decoded.number("aqmb"), None);
    }
}
