//! Tests of the fast path: it takes what the JS SDK sends, and whatever it takes it writes as the general path would.

use super::*;
use crate::event::normalize;
use crate::json::{parse_strict, split_batch};
use crate::partition::partition_key_for;
use crate::record::Record;
use proptest::prelude::*;

const NOW: i64 = 1_795_300_000_000;
const MAX_RECORD: usize = 1 << 20;

/// What the general path makes of an element: its record's partition key and bytes, or `None` for a rejection.
fn general(raw: &str, limits: &Limits, max_record_bytes: usize) -> Option<(String, Vec<u8>)> {
    let n = normalize(parse_strict(raw).ok()?, limits, NOW).ok()?;
    let record = Record::meeting_event(n, Ingest::Batch, NOW);
    let data = record.encode_bounded(max_record_bytes).ok()?;
    Some((partition_key_for(&record), data))
}

/// Asserts that the fast path, when it answers, answers as the general path; says whether it answered.
fn agrees(raw: &str, limits: &Limits, max_record_bytes: usize) -> bool {
    let Some(fast) = transcode(raw, limits, NOW, max_record_bytes) else { return false };
    let slow = general(raw, limits, max_record_bytes);
    assert_eq!(
        slow.as_ref().map(|(key, data)| (key.as_str(), String::from_utf8_lossy(data))),
        Some((fast.partition_key.as_str(), String::from_utf8_lossy(&fast.data))),
        "{raw}"
    );
    let record = Record::decode(&fast.data).expect("the record decodes");
    let Record::MeetingEvent(r) = record else { panic!("not a meeting event") };
    assert_eq!((r.event.meeting_id(), r.event.attendee_id()), (Some(fast.meeting_id), Some(fast.attendee_id)));
    true
}

macro_rules! fixture {
    ($rel:literal) => {
        include_str!(concat!("../../../../fixtures/", $rel))
    };
}

