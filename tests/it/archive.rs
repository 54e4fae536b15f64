//! The archiver end to end, read back with DuckDB (a Parquet reader independent of the writer): a simulated day
//! through `up` into large, correctly partitioned files that the README's query answers from, compaction keeping
//! every row; kill -9 mid-file with every acknowledged event archived exactly once; and gateway -> Kinesis (moto)
//! -> `chimewatch archiver` -> S3 (moto), compared row by row with what was posted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{BIN, Server, aws_env, borrow, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};

/// 2025-11-20T00:00:00Z: the simulated day.
const DAY: i64 = 1_763_596_800_000;
const HOUR: i64 = 3_600_000;

fn python() -> String {
    std::env::var("CHIMEWATCH_TEST_PYTHON").expect(
        "CHIMEWATCH_TEST_PYTHON is not set: run `scripts/test.sh`, which installs DuckDB into .venv for these tests",
    )
}

/// Runs DuckDB SQL in `cwd`; each result row as a JSON object.
pub(crate) fn duckdb(cwd: &Path, sql: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import duckdb, json, sys
rel = duckdb.sql(sys.stdin.read())
for row in rel.fetchall():
    print(json.dumps(dict(zip(rel.columns, row)), default=str))
"#;
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running DuckDB");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "DuckDB failed on\n{sql}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub(crate) fn number(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("{v} is not a number"))
}

/// The files of a table under a local archive, by partition directory.
fn files(archive: &Path, table: &str) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let root = archive.join(table);
    for day in std::fs::read_dir(&root).into_iter().flatten().map(|e| e.unwrap().path()) {
        for hour in std::fs::read_dir(&day).unwrap().map(|e| e.unwrap().path()) {
            let partition = hour.strip_prefix(&root).unwrap().display().to_string();
            for file in std::fs::read_dir(&hour).unwrap().map(|e| e.unwrap().path()) {
                out.entry(partition.clone()).or_default().push(file);
            }
        }
    }
    out
}

struct Attendee {
    sdk_version: &'static str,
    browser: &'static str,
    failed: bool,
    events: Vec<Value>,
}

/// A day of joins: every hour, ten meetings of three attendees on two SDK versions and three browsers; 3.32.0 on
/// Firefox fails most joins, everything else one in seven.
fn simulated_day() -> Vec<Attendee> {
    let mut out = Vec::new();
    for hour in 0..24 {
        for meeting in 0..10 {
            for attendee in 0..3 {
                let i = (hour * 10 + meeting) * 3 + attendee;
                let sdk_version = ["3.31.0", "3.32.0"][i % 2];
                let browser = ["chrome", "firefox", "safari"][(i / 2) % 3];
                let failed = i % 7 == 0 || (sdk_version == "3.32.0" && browser == "firefox" && i % 4 != 0);
                let t = DAY + hour as i64 * HOUR + meeting as i64 * 300_000 + attendee as i64 * 1_000;
                let base = json!({
                    "meetingId": format!("day-m-{hour}-{meeting}"), "attendeeId": format!("day-a-{i}"),
                    "sdkName": "amazon-chime-sdk-js", "sdkVersion": sdk_version, "browserName": browser,
                    "osName": "Mac OS", "timestampMs": t,
                });
                let with = |name: &str, at: i64, extra: Value| {
                    let mut a = base.clone();
                    a["timestampMs"] = json!(at);
                    a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
                    json!({ "name": name, "attributes": a })
                };
                let mut events = vec![with("meetingStartRequested", t, json!({}))];
                if failed {
                    events.push(with(
                        "meetingStartFailed",
                        t + 2_000,
                        json!({ "meetingStatus": "SignalingBadRequest", "meetingErrorMessage": "join failed" }),
                    ));
                } else {
                    events.push(with("meetingStartSucceeded", t + 2_000, json!({ "meetingStartDurationMs": 1_800 })));
                    events.push(with("meetingEnded", t + 600_000, json!({ "meetingDurationMs": 598_000 })));
                }
                out.push(Attendee { sdk_version, browser, failed, events });
            }
        }
    }
    out
}

