//! The console of `up`, end to end: a simulated fleet and a failure burst posted to `up`, then its dashboards,
//! alarms and search opened in headless Chromium. Every panel must show data, the figures must be what was posted,
//! the burst must have fired an alarm, and every series the deploy files name must be one the services published.
//! Screenshots of each page are kept under `target/test-artifacts/console/`. And `up --demo` as a newcomer runs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chimewatch_console::builtin;
use chimewatch_console::template::Values;
use serde_json::{Value, json};

use crate::harness::{BIN, Server};

/// Sessions the burst ends in failure, in a minute where none ends well: `chimewatch-meetings-failed` fires past 10 %.
const BURST: usize = 8;

fn cli(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "chimewatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What headless Chromium showed on each page (`tests/node/console.js`).
fn browse(base: &str, pages: &[&str]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let modules = dir.join("node_modules");
    assert!(
        modules.join("playwright-core").exists(),
        "no playwright-core in {}: run scripts/test.sh",
        modules.display()
    );
    let out = Command::new("node")
        .arg(dir.join("console.js"))
        .arg(base)
        .arg(artifacts())
        .args(pages)
        .env("NODE_PATH", modules)
        .output()
        .expect("running node");
    assert!(out.status.success(), "the browser script failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Events of one kind the simulator got accepted, over every endpoint.
fn sent(summary: &Value, kind: &str) -> u64 {
    summary["endpoints"].as_object().unwrap().values().map(|e| e["kinds"][kind].as_u64().unwrap_or(0)).sum()
}

fn burst(at_ms: i64) -> Vec<u8> {
    let events: Vec<Value> = (0..BURST)
        .map(|i| {
            json!({"name": "meetingFailed", "attributes": {
                "meetingId": "burst-meeting", "attendeeId": format!("burst-attendee-{i}"),
                "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0", "meetingStatus": "SignalingBadRequest",
                "meetingDurationMs": 61_000, "poorConnectionCount": 4, "timestampMs": at_ms + i as i64 * 1000}})
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// The SIP fixture's calls, moved to start at `start_ms`.
fn recent_calls(start_ms: i64) -> Vec<u8> {
    let text = String::from_utf8(crate::harness::fixture("sip/voice-connector-sip-messages.jsonl")).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = records.iter().map(|r| r["event_timestamp"].as_i64().unwrap()).min().unwrap();
    let mut out = Vec::new();
    for mut r in records {
        r["event_timestamp"] = json!(r["event_timestamp"].as_i64().unwrap() - first + start_ms);
        let message = r["sip_message"].as_str().unwrap().to_owned();
        if message.starts_with("BYE ") {
            let with_reason =
                message.replacen("\r\n", "\r\nReason: Q.850;cause=16;text=\"Normal call clearing\"\r\n", 1);
            r["sip_message"] = json!(with_reason);
        }
        out.extend(serde_json::to_vec(&r).unwrap());
        out.push(b'\n');
    }
    out
}

fn widget<'a>(page: &'a Value, title: &str) -> &'a Value {
    page["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["title"] == title)
        .unwrap_or_else(|| panic!("no widget {title:?}"))
}

#[tokio::test]
async fn the_console_shows_every_panel_with_what_was_posted_and_the_alarm_the_burst_fired() {
    // Where `--alarm-webhook` posts: a listener that keeps every notification.
    let notifications = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let kept = notifications.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| async move {
            kept.lock().unwrap().push(body);
            "ok"
        }),
    );
    tokio::spawn(async move { axum::serve(hook, app).await.unwrap() });

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(
        &[
            "up",
            "--alarm-webhook",
            &hook_url,
            "--data-dir",
            dir,
            "--window-secs",
            "1",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "1",
            "--pipeline-metrics-interval-secs",
            "1",
            "--alarm-interval-secs",
            "1",
        ],
        &[],
    );
    // The burst, in the last complete minute, which the alarm judges at its next evaluation.
    let now = chimewatch_stream::system_clock().as_i64();
    let burst_minute = (now / 60_000 - 1) * 60_000;
    let (status, body) = server.post("/v1/meeting-events", burst(burst_minute + 5_000), "application/json").await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(BURST as u64)), "{body}");

    // Whole Voice Connector calls (answered, failed, cancelled) ten minutes ago, so the voice panels have calls
    // that ended; the answered call's BYE gets a Reason header, for the teardowns panel.
    let (status, body) = server.post("/v1/sip-messages", recent_calls(now - 600_000), "application/x-ndjson").await;
    assert_eq!((status, body["rejected"].as_array().map(Vec::len)), (200, Some(0)), "{body}");

    let out = Command::new(BIN)
        .args(["simulate", "--url", &server.url(""), "--duration", "8s", "--rate", "150", "--seed", "7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "simulate: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["rejected"].as_u64(), summary["failedRequests"].as_u64()), (Some(0), Some(0)), "{summary}");
    let started = sent(&summary, "meetingStartSucceeded");
    let requested = sent(&summary, "meetingStartRequested");
    let dropped = sent(&summary, "meetingFailed") + BURST as u64;
    assert!(started > 0 && requested > 0, "{summary}");

    // Until the fleet's windows are published, the services have reported their own figures, and the alarm fired.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let published = cli(&[
            "metrics",
            "query",
            "--data-dir",
            dir,
            "--metric",
            "meetingStartSucceeded",
            "--stat",
            "Sum",
            "--since",
            "1h",
            "--period",
            "1h",
        ])
        .iter()
        .map(|p| p["Sum"].as_f64().unwrap_or(0.0))
        .sum::<f64>();
        let alarms: Vec<Value> = reqwest::get(server.url("/api/alarms")).await.unwrap().json().await.unwrap();
        let fired = alarms.iter().any(|a| a["name"] == "chimewatch-meetings-failed" && a["state"] == "ALARM");
        let pipeline =
            cli(&["metrics", "list", "--data-dir", dir, "--namespace", "ChimeWatch/Pipeline", "--since", "1h"]);
        let services: BTreeSet<String> =
            pipeline.iter().filter_map(|s| s["dimensions"]["Service"].as_str().map(str::to_owned)).collect();
        if published == started as f64 && fired && services.len() == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "published {published} of {started} starts; alarms {alarms:?}; services reporting {services:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every series a dashboard or alarm names is one the services published (Voice Connector series need whole
    // calls of every outcome: `builtin::tests::every_voice_series_named_is_one_the_aggregator_publishes`).
    let values = Values::new()
        .set("Region", "local")
        .set("MeetingNamespace", "AmazonChimeSDKMeetingEvents")
        .set("VoiceNamespace", "ChimeWatch/VoiceConnector")
        .set("PipelineNamespace", "ChimeWatch/Pipeline")
        .set("MeetingLogGroup", "/chimewatch/meeting-events");
    let dashboards = builtin::dashboards(&values).unwrap();
    let alarms = builtin::alarms(&values).unwrap();
    let listed: BTreeSet<(String, String, Vec<String>)> = cli(&["metrics", "list", "--data-dir", dir, "--since", "1h"])
        .iter()
        .map(|s| {
            let mut names: Vec<String> = s["dimensions"].as_object().unwrap().keys().cloned().collect();
            names.sort();
            (s["namespace"].as_str().unwrap().to_owned(), s["metric"].as_str().unwrap().to_owned(), names)
        })
        .collect();
    let unpublished: Vec<_> = builtin::references(&dashboards, &alarms)
        .unwrap()
        .into_iter()
        .filter(|r| r.namespace != "ChimeWatch/VoiceConnector")
        .filter(|r| !listed.contains(&(r.namespace.clone(), r.metric.clone(), r.dimension_names.clone())))
        .collect();
    assert!(unpublished.is_empty(), "named but never published: {unpublished:#?}");

    let q = "range=1h&refresh=off";
    let pages = [
        format!("/dashboards/meetings?{q}"),
        format!("/dashboards/voice?{q}"),
        format!("/dashboards/pipeline?{q}"),
        format!("/alarms?{q}"),
        format!("/search?q=burst-attendee-3&{q}"),
    ];
    let seen = browse(&server.url(""), &pages.iter().map(String::as_str).collect::<Vec<_>>());
    for p in &pages[..3] {
        let page = &seen[p];
        assert_eq!(page["status"], 200, "{p}");
        for w in page["widgets"].as_array().unwrap() {
            assert!(w["visible"].as_bool().unwrap(), "{p}: {w}");
            assert_eq!(w["error"], Value::Null, "{p}: {w}");
            assert!(w["points"].as_u64().unwrap() > 0, "{p}: an empty panel: {w}");
            if w["kind"] != "text" {
                assert!(w["svg"].as_bool().unwrap() || w["text"].as_str().unwrap().lines().count() > 1, "{p}: {w}");
            }
        }
        assert!(page["firing"].as_u64().unwrap() >= 1, "{p}: the header shows the alarm in ALARM");
    }
    let meetings = &seen[&pages[0]];
    // The figures are what was posted.
    let counts = widget(meetings, "Meetings: started, failed to join, dropped");
    assert_eq!(
        counts["sum"].as_f64().unwrap(),
        (started + sent(&summary, "meetingStartFailed") + dropped) as f64,
        "{counts}"
    );
    assert_eq!(widget(meetings, "SDK platforms")["sum"].as_f64().unwrap(), requested as f64);
    let drops = widget(meetings, "Dropped attendees");
    assert_eq!(drops["points"].as_u64().unwrap(), dropped.min(100), "{drops}");
    assert!(drops["text"].as_str().unwrap().contains("burst-attendee-3"), "{drops}");

    let alarm_page = &seen[&pages[3]];
    let fired =
        alarm_page["alarms"].as_array().unwrap().iter().find(|a| a["name"] == "chimewatch-meetings-failed").unwrap();
    assert_eq!(fired["state"], "ALARM", "{alarm_page}");
    assert!(fired["text"].as_str().unwrap().contains("Threshold Crossed"), "{fired}");
    assert!(alarm_page["history"].as_u64().unwrap() >= 1);

    let search = &seen[&pages[4]];
    assert_eq!(search["events"], 1, "{search}");
    assert!(search["body"].as_str().unwrap().contains("SignalingBadRequest"), "{search}");

    // The webhook got the change as CloudWatch's SNS message.
    let sent = notifications.lock().unwrap().clone();
    let fired = sent
        .iter()
        .find(|n| n["AlarmName"] == "chimewatch-meetings-failed" && n["NewStateValue"] == "ALARM")
        .unwrap_or_else(|| panic!("no ALARM notification in {sent:#?}"));
    assert!(fired["Trigger"]["Metrics"].to_string().contains("meetingFailed"), "{fired}");
    assert_eq!(fired["Trigger"]["Threshold"], 10.0, "{fired}");
    assert!(fired["NewStateReason"].as_str().unwrap().contains("Threshold Crossed"), "{fired}");

    // The same states through the CLI.
    let addr = server.addr.to_string();
    let listed = Command::new(BIN).args(["alarms", "list", "--listen", &addr, "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), 11, "{listed}");
    assert!(listed.lines().any(|l| l.contains("chimewatch-meetings-failed") && l.contains("\"ALARM\"")), "{listed}");
    let history = Command::new(BIN).args(["alarms", "history", "--listen", &addr]).output().unwrap();
    let history = String::from_utf8(history.stdout).unwrap();
    assert!(history.lines().any(|l| l.contains("chimewatch-meetings-failed") && l.contains("-> ALARM")), "{history}");
    drop(server);
}

/// `up --demo` as a newcomer runs it: within a minute every panel of the three dashboards has data (its backfilled
/// two minutes close their windows at once), and the demo's outage fires an alarm.
#[tokio::test]
async fn up_demo_fills_every_panel_within_a_minute_and_fires_an_alarm() {
    let data = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let server = Server::start(&["up", "--demo", "--data-dir", data.path().to_str().unwrap()], &[]);
    let pages = ["/dashboards/meetings", "/dashboards/voice", "/dashboards/pipeline"];
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seen = browse(&server.url(""), &pages);
        let empty: Vec<String> = pages
            .iter()
            .flat_map(|p| seen[p]["widgets"].as_array().unwrap().iter().map(move |w| (p, w)))
            .filter(|(_, w)| w["points"].as_u64() == Some(0) || w["error"] != Value::Null)
            .map(|(p, w)| format!("{p}: {w}"))
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "empty a minute after start: {empty:#?}");
    }
    let deadline = started + Duration::from_secs(120);
    loop {
        let alarms: Vec<Value> = reqwest::get(server.url("/api/alarms")).await.unwrap().json().await.unwrap();
        if alarms.iter().any(|a| a["state"] == "ALARM") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alarm fired within two minutes: {alarms:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(server);
}
