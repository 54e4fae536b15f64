//! The real Amazon Chime SDK for JavaScript (npm `amazon-chime-sdk-js`, under Node) pointed at a running gateway:
//! a JS app needs only its ingestion URL changed to feed chimewatch. What lands on the stream must be what the SDK
//! published, once each, including the events it beacons when the page goes away.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::explain::explain_json;
use crate::harness::{Server, dump};

fn node_script() -> (String, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let modules = dir.join("node_modules");
    assert!(
        modules.join("amazon-chime-sdk-js").exists(),
        "{} has no amazon-chime-sdk-js: run `scripts/test.sh`, which installs it",
        modules.display()
    );
    (dir.join("real-client.js").to_string_lossy().into_owned(), modules.to_string_lossy().into_owned())
}

/// Runs the SDK against `ingestion_url` through `scenario` (`session`, or `at-capacity` for a forced failed join);
/// returns what its observer saw published.
fn run_sdk(ingestion_url: &str, meeting: &str, attendee: &str, join_token: &str, scenario: &str) -> Vec<Value> {
    let (script, modules) = node_script();
    let out = Command::new("node")
        .args([&script, ingestion_url, meeting, attendee, join_token, scenario])
        .env("NODE_PATH", modules)
        .output()
        .expect("running node");
    assert!(out.status.success(), "the SDK script failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the script prints what was published")
}

#[tokio::test]
async fn the_real_js_sdk_feeds_the_gateway_by_its_ingestion_url_alone() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir, "--api-keys", "admin-key"], &[]);
    let (meeting, attendee) = ("4f8a2c1e-real-client-meeting", "9b7d3e5f-real-client-attendee");
    let join_token = "OWI3ZDNlNWYtcmVhbC1jbGllbnQtYXR0ZW5kZWU6c2VjcmV0";

    // The customer's backend registers the attendee's JoinToken when it creates the attendee.
    let response = reqwest::Client::new()
        .post(server.url("/v1/admin/attendees"))
        .header("x-api-key", "admin-key")
        .json(&json!({"meetingId": meeting, "attendeeId": attendee, "joinToken": join_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // An attendee whose JoinToken was never registered gets nothing in.
    let rejected =
        run_sdk(&server.url("/v1/client-events"), "other-meeting", "other-attendee", "bm90LXJlZ2lzdGVyZWQ=", "session");
    assert!(!rejected.is_empty());

    let published = run_sdk(&server.url("/v1/client-events"), meeting, attendee, join_token, "session");
    assert_eq!(published.len(), 8, "{published:?}");

    let records: Vec<Value> = dump(&["--data-dir", dir], &[]).into_iter().map(|l| l["record"].clone()).collect();
    assert!(
        records.iter().all(|r| r["event"]["attributes"]["meetingId"] == meeting),
        "nothing of the unregistered attendee landed"
    );
    assert_eq!(records.len(), published.len(), "each published event once: {records:#?}");
    for p in &published {
        let ts = &p["attributes"]["timestampMs"];
        let r = records
            .iter()
            .find(|r| r["event"]["name"] == p["name"] && &r["event"]["attributes"]["timestampMs"] == ts)
            .unwrap_or_else(|| panic!("{} at {ts} did not land", p["name"]));
        assert_eq!(r["ingest"], "sdkIngestion");
        // Every attribute the gateway stored is what the SDK published, bar the two only the protocol carries.
        for (k, v) in r["event"]["attributes"].as_object().unwrap() {
            if k == "engineName" || k == "engineMajorVersion" {
                continue;
            }
            assert_eq!(Some(v), p["attributes"].get(k), "{}: attribute {k}", p["name"]);
        }
    }
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("chimewatch_gateway_beacons_total 2"), "one page-end beacon per SDK run");
    assert!(metrics.contains(r#"chimewatch_gateway_requests_total{route="client_events",status="401"}"#));
}

/// Sessions of the real SDK, one of them a forced failed join, are explained with the verdict that matches.
#[tokio::test]
async fn the_real_js_sdks_sessions_are_explained_and_a_forced_failure_gets_its_cause() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir, "--api-keys", "admin-key"], &[]);
    let meeting = "5e1b7c3a-explained-meeting";
    let attendees = [("0a1b2c3d-stays", "c3RheXM6c2VjcmV0"), ("1b2c3d4e-at-capacity", "YXQtY2FwYWNpdHk6c2VjcmV0")];
    for (attendee, token) in attendees {
        let response = reqwest::Client::new()
            .post(server.url("/v1/admin/attendees"))
            .header("x-api-key", "admin-key")
            .json(&json!({"meetingId": meeting, "attendeeId": attendee, "joinToken": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    run_sdk(&server.url("/v1/client-events"), meeting, attendees[0].0, attendees[0].1, "session");
    let forced = run_sdk(&server.url("/v1/client-events"), meeting, attendees[1].0, attendees[1].1, "at-capacity");
    assert!(forced.iter().any(|e| e["name"] == "meetingStartFailed"), "{forced:?}");

    // The session that stayed: it ended as meant, with a device that would not start and a reconnect on the way.
    let stayed = explain_json(dir, &["--attendee", attendees[0].0], |x| x["timeline"].as_array().unwrap().len() >= 8);
    assert_eq!(stayed["outcome"]["ending"], "ended", "{stayed:#}");
    assert_eq!(
        (stayed["verdict"]["cause"].as_str(), stayed["verdict"]["failure"].as_bool()),
        (Some("deviceUnavailable"), Some(false))
    );
    assert!(stayed["sdk"].as_str().unwrap().starts_with("amazon-chime-sdk-js "), "{}", stayed["sdk"]);
    // The forced failure: the meeting was full.
    let failed = explain_json(dir, &["--attendee", attendees[1].0], |x| x["outcome"]["ending"] == "joinFailed");
    assert_eq!(
        (failed["verdict"]["cause"].as_str(), failed["verdict"]["failure"].as_bool()),
        (Some("atCapacity"), Some(true))
    );
    assert!(
        failed["verdict"]["evidence"][0].as_str().unwrap().contains("meetingStatus AudioCallAtCapacity"),
        "{failed:#}"
    );
    // The meeting: one attendee of two failed, which points at that client.
    let m = explain_json(dir, &["--meeting", meeting], |m| m["attendees"].as_array().unwrap().len() == 2);
    assert!(m["findings"][0].as_str().unwrap().starts_with("Only 1b2c3d4e-at-capacity failed (atCapacity)"), "{m:#}");
    server.terminate();
}