#[test]
fn the_js_sdks_events_take_the_fast_path_and_come_out_as_the_general_path_writes_them() {
    let fixtures = [
        fixture!("meeting-events/js-mixed-meetings.json"),
        fixture!("real-sdk-js/0004-blog.json"),
        fixture!("real-sdk-js/0006-blog.json"),
        fixture!("real-sdk-js/0013-blog.json"),
        fixture!("real-sdk-js/0017-blog.json"),
        fixture!("real-sdk-js/0020-blog.json"),
    ];
    let mut taken = 0;
    for text in fixtures {
        // The captures wrap the request's body; the meeting-events fixture is the body.
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let body = value.get("body").map_or_else(|| text.to_owned(), |b| b.to_string());
        for raw in split_batch(&body, 10_000).unwrap() {
            if agrees(raw.get(), &Limits::default(), MAX_RECORD) {
                taken += 1;
                continue;
            }
            // The one kind the fixtures hold that the fast path leaves: an unknown attribute holding an object.
            let event: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
            let nested = event["attributes"]
                .as_object()
                .unwrap()
                .iter()
                .any(|(k, v)| v.is_object() || (v.is_array() && k != "meetingHistory"));
            assert!(nested, "not taken: {}", raw.get());
        }
    }
    assert!(taken >= 25, "only {taken} events");
    // With a small cap the history is cut, and the record says how much.
    let limits = Limits { max_history_entries: 1, ..Limits::default() };
    let body = fixture!("meeting-events/js-mixed-meetings.json");
    let raw =
        split_batch(body, 10_000).unwrap().into_iter().max_by_key(|r| r.get().matches("timestampMs").count()).unwrap();
    assert!(agrees(raw.get(), &limits, MAX_RECORD));
    assert!(
        String::from_utf8(transcode(raw.get(), &limits, NOW, MAX_RECORD).unwrap().data)
            .unwrap()
            .contains(r#""truncation":{"historyEntriesDropped":"#)
    );
}

#[test]
fn what_normalization_would_change_or_refuse_takes_the_general_path() {
    let element = |attrs: &str| {
        format!(
            r#"{{"name":"meetingEnded","attributes":{{"meetingId":"m1","attendeeId":"a1","timestampMs":1795000000000{attrs}}}}}"#
        )
    };
    assert!(agrees(&element(""), &Limits::default(), MAX_RECORD));
    let cases = [
        (element(r#","retryCount":"3""#), "a number sent as a string"),
        (element(r#","retryCount":-1"#), "a negative count"),
        (element(r#","retryCount":1.5"#), "a float"),
        (element(r#","x":1e3"#), "an exponent"),
        (element(r#","x":-0"#), "a negative zero"),
        (element(r#","x":12345678901234567890"#), "a number past i64"),
        (element(r#","lowPowerModeEnabled":"true""#), "a boolean sent as a string"),
        (element(r#","meetingStatus":"audioCallEnded""#), "an iOS status"),
        (element(r#","meetingStatus":3"#), "a status that is not a string"),
        (element(r#","audioInputError":"e""#), "an iOS error key"),
        (element(r#","x":"a\"b""#), "an escape"),
        (element(r#","x":"\uD800""#), "a lone surrogate"),
        (element(r#","x":{"a":1}"#), "an object"),
        (element(r#","x":[1]"#), "an array"),
        (element(r#","meetingHistory":[{"timestampMs":1,"name":"a"}]"#), "history entries in another order"),
        (element(r#","meetingHistory":[{"name":"a","timestampMs":"1"}]"#), "a history timestamp as a string"),
        (element(r#","meetingHistory":[{"name":"a","timestampMs":1,"x":2}]"#), "a third history field"),
        (element(r#","meetingHistory":"[a: 1]""#), "the iOS stringified history"),
        (element(r#","sdkName":"amazon-chime-sdk-ios","meetingStartDurationMs":0"#), "a mobile zero duration"),
        (element(r#","meetingId":"m2""#), "a duplicate key"),
        (element(r#","x":"0123456789abcdefg""#), "a string over the cap"),
        (r#"{"name":"e","attributes":{"attendeeId":"a1","timestampMs":1795000000000}}"#.to_owned(), "no meeting id"),
        (
            r#"{"name":"e","attributes":{"meetingId":" ","attendeeId":"a","timestampMs":1795000000000}}"#.to_owned(),
            "a blank id",
        ),
        (
            r#"{"name":"e","attributes":{"meetingId":"m","attendeeId":"a","timestampMs":1}}"#.to_owned(),
            "an old timestamp",
        ),
        (
            r#"{"name":"","attributes":{"meetingId":"m","attendeeId":"a","timestampMs":1795000000000}}"#.to_owned(),
            "an empty name",
        ),
        (r#"{"name":"e","attributes":{},"x":1}"#.to_owned(), "an extra field"),
        (r#"[1]"#.to_owned(), "not an object"),
    ];
    let limits = Limits { max_attribute_bytes: 16, ..Limits::default() };
    for (raw, why) in cases {
        assert!(transcode(&raw, &limits, NOW, MAX_RECORD).is_none(), "{why}: {raw}");
    }
    let record = element("");
    let size = transcode(&record, &limits, NOW, MAX_RECORD).unwrap().data.len();
    assert!(transcode(&record, &limits, NOW, size - 1).is_none(), "a record over the size bound");
    assert!(agrees(&record, &limits, size));
}

/// One attribute as text: known keys and others, values of every kind the general path changes or refuses, keys
/// and strings spelled with escapes, numbers in every form.
fn attribute() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just(r#""meetingId""#),
        Just(r#""meeting\u0049d""#),
        Just(r#""attendeeId""#),
        Just(r#""timestampMs""#),
        Just(r#""sdkName""#),
        Just(r#""meetingStartDurationMs""#),
        Just(r#""retryCount""#),
        Just(r#""meetingStatus""#),
        Just(r#""lowPowerModeEnabled""#),
        Just(r#""audioInputError""#),
        Just(r#""meetingHistory""#),
        Just(r#""browserName""#),
        Just(r#""x""#),
        Just(r#""y""#),
        Just(r#""\u00e9""#),
    ];
    let value = prop_oneof![
        Just(r#""m1""#.to_owned()),
        Just(r#""a1""#.to_owned()),
        Just(r#""""#.to_owned()),
        Just(r#""amazon-chime-sdk-js""#.to_owned()),
        Just(r#""amazon-chime-sdk-android""#.to_owned()),
        Just(r#""AudioCallEnded""#.to_owned()),
        Just(r#""ok""#.to_owned()),
        Just(r#""true""#.to_owned()),
        Just(r#""12""#.to_owned()),
        Just(r#""é€😀""#.to_owned()),
        Just(r#""a\nb""#.to_owned()),
        Just(r#""\ud83d\ude00""#.to_owned()),
        Just(r#""0123456789abcdefghij""#.to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("0".to_owned()),
        Just("-0".to_owned()),
        Just("0.0".to_owned()),
        Just("1e2".to_owned()),
        Just("-7".to_owned()),
        Just("1795000000000".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("[]".to_owned()),
        Just(r#"{"a": [1, {"b": null}]}"#.to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| serde_json::Value::from(f).to_string()),
        prop::collection::vec(("[a-z]{0,20}", any::<i64>(), 0u8..6), 0..6).prop_map(|entries| {
            let items: Vec<String> = entries
                .iter()
                .map(|(name, ts, form)| match form {
                    0..=2 => format!(r#"{{"name": "{name}", "timestampMs": {ts}}}"#),
                    3 => format!(r#"{{"timestampMs":{ts},"name":"{name}"}}"#),
                    4 => format!(r#"{{"name":"{name}","timestampMs":{ts}.0}}"#),
                    _ => format!(r#"{{"meetingHistoryEventName":"{name}","timestamp":{ts}}}"#),
                })
                .collect();
            format!("[{}]", items.join(" , "))
        }),
    ];
    (key, value, prop_oneof![Just(""), Just(" "), Just("\n\t")]).prop_map(|(k, v, ws)| format!("{k}{ws}:{ws}{v}"))
}

/// An element as text, usually with the required attributes, sometimes without, sometimes with extra fields.
fn element() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(attribute(), 0..8),
        prop_oneof![Just(r#""meetingEnded""#), Just(r#""""#), Just(r#""m\u0065eting""#), Just("1")],
        0u8..8,
        prop_oneof![
            Just(""),
            Just(r#","sdkName":"amazon-chime-sdk-ios""#),
            Just(r#","sdkName":"amazon-chime-sdk-android","meetingDurationMs":0"#),
        ],
    )
        .prop_map(|(attrs, name, form, sdk)| {
            let required = r#""meetingId":"m","attendeeId":"a","timestampMs":1795000000000"#;
            let mut all = Vec::new();
            if form > 0 {
                all.push(format!("{required}{sdk}"));
            }
            all.extend(attrs);
            let attributes = format!("{{{}}}", all.join(","));
            match form {
                1 => format!(r#"{{"attributes":{attributes},"name":{name}}}"#),
                2 => format!(r#"{{"name":{name},"attributes":{attributes},"x":1}}"#),
                3 => format!(r#"{{"name":{name},"attributes":{attributes},"name":{name}}}"#),
                _ => format!(r#"{{ "name" : {name} , "attributes" : {attributes} }}"#),
            }
        })
}

/// Attributes the JS SDK sends, in its forms: the fast path must take every such element.
fn plain_element() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9 ._-]{1,40}",
        prop::collection::vec(
            (
                "[a-zA-Z]{1,12}",
                prop_oneof![
                    "[a-zA-Z0-9 .:/-]{0,30}".prop_map(|s| format!("\"{s}\"")),
                    (0i64..1 << 40).prop_map(|n| n.to_string())
                ],
            ),
            0..12,
        ),
        prop::collection::vec(("[a-zA-Z]{1,20}", 1_700_000_000_000i64..1_800_000_000_000), 0..10),
    )
        .prop_map(|(name, attrs, history)| {
            // Prefixed, so a generated key never repeats a known one.
            let mut parts: Vec<String> =
                attrs.iter().enumerate().map(|(i, (k, v))| format!(r#""{k}{i}":{v}"#)).collect();
            parts.push(
                r#""meetingId":"m-1","attendeeId":"a-1","sdkName":"amazon-chime-sdk-js","timestampMs":1795000000000"#
                    .to_owned(),
            );
            let entries: Vec<String> =
                history.iter().map(|(n, ts)| format!(r#"{{"name":"{n}","timestampMs":{ts}}}"#)).collect();
            parts.push(format!(r#""meetingHistory":[{}]"#, entries.join(",")));
            format!(r#"{{"name":"{name}","attributes":{{{}}}}}"#, parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn whatever_the_fast_path_takes_it_writes_as_the_general_path(raw in element()) {
        let limits = Limits { max_history_entries: 3, max_attribute_bytes: 16, max_attributes: 9, ..Limits::default() };
        agrees(&raw, &limits, MAX_RECORD);
        agrees(&raw, &Limits::default(), MAX_RECORD);
    }

    #[test]
    fn the_fast_path_takes_every_element_in_the_js_sdks_form(raw in plain_element()) {
        prop_assert!(agrees(&raw, &Limits { max_history_entries: 4, ..Limits::default() }, MAX_RECORD), "{}", raw);
    }
}
