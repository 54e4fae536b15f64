//! The fleet generator's tests: a seed replays the same requests whatever the clock, every payload passes the
//! gateway's own parsers (and every SIP message the call tracker), each SDK's shapes and status casing, status mixes
//! within their expected ranges, and the scenarios' bursts where they belong. And the driver against a fake gateway:
//! a 503 waited out for its Retry-After, a 4xx that stops the run.

use std::collections::{BTreeMap, HashMap, HashSet};

use chimewatch_gateway::GatewayConfig;
use chimewatch_gateway::auth::Principal;
use chimewatch_gateway::ingest::{parse_meeting_events, parse_sip_messages};
use chimewatch_model::Limits;
use chimewatch_model::event::normalize;
use chimewatch_model::ingestion::parse_client_events;
use chimewatch_sip::{CallFact, CallTracker, Message, Policy};
use serde_json::{Map, Value};

use super::fleet::{Fleet, FleetConfig, TICK_MS};
use super::scenario::Scenario;
use super::session::{Credential, Endpoint, Request};

/// The wall clock the tests pretend the run started at (2026-09-21).
const BASE: i64 = 1_790_000_000_000;

/// Plays a fleet for `secs` seconds of ticks from `base`, then finishes it; each request with the clock it was
/// made at.
fn play(seed: u64, scenario: Scenario, rate: f64, secs: i64, base: i64) -> Vec<(i64, Request)> {
    let mut fleet = Fleet::new(FleetConfig { seed, scenario, rate });
    let mut out = Vec::new();
    let ticks = secs * 1000 / TICK_MS;
    for i in 1..=ticks {
        let now = base + i * TICK_MS;
        out.extend(fleet.step(now).into_iter().map(|r| (now, r)));
    }
    out.extend(fleet.finish().into_iter().map(|r| (base + ticks * TICK_MS, r)));
    out
}

/// A meeting event as sent and as the gateway normalizes it.
#[derive(Debug)]
struct Seen {
    endpoint: Endpoint,
    sdk: String,
    name: String,
    /// The attributes as sent (for native payloads: the payload's own).
    raw: Map<String, Value>,
    normalized: Map<String, Value>,
}

impl Seen {
    fn num(&self, key: &str) -> Option<f64> {
        self.normalized.get(key).and_then(Value::as_f64)
    }
    fn text(&self, key: &str) -> Option<&str> {
        self.normalized.get(key).and_then(Value::as_str)
    }
    /// Seconds since the start of the run, by the event's own timestamp.
    fn second(&self) -> f64 {
        (self.num("timestampMs").unwrap_or_default() - BASE as f64) / 1000.0
    }
}

/// Every meeting event of the run, parsed by the gateway's parsers (which must accept all of them).
fn meeting_events(requests: &[(i64, Request)]) -> Vec<Seen> {
    let config = GatewayConfig::default();
    let limits = Limits::default();
    let mut seen = Vec::new();
    for (now, r) in requests {
        match r.endpoint {
            Endpoint::MeetingEvents => {
                let parsed = parse_meeting_events(&r.body, &config, &Principal::Anonymous, *now).unwrap();
                assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
                assert_eq!(parsed.records.len(), r.kinds.len());
                let body: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
                for (element, kind) in body.into_iter().zip(&r.kinds) {
                    let raw = element["attributes"].as_object().unwrap().clone();
                    let n = normalize(element, &limits, *now).unwrap();
                    assert_eq!(n.event.name, *kind);
                    seen.push(Seen {
                        endpoint: r.endpoint,
                        sdk: n.event.sdk_name().unwrap().to_owned(),
                        name: n.event.name.clone(),
                        raw,
                        normalized: n.event.attributes,
                    });
                }
            }
            Endpoint::ClientEvents | Endpoint::Beacon => {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                let batch = parse_client_events(body.clone(), &limits, *now, 10_000).unwrap();
                assert_eq!(batch.payloads.len(), r.kinds.len());
                let raws =
                    body["events"].as_array().unwrap().iter().flat_map(|g| g["payloads"].as_array().unwrap().clone());
                for ((payload, raw), kind) in batch.payloads.into_iter().zip(raws).zip(&r.kinds) {
                    let e = payload.unwrap().normalized.event;
                    assert_eq!(e.name, *kind);
                    seen.push(Seen {
                        endpoint: r.endpoint,
                        sdk: e.sdk_name().unwrap().to_owned(),
                        name: e.name.clone(),
                        raw: raw.as_object().unwrap().clone(),
                        normalized: e.attributes,
                    });
                }
            }
            Endpoint::SipMessages | Endpoint::Attendees => {}
        }
    }
    seen
}

