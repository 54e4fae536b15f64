//! Sessions generated in each SDK's own shape, one per status and device error of the cause table, explained
//! after the gateway's normalization.

use chimewatch_model::event::{Limits, normalize};
use serde_json::{Value, json};

use super::*;
use crate::cause::RULES;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sdk {
    Js,
    Android,
    Ios,
}

const T0: i64 = 1_763_712_000_000;

/// A status as this SDK spells it.
fn status(sdk: Sdk, s: &str) -> String {
    match sdk {
        Sdk::Ios if s == "OK" => "ok".to_owned(),
        Sdk::Ios => {
            let mut c = s.chars();
            c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
        }
        _ => s.to_owned(),
    }
}

/// One raw event as the SDK sends it, history so far included, then normalized as the gateway does.
fn raw(sdk: Sdk, name: &str, at: i64, attrs: Value, history: &[(&str, i64)]) -> MeetingEvent {
    let mut a = json!({ "meetingId": "m-1", "attendeeId": "a-1", "timestampMs": at });
    let (sdk_name, history_value) = match sdk {
        Sdk::Js => (
            "amazon-chime-sdk-js",
            json!(history.iter().map(|(n, t)| json!({ "name": n, "timestampMs": t })).collect::<Vec<_>>()),
        ),
        Sdk::Android => (
            "amazon-chime-sdk-android",
            json!(
                history
                    .iter()
                    .map(|(n, t)| json!({ "meetingHistoryEventName": n, "timestamp": t }))
                    .collect::<Vec<_>>()
            ),
        ),
        Sdk::Ios => (
            "amazon-chime-sdk-ios",
            Value::String(format!(
                "[{}]",
                history.iter().map(|(n, t)| format!("{n}: {t}")).collect::<Vec<_>>().join(", ")
            )),
        ),
    };
    a["sdkName"] = json!(sdk_name);
    a["meetingHistory"] = history_value;
    for (k, v) in attrs.as_object().unwrap() {
        a[k] = v.clone();
    }
    if sdk == Sdk::Ios {
        // The iOS guide's upload turns every value into a string, and device errors go under `*Error`.
        let obj = a.as_object_mut().unwrap();
        let entries: Vec<(String, Value)> = std::mem::take(obj).into_iter().collect();
        for (k, v) in entries {
            let k = k.strip_suffix("ErrorMessage").map_or(k.clone(), |base| format!("{base}Error"));
            let v = match v {
                Value::Number(n) => Value::String(n.to_string()),
                other => other,
            };
            obj.insert(k, v);
        }
    }
    normalize(json!({ "name": name, "attributes": a }), &Limits::default(), T0 + 3_600_000)
        .unwrap_or_else(|e| panic!("{sdk:?} {name}: {e:?}"))
        .event
}

/// A session that ends with `ending` (`meetingStartFailed`, `meetingFailed` or `meetingEnded`) and `status`,
/// after an optional device failure.
fn session(sdk: Sdk, ending: &str, ending_status: &str, device_error: Option<&str>) -> Vec<MeetingEvent> {
    let mut history = vec![("meetingStartRequested", T0)];
    let mut events = vec![raw(sdk, "meetingStartRequested", T0, json!({}), &history)];
    if let Some(message) = device_error {
        history.push(("audioInputFailed", T0 + 100));
        events.push(raw(sdk, "audioInputFailed", T0 + 100, json!({ "audioInputErrorMessage": message }), &history));
    }
    let mut t = T0 + 1_500;
    if ending != "meetingStartFailed" {
        history.push(("meetingStartSucceeded", t));
        let zero = if sdk == Sdk::Js {
            json!({ "meetingStartDurationMs": 1_500 })
        } else {
            json!({ "meetingStartDurationMs": 1_500, "meetingDurationMs": 0 })
        };
        events.push(raw(sdk, "meetingStartSucceeded", t, zero, &history));
        t += 60_000;
    }
    history.push((ending, t));
    let mut attrs = json!({ "meetingStatus": status(sdk, ending_status), "meetingErrorMessage": "forced by the test" });
    if ending != "meetingStartFailed" {
        attrs["meetingDurationMs"] = json!(60_000);
    }
    events.push(raw(sdk, ending, t, attrs, &history));
    events
}

