//! `chimewatch simulate` against `up` run with the credentials of a deployment: without the API key it stops at the
//! first 401 with a clear message; with it, every request is answered 2xx, nothing is rejected, and exactly what the
//! gateway accepted is on the stream, in the logs and in the metrics.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{BIN, Server, dump};

const API_KEY: &str = "simulate-test-api-key";
const TOKEN_SECRET: &str = "the-gateway-token-secret-for-simulate";

fn simulate(url: &str, credentials: &[&str]) -> Output {
    Command::new(BIN)
        .args(["simulate", "--url", url, "--duration", "5s", "--rate", "200", "--seed", "7"])
        .args(credentials)
        .env_remove("CHIMEWATCH_API_KEY")
        .env_remove("CHIMEWATCH_TOKEN_SECRET")
        .output()
        .unwrap()
}

fn cli(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "chimewatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Polls `read` until it returns `expected`, for up to a minute.
async fn eventually(what: &str, expected: u64, read: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = read();
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {got}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn simulate_plays_a_fleet_that_up_accepts_whole() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(
        &["up", "--data-dir", dir, "--idle-timeout-secs", "1"],
        &[("CHIMEWATCH_API_KEYS", API_KEY), ("CHIMEWATCH_TOKEN_SECRET", TOKEN_SECRET)],
    );
    let url = server.url("");

    let refused = simulate(&url, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("the gateway wants an API key: pass --api-key"), "{stderr}");

    let out = simulate(&url, &["--api-key", API_KEY, "--token-secret", TOKEN_SECRET]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("events sent"), "a progress line on a stderr that is not a terminal: {stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses = summary["statuses"].as_object().unwrap();
    assert!(statuses.keys().all(|s| s.starts_with('2')), "{summary:#}");
    assert_eq!((summary["rejected"].as_u64(), summary["failedRequests"].as_u64()), (Some(0), Some(0)), "{summary:#}");
    assert!(summary["eventsSent"].as_u64().unwrap() > 400, "{summary:#}");

    let endpoints = summary["endpoints"].as_object().unwrap();
    for name in ["admin_attendees", "meeting_events", "client_events", "client_events_beacon", "sip_messages"] {
        let e = &endpoints[name];
        assert!(e["requests"].as_u64() > Some(0), "{name} unused: {summary:#}");
        assert_eq!(e["accepted"], e["events"], "{name}: {summary:#}");
        assert_eq!(e["duplicates"], 0, "{name}");
    }
    let accepted = |name: &str| endpoints[name]["accepted"].as_u64().unwrap();
    let meeting_events = accepted("meeting_events") + accepted("client_events") + accepted("client_events_beacon");
    let sip = accepted("sip_messages");

    // Exactly what the gateway accepted is on the stream.
    let records = dump(&["--data-dir", dir], &[]);
    assert_eq!(records.len() as u64, meeting_events + sip);
    assert_eq!(records.iter().filter(|l| l["record"]["kind"] == "sipMessage").count() as u64, sip);
    assert!(records.iter().all(|l| l.get("error").is_none()), "every record decodes");

    // Every meeting event is in the logs, and every meetingStartRequested in the metrics once the windows close.
    let data_dir = dir.to_owned();
    eventually("logged events", meeting_events, || {
        cli(&["logs", "query", "--data-dir", &data_dir, "--since", "2h", "--limit", "100000"]).len() as u64
    })
    .await;
    let requested: u64 = endpoints.values().filter_map(|e| e["kinds"]["meetingStartRequested"].as_u64()).sum();
    assert!(requested > 10, "{summary:#}");
    eventually("meetingStartRequested in the metrics", requested, || {
        let points = cli(&[
            "metrics",
            "query",
            "--data-dir",
            &data_dir,
            "--metric",
            "meetingStartRequested",
            "--stat",
            "Sum",
            "--since",
            "2h",
        ]);
        points.iter().filter_map(|p| p["Sum"].as_f64()).sum::<f64>() as u64
    })
    .await;
    server.terminate();
}