fn ratio(events: &[Seen], num: &str, den: &str, from: f64, to: f64) -> f64 {
    let count = |name: &str| events.iter().filter(|e| e.name == name && (from..to).contains(&e.second())).count();
    count(num) as f64 / count(den).max(1) as f64
}

fn per_minute(events: &[Seen], name: &str, from: f64, to: f64) -> f64 {
    let n = events.iter().filter(|e| e.name == name && (from..to).contains(&e.second())).count();
    n as f64 * 60.0 / (to - from)
}

#[test]
fn a_seed_replays_the_same_requests_whatever_the_clock() {
    let a = play(7, Scenario::Steady, 80.0, 30, BASE);
    let b = play(7, Scenario::Steady, 80.0, 30, BASE);
    assert!(a.len() > 100, "{} requests", a.len());
    assert_eq!(a, b, "the same seed and clock give the same bytes");

    // Another day: the timestamps (13-digit milliseconds) differ, nothing else.
    let later = play(7, Scenario::Steady, 80.0, 30, BASE + 86_400_000 + 1234);
    let mask = |requests: &[(i64, Request)]| -> Vec<(Endpoint, String)> {
        requests.iter().map(|(_, r)| (r.endpoint, mask_times(&String::from_utf8_lossy(&r.body)))).collect()
    };
    assert_eq!(mask(&a), mask(&later));
    assert_ne!(
        a.iter().map(|(_, r)| &r.body).collect::<Vec<_>>(),
        later.iter().map(|(_, r)| &r.body).collect::<Vec<_>>()
    );

    let other = play(8, Scenario::Steady, 80.0, 30, BASE);
    assert_ne!(mask(&a), mask(&other), "another seed, another fleet");
}

/// Replaces every run of 13 digits (a millisecond timestamp of this century) with `T`.
fn mask_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        out.push_str(if digits.len() == 13 { "T" } else { &digits });
        digits.clear();
        out.push(c);
    }
    out.pop();
    out
}

