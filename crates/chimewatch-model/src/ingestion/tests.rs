//! Tests of the ingestion protocol mapping: real JS SDK captures, Android and iOS bodies, dedup keys, errors.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::event::normalize;
use crate::json::parse_strict;

const NOW: i64 = 1_795_300_000_000;

/// A fixture's text, built into the test binary: the tests do no I/O either.
macro_rules! fixture {
    ($rel:literal) => {
        include_str!(concat!("../../../../fixtures/", $rel))
    };
}

fn own(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn parse(body: Value) -> ClientBatch {
    parse_client_events(body, &Limits::default(), NOW, 10_000).unwrap()
}

fn events(body: Value) -> Vec<ClientEvent> {
    parse(body).payloads.into_iter().map(Result::unwrap).collect()
}

/// The attributes both formats carry: everything but what only one of them sends.
fn comparable(e: &crate::MeetingEvent) -> (String, BTreeMap<String, Value>) {
    const ONE_SIDED: &[&str] =
        &["meetingHistory", "externalMeetingId", "externalUserId", "engineName", "engineMajorVersion"];
    let attrs = e
        .attributes
        .iter()
        .filter(|(k, _)| !ONE_SIDED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (e.name.clone(), attrs)
}

/// Every capture in `fixtures/real-sdk-js`, by file name, in order.
fn captures() -> Vec<(String, Value)> {
    [
        ("0001-native.json", fixture!("real-sdk-js/0001-native.json")),
        ("0002-native.json", fixture!("real-sdk-js/0002-native.json")),
        ("0003-native.json", fixture!("real-sdk-js/0003-native.json")),
        ("0004-blog.json", fixture!("real-sdk-js/0004-blog.json")),
        ("0005-native.json", fixture!("real-sdk-js/0005-native.json")),
        ("0006-blog.json", fixture!("real-sdk-js/0006-blog.json")),
        ("0007-native-beacon.json", fixture!("real-sdk-js/0007-native-beacon.json")),
        ("0008-native-beacon.json", fixture!("real-sdk-js/0008-native-beacon.json")),
        ("0009-native.json", fixture!("real-sdk-js/0009-native.json")),
        ("0010-native.json", fixture!("real-sdk-js/0010-native.json")),
        ("0011-native.json", fixture!("real-sdk-js/0011-native.json")),
        ("0012-native.json", fixture!("real-sdk-js/0012-native.json")),
        ("0013-blog.json", fixture!("real-sdk-js/0013-blog.json")),
        ("0014-native-beacon.json", fixture!("real-sdk-js/0014-native-beacon.json")),
        ("0015-native.json", fixture!("real-sdk-js/0015-native.json")),
        ("0016-native.json", fixture!("real-sdk-js/0016-native.json")),
        ("0017-blog.json", fixture!("real-sdk-js/0017-blog.json")),
        ("0018-native-beacon.json", fixture!("real-sdk-js/0018-native-beacon.json")),
        ("0019-native.json", fixture!("real-sdk-js/0019-native.json")),
        ("0020-blog.json", fixture!("real-sdk-js/0020-blog.json")),
        ("0021-native-beacon.json", fixture!("real-sdk-js/0021-native-beacon.json")),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), own(text)))
    .collect()
}

#[test]
fn every_native_capture_maps_without_rejections() {
    for (name, capture) in captures().into_iter().filter(|(n, _)| n.contains("native")) {
        let batch = parse(capture["body"].clone());
        assert!(!batch.payloads.is_empty(), "{name}");
        for p in &batch.payloads {
            let e = p.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(e.normalized.event.sdk_name(), Some("amazon-chime-sdk-js"));
            assert!(e.normalized.event.timestamp_ms().is_some());
        }
        assert_eq!(
            batch.authorization.is_some(),
            name.contains("beacon"),
            "{name}: beacons carry the token in the body"
        );
    }
}

#[test]
fn native_and_blog_uploads_of_a_session_give_the_same_events() {
    let all = captures();
    let mut checked = 0;
    for (name, blog) in all.iter().filter(|(n, _)| n.contains("blog")) {
        let attendee = blog["body"][0]["attributes"]["attendeeId"].as_str().unwrap();
        let native: Vec<_> = all
            .iter()
            .filter(|(n, c)| n.contains("native") && c["body"]["metadata"]["attendeeId"] == attendee)
            .flat_map(|(_, c)| events(c["body"].clone()))
            .map(|e| comparable(&e.normalized.event))
            .collect();
        for e in blog["body"].as_array().unwrap() {
            let n = normalize(e.clone(), &Limits::default(), NOW).unwrap();
            if n.event.name == "signalingDropped" {
                // The JS SDK drops events with a boolean attribute before sending them natively.
                assert!(n.event.attributes.contains_key("signalingCloseWasClean"));
                continue;
            }
            let expected = comparable(&n.event);
            assert!(native.contains(&expected), "{name}: {} not delivered natively as {expected:?}", n.event.name);
            checked += 1;
        }
    }
    assert!(checked >= 20, "compared {checked} events");
}

