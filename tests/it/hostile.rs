//! What a client sends cannot stop or corrupt what the pipeline reports: dimension values CloudWatch would refuse
//! become values it accepts (checked by the strict CloudWatch of the test harness, which refuses what CloudWatch
//! refuses), in AWS form and in `up`; every bad-input fixture gets its documented 4xx on a real socket while the
//! valid events of a batch are kept; and secrets never show in logs or on `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{BIN, Server, aws_env, borrow, fixture, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};
use crate::pipeline::cloudwatch_url;

/// Events whose dimension values CloudWatch refuses as sent, and one ordinary event.
fn hostile_batch(t: i64) -> Vec<u8> {
    let event = |attendee: &str, sdk: &str, status: &str| {
        json!({"name": "meetingFailed", "attributes": {
            "meetingId": "m-hostile", "attendeeId": attendee, "sdkName": sdk, "meetingStatus": status, "timestampMs": t}})
    };
    serde_json::to_vec(&json!([
        event("a1", "caf\u{e9}\u{7} ", "TaskFailed"),
        event("a2", "   ", "TaskFailed"),
        event("a3", "amazon-chime-sdk-js", &"S".repeat(2000)),
        event("a4", "amazon-chime-sdk-js", "TaskFailed"),
    ]))
    .unwrap()
}

fn valid_dimension_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x20..0x7f).contains(&b)) && !v.trim().is_empty()
}