#[test]
fn every_payload_is_accepted_and_every_client_is_registered_before_it_posts() {
    let requests = play(11, Scenario::Incident, 120.0, 120, BASE);
    let config = GatewayConfig::default();
    let limits = Limits::default();
    let mut registered: HashMap<String, (String, String)> = HashMap::new();
    let mut dedup_keys = HashSet::new();
    let mut endpoints = BTreeMap::new();
    for (now, r) in &requests {
        *endpoints.entry(r.endpoint).or_insert(0) += 1;
        match r.endpoint {
            Endpoint::Attendees => {
                assert_eq!(r.credential, Credential::ApiKey);
                let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(items.len(), r.kinds.len());
                for item in items {
                    let field = |k: &str| item[k].as_str().unwrap().to_owned();
                    assert!(field("externalUserId").contains('@'));
                    registered.insert(field("joinToken"), (field("meetingId"), field("attendeeId")));
                }
            }
            Endpoint::ClientEvents | Endpoint::Beacon => {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                let token = match (&r.credential, r.endpoint) {
                    (Credential::JoinToken(t), Endpoint::ClientEvents) => {
                        assert!(body.get("authorization").is_none());
                        t.clone()
                    }
                    (Credential::None, Endpoint::Beacon) => body["authorization"].as_str().unwrap().to_owned(),
                    other => panic!("unexpected credentials {other:?}"),
                };
                let (meeting, attendee) = registered.get(&token).expect("the JoinToken was registered before");
                assert_eq!(body["metadata"]["meetingId"], meeting.as_str());
                assert_eq!(body["metadata"]["attendeeId"], attendee.as_str());
                assert!(r.body.len() < 64 << 10, "a beacon fits sendBeacon's 64 KiB");
                for payload in parse_client_events(body, &limits, *now, 10_000).unwrap().payloads {
                    let e = payload.unwrap();
                    assert!(dedup_keys.insert(e.dedup_key), "two events look like one: {:?}", e.normalized.event);
                }
            }
            Endpoint::MeetingEvents => {
                let Credential::Attendee { meeting_id, attendee_id, external_user_id } = &r.credential else {
                    panic!("blog uploads carry the attendee's credentials")
                };
                // An attendee token's scope holds: all of the upload is its attendee's.
                let principal = Principal::Attendee {
                    meeting_id: meeting_id.clone(),
                    attendee_id: attendee_id.clone(),
                    user: Some(external_user_id.clone()),
                };
                let parsed = parse_meeting_events(&r.body, &config, &principal, *now).unwrap();
                assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
            }
            Endpoint::SipMessages => {
                assert_eq!(r.content_type, "application/x-ndjson");
                let parsed = parse_sip_messages(&r.body, &config, &Principal::ApiKey(0), *now).unwrap();
                assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
                assert_eq!(parsed.records.len(), r.kinds.len());
            }
        }
    }
    assert_eq!(endpoints.len(), 5, "every endpoint is used: {endpoints:?}");
    assert!(meeting_events(&requests).len() > 5_000);
}

#[test]
fn each_sdk_sends_its_own_shapes_and_status_casing() {
    let requests = play(3, Scenario::ReconnectStorm, 150.0, 150, BASE);
    let events = meeting_events(&requests);
    let by_sdk = |sdk: &'static str| events.iter().filter(move |e| e.sdk == sdk);
    for e in &events {
        if let Some(Value::String(status)) = e.raw.get("meetingStatus") {
            let lower = status.starts_with(|c: char| c.is_ascii_lowercase());
            assert_eq!(lower, e.sdk == "amazon-chime-sdk-ios", "{} spells {status}", e.sdk);
        }
    }
    // iOS's blog uploads: every value a string, the history one string, device errors under *Error.
    let ios_blog: Vec<_> = by_sdk("amazon-chime-sdk-ios").filter(|e| e.endpoint == Endpoint::MeetingEvents).collect();
    assert!(!ios_blog.is_empty());
    for e in &ios_blog {
        assert!(e.raw.values().all(Value::is_string), "{:?}", e.raw);
        assert!(e.raw["meetingHistory"].as_str().unwrap().starts_with('['));
    }
    assert!(by_sdk("amazon-chime-sdk-ios").any(|e| e.raw.contains_key("audioInputError")));
    assert!(events.iter().all(|e| !e.raw.contains_key("audioInputError") || e.sdk == "amazon-chime-sdk-ios"));
    // Android: history entries {meetingHistoryEventName, timestamp}, growing event by event within an upload.
    for (_, r) in requests.iter().filter(|(_, r)| r.endpoint == Endpoint::MeetingEvents) {
        let body: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        let sdk = body[0]["attributes"]["sdkName"].as_str().unwrap();
        let lengths: Vec<usize> = body
            .iter()
            .map(|e| match &e["attributes"]["meetingHistory"] {
                Value::Array(items) => items.len(),
                Value::String(s) => s.matches(": ").count(),
                other => panic!("history {other}"),
            })
            .collect();
        match sdk {
            // The JS SDK's live history array: the whole session in every event, each event in it.
            "amazon-chime-sdk-js" => {
                assert!(lengths.windows(2).all(|w| w[0] == w[1]));
                let history = body[0]["attributes"]["meetingHistory"].as_array().unwrap();
                for e in &body {
                    let entry = serde_json::json!({"name": e["name"], "timestampMs": e["attributes"]["timestampMs"]});
                    assert!(history.contains(&entry), "{entry} not in the history");
                }
            }
            _ => assert!(lengths.windows(2).all(|w| w[0] <= w[1]) && lengths[0] >= 1, "{sdk}: {lengths:?}"),
        }
        if sdk == "amazon-chime-sdk-android" {
            assert!(body[0]["attributes"]["meetingHistory"][0].get("meetingHistoryEventName").is_some());
        }
    }
    // JS natively: no history, no external ids, no boolean-carrying signalingDropped (the SDK drops those).
    let js_native: Vec<_> = by_sdk("amazon-chime-sdk-js").filter(|e| e.endpoint != Endpoint::MeetingEvents).collect();
    assert!(js_native.iter().all(|e| !e.normalized.contains_key("meetingHistory")
        && !e.normalized.contains_key("externalUserId")
        && e.name != "signalingDropped"));
    assert!(by_sdk("amazon-chime-sdk-js").any(|e| e.name == "signalingDropped"), "blog uploads keep them");
    // Each reconnect's retryCount counts it.
    for e in events.iter().filter(|e| e.name == "meetingReconnected") {
        assert!(e.num("retryCount").unwrap() >= 1.0, "{:?}", e.raw);
    }
    assert!(by_sdk("amazon-chime-sdk-android").any(|e| e.raw.contains_key("meetingReconnectDurationMs")));
}