async fn post_all(server: &Server, events: &[Value]) {
    for chunk in events.chunks(100) {
        let (status, body) =
            server.post("/v1/meeting-events", serde_json::to_vec(chunk).unwrap(), "application/json").await;
        assert_eq!((status, body["accepted"].as_u64()), (200, Some(chunk.len() as u64)), "{body}");
    }
}

/// Waits until the server's `/metrics` shows `metric` at `at_least` (the archiver consumes behind the gateway).
async fn wait_for_metric(server: &Server, metric: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        let value = text
            .lines()
            .filter_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .next()
            .unwrap_or(0.0);
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{metric} stayed at {value}, below {at_least}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_simulated_day_lands_in_hourly_parquet_files_that_duckdb_queries() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("chimewatch-data");
    let data_arg = data.to_str().unwrap().to_owned();
    let day = simulated_day();
    let events: Vec<Value> = day.iter().flat_map(|a| a.events.iter().cloned()).collect();

    let server = Server::start(&["up", "--data-dir", &data_arg], &[]);
    post_all(&server, &events).await;
    wait_for_metric(&server, "chimewatch_archiver_rows_total", events.len() as f64).await;
    let printed = server.terminate();
    assert!(printed.iter().any(|l| l.contains("the archiver wrote its files")), "{printed:?}");

    let archive = data.join("archive");
    let partitions = files(&archive, "meeting_events");
    let expected: BTreeSet<String> = (0..24).map(|h| format!("dt=2025-11-20/hour={h:02}")).collect();
    assert_eq!(partitions.keys().cloned().collect::<BTreeSet<_>>(), expected, "one partition per hour of the day");
    for (partition, paths) in &partitions {
        assert!(paths.len() <= 4, "{partition}: at most one file per shard in one cut: {paths:?}");
        assert!(paths.iter().all(|p| p.extension().is_some_and(|e| e == "parquet")), "{paths:?}");
    }

    let glob = "read_parquet('chimewatch-data/archive/meeting_events/*/*/*.parquet', hive_partitioning = true)";
    let check = duckdb(
        work.path(),
        &format!(
            "SELECT count(*) AS rows, count(DISTINCT (meeting_id, attendee_id, event_name)) AS distinct_rows,
                    count(*) FILTER (WHERE epoch_ms(event_time) // 3600000 % 24 != hour::INT
                                      OR epoch_ms(event_time) // 86400000 != dt - DATE '1970-01-01') AS misplaced
             FROM {glob}"
        ),
    );
    assert_eq!(number(&check[0]["rows"]) as usize, events.len(), "every event archived: {check:?}");
    assert_eq!(number(&check[0]["distinct_rows"]) as usize, events.len(), "each once");
    assert_eq!(number(&check[0]["misplaced"]), 0.0, "every row in the partition of its event time");

    // The README's query, as documented, answers from the archive what the simulated day says.
    let query =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/duckdb/join-failure-rate.sql"))
            .unwrap();
    let answer = duckdb(work.path(), &query);
    let mut truth: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for a in &day {
        let entry = truth.entry((a.sdk_version.into(), a.browser.into())).or_default();
        entry.0 += 1;
        entry.1 += u64::from(a.failed);
    }
    assert_eq!(answer.len(), truth.len(), "{answer:?}");
    for row in &answer {
        assert_eq!(row["day"], "2025-11-20");
        let key = (row["sdk_version"].as_str().unwrap().to_owned(), row["browser_name"].as_str().unwrap().to_owned());
        let (attempts, failures) = truth[&key];
        assert_eq!((number(&row["join_attempts"]) as u64, number(&row["failed_joins"]) as u64), (attempts, failures));
        let rate = (1000.0 * failures as f64 / attempts as f64).round() / 10.0;
        assert!((number(&row["failure_rate_pct"]) - rate).abs() < 0.051, "{row} vs {rate}");
    }
    assert_eq!(answer[0]["sdk_version"], "3.32.0", "the worst first");
    assert_eq!(answer[0]["browser_name"], "firefox");

    // Compaction merges each hour's files into one, and keeps every row.
    let before = duckdb(work.path(), &format!("SELECT count(*) AS n FROM {glob}"));
    let out =
        Command::new(BIN).args(["archive", "compact", "--data-dir", &data_arg, "--min-age", "0s"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("merged"), "{printed}");
    for (partition, paths) in files(&archive, "meeting_events") {
        assert_eq!(paths.len(), 1, "{partition} is one file after compaction: {paths:?}");
    }
    let after = duckdb(
        work.path(),
        &format!("SELECT count(*) AS n, count(DISTINCT (meeting_id, attendee_id, event_name)) AS d FROM {glob}"),
    );
    assert_eq!((&after[0]["n"], &after[0]["d"]), (&before[0]["n"], &before[0]["n"]), "the same rows, each once");
    assert_eq!(duckdb(work.path(), &query), answer, "the same answer");
}

fn crash_batch(round: usize, request: usize) -> Vec<Value> {
    (0..40)
        .map(|i| {
            let n = (round * 1000 + request) * 40 + i;
            json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": format!("crash-m-{}", n % 17), "attendeeId": format!("crash-a-{n}"),
                // Spread over a day, so every cut writes many files.
                "timestampMs": DAY + (n as i64 * 7_919_000) % (24 * HOUR),
                "loadSeq": n.to_string(),
            }})
        })
        .collect()
}

