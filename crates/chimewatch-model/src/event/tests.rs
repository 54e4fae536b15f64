//! Tests of normalization and validation: fixtures from every SDK, each rejection reason, and properties.

use super::*;
use crate::json::{parse_strict, split_batch};
use proptest::prelude::*;
use serde_json::json;

const NOW: i64 = 1_795_300_000_000;

/// A fixture's text, built into the test binary: the tests do no I/O either.
macro_rules! fixture {
    ($rel:literal) => {
        include_str!(concat!("../../../../fixtures/", $rel))
    };
}

fn normalize_all(body: &str) -> Vec<Result<NormalizedEvent, EventError>> {
    split_batch(body, 10_000)
        .unwrap()
        .into_iter()
        .map(|raw| normalize(parse_strict(raw.get()).unwrap(), &Limits::default(), NOW))
        .collect()
}

fn check_err(event: Value, expect: &str) {
    let err = normalize(event, &Limits::default(), NOW).unwrap_err();
    assert_eq!(err.to_string(), expect);
}

fn base(extra: Value) -> Value {
    let mut attrs = json!({"meetingId": "m1", "attendeeId": "a1", "timestampMs": 1763712000000_i64});
    attrs.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"name": "meetingEnded", "attributes": attrs})
}

#[test]
fn js_events_pass_through_unchanged() {
    for result in normalize_all(fixture!("meeting-events/js-mixed-meetings.json")) {
        let n = result.unwrap();
        assert!(n.original.is_empty(), "{:?} changed {:?}", n.event.name, n.original);
        assert!(n.truncation.is_empty());
    }
}

#[test]
fn unknown_names_and_nested_attributes_are_kept() {
    let events = normalize_all(fixture!("meeting-events/js-mixed-meetings.json"));
    let future = events.last().unwrap().as_ref().unwrap();
    assert_eq!(future.event.name, "someFutureEventName");
    assert_eq!(future.event.attributes["aNewAttribute"], json!({"nested": [1, 2, 3]}));
}

#[test]
fn android_history_and_never_started_durations() {
    let events: Vec<_> =
        normalize_all(fixture!("meeting-events/android-session.json")).into_iter().map(Result::unwrap).collect();
    let requested = &events[0];
    assert_eq!(
        requested.event.attributes["meetingHistory"],
        json!([{"name": "audioInputSelected", "timestampMs": 1763711999500_i64}, {"name": "meetingStartRequested", "timestampMs": 1763712000000_i64}])
    );
    assert_eq!(requested.original["meetingHistory"][0]["meetingHistoryEventName"], "audioInputSelected");
    // meetingStartSucceeded carries meetingDurationMs 0: removed, kept as sent in `original`.
    let succeeded = &events[1];
    assert_eq!(succeeded.event.num_attr("meetingStartDurationMs"), Some(1840.0));
    assert!(!succeeded.event.attributes.contains_key("meetingDurationMs"));
    assert_eq!(succeeded.original["meetingDurationMs"], 0);
    assert_eq!(events[3].event.str_attr("meetingStatus"), Some("OK"));
}

#[test]
fn ios_stringified_values_become_typed() {
    let events: Vec<_> = normalize_all(fixture!("meeting-events/ios-session-stringified.json"))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let requested = &events[0].event;
    assert_eq!(requested.timestamp_ms(), Some(1763712010000));
    assert_eq!(requested.attributes["lowPowerModeEnabled"], json!(false));
    assert_eq!(requested.attributes["meetingHistory"].as_array().unwrap().len(), 2);
    assert_eq!(events[0].original["timestampMs"], "1763712010000");

    let input_failed = &events[1];
    assert_eq!(input_failed.event.str_attr("audioInputErrorMessage"), Some("audioPermissionDenied"));
    assert!(!input_failed.event.attributes.contains_key("audioInputError"));
    assert_eq!(input_failed.original["audioInputError"], "audioPermissionDenied");

    let start_failed = &events[2].event;
    assert_eq!(start_failed.str_attr("meetingStatus"), Some("AudioCallAtCapacity"));
    assert_eq!(start_failed.num_attr("retryCount"), Some(2.0));
    assert!(!start_failed.attributes.contains_key("meetingStartDurationMs"), "never started: duration removed");
    assert_eq!(
        start_failed.attributes["meetingHistory"][3],
        json!({"name": "meetingStartFailed", "timestampMs": 1763712025000_i64})
    );
}

#[test]
fn js_zero_durations_are_real_values() {
    let n = normalize(base(json!({"sdkName": "amazon-chime-sdk-js", "meetingDurationMs": 0})), &Limits::default(), NOW)
        .unwrap();
    assert_eq!(n.event.num_attr("meetingDurationMs"), Some(0.0));
}

#[test]
fn status_casing() {
    for (input, expect) in [
        ("audioCallEnded", "AudioCallEnded"),
        ("ok", "OK"),
        ("OK", "OK"),
        ("Left", "Left"),
        ("networkBecomePoor", "NetworkBecamePoor"),
        ("", ""),
    ] {
        assert_eq!(normalize_status(input), expect);
    }
}