#[test]
fn a_steady_fleet_has_realistic_mixes() {
    let (rate, secs) = (100.0, 180);
    let requests = play(5, Scenario::Steady, rate, secs, BASE);
    let events = meeting_events(&requests);
    let sip: usize =
        requests.iter().filter(|(_, r)| r.endpoint == Endpoint::SipMessages).map(|(_, r)| r.kinds.len()).sum();
    let total = (events.len() + sip) as f64 / secs as f64;
    assert!((0.7 * rate..1.3 * rate).contains(&total), "{total} events per second for a rate of {rate}");
    assert!((0.08..0.25).contains(&(sip as f64 / (events.len() + sip) as f64)), "SIP share");

    let starts: Vec<_> = events.iter().filter(|e| e.name == "meetingStartRequested").collect();
    let share = |sdk: &str| starts.iter().filter(|e| e.sdk == sdk).count() as f64 / starts.len() as f64;
    assert!((0.6..0.8).contains(&share("amazon-chime-sdk-js")), "{}", share("amazon-chime-sdk-js"));
    for sdk in ["amazon-chime-sdk-android", "amazon-chime-sdk-ios"] {
        assert!((0.08..0.23).contains(&share(sdk)), "{sdk}: {}", share(sdk));
    }
    let failures = ratio(&events, "meetingStartFailed", "meetingStartRequested", 0.0, secs as f64);
    assert!((0.01..0.06).contains(&failures), "join failure ratio {failures}");

    // meetingStartDurationMs: a median per SDK like the real ones (the JS SDK joins fastest).
    let median = |sdk: &str| {
        let mut v: Vec<f64> = events
            .iter()
            .filter(|e| e.sdk == sdk && e.name == "meetingStartSucceeded")
            .filter_map(|e| e.num("meetingStartDurationMs"))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!((950.0..1_600.0).contains(&median("amazon-chime-sdk-js")), "{}", median("amazon-chime-sdk-js"));
    assert!((1_500.0..2_400.0).contains(&median("amazon-chime-sdk-android")), "{}", median("amazon-chime-sdk-android"));
    for e in events.iter().filter(|e| e.name == "meetingStartSucceeded" && e.sdk == "amazon-chime-sdk-js") {
        let (start, signaling, ice) = (
            e.num("meetingStartDurationMs").unwrap(),
            e.num("signalingOpenDurationMs").unwrap(),
            e.num("iceGatheringDurationMs").unwrap(),
        );
        assert!(signaling < start && ice < start, "{:?}", e.raw);
    }

    // Statuses: each one a status its SDK has; ends mostly normal.
    let known: HashSet<&str> = [
        "OK",
        "Left",
        "MeetingEnded",
        "AudioCallEnded",
        "AudioJoinedFromAnotherDevice",
        "AudioAuthenticationRejected",
        "AudioCallAtCapacity",
        "AudioInternalServerError",
        "AudioServiceUnavailable",
        "AudioDisconnected",
        "AudioServerHungup",
        "SignalingBadRequest",
        "SignalingInternalServerError",
        "SignalingRequestFailed",
        "SignalingChannelClosedUnexpectedly",
        "ICEGatheringTimeoutWorkaround",
        "ConnectionHealthReconnect",
        "NetworkBecamePoor",
        "RealtimeApiFailed",
        "TaskFailed",
    ]
    .into();
    for e in events.iter().filter(|e| e.normalized.contains_key("meetingStatus")) {
        assert!(known.contains(e.text("meetingStatus").unwrap()), "{:?}", e.raw);
    }
    let ended = events.iter().filter(|e| e.name == "meetingEnded").count() as f64;
    let failed = events.iter().filter(|e| e.name == "meetingFailed").count() as f64;
    assert!(ended > 50.0 && failed / (ended + failed) < 0.06, "{failed} dropped of {}", ended + failed);
    for e in events.iter().filter(|e| e.name == "meetingEnded" || e.name == "meetingFailed") {
        assert!(e.num("meetingDurationMs").unwrap_or(1.0) > 0.0 && e.normalized.contains_key("poorConnectionCount"));
    }
    // Device failures with the browsers' error names.
    let audio: Vec<_> = events.iter().filter(|e| e.name == "audioInputFailed").collect();
    assert!(!audio.is_empty());
    assert!(audio.iter().filter(|e| e.sdk == "amazon-chime-sdk-js").all(|e| {
        let m = e.text("audioInputErrorMessage").unwrap();
        ["NotAllowedError: ", "NotReadableError: ", "NotFoundError: ", "OverconstrainedError: "]
            .iter()
            .any(|p| m.starts_with(p))
    }));
    assert!(
        events
            .iter()
            .any(|e| e.text("videoInputErrorMessage") == Some("NotReadableError: Could not start video source"))
    );
    assert!(
        events.iter().any(|e| e.name == "attendeePresenceReceived" && e.num("attendeePresenceDurationMs").is_some())
    );
}

#[test]
fn the_incident_scenario_fails_joins_and_drops_attendees_then_recovers() {
    let events = meeting_events(&play(21, Scenario::Incident, 60.0, 360, BASE));
    let calm = ratio(&events, "meetingStartFailed", "meetingStartRequested", 5.0, 85.0);
    let outage = ratio(&events, "meetingStartFailed", "meetingStartRequested", 100.0, 265.0);
    let after = ratio(&events, "meetingStartFailed", "meetingStartRequested", 300.0, 360.0);
    assert!(calm < 0.08 && after < 0.08, "calm {calm}, recovered {after}");
    assert!(outage > 0.2, "outage {outage}");
    let (drops_calm, drops_outage) =
        (per_minute(&events, "meetingFailed", 5.0, 85.0), per_minute(&events, "meetingFailed", 100.0, 265.0));
    assert!(
        drops_outage > 4.0 * drops_calm.max(0.5),
        "meetingFailed per minute: calm {drops_calm}, outage {drops_outage}"
    );
    // The outage's failures are the service's.
    let server_side = events
        .iter()
        .filter(|e| e.name == "meetingStartFailed" && (100.0..265.0).contains(&e.second()))
        .filter(|e| {
            e.text("meetingStatus").is_some_and(|s| s.contains("ServerError") || s.contains("ServiceUnavailable"))
        })
        .count();
    assert!(server_side as f64 > 0.5 * per_minute(&events, "meetingStartFailed", 100.0, 265.0) * 165.0 / 60.0);
}

#[test]
fn the_reconnect_storm_scenario_has_its_storm() {
    let events = meeting_events(&play(4, Scenario::ReconnectStorm, 60.0, 300, BASE));
    let calm = per_minute(&events, "meetingReconnected", 5.0, 55.0);
    let storm = per_minute(&events, "meetingReconnected", 75.0, 205.0);
    let settled = per_minute(&events, "meetingReconnected", 240.0, 300.0);
    assert!(
        storm > 10.0 * calm.max(1.0) && storm > 5.0 * settled.max(1.0),
        "calm {calm}, storm {storm}, settled {settled}"
    );
    let poor_storm = per_minute(&events, "receivingAudioDropped", 75.0, 205.0);
    assert!(poor_storm > 5.0 * per_minute(&events, "receivingAudioDropped", 5.0, 55.0).max(1.0));
}

/// What the call tracker makes of the fleet's SIP messages, and the methods and statuses among them.
fn call_facts(requests: &[(i64, Request)]) -> (Vec<chimewatch_sip::Observed>, HashSet<String>) {
    let mut tracker = CallTracker::new(Policy::default());
    let mut facts = Vec::new();
    let mut methods = HashSet::new();
    for (_, r) in requests.iter().filter(|(_, r)| r.endpoint == Endpoint::SipMessages) {
        for line in String::from_utf8(r.body.clone()).unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            let text = record["sip_message"].as_str().unwrap();
            let m = Message::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
            methods.insert(m.method().map_or_else(|| m.status().unwrap().to_string(), str::to_owned));
            facts.extend(tracker.observe(
                record["voice_connector_id"].as_str().unwrap(),
                record["aws_region"].as_str().unwrap(),
                record["call_id"].as_str().unwrap(),
                record["event_timestamp"].as_i64().unwrap(),
                &m,
            ));
        }
    }
    facts.extend(tracker.flush_pending());
    (facts, methods)
}