#[tokio::test]
async fn kill_minus_nine_mid_file_then_restart_archives_every_acknowledged_event_once() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("chimewatch-data");
    let data_arg = data.to_str().unwrap().to_owned();
    let args = ["up", "--data-dir", &data_arg, "--archive-max-age", "1s"];
    let mut acked = BTreeSet::new();
    let mut followed = 0;
    for round in 0..12 {
        let mut server = Server::start(&args, &[]);
        for request in 0..10 {
            let batch = crash_batch(round, request);
            let (status, body) =
                server.post("/v1/meeting-events", serde_json::to_vec(&batch).unwrap(), "application/json").await;
            assert_eq!((status, body["accepted"].as_u64()), (200, Some(40)));
            acked.extend(batch.iter().map(|e| e["attributes"]["loadSeq"].as_str().unwrap().to_owned()));
        }
        // Cuts of about a hundred files each run every second: kill the process in one of them.
        tokio::time::sleep(Duration::from_millis(1_000 + 97 * round as u64)).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        followed += server.printed().iter().filter(|l| l.contains("Following an earlier claim")).count();
        if round >= 3 && followed > 0 {
            break;
        }
    }
    // The last run reads what is left and ends gracefully: everything buffered is written.
    let server = Server::start(&args, &[]);
    let per_seq = "SELECT json_extract_string(attributes, '$.loadSeq') AS seq, count(*) AS n
         FROM read_parquet('chimewatch-data/archive/meeting_events/*/*/*.parquet', hive_partitioning = true)
         GROUP BY seq";
    let deadline = Instant::now() + Duration::from_secs(60);
    while duckdb(work.path(), per_seq).len() < acked.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let printed = server.terminate();
    followed += printed.iter().filter(|l| l.contains("Following an earlier claim")).count();
    assert!(followed > 0, "some restart replayed a cut that a kill interrupted");

    let rows = duckdb(work.path(), per_seq);
    let counts: BTreeMap<String, u64> =
        rows.iter().map(|r| (r["seq"].as_str().unwrap().to_owned(), number(&r["n"]) as u64)).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows archived twice: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|s| !counts.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(counts.len(), acked.len(), "nothing archived that was not sent");
    eprintln!("archive crash test: {} events, {followed} replays followed a claim", acked.len());
}