#[test]
fn every_status_of_the_table_is_explained_with_its_cause_in_each_sdks_shape() {
    let mut checked = 0;
    for sdk in [Sdk::Js, Sdk::Android, Sdk::Ios] {
        for rule in RULES {
            for s in rule.statuses {
                let endings: &[&str] =
                    if rule.cause.is_expected() { &["meetingEnded"] } else { &["meetingStartFailed", "meetingFailed"] };
                for ending in endings {
                    let x = attendee(&session(sdk, ending, s, None)).unwrap();
                    assert_eq!(x.verdict.cause, rule.cause, "{sdk:?} {ending} {s}: {:#?}", x.verdict);
                    assert_eq!(x.verdict.failure, !rule.cause.is_expected(), "{sdk:?} {ending} {s}");
                    assert!(x.verdict.evidence[0].contains(&format!("meetingStatus {s}")), "{:?}", x.verdict.evidence);
                    assert_eq!(x.verdict.next, rule.next);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn every_device_error_of_the_table_explains_a_failed_join_in_each_sdks_shape() {
    for sdk in [Sdk::Js, Sdk::Android, Sdk::Ios] {
        for rule in RULES.iter().filter(|r| !r.errors.is_empty()) {
            for error in rule.errors {
                let message = format!("{error}: forced by the test");
                let x = attendee(&session(sdk, "meetingStartFailed", "TaskFailed", Some(&message))).unwrap();
                assert_eq!(x.verdict.cause, rule.cause, "{sdk:?} {error}: {:#?}", x.verdict);
                assert!(x.verdict.evidence[0].starts_with("audioInputFailed at"), "{:?}", x.verdict.evidence);
                assert_eq!(x.outcome.ending, Ending::JoinFailed);
            }
        }
    }
}

#[test]
fn an_earlier_sessions_device_error_does_not_explain_a_later_failure() {
    // The attendee was denied the microphone and failed, then rejoined and failed for another reason.
    let mut events = session(Sdk::Js, "meetingStartFailed", "TaskFailed", Some("NotAllowedError: Permission denied"));
    let later: Vec<MeetingEvent> = session(Sdk::Js, "meetingStartFailed", "TaskFailed", None)
        .into_iter()
        .map(|mut e| {
            let t = e.timestamp_ms().unwrap() + 600_000;
            e.attributes.insert("timestampMs".into(), json!(t));
            e
        })
        .collect();
    assert_eq!(attendee(&events).unwrap().verdict.cause, Cause::DevicePermissionDenied);
    events.extend(later);
    let x = attendee(&events).unwrap();
    assert_eq!(x.verdict.cause, Cause::ClientError, "{:#?}", x.verdict);
    assert_eq!(x.outcome.earlier_endings, 1);
}

#[test]
fn an_external_user_in_two_meetings_is_explained_by_the_latest() {
    let mut events = session(Sdk::Js, "meetingEnded", "Left", None);
    for mut e in session(Sdk::Js, "meetingFailed", "AudioServiceUnavailable", None) {
        let t = e.timestamp_ms().unwrap() + 3_600_000;
        e.attributes.insert("timestampMs".into(), json!(t));
        e.attributes.insert("meetingId".into(), json!("m-2"));
        events.push(e);
    }
    let (latest, others) = latest_attendee(&events);
    assert_eq!(others, 1);
    assert!(latest.iter().all(|e| e.meeting_id() == Some("m-2")));
    assert_eq!(attendee(&latest).unwrap().verdict.cause, Cause::ServerError);
}

#[test]
fn a_timeline_merges_events_with_history_only_steps() {
    // The JS SDK's ending event carries the whole history; signalingDropped never arrived as an event.
    let history = [
        ("meetingStartRequested", T0),
        ("meetingStartSucceeded", T0 + 1_200),
        ("signalingDropped", T0 + 30_000),
        ("meetingReconnected", T0 + 31_000),
        ("meetingFailed", T0 + 90_000),
    ];
    let events = vec![
        raw(
            Sdk::Js,
            "meetingStartSucceeded",
            T0 + 1_200,
            json!({ "meetingStartDurationMs": 1_200, "signalingOpenDurationMs": 211, "iceGatheringDurationMs": 340 }),
            &history[..2],
        ),
        raw(
            Sdk::Js,
            "meetingFailed",
            T0 + 90_000,
            json!({ "meetingStatus": "SignalingChannelClosedUnexpectedly", "meetingDurationMs": 88_800, "poorConnectionCount": 7 }),
            &history,
        ),
    ];
    let x = attendee(&events).unwrap();
    let steps: Vec<(&str, bool)> = x.timeline.iter().map(|s| (s.name.as_str(), s.from_history)).collect();
    assert_eq!(
        steps,
        [
            ("meetingStartRequested", true),
            ("meetingStartSucceeded", false),
            ("signalingDropped", true),
            ("meetingReconnected", true),
            ("meetingFailed", false)
        ]
    );
    assert_eq!(x.timeline[1].detail, "in 1.2 s, signalling opened in 211 ms, ICE gathered in 340 ms");
    assert_eq!(x.verdict.cause, Cause::Network);
    assert_eq!(x.outcome.reconnects, 1);
    assert_eq!(x.outcome.ending, Ending::Dropped);
    assert!(x.verdict.headline.starts_with("Dropped after 1 min 28 s: network"), "{}", x.verdict.headline);
    assert!(x.verdict.evidence.iter().any(|l| l == "poor connection count rose to 7"), "{:?}", x.verdict.evidence);
    assert!(x.verdict.evidence.iter().any(|l| l.starts_with("signalingDropped x1 from")), "{:?}", x.verdict.evidence);
}

#[test]
fn a_meeting_tells_a_shared_failure_from_one_client() {
    let person = |attendee: &str, ending: &str, status: &str, at: i64, browser: &str| {
        let mut events = session(Sdk::Js, ending, status, None);
        for e in &mut events {
            e.attributes.insert("attendeeId".into(), json!(attendee));
            e.attributes.insert("browserName".into(), json!(browser));
            let t = e.timestamp_ms().unwrap() + at;
            e.attributes.insert("timestampMs".into(), json!(t));
        }
        events
    };
    // Three drop within seconds of each other, on the same browser; one stays.
    let mut events = Vec::new();
    for (i, a) in ["a-1", "a-2", "a-3"].iter().enumerate() {
        events.extend(person(a, "meetingFailed", "AudioServiceUnavailable", i as i64 * 2_000, "Safari"));
    }
    events.extend(person("a-4", "meetingEnded", "Left", 0, "Chrome"));
    let m = meeting(&events).unwrap();
    assert_eq!(m.attendees.len(), 4);
    assert!(m.findings[0].starts_with("3 attendees failed within 4.0 s"), "{:?}", m.findings);
    assert!(m.findings.iter().any(|f| f == "All failed with the same cause: serverError."), "{:?}", m.findings);
    assert!(m.findings.iter().any(|f| f.contains("platform Safari")), "{:?}", m.findings);

    // All failed, on one platform: with no attendee who stayed, the platform says nothing.
    let mut events = Vec::new();
    for (i, a) in ["a-1", "a-2"].iter().enumerate() {
        events.extend(person(a, "meetingFailed", "AudioServiceUnavailable", i as i64 * 1_000, "Safari"));
    }
    let m = meeting(&events).unwrap();
    assert!(!m.findings.iter().any(|f| f.contains("platform")), "{:?}", m.findings);

    // One alone.
    let mut events = person("a-1", "meetingFailed", "ConnectionHealthReconnect", 0, "Chrome");
    events.extend(person("a-2", "meetingEnded", "Left", 0, "Chrome"));
    events.extend(person("a-3", "meetingEnded", "Left", 0, "Chrome"));
    let m = meeting(&events).unwrap();
    assert!(m.findings[0].starts_with("Only a-1 failed (network) while 2 other(s) did not"), "{:?}", m.findings);
}