#[test]
fn voice_connector_calls_are_whole_calls_to_the_call_tracker() {
    let requests = play(9, Scenario::Incident, 200.0, 200, BASE);
    let (facts, methods) = call_facts(&requests);
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "100", "180", "183", "200", "486", "480", "487", "503"] {
        assert!(methods.contains(m), "no {m} in {methods:?}");
    }
    let count = |f: &dyn Fn(&CallFact) -> bool| facts.iter().filter(|o| f(&o.fact)).count();
    let attempts = count(&|f| matches!(f, CallFact::Attempt { .. }));
    let answered = count(&|f| matches!(f, CallFact::Answered { .. }));
    let failed = count(&|f| matches!(f, CallFact::Failed { .. }));
    let cancelled = count(&|f| matches!(f, CallFact::Cancelled { .. }));
    assert!(attempts > 200, "{attempts} calls");
    assert!(answered as f64 > 0.5 * attempts as f64, "{answered} of {attempts} answered");
    assert!(failed > 10 && cancelled > 5, "{failed} failed, {cancelled} cancelled");
    assert!(count(&|f| matches!(f, CallFact::Ended { .. })) > 10, "calls end with BYE");
    let reasons: HashSet<&str> = facts
        .iter()
        .filter_map(|o| if let CallFact::Ended { reason, .. } = &o.fact { reason.as_deref() } else { None })
        .collect();
    for reason in ["Normal call clearing", "Temporary failure"] {
        assert!(reasons.contains(reason), "no teardown {reason:?} in {reasons:?}");
    }
    assert!(count(&|f| matches!(f, CallFact::Throttled)) > 0, "the outage's 503s");
    let inbound = count(&|f| matches!(f, CallFact::Attempt { direction: chimewatch_sip::Direction::Inbound }));
    assert!(inbound > attempts / 4 && inbound < attempts * 3 / 4, "{inbound} inbound of {attempts}");
    // Post-dial delays and setup times as planned.
    for o in &facts {
        match o.fact {
            CallFact::Ringing { post_dial_delay_ms, .. } => assert!((50..20_000).contains(&post_dial_delay_ms)),
            CallFact::Answered { setup_ms, .. } => assert!((500..70_000).contains(&setup_ms), "{setup_ms}"),
            _ => {}
        }
    }
}