#[test]
fn android_bodies_use_group_metadata_and_normalize_like_the_blog_format() {
    let batch = parse(own(fixture!("sdk-ingestion/android-batch.json")));
    let e: Vec<_> = batch.payloads.into_iter().map(Result::unwrap).collect();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].id.as_deref(), Some("9c1f6a52-0d0e-4a8e-b2a4-000000000001"));
    assert!(!e[0].normalized.event.attributes.contains_key("id"), "id is a delivery detail, not an attribute");
    assert_eq!(e[1].normalized.event.num_attr("meetingStartDurationMs"), Some(1840.0));
    assert!(!e[1].normalized.event.attributes.contains_key("meetingDurationMs"), "Android's zero duration removed");
    assert_eq!(e[2].normalized.event.str_attr("meetingStatus"), Some("NetworkBecamePoor"));

    // The re-send names another meeting at the root; the group's metadata is the event's own.
    let resent = events(own(fixture!("sdk-ingestion/android-resend.json")));
    assert_eq!(resent[0].normalized.event.meeting_id(), Some("6f0c3a1e-2b7d-4c44-9a63-1f2e0d7c5b10"));
    assert_eq!(resent[0].ttl, Some(1_763_884_800_000));
    // Android generates new ids on re-send: the content still identifies the events.
    let keys: Vec<_> = e.iter().map(|x| x.dedup_key).collect();
    assert_eq!(resent.iter().map(|x| x.dedup_key).collect::<Vec<_>>(), keys);
}

#[test]
fn ios_bodies_normalize_and_keep_their_ids_across_resends() {
    let e = events(own(fixture!("sdk-ingestion/ios-batch.json")));
    assert_eq!(e[1].normalized.event.str_attr("audioInputErrorMessage"), Some("audioPermissionDenied"));
    assert_eq!(e[2].normalized.event.str_attr("meetingStatus"), Some("AudioCallAtCapacity"));
    assert_eq!(e[2].normalized.event.attributes["lowPowerModeEnabled"], json!(true));
    let resent = events(own(fixture!("sdk-ingestion/ios-resend.json")));
    assert_eq!(resent[0].dedup_key, e[1].dedup_key);
    assert_eq!(resent[1].dedup_key, e[2].dedup_key);
    assert_ne!(e[0].dedup_key, e[1].dedup_key);
}

#[test]
fn byte_identical_retries_and_beacon_resends_share_keys() {
    let all = captures();
    let beacon = &all.iter().find(|(n, _)| n == "0007-native-beacon.json").unwrap().1["body"];
    let a = events(beacon.clone());
    let b = events(beacon.clone());
    assert_eq!(a.iter().map(|e| e.dedup_key).collect::<Vec<_>>(), b.iter().map(|e| e.dedup_key).collect::<Vec<_>>());
    let keys: std::collections::HashSet<_> = a.iter().map(|e| e.dedup_key).collect();
    assert_eq!(keys.len(), a.len(), "distinct events have distinct keys");
}

#[test]
fn errors_name_the_payload_and_field() {
    let body = json!({"metadata": {"meetingId": "m", "attendeeId": "a"}, "events": [
        {"type": "Meet", "v": 1, "payloads": [{"name": "x"}, {"name": "y", "ts": "soon"}, {"ts": 1763712000000_i64}, 7, {"name": "ok", "ts": 1763712000000_i64}]},
        {"type": "Other", "payloads": []},
        {"type": "Meet"},
    ]});
    let errors: Vec<String> =
        parse(body).payloads.iter().map(|p| p.as_ref().map_or_else(ToString::to_string, |_| "ok".into())).collect();
    assert_eq!(
        errors,
        [
            "events[0].payloads[0].ts: missing",
            "events[0].payloads[1].ts: expected a number, got the string \"soon\"",
            "events[0].payloads[2].name: missing",
            "events[0].payloads[3]: expected a payload object {name, ts, ...}, got the number 7",
            "ok",
            "events[1].type: expected \"Meet\", got the string \"Other\"",
            "events[2].payloads: missing",
        ]
    );
}

#[test]
fn payload_names_follow_the_same_rules_as_batch_events() {
    let body = json!({"metadata": {"meetingId": "m", "attendeeId": "a"}, "events": [{"type": "Meet", "v": 1, "payloads": [
        {"name": "", "ts": 1763712000000_i64}, {"name": "x".repeat(129), "ts": 1763712000000_i64}, {"name": 5, "ts": 1763712000000_i64}]}]});
    let errors: Vec<String> = parse(body).payloads.iter().map(|p| p.as_ref().unwrap_err().to_string()).collect();
    assert_eq!(
        errors,
        [
            "events[0].payloads[0].name: must not be empty",
            "events[0].payloads[1].name: is 129 bytes; at most 128",
            "events[0].payloads[2].name: expected a string, got the number 5",
        ]
    );
}

#[test]
fn body_shape_errors() {
    let check = |body: Value, expect: &str| {
        let err = parse_client_events(body, &Limits::default(), NOW, 10).unwrap_err().to_string();
        assert_eq!(err, expect);
    };
    check(json!([]), "body must be an object {metadata, events}, got an array of 0 items");
    check(json!({"metadata": {}}), "events: missing");
    check(json!({"events": {}}), "events: expected an array, got an object");
    check(json!({"events": [], "authorization": 5}), "authorization: expected a string, got the number 5");
    check(
        json!({"events": [{"type": "Meet", "payloads": (0..11).map(|_| json!({})).collect::<Vec<_>>()}]}),
        "body holds 11 events; at most 10 are accepted per request",
    );
    assert!(parse_strict("{\"events\":[],\"events\":[]}").is_err(), "duplicate keys are caught before mapping");
}