#[tokio::test]
async fn hostile_dimension_values_reach_the_strict_cloudwatch_as_values_it_accepts() {
    let moto = moto_url();
    let cw_url = cloudwatch_url();
    let stream = unique("it-hostile");
    let namespace = unique("ChimeWatchTest/Hostile");
    create_stream(&kinesis_client(&moto), &stream, 1).await;
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.clone()));
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let lease_table = unique("it-hostile-leases");
    let aggregator = Server::start(
        &[
            "aggregator",
            "--stream",
            &stream,
            "--lease-table",
            &lease_table,
            "--namespace",
            &namespace,
            "--event-logs",
            "false",
            "--window-secs",
            "60",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "2",
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&env),
    );
    let now = chimewatch_stream::system_clock().as_i64();
    let (status, body) = gateway.post("/v1/meeting-events", hostile_batch(now - 120_000), "application/json").await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(4)), "{body}");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let published = loop {
        let data = crate::harness::captured_datums(&cw_url, &namespace).await;
        let failed: f64 = data
            .iter()
            .filter(|d| d["MetricName"] == "meetingFailed" && d["Dimensions"].as_array().is_some_and(Vec::is_empty))
            .map(|d| d["Value"].as_f64().unwrap())
            .sum();
        if failed >= 4.0 {
            break data;
        }
        assert!(std::time::Instant::now() < deadline, "the window was not published: {data:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let values: Vec<String> = published
        .iter()
        .flat_map(|d| d["Dimensions"].as_array().cloned().unwrap_or_default())
        .map(|d| d["Value"].as_str().unwrap().to_owned())
        .collect();
    assert!(values.iter().all(|v| valid_dimension_value(v)), "{values:?}");
    for expected in ["caf%C3%A9%07", "unknown", "TaskFailed", "amazon-chime-sdk-js"] {
        assert!(values.iter().any(|v| v == expected), "{expected} not in {values:?}");
    }
    assert!(values.iter().any(|v| v.len() == 1024 && v.starts_with("SSSS") && v.contains('~')), "{values:?}");
    let rejected: Vec<Value> = reqwest::get(format!("{cw_url}/rejected?namespace={}", namespace.replace('/', "%2F")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rejected, Vec::<Value>::new(), "the strict CloudWatch refused nothing");
    aggregator.terminate();
    drop(gateway);
}

#[tokio::test]
async fn up_stores_only_dimension_values_cloudwatch_would_accept() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let server = Server::start(
        &["up", "--data-dir", dir, "--window-secs", "1", "--out-of-orderness-secs", "0", "--idle-timeout-secs", "1"],
        &[],
    );
    let now = chimewatch_stream::system_clock().as_i64();
    let (status, body) = server.post("/v1/meeting-events", hostile_batch(now - 5_000), "application/json").await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(4)), "{body}");
    let list = || -> Vec<Value> {
        let out = std::process::Command::new(BIN)
            .args(["metrics", "list", "--data-dir", dir, "--metric", "meetingFailed", "--since", "1h"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let series = loop {
        let series = list();
        if series.len() >= 6 {
            break series;
        }
        assert!(std::time::Instant::now() < deadline, "{series:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for s in &series {
        assert_eq!(s["namespace"], "AmazonChimeSDKMeetingEvents");
        for (_, v) in s["dimensions"].as_object().unwrap() {
            assert!(valid_dimension_value(v.as_str().unwrap()), "{s}");
        }
    }
    let sdks: Vec<&str> = series.iter().filter_map(|s| s["dimensions"]["sdkName"].as_str()).collect();
    assert!(sdks.contains(&"caf%C3%A9%07") && sdks.contains(&"unknown"), "{sdks:?}");
    drop(server);
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_answer_and_the_valid_events_are_kept() {
    use rand::{RngExt, SeedableRng};

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&["up", "--data-dir", data.path().to_str().unwrap()], &[]);
    let client = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, gzip: bool| {
        let mut req = client.post(server.url(path)).header("content-type", "application/json");
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        async move {
            let response = req.body(body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Every file of fixtures/bad-input, with its answer: the status, and what the error or first rejection says.
    let expected: BTreeMap<&str, (u16, &str)> = BTreeMap::from([
        ("not-an-array.json", (400, "JSON array")),
        ("truncated.json", (400, "not valid JSON")),
        ("invalid-utf8.json", (400, "UTF-8")),
        ("gzip-bomb.json.gz", (413, "inflates past")),
        // Mistakes inside one element are that element's rejection.
        ("duplicate-keys.json", (200, "duplicate key")),
        ("deep-nesting.json", (200, "recursion limit")),
        ("wrong-types.json", (200, "name")),
        // A huge history is capped, not refused.
        ("huge-history.json", (200, "")),
    ]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad-input");
    let files: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files, expected.keys().map(|f| (*f).to_owned()).collect(), "every bad-input fixture has its answer");
    for (file, (status, says)) in &expected {
        let (code, body) =
            post("/v1/meeting-events", fixture(&format!("bad-input/{file}")), file.ends_with(".gz")).await;
        assert_eq!(code, *status, "{file}: {body}");
        let said = if code == 200 { &body["rejected"][0]["error"] } else { &body["error"] };
        assert!(said.as_str().unwrap_or_default().contains(says), "{file}: {body}");
    }
    let (_, body) = post("/v1/meeting-events", fixture("bad-input/huge-history.json"), false).await;
    assert_eq!(body["accepted"].as_u64(), Some(1), "{body}");
    // The valid events of a batch are kept next to the invalid ones.
    let mut mixed: Vec<Value> = serde_json::from_slice(&fixture("meeting-events/js-mixed-meetings.json")).unwrap();
    let bad: Vec<Value> = serde_json::from_slice(&fixture("bad-input/wrong-types.json")).unwrap();
    let good = mixed.len();
    mixed.extend(bad.iter().cloned());
    let (status, body) = post("/v1/meeting-events", serde_json::to_vec(&mixed).unwrap(), false).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(good as u64)), "{body}");
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(bad.len()), "{body}");

    // Generated variants, on every ingest path. Each gets a documented answer, never a 5xx; a 200 accounts for
    // every element of the batch, accepted or rejected with a reason.
    let mut tried = expected.len() + 1;
    let check = |path: &str, what: &str, status: u16, body: &Value, elements: Option<usize>| {
        assert!(matches!(status, 200 | 400 | 413 | 415), "{path} {what}: {status} {body}");
        if status == 200 && path == "/v1/meeting-events" {
            let accounted = body["accepted"].as_u64().unwrap() as usize + body["rejected"].as_array().unwrap().len();
            if let Some(n) = elements {
                assert_eq!(accounted, n, "{path} {what}: {body}");
            }
            assert!(
                body["rejected"].as_array().unwrap().iter().all(|r| r["error"].as_str().is_some_and(|e| !e.is_empty()))
            );
        } else if status != 200 {
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path} {what}: {status} {body}");
        }
    };
    let valid = fixture("meeting-events/js-mixed-meetings.json");
    let events: Vec<Value> = serde_json::from_slice(&valid).unwrap();
    // Every attribute of every event, as each JSON type.
    let swaps = [json!(null), json!(-1), json!(1e308), json!("x"), json!([1, 2]), json!({"a": {}}), json!(true)];
    for (i, event) in events.iter().enumerate() {
        for key in event["attributes"].as_object().unwrap().keys() {
            for swap in &swaps {
                let mut batch = events.clone();
                batch[i]["attributes"][key] = swap.clone();
                let (status, body) = post("/v1/meeting-events", serde_json::to_vec(&batch).unwrap(), false).await;
                check("/v1/meeting-events", &format!("{key} = {swap}"), status, &body, Some(batch.len()));
                tried += 1;
            }
        }
    }
    // Every prefix (every 97th byte), and random byte mutations, of a valid batch of each kind.
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for (path, body) in [
        ("/v1/meeting-events", valid.clone()),
        ("/v1/sip-messages", fixture("sip/voice-connector-sip-messages.jsonl")),
        ("/v1/client-events", fixture("sdk-ingestion/android-batch.json")),
    ] {
        for cut in (0..body.len()).step_by(97) {
            let (status, answer) = post(path, body[..cut].to_vec(), false).await;
            check(path, &format!("prefix of {cut} bytes"), status, &answer, None);
            tried += 1;
        }
        for _ in 0..100 {
            let mut mutated = body.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..mutated.len());
                mutated[at] = rng.random();
            }
            let (status, answer) = post(path, mutated, false).await;
            check(path, "a mutation", status, &answer, None);
            tried += 1;
        }
    }
    eprintln!("hostile input: {tried} bad requests tried through the binary, each with its documented answer");
    drop(server);
}