#[test]
fn the_demo_fleet_fills_every_voice_panel_in_its_first_minute() {
    let requests = play(super::DEMO_SEED, Scenario::Incident, super::DEMO_RATE, 60, BASE);
    let (facts, _) = call_facts(&requests);
    let seen = |f: &dyn Fn(&CallFact) -> bool| facts.iter().any(|o| f(&o.fact));
    assert!(seen(&|f| matches!(f, CallFact::Active { .. })), "calls active");
    assert!(seen(&|f| matches!(f, CallFact::Attempt { direction: chimewatch_sip::Direction::Inbound })), "inbound");
    assert!(seen(&|f| matches!(f, CallFact::Attempt { direction: chimewatch_sip::Direction::Outbound })), "outbound");
    assert!(seen(&|f| matches!(f, CallFact::Failed { .. })), "failures");
    assert!(seen(&|f| matches!(f, CallFact::Answered { .. })), "setup times");
    assert!(seen(&|f| matches!(f, CallFact::Ringing { .. })), "post-dial delays");
    assert!(seen(&|f| matches!(f, CallFact::Cancelled { .. })), "cancellations");
    assert!(seen(&|f| matches!(f, CallFact::Ended { reason: Some(_), .. })), "teardowns with a reason");
}

/// What the fake gateway answers to its `n`th POST: status, reason, Retry-After, body.
type Answer = fn(usize) -> (u16, &'static str, Option<u64>, &'static str);