/// An S3 client for moto (path-style: moto is on an IP address).
pub(crate) fn s3_client(moto: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto)
        .force_path_style(true)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Downloads every object of the bucket under `into`, keeping the keys as paths.
pub(crate) async fn download_bucket(s3: &aws_sdk_s3::Client, bucket: &str, into: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.unwrap().contents() {
            let key = object.key().unwrap().to_owned();
            let body = s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
            let path = into.join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body.into_bytes()).unwrap();
            keys.push(key);
        }
    }
    keys
}

#[tokio::test]
async fn gateway_kinesis_archiver_s3_rows_match_what_was_posted() {
    let moto = moto_url();
    let cw_url = crate::pipeline::cloudwatch_url();
    let stream = unique("it-archiver");
    let bucket = unique("it-archive").to_lowercase();
    let pipeline_namespace = unique("ChimeWatchTest/ArchiverPipeline");
    create_stream(&kinesis_client(&moto), &stream, 2).await;
    s3_client(&moto).create_bucket().bucket(&bucket).send().await.unwrap();
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.clone()));
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let spool = tempfile::tempdir().unwrap();
    let archiver = Server::start(
        &[
            "archiver",
            "--stream",
            &stream,
            "--bucket",
            &bucket,
            "--prefix",
            "lake/v1",
            "--lease-table",
            &unique("it-archiver-leases"),
            "--failover-secs",
            "3",
            "--archive-max-age",
            "2s",
            "--archive-spool-dir",
            spool.path().to_str().unwrap(),
            "--pipeline-metrics-interval-secs",
            "1",
            "--pipeline-namespace",
            &pipeline_namespace,
        ],
        &borrow(&env),
    );

    let events: Vec<Value> = simulated_day().into_iter().take(60).flat_map(|a| a.events).collect();
    post_all(&gateway, &events).await;
    let sip = crate::harness::fixture("sip/voice-connector-sip-messages.jsonl");
    let (status, body) = gateway.post("/v1/sip-messages", sip, "application/x-ndjson").await;
    assert_eq!(status, 200, "{body}");
    let sip_lines = body["accepted"].as_u64().unwrap() as usize;

    // Files land as cuts come due; wait for a first, then stop the archiver, which writes the rest.
    let s3 = s3_client(&moto);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = s3.list_objects_v2().bucket(&bucket).prefix("lake/v1/meeting_events/").send().await.unwrap();
        if !listed.contents().is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let printed = archiver.terminate();
    assert!(printed.iter().any(|l| l.contains("wrote its buffered rows")), "{printed:?}");
    drop(gateway);

    let local = tempfile::tempdir().unwrap();
    let keys = download_bucket(&s3, &bucket, local.path()).await;
    assert!(keys.iter().any(|k| k.starts_with("lake/v1/meeting_events/dt=2025-11-20/hour=00/")), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("lake/v1/")), "{keys:?}");
    // Claims of checkpointed cuts stay a day as tombstones, so that an owner that lost a shard while paused cannot
    // claim its rows again.
    for claim in keys.iter().filter(|k| k.starts_with("lake/v1/_chimewatch/cuts/")) {
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(local.path().join(claim)).unwrap()).unwrap();
        assert!(body["checkpointedAtMs"].is_i64(), "{claim} is a tombstone: {body}");
    }

    let rows = duckdb(
        local.path(),
        "SELECT event_name, meeting_id, attendee_id, epoch_ms(event_time) AS event_time_ms, sdk_name, sdk_version,
                browser_name, os_name, meeting_status, meeting_error_message, meeting_start_duration_ms,
                meeting_duration_ms, attributes, shard_id, sequence_number, dt::VARCHAR AS dt, hour
         FROM read_parquet('lake/v1/meeting_events/*/*/*.parquet', hive_partitioning = true)",
    );
    assert_eq!(rows.len(), events.len(), "one row per event posted");
    let by_key: BTreeMap<(String, String, String), &Value> = rows
        .iter()
        .map(|r| {
            let key = (
                r["meeting_id"].as_str().unwrap(),
                r["attendee_id"].as_str().unwrap(),
                r["event_name"].as_str().unwrap(),
            );
            ((key.0.to_owned(), key.1.to_owned(), key.2.to_owned()), r)
        })
        .collect();
    assert_eq!(by_key.len(), events.len(), "each once");
    for event in &events {
        let a = &event["attributes"];
        let key = (
            a["meetingId"].as_str().unwrap().to_owned(),
            a["attendeeId"].as_str().unwrap().to_owned(),
            event["name"].as_str().unwrap().to_owned(),
        );
        let row = by_key[&key];
        let t = a["timestampMs"].as_i64().unwrap();
        assert_eq!(number(&row["event_time_ms"]) as i64, t, "{row}");
        assert_eq!(row["sdk_name"], a["sdkName"]);
        assert_eq!(row["sdk_version"], a["sdkVersion"]);
        assert_eq!(row["browser_name"], a["browserName"]);
        assert_eq!(row["os_name"], a["osName"]);
        assert_eq!(row["meeting_status"], a.get("meetingStatus").cloned().unwrap_or(Value::Null));
        assert_eq!(row["meeting_error_message"], a.get("meetingErrorMessage").cloned().unwrap_or(Value::Null));
        let whole = |k: &str| a.get(k).map_or(Value::Null, |v| json!(v.as_i64().unwrap()));
        assert_eq!(row["meeting_start_duration_ms"], whole("meetingStartDurationMs"));
        assert_eq!(row["meeting_duration_ms"], whole("meetingDurationMs"));
        let archived: Value = serde_json::from_str(row["attributes"].as_str().unwrap()).unwrap();
        for (k, v) in a.as_object().unwrap() {
            assert_eq!(&archived[k], v, "attribute {k} kept as posted: {archived}");
        }
        assert_eq!(row["dt"], "2025-11-20");
        assert_eq!(row["hour"].as_str().unwrap(), format!("{:02}", (t - DAY) / HOUR));
        assert!(row["shard_id"].as_str().unwrap().starts_with("shardId-"));
        assert!(row["sequence_number"].as_str().unwrap().chars().all(|c| c.is_ascii_digit()));
    }

    let sip_rows = duckdb(
        local.path(),
        "SELECT count(*) AS n, count(*) FILTER (WHERE sip_method = 'INVITE') AS invites, count(DISTINCT call_id) AS calls
         FROM read_parquet('lake/v1/sip_messages/*/*/*.parquet', hive_partitioning = true)",
    );
    assert_eq!(number(&sip_rows[0]["n"]) as usize, sip_lines, "every SIP record: {sip_rows:?}");
    assert!(number(&sip_rows[0]["invites"]) > 0.0 && number(&sip_rows[0]["calls"]) > 1.0, "{sip_rows:?}");

    // Compaction over S3 merges each partition's files and keeps every row.
    let files_before = keys.iter().filter(|k| k.contains("/meeting_events/")).count();
    let out = Command::new(BIN)
        .args(["archive", "compact", "--bucket", &bucket, "--prefix", "lake/v1", "--min-age", "0s"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compacted = tempfile::tempdir().unwrap();
    let keys_after = download_bucket(&s3, &bucket, compacted.path()).await;
    let files_after = keys_after.iter().filter(|k| k.contains("/meeting_events/")).count();
    let partitions: BTreeSet<&str> =
        keys_after.iter().filter(|k| k.contains("/meeting_events/")).map(|k| k.rsplit_once('/').unwrap().0).collect();
    assert_eq!(files_after, partitions.len(), "one file per partition ({files_before} before)");
    let recount = duckdb(
        compacted.path(),
        "SELECT count(DISTINCT (meeting_id, attendee_id, event_name)) AS d, count(*) AS n
         FROM read_parquet('lake/v1/meeting_events/*/*/*.parquet', hive_partitioning = true)",
    );
    assert_eq!((number(&recount[0]["n"]) as usize, number(&recount[0]["d"]) as usize), (events.len(), events.len()));

    // `chimewatch explain` reads the S3 archive: an attendee whose join was refused, its meeting, and a call.
    let explain = |what: &[&str]| -> Value {
        let out = Command::new(BIN)
            .args(["explain", "--json", "--bucket", &bucket, "--prefix", "lake/v1", "--since", "800d"])
            .args(what)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success(), "explain {what:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let refused = explain(&["--attendee", "day-a-0"]);
    assert_eq!(
        (refused["verdict"]["cause"].as_str(), refused["outcome"]["ending"].as_str()),
        (Some("authenticationRejected"), Some("joinFailed")),
        "{refused:#}"
    );
    assert_eq!(refused["timeline"].as_array().unwrap().len(), 2, "both of its events, once: {refused:#}");
    let meeting = explain(&["--meeting", "day-m-0-0"]);
    assert!(
        meeting["findings"][0].as_str().unwrap().starts_with("Only day-a-0 failed (authenticationRejected) while 2"),
        "{meeting:#}"
    );
    let call = explain(&["--call", "vc-call-0001"]);
    assert_eq!(
        (call["verdict"].as_str(), call["setupMs"].as_i64(), call["postDialDelayMs"].as_i64()),
        (Some("answered"), Some(4_200), Some(950))
    );

    // The archiver's health reached CloudWatch.
    let pipeline = crate::harness::captured_datums(&cw_url, &pipeline_namespace).await;
    let total = |name: &str| -> f64 {
        pipeline
            .iter()
            .filter(|d| d["MetricName"] == name)
            .filter(|d| d["Dimensions"][0]["Value"] == "archiver")
            .map(|d| d["Value"].as_f64().unwrap_or(0.0))
            .sum()
    };
    assert_eq!(total("ArchiverRowsWritten") as usize, events.len() + sip_lines, "rows reported");
    assert!(total("ArchiverObjects") >= 2.0 && total("ArchiverBytes") > 0.0);
    assert!(pipeline.iter().any(|d| d["MetricName"] == "ArchiverCommitLatency"), "{pipeline:?}");
}

#[tokio::test]
async fn s3_objects_stream_large_files_in_parts_and_create_only_once() {
    use chimewatch_sinks::ObjectStore;
    use chimewatch_sinks::s3::S3Objects;
    let moto = moto_url();
    let bucket = unique("it-objects").to_lowercase();
    let client = s3_client(&moto);
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = S3Objects::new(client, &bucket).part_bytes(5 * 1024 * 1024);

    // 11 MiB: three parts of a multipart upload, streamed from the file.
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let path = dir.path().join("big");
    std::fs::write(&path, &big).unwrap();
    store.put_file("t/dt=2026-11-21/hour=13/big.parquet", &path).await.unwrap();
    let back = dir.path().join("back");
    store.download("t/dt=2026-11-21/hour=13/big.parquet", &back).await.unwrap();
    assert!(std::fs::read(&back).unwrap() == big, "the object is the file, byte for byte");
    let listed = store.list("t/").await.unwrap();
    assert_eq!((listed.len(), listed[0].size), (1, big.len() as u64));

    assert!(store.create_new("claims/a.json", bytes::Bytes::from_static(b"first")).await.unwrap());
    assert!(!store.create_new("claims/a.json", bytes::Bytes::from_static(b"second")).await.unwrap(), "412");
    assert_eq!(store.get("claims/a.json").await.unwrap().unwrap(), "first");
    assert_eq!(store.get("claims/none.json").await.unwrap(), None);
    store.delete(&["claims/a.json".into(), "claims/never.json".into()]).await.unwrap();
    assert_eq!(store.get("claims/a.json").await.unwrap(), None);
}