#[tokio::test]
async fn secrets_never_show_in_logs_or_on_metrics() {
    let data = tempfile::tempdir().unwrap();
    let (key, secret) = ("api-key-that-must-stay-secret", "token-secret-that-must-stay-secret-32b");
    let server = Server::start(
        &["up", "--data-dir", data.path().to_str().unwrap(), "--log", "debug"],
        &[("CHIMEWATCH_API_KEYS", key), ("CHIMEWATCH_TOKEN_SECRET", secret)],
    );
    let client = reqwest::Client::new();
    for auth in [key, "wrong-key", secret] {
        client
            .post(server.url("/v1/meeting-events"))
            .header("x-api-key", auth)
            .body(fixture("meeting-events/js-mixed-meetings.json"))
            .send()
            .await
            .unwrap();
    }
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let printed = server.terminate().join("\n");
    for text in [&metrics, &printed] {
        assert!(!text.contains(key) && !text.contains(secret), "a secret leaked");
    }
}

#[tokio::test]
async fn external_ids_can_be_hashed_before_they_reach_the_stream() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let key = "an-external-id-key-of-32-bytes!!";
    let server =
        Server::start(&["up", "--data-dir", dir, "--external-ids", "hash"], &[("CHIMEWATCH_EXTERNAL_ID_KEY", key)]);
    let (status, _) =
        server.post("/v1/meeting-events", fixture("meeting-events/android-session.json"), "application/json").await;
    assert_eq!(status, 200);
    drop(server);
    let dumped = crate::harness::dump(&["--data-dir", dir], &[]);
    let text = serde_json::to_string(&dumped).unwrap();
    assert!(!text.contains("user-a001") && !text.contains("standup-42"), "the ids as sent are gone");
    let user = dumped[0]["record"]["event"]["attributes"]["externalUserId"].as_str().unwrap();
    assert!(user.starts_with("hmac-sha256:"), "{user}");
}

/// Attendee tokens through the binary, during a rotation: the new and the previous secret both admit their tokens,
/// while missing, malformed, foreign-signed and other-attendee tokens get 401 or 403 with a reason.
#[tokio::test]
async fn tokens_are_checked_and_a_rotation_keeps_both_secrets_working() {
    let (new, old) = ("the-new-token-secret-of-32-bytes!", "the-old-token-secret-of-32-bytes!");
    let mint = |secret: &str, attendee: &str| {
        let out = std::process::Command::new(BIN)
            .args(["token", "mint", "--meeting-id", "m-sec", "--attendee-id", attendee, "--token-secret", secret])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &["up", "--data-dir", data.path().to_str().unwrap()],
        &[("CHIMEWATCH_TOKEN_SECRET", new), ("CHIMEWATCH_PREVIOUS_TOKEN_SECRETS", old)],
    );
    let events = serde_json::to_vec(&json!([{"name": "meetingStartRequested", "attributes": {
        "meetingId": "m-sec", "attendeeId": "a-1", "timestampMs": 1_763_712_000_000_i64}}]))
    .unwrap();
    let client = reqwest::Client::new();
    let post = |token: Option<String>| {
        let mut req = client
            .post(server.url("/v1/meeting-events"))
            .header("content-type", "application/json")
            .body(events.clone());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(post(Some(mint(new, "a-1"))).await.0, 200, "a token of the current secret");
    assert_eq!(post(Some(mint(old, "a-1"))).await.0, 200, "a token of the previous secret, during the rotation");
    for (token, status, says) in [
        (None, 401, "credentials"),
        (Some("not.a.jwt".to_owned()), 401, "token"),
        (Some(mint("a-secret-nobody-configured-32-bytes", "a-1")), 401, "InvalidSignature"),
        (Some(mint(new, "a-2")), 403, "a-2"),
    ] {
        let (code, body) = post(token.clone()).await;
        assert_eq!(code, status, "{token:?}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(says)), "{token:?}: {body}");
    }
    drop(server);
    // After the rotation, only the new secret's tokens pass.
    let server =
        Server::start(&["up", "--data-dir", data.path().to_str().unwrap()], &[("CHIMEWATCH_TOKEN_SECRET", new)]);
    let (code, body) = {
        let r = client
            .post(server.url("/v1/meeting-events"))
            .header("authorization", format!("Bearer {}", mint(old, "a-1")))
            .body(events.clone())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(code, 401, "{body}");
}