#[test]
fn each_mistake_in_wrong_types_gets_its_own_reason() {
    let results = normalize_all(fixture!("bad-input/wrong-types.json"));
    let errors: Vec<String> = results.iter().map(|r| r.as_ref().unwrap_err().to_string()).collect();
    assert_eq!(
        errors,
        [
            "name: expected a string, got the number 42",
            "name: missing",
            "attributes: expected an object, got null",
            "expected an object {\"name\", \"attributes\"}, got the string \"just a string\"",
            "attributes.meetingStartDurationMs: must not be negative, got -5",
        ]
    );
}

#[test]
fn rejection_reasons() {
    check_err(json!({"name": "", "attributes": {}}), "name: must not be empty");
    check_err(
        json!({"name": "x", "attributes": {}, "extra": 1}),
        "extra: unexpected field: an event has only \"name\" and \"attributes\"",
    );
    check_err(json!({"name": "x", "attributes": {"attendeeId": "a"}}), "attributes.meetingId: missing");
    check_err(
        json!({"name": "x", "attributes": {"meetingId": 7, "attendeeId": "a"}}),
        "attributes.meetingId: expected a string, got the number 7",
    );
    check_err(
        json!({"name": "x", "attributes": {"meetingId": "m", "attendeeId": " "}}),
        "attributes.attendeeId: must not be empty",
    );
    check_err(
        json!({"name": "x", "attributes": {"meetingId": "m", "attendeeId": "a"}}),
        "attributes.timestampMs: missing",
    );
    check_err(
        json!({"name": "x", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": "yesterday"}}),
        "attributes.timestampMs: expected a number, got the string \"yesterday\"",
    );
    check_err(
        json!({"name": "x", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": 1.5e12}}),
        "attributes.timestampMs: expected whole milliseconds since the epoch, got the number 1500000000000.0",
    );
    check_err(
        json!({"name": "x", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": 1763712000}}),
        "attributes.timestampMs: 1763712000 is before 2000-01-01; timestamps are milliseconds since the epoch",
    );
    check_err(
        base(json!({"timestampMs": NOW + 2 * 86_400_000})),
        &format!(
            "attributes.timestampMs: {} is more than 86400 s ahead of the server's clock ({NOW})",
            NOW + 2 * 86_400_000
        ),
    );
    check_err(base(json!({"retryCount": true})), "attributes.retryCount: expected a number, got the boolean true");
    check_err(
        base(json!({"lowPowerModeEnabled": "maybe"})),
        "attributes.lowPowerModeEnabled: expected a boolean, got the string \"maybe\"",
    );
    check_err(
        base(json!({"meetingStatus": 12})),
        "attributes.meetingStatus: expected a status name, got the number 12",
    );
    check_err(
        base(json!({"meetingHistory": [{"name": "a"}]})),
        "attributes.meetingHistory[0]: expected {name, timestampMs} or {meetingHistoryEventName, timestamp}, got an object",
    );
    check_err(
        base(json!({"meetingHistory": "a: 1"})),
        "attributes.meetingHistory: expected an array or a string like \"[name: timestampMs, ...]\"",
    );
    check_err(
        base(json!({"meetingHistory": "[a: x]"})),
        "attributes.meetingHistory: entry 0 has a timestamp that is not a number: \"x\"",
    );
    check_err(base(json!({"meetingHistory": 3})), "attributes.meetingHistory: expected an array, got the number 3");
    let nested = |levels: usize| -> Value {
        (0..levels).fold(json!(1), |inner, i| if i % 2 == 0 { json!([inner]) } else { json!({ "k": inner }) })
    };
    check_err(base(json!({"deep": nested(33)})), "attributes.deep: nests 33 levels of arrays and objects; at most 32");
    let n = normalize(base(json!({"deep": nested(32)})), &Limits::default(), NOW).unwrap();
    assert_eq!(depth(&n.event.attributes["deep"]), 32, "32 levels are taken");
    // ... and its record decodes, whole and indexed alike.
    let bytes = crate::Record::meeting_event(n, crate::Ingest::Batch, NOW).encode();
    let whole = crate::Record::decode(&bytes).expect("the record of an accepted event decodes");
    assert_eq!(crate::IndexedRecord::decode(&bytes), Ok(crate::IndexedRecord::from(whole)));
}

#[test]
fn huge_history_is_truncated_to_the_most_recent_entries() {
    let results = normalize_all(fixture!("bad-input/huge-history.json"));
    let n = results[0].as_ref().unwrap();
    let history = n.event.attributes["meetingHistory"].as_array().unwrap();
    assert_eq!(history.len(), 256);
    assert_eq!(n.truncation.history_entries_dropped, 200_000 - 256);
    assert_eq!(history.last().unwrap()["timestampMs"], 1763712000000_i64 + 199_999);
    assert!(n.original.is_empty(), "JS history is already canonical: {:?}", n.original.keys());
}

#[test]
fn long_strings_and_many_attributes_are_cut_with_markers() {
    let limits = Limits { max_attribute_bytes: 8, max_attributes: 5, ..Limits::default() };
    let event = base(json!({"meetingErrorMessage": "é".repeat(10), "zz1": 1, "zz2": 2, "aa": 0}));
    let n = normalize(event, &limits, NOW).unwrap();
    assert_eq!(n.event.str_attr("meetingErrorMessage"), Some("éééé"));
    assert_eq!(n.truncation.values_truncated, ["meetingErrorMessage"]);
    assert_eq!(n.truncation.attributes_dropped, ["zz1", "zz2"]);
    assert!(n.event.attributes.contains_key("aa"));
}

#[test]
fn ios_history_string_in_original_is_capped_too() {
    let limits = Limits { max_attribute_bytes: 10, ..Limits::default() };
    let n = normalize(base(json!({"meetingHistory": "[audioInputSelected: 1763712009000]"})), &limits, NOW).unwrap();
    assert_eq!(n.original["meetingHistory"].as_str().unwrap().len(), 10);
    // Strings nested in the history are capped like any other.
    assert_eq!(n.event.attributes["meetingHistory"][0]["name"], "audioInput");
}

fn attr_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        (0u32..100_000).prop_map(|n| Value::from(n.to_string())),
        Just(Value::Null),
    ]
}

fn arbitrary_event() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("meetingStartDurationMs".to_owned()),
        Just("retryCount".to_owned()),
        Just("meetingStatus".to_owned()),
        Just("lowPowerModeEnabled".to_owned()),
        Just("audioInputError".to_owned()),
        Just("meetingHistory".to_owned()),
        "[a-zA-Z]{1,10}",
    ];
    (
        prop::collection::btree_map(keys, attr_value(), 0..8),
        prop_oneof![Just("amazon-chime-sdk-js"), Just("amazon-chime-sdk-android"), Just("amazon-chime-sdk-ios")],
    )
        .prop_map(|(attrs, sdk)| {
            let mut m: Map<String, Value> = attrs.into_iter().collect();
            m.insert("meetingId".into(), "m".into());
            m.insert("attendeeId".into(), "a".into());
            m.insert("timestampMs".into(), Value::from(1_763_712_000_000_i64));
            m.insert("sdkName".into(), sdk.into());
            json!({"name": "meetingEnded", "attributes": m})
        })
}

proptest! {
    #[test]
    fn normalize_is_total(v in arbitrary_event()) {
        let _ = normalize(v, &Limits::default(), NOW);
    }

    #[test]
    fn normalize_is_idempotent(v in arbitrary_event()) {
        if let Ok(once) = normalize(v, &Limits::default(), NOW) {
            let again = normalize(serde_json::to_value(&once.event).unwrap(), &Limits::default(), NOW).unwrap();
            prop_assert_eq!(&again.event, &once.event);
            prop_assert!(again.original.is_empty(), "changed again: {:?}", again.original);
        }
    }

    /// A history as the JS SDK sends it is capped in place; the result is what the full rebuild gives, with nothing
    /// kept as original. Entries in another order, with float or string timestamps, take the rebuild.
    #[test]
    fn a_canonical_history_is_capped_as_the_rebuild_would(
        entries in prop::collection::vec(("[a-zA-Z]{0,8}", any::<i64>(), 0u8..4), 0..12),
    ) {
        let history: Vec<Value> = entries
            .iter()
            .map(|(name, ts, form)| match form {
                0 | 1 => json!({"name": name, "timestampMs": ts}),
                2 => json!({"timestampMs": ts, "name": name}),
                _ => json!({"name": name, "timestampMs": ts.to_string()}),
            })
            .collect();
        let limits = Limits { max_history_entries: 5, ..Limits::default() };
        let sent = Value::Array(history);
        let (rebuilt, dropped) = normalize_history(&sent, limits.max_history_entries).unwrap();
        let n = normalize(base(json!({"meetingHistory": sent.clone()})), &limits, NOW).unwrap();
        prop_assert_eq!(&n.event.attributes["meetingHistory"], &rebuilt);
        prop_assert_eq!(n.truncation.history_entries_dropped, dropped);
        let canonical = sent.as_array().unwrap().iter().all(is_canonical_entry);
        prop_assert_eq!(canonical, entries.iter().all(|(_, _, form)| *form < 2));
        if canonical || is_canonical_history(&sent) {
            prop_assert!(!n.original.contains_key("meetingHistory"));
        }
    }

    #[test]
    fn original_restores_what_was_sent(v in arbitrary_event()) {
        if let Ok(n) = normalize(v.clone(), &Limits::default(), NOW) {
            let mut restored = n.event.attributes.clone();
            for (k, val) in &n.original {
                restored.insert(k.clone(), val.clone());
            }
            for (from, to) in keys::IOS_ERROR_ALIASES {
                if n.original.contains_key(*from) { restored.remove(*to); }
            }
            prop_assert_eq!(Value::Object(restored), v["attributes"].clone());
        }
    }
}