const OK: (u16, &str, Option<u64>, &str) = (200, "OK", None, r#"{"accepted":0,"rejected":[]}"#);

/// A bare HTTP/1.1 server on a free port that answers `/readyz` with 200 and each POST as `answer` says; returns
/// its URL and when each POST arrived.
async fn fake_gateway(answer: Answer) -> (String, std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = posts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    let (status, reason, retry_after, json) = if head.starts_with("GET") {
                        OK
                    } else {
                        let mut seen = seen.lock().unwrap();
                        seen.push(std::time::Instant::now());
                        answer(seen.len() - 1)
                    };
                    let mut response = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                        json.len()
                    );
                    if let Some(s) = retry_after {
                        response.push_str(&format!("retry-after: {s}\r\n"));
                    }
                    response.push_str("\r\n");
                    response.push_str(json);
                    stream.get_mut().write_all(response.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (url, posts)
}

fn options(url: String) -> super::Options {
    super::Options {
        backfill: std::time::Duration::ZERO,
        url,
        rate: 50.0,
        duration: Some(std::time::Duration::from_millis(1_500)),
        seed: 1,
        scenario: Scenario::Steady,
        api_key: Some("key".into()),
        token_secret: None,
        concurrency: 4,
        progress: false,
    }
}

#[tokio::test]
async fn the_driver_waits_out_a_503s_retry_after_and_stops_at_a_4xx() {
    // The first request (the registrations, which everything else waits for) is refused once with Retry-After: 1.
    let (url, posts) =
        fake_gateway(|n| if n == 0 { (503, "Service Unavailable", Some(1), r#"{"error":"busy"}"#) } else { OK }).await;
    let summary = super::run(options(url), std::future::pending()).await.unwrap();
    assert_eq!(summary.statuses.get("503"), Some(&1), "{summary:?}");
    assert!(summary.retries >= 1 && summary.failed_requests == 0, "{summary:?}");
    assert!(summary.events_sent > 0);
    let posts = posts.lock().unwrap().clone();
    assert!(posts[1] - posts[0] >= std::time::Duration::from_secs(1), "retried after {:?}", posts[1] - posts[0]);

    let (url, _) =
        fake_gateway(|n| if n == 2 { (400, "Bad Request", None, r#"{"error":"no such thing"}"#) } else { OK }).await;
    let failure = super::run(options(url), std::future::pending()).await.unwrap_err();
    assert!(failure.message.contains("answered 400 Bad Request to POST"), "{}", failure.message);
    assert!(failure.message.contains("no such thing"), "{}", failure.message);
    assert_eq!(failure.summary.statuses.get("400"), Some(&1));
}
