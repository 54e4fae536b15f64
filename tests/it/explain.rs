//! `chimewatch explain` and the console's explanations on `up`: sessions of the three SDKs with known causes, the
//! SIP fixture's calls as its README describes them, and the cause counts and telecom KPIs in the store.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, Server, fixture};

/// Runs `chimewatch explain` with `args` under `data_dir` until it succeeds and `ready` holds (the aggregator writes
/// the store a moment after the gateway acknowledges), and returns its JSON.
pub fn explain_json(data_dir: &str, args: &[&str], ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(BIN)
            .args(["explain", "--json", "--since", "1000d", "--data-dir", data_dir])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            if ready(&v) {
                return v;
            }
        } else {
            assert!(stderr.contains("no "), "explain {args:?} failed for another reason than not yet: {stderr}");
        }
        assert!(Instant::now() < deadline, "explain {args:?} never became ready: {stderr}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn explain_text(data_dir: &str, args: &[&str]) -> String {
    let out =
        Command::new(BIN).args(["explain", "--since", "1000d", "--data-dir", data_dir]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Three attendees of one meeting, one per SDK shape: a JS attendee who stays, an Android attendee whose connection
/// fails, and an iOS attendee (every value a string, lowerCamel statuses, `*Error` keys) denied the microphone.
fn sessions(meeting: &str, t0: i64) -> Vec<Value> {
    let js = |name: &str, at: i64, extra: Value| {
        let mut a = json!({ "meetingId": meeting, "attendeeId": "a-js", "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0", "browserName": "Chrome", "browserMajorVersion": "142", "osName": "Mac OS", "timestampMs": t0 + at });
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "name": name, "attributes": a })
    };
    let android = |name: &str, at: i64, extra: Value| {
        let mut a = json!({ "meetingId": meeting, "attendeeId": "a-android", "sdkName": "amazon-chime-sdk-android", "sdkVersion": "0.25.1", "osName": "Android", "osVersion": "14", "deviceModel": "Pixel 8", "timestampMs": t0 + at });
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "name": name, "attributes": a })
    };
    let ios = |name: &str, at: i64, extra: Value| {
        let mut a = json!({ "meetingId": meeting, "attendeeId": "a-ios", "sdkName": "amazon-chime-sdk-ios", "sdkVersion": "0.27.0", "osName": "iOS", "osVersion": "18.1", "timestampMs": (t0 + at).to_string() });
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "name": name, "attributes": a })
    };
    vec![
        js("meetingStartRequested", 0, json!({})),
        js("meetingStartSucceeded", 1_200, json!({ "meetingStartDurationMs": 1_200 })),
        js("meetingEnded", 90_000, json!({ "meetingStatus": "Left", "meetingDurationMs": 88_800 })),
        android("meetingStartRequested", 100, json!({})),
        android("meetingStartSucceeded", 1_900, json!({ "meetingStartDurationMs": 1_800, "meetingDurationMs": 0 })),
        android("signalingDropped", 30_000, json!({})),
        android("meetingReconnected", 31_000, json!({ "meetingStatus": "ConnectionHealthReconnect" })),
        android(
            "meetingFailed",
            60_000,
            json!({ "meetingStatus": "SignalingChannelClosedUnexpectedly", "meetingDurationMs": 58_100, "poorConnectionCount": 6,
                    "meetingHistory": [{ "meetingHistoryEventName": "signalingDropped", "timestamp": t0 + 30_000 }] }),
        ),
        ios("meetingStartRequested", 200, json!({})),
        ios("audioInputFailed", 400, json!({ "audioInputError": "NotAllowedError: Permission denied" })),
        ios("meetingStartFailed", 2_000, json!({ "meetingStatus": "taskFailed", "meetingStartDurationMs": "0" })),
    ]
}

