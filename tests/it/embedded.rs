//! `chimewatch up` on the embedded log: fixtures posted over HTTP land durably and `stream dump` reads them back.

use serde_json::json;

use crate::harness::{Server, dump, dumped_keys, event_keys, fixture};

const MEETING_FIXTURES: &[&str] = &[
    "meeting-events/js-mixed-meetings.json",
    "meeting-events/android-session.json",
    "meeting-events/ios-session-stringified.json",
];

#[tokio::test]
async fn fixtures_posted_to_up_land_in_the_embedded_log() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir], &[]);

    let mut expected = Vec::new();
    for f in MEETING_FIXTURES {
        let body = fixture(f);
        let (status, resp) = server.post("/v1/meeting-events", body.clone(), "application/json").await;
        assert_eq!(status, 200, "{f}: {resp}");
        expected.extend(event_keys(&body));
    }
    // The blog sample's path and a beacon-style text/plain body.
    let (status, resp) = server.post("/meetingevents", fixture("real-sdk-js/0004-blog.json"), "application/json").await;
    assert_eq!(status, 400, "a capture file is not a batch: {resp}");
    let capture: serde_json::Value = serde_json::from_slice(&fixture("real-sdk-js/0004-blog.json")).unwrap();
    let blog = serde_json::to_vec(&capture["body"]).unwrap();
    let (status, resp) = server.post("/meetingevents", blog.clone(), "text/plain;charset=UTF-8").await;
    assert_eq!((status, resp["rejected"].clone()), (200, json!([])));
    expected.extend(event_keys(&blog));

    let (status, resp) = server
        .post("/v1/sip-messages", fixture("sip/voice-connector-sip-messages.jsonl"), "application/x-ndjson")
        .await;
    assert_eq!((status, resp["accepted"].as_u64()), (200, Some(20)));
    let (status, resp) =
        server.post("/v1/meeting-events", fixture("bad-input/wrong-types.json"), "application/json").await;
    assert_eq!((status, resp["accepted"].as_u64()), (200, Some(0)));

    // Read while the server runs: another process, its own reader.
    let lines = dump(&["--data-dir", dir], &[]);
    let mut got = dumped_keys(&lines);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(lines.iter().filter(|l| l["record"]["kind"] == "sipMessage").count(), 20);
    assert!(lines.iter().all(|l| l.get("error").is_none()), "every record decodes");

    let printed = server.terminate();
    assert!(printed.iter().any(|l| l.contains("flushed the stream and stopped")), "{printed:?}");
}

#[tokio::test]
async fn normalized_and_original_values_are_both_on_the_stream() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir], &[]);
    let (status, _) = server
        .post("/v1/meeting-events", fixture("meeting-events/ios-session-stringified.json"), "application/json")
        .await;
    assert_eq!(status, 200);
    let lines = dump(&["--data-dir", dir], &[]);
    let failed = lines.iter().find(|l| l["record"]["event"]["name"] == "meetingStartFailed").unwrap();
    let record = &failed["record"];
    assert_eq!(record["event"]["attributes"]["meetingStatus"], "AudioCallAtCapacity");
    assert_eq!(record["event"]["attributes"]["retryCount"], 2);
    assert_eq!(record["original"]["meetingStatus"], "audioCallAtCapacity");
    assert_eq!(record["original"]["retryCount"], "2");
    assert_eq!(record["ingest"], "batch");
    drop(server);
}

#[tokio::test]
async fn settings_come_from_cli_then_env_then_file() {
    let root = tempfile::tempdir().unwrap();
    let file_dir = root.path().join("from-file");
    let env_dir = root.path().join("from-env");
    let cli_dir = root.path().join("from-cli");
    let config = root.path().join("chimewatch.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n[local]\nshards = 2\n", file_dir.to_str().unwrap())).unwrap();
    let config = config.to_str().unwrap();

    let check = |args: Vec<&str>, envs: Vec<(&str, &str)>, expect: &std::path::Path| {
        let mut full = vec!["up", "--config", config];
        full.extend(args);
        let server = Server::start(&full, &envs);
        drop(server);
        assert!(expect.join("stream/meta.json").exists(), "expected the log in {}", expect.display());
    };
    check(vec![], vec![], &file_dir);
    check(vec![], vec![("CHIMEWATCH_DATA_DIR", env_dir.to_str().unwrap())], &env_dir);
    check(
        vec!["--data-dir", cli_dir.to_str().unwrap()],
        vec![("CHIMEWATCH_DATA_DIR", env_dir.to_str().unwrap())],
        &cli_dir,
    );
    let meta = std::fs::read_to_string(file_dir.join("stream/meta.json")).unwrap();
    assert!(meta.contains("\"shards\":2"), "file setting applied: {meta}");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("bad.toml");
    std::fs::write(&config, "[gateway]\nmax_body = 1\n").unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["up", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `max_body`"), "{stderr}");
}

#[tokio::test]
async fn dump_without_from_start_follows_new_records() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir], &[]);
    let (status, _) =
        server.post("/v1/meeting-events", fixture("meeting-events/android-session.json"), "application/json").await;
    assert_eq!(status, 200, "an event before the dump starts, which it must not print");

    let mut follower = std::process::Command::new(crate::harness::BIN)
        .args(["stream", "dump", "--data-dir", dir])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Give the follower time to find the end of each shard before posting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (status, _) = server
        .post("/v1/meeting-events", fixture("meeting-events/ios-session-stringified.json"), "application/json")
        .await;
    assert_eq!(status, 200);
    let mut names = Vec::new();
    while names.len() < 3 {
        let line = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the follower prints new records");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["record"]["event"]["attributes"]["sdkName"], "amazon-chime-sdk-ios",
            "only records put after it started"
        );
        names.push(v["record"]["event"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["meetingStartRequested", "audioInputFailed", "meetingStartFailed"]);
    follower.kill().unwrap();
    follower.wait().unwrap();
}

/// A damaged sealed segment costs `stream dump` the records in it, said on stderr, and nothing else: it reads on.
#[tokio::test]
async fn stream_dump_reports_a_damaged_segment_and_reads_on() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(&["up", "--data-dir", dir, "--local-shards", "1", "--local-segment-bytes", "4096"], &[]);
    for batch in 0..20 {
        let events: Vec<_> = (0..5)
            .map(|i| {
                json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": "m", "attendeeId": "a", "timestampMs": 1_763_712_000_000_i64 + batch * 5 + i}})
            })
            .collect();
        let (status, _) =
            server.post("/v1/meeting-events", serde_json::to_vec(&events).unwrap(), "application/json").await;
        assert_eq!(status, 200);
    }
    server.terminate();
    let shard = data.path().join("stream/shard-0000");
    let mut segments: Vec<_> = std::fs::read_dir(&shard).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    assert!(segments.len() >= 3, "the log rolled: {segments:?}");
    // Flip a byte in the middle of the first sealed segment.
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segments[0], bytes).unwrap();

    let out = std::process::Command::new(crate::harness::BIN)
        .args(["stream", "dump", "--from-start", "--data-dir", dir])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("lost") && stderr.contains(&segments[0].display().to_string()), "{stderr}");
    let lines = String::from_utf8(out.stdout).unwrap().lines().count();
    assert!(lines > 0 && lines < 100, "the records outside the damage are dumped: {lines} of 100");
}