fn metric_sum(data: &str, namespace: &str, metric: &str, dims: &[&str], stat: &str) -> Vec<Value> {
    let mut args = vec!["metrics", "query", "--data-dir", data, "--namespace", namespace, "--metric", metric];
    args.extend(["--stat", stat, "--since", "1000d", "--period", "1000d"]);
    for d in dims {
        args.extend(["--dimension", d]);
    }
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Waits until the store's `stat` of the series is `want` (windows close once the stream goes idle).
fn wait_for(data: &str, namespace: &str, metric: &str, dims: &[&str], stat: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let points = metric_sum(data, namespace, metric, dims, stat);
        let got = points.first().and_then(|p| p[stat].as_f64());
        if got.is_some_and(|g| (g - want).abs() < 1e-6) {
            return;
        }
        assert!(Instant::now() < deadline, "{metric} {dims:?} {stat}: {got:?}, want {want}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test]
async fn up_explains_attendees_a_meeting_and_the_fixture_calls_and_counts_their_causes() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server =
        Server::start(&["up", "--data-dir", dir, "--out-of-orderness-secs", "0", "--idle-timeout-secs", "1"], &[]);
    let t0 = chimewatch_stream_now() - 600_000;
    let body = serde_json::to_vec(&sessions("m-explained", t0)).unwrap();
    let (status, resp) = server.post("/v1/meeting-events", body, "application/json").await;
    assert_eq!((status, resp["accepted"].as_u64()), (200, Some(11)), "{resp}");
    // The fixture's calls, moved to the last minutes so that the console's ranges reach them.
    let sip: String = String::from_utf8(fixture("sip/voice-connector-sip-messages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r["event_timestamp"] = json!(r["event_timestamp"].as_i64().unwrap() - 1_763_712_000_000 + t0);
            format!("{r}\n")
        })
        .collect();
    let (status, resp) = server.post("/v1/sip-messages", sip.into_bytes(), "application/x-ndjson").await;
    assert_eq!(status, 200, "{resp}");

    // Attendees, each in its SDK's shape.
    let android = explain_json(dir, &["--attendee", "a-android"], |x| x["outcome"]["ending"] == "dropped");
    assert_eq!(android["verdict"]["cause"], "network", "{android:#}");
    assert_eq!(android["outcome"]["reconnects"], 1);
    assert!(
        android["verdict"]["headline"].as_str().unwrap().starts_with("Dropped after 58.1 s: network"),
        "{android:#}"
    );
    let ios = explain_json(dir, &["--attendee", "a-ios"], |x| x["outcome"]["ending"] == "joinFailed");
    assert_eq!(ios["verdict"]["cause"], "devicePermissionDenied", "{ios:#}");
    assert!(ios["verdict"]["evidence"][0].as_str().unwrap().contains("NotAllowedError"), "{ios:#}");
    let js = explain_json(dir, &["--attendee", "a-js"], |x| x["outcome"]["ending"] == "ended");
    assert_eq!((js["verdict"]["cause"].as_str(), js["verdict"]["failure"].as_bool()), (Some("left"), Some(false)));
    let text = explain_text(dir, &["--attendee", "a-android"]);
    assert!(text.contains("Verdict: Dropped after 58.1 s: network"), "{text}");
    assert!(text.contains("What to do: check the attendee's network"), "{text}");

    // The meeting.
    let m = explain_json(dir, &["--meeting", "m-explained"], |m| m["attendees"].as_array().unwrap().len() == 3);
    assert!(m["findings"][0].as_str().unwrap().starts_with("2 attendees failed at different times"), "{m:#}");
    let text = explain_text(dir, &["--meeting", "m-explained"]);
    assert!(text.contains("a-ios") && text.contains("devicePermissionDenied"), "{text}");

    // The fixture's calls, as its README says.
    let call = |id: &str| explain_json(dir, &["--call", id], |c| c["verdict"] != "ringing");
    let answered = call("vc-call-0001");
    assert_eq!((answered["verdict"].as_str(), answered["direction"].as_str()), (Some("answered"), Some("Inbound")));
    assert_eq!((answered["setupMs"].as_i64(), answered["postDialDelayMs"].as_i64()), (Some(4_200), Some(950)));
    let rejected = call("vc-call-0002");
    assert_eq!(
        (rejected["verdict"].as_str(), rejected["direction"].as_str()),
        (Some("rejected by the far end"), Some("Outbound"))
    );
    assert_eq!(rejected["finalResponse"]["status"], 503);
    let cancelled = call("vc-call-0003");
    assert_eq!(cancelled["verdict"], "cancelled by the caller");
    assert_eq!(
        (cancelled["finalResponse"]["status"].as_i64(), cancelled["retransmissions"].as_i64()),
        (Some(487), Some(1))
    );
    let ladder = explain_text(dir, &["--call", "vc-call-0003"]);
    assert!(ladder.contains("INVITE (again)") && ladder.contains("487 Request Terminated"), "{ladder}");

    // The console shows the same explanations behind its search box.
    let page = |q: &str| {
        let url = server.url(&format!("/search?q={q}"));
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let html = page("a-android").await;
    assert!(html.contains(r#"data-cause="network""#), "{html}");
    let html = page("m-explained").await;
    assert!(html.contains(r#"data-attendees="3""#) && html.contains(r#"href="/search?q=a-ios""#), "{html}");
    let html = page("vc-call-0001").await;
    assert!(
        html.contains(r#"data-verdict="answered""#) && html.contains("<svg") && html.contains("180 Ringing"),
        "{html}"
    );

    // The causes as counts, and the telecom KPIs of the fixture's three calls (answered; 503; cancelled after 183).
    let ns = "AmazonChimeSDKMeetingEvents";
    wait_for(dir, ns, "meetingDropCause", &["cause=network"], "Sum", 1.0);
    wait_for(dir, ns, "meetingJoinFailureCause", &["cause=devicePermissionDenied"], "Sum", 1.0);
    wait_for(
        dir,
        ns,
        "meetingJoinFailureCause",
        &["sdkName=amazon-chime-sdk-ios", "cause=devicePermissionDenied"],
        "Sum",
        1.0,
    );
    let voice = "ChimeWatch/VoiceConnector";
    wait_for(dir, voice, "ASR", &[], "Average", 100.0 / 3.0);
    wait_for(dir, voice, "NER", &[], "Average", 200.0 / 3.0);
    wait_for(dir, voice, "ACD", &[], "Average", 180.0);
    server.terminate();
}

fn chimewatch_stream_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
