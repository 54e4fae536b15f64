//! Under the faults production throws, no acknowledged event is lost: a fault-injecting proxy
//! (`scripts/fault_proxy.py`) sits between chimewatch and the emulators and throttles, fails part of each PutRecords,
//! answers 500, delays and resets connections, while clients post at a steady rate. Then the stream, CloudWatch,
//! CloudWatch Logs and S3 are read directly and compared with what clients got 2xx for.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, aws_env, borrow, dump, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};

/// The fault-injecting proxy in front of one emulator, stopped when dropped.
pub struct FaultProxy {
    pub url: String,
    child: Child,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        let python = std::env::var("CHIMEWATCH_TEST_PYTHON").expect("CHIMEWATCH_TEST_PYTHON: run scripts/test.sh");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fault_proxy.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(upstream)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the fault proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("the proxy's address").to_owned();
        Self { url, child }
    }

    pub async fn rule(&self, rule: Value) {
        let r = reqwest::Client::new().post(format!("{}/_faults", self.url)).json(&rule).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 201, "{rule}");
    }

    pub async fn clear(&self) {
        reqwest::Client::new().delete(format!("{}/_faults", self.url)).send().await.unwrap();
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/_faults/stats", self.url)).await.unwrap().json().await.unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients posting batches of uniquely numbered events without retrying, so that what they got 2xx for is exactly
/// what must be found downstream. Every answer's status is counted; a 429 or 503 must carry `Retry-After`.
#[derive(Default, Clone)]
pub struct Load {
    pub acked: Arc<Mutex<BTreeSet<String>>>,
    pub statuses: Arc<Mutex<BTreeMap<u16, usize>>>,
    pub without_retry_after: Arc<Mutex<usize>>,
    /// Requests that got no answer (the server was down or the connection broke).
    pub unanswered: Arc<Mutex<usize>>,
    /// Set to end the load before its deadline.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

pub const EVENTS_PER_REQUEST: usize = 20;

/// Where the load posts: a URL that the test may change while clients run (a restarted server has a new port).
pub type Target = Arc<Mutex<String>>;

pub fn target(url: String) -> Target {
    Arc::new(Mutex::new(url))
}

/// The event times of a load.
#[derive(Debug, Clone, Copy)]
pub enum Stamps {
    /// Counting up in milliseconds from a start, per client, so that every run has the same windows.
    From(i64),
    /// The wall clock when the request is sent, as SDK clients stamp events.
    Now,
}

pub fn numbered_batch(client: usize, request: usize, stamps: Stamps) -> (Vec<String>, Vec<u8>) {
    let seqs: Vec<String> = (0..EVENTS_PER_REQUEST).map(|i| format!("{client}-{request}-{i}")).collect();
    let now = chimewatch_stream::system_clock().as_i64();
    let events: Vec<Value> = seqs
        .iter()
        .enumerate()
        .map(|(i, seq)| {
            let timestamp = match stamps {
                Stamps::From(t0) => t0 + (request * EVENTS_PER_REQUEST + i) as i64,
                Stamps::Now => now,
            };
            json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": format!("fault-meeting-{}", request % 5), "attendeeId": format!("attendee-{client}"),
                "sdkName": "amazon-chime-sdk-js", "timestampMs": timestamp, "loadSeq": seq}})
        })
        .collect();
    (seqs, serde_json::to_vec(&events).unwrap())
}

impl Load {
    /// `clients` post to `url` until `until`, each about every `pace`.
    pub async fn run(&self, url: &Target, clients: usize, until: Instant, pace: Duration, stamps: Stamps) {
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let (load, url) = (self.clone(), url.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
                    let mut request = 0;
                    while Instant::now() < until && !load.stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (seqs, body) = numbered_batch(client, request, stamps);
                        request += 1;
                        let to = url.lock().unwrap().clone();
                        let answer = http.post(to).header("content-type", "application/json").body(body).send().await;
                        let Ok(answer) = answer else {
                            *load.unanswered.lock().unwrap() += 1;
                            tokio::time::sleep(pace).await;
                            continue;
                        };
                        let status = answer.status().as_u16();
                        *load.statuses.lock().unwrap().entry(status).or_default() += 1;
                        if matches!(status, 429 | 503) && answer.headers().get("retry-after").is_none() {
                            *load.without_retry_after.lock().unwrap() += 1;
                        }
                        if status == 200 {
                            let body: Value = answer.json().await.unwrap_or(Value::Null);
                            if body["accepted"] == EVENTS_PER_REQUEST {
                                load.acked.lock().unwrap().extend(seqs);
                            }
                        }
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
}

/// Waits until a consumer application's checkpoints (in its DynamoDB lease table on moto) reach the last record of
/// each shard in the dumped `lines`, so that stopping it leaves nothing unread; panics after `timeout`.
pub async fn wait_until_checkpointed(moto: &str, table: &str, lines: &[Value], timeout: Duration) {
    use chimewatch_stream::SequenceNumber;
    use chimewatch_stream::lease::{Checkpoint, LeaseStore};
    let mut ends: BTreeMap<String, (SequenceNumber, u64)> = BTreeMap::new();
    for l in lines {
        let (Some(shard), Some(seq)) =
            (l["shardId"].as_str(), l["sequenceNumber"].as_str().and_then(|s| SequenceNumber::parse(s).ok()))
        else {
            continue;
        };
        let at = (seq, l["subSequenceNumber"].as_u64().unwrap_or(0));
        let end = ends.entry(shard.to_owned()).or_insert_with(|| at.clone());
        if at > *end {
            *end = at;
        }
    }
    let store =
        chimewatch_stream::lease::dynamodb::DynamoLeaseStore::open(crate::leases::client(moto), table).await.unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let leases = store.list().await.unwrap_or_default();
        let behind: Vec<&String> = ends
            .iter()
            .filter(|(shard, (seq, sub))| {
                !leases.iter().any(|l| {
                    &l.shard_id == *shard
                        && match &l.checkpoint {
                            Checkpoint::At { sequence, sub_sequence } => (sequence, sub_sequence) >= (seq, sub),
                            Checkpoint::ShardEnd => true,
                            Checkpoint::TrimHorizon => false,
                        }
                })
            })
            .map(|(shard, _)| shard)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{table}: shards {behind:?} not checkpointed to their end in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `loadSeq` of every event in dumped records, with how often each appears.
pub fn dumped_seqs(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in lines {
        if let Some(seq) = l["record"]["event"]["attributes"]["loadSeq"].as_str() {
            *out.entry(seq.to_owned()).or_default() += 1;
        }
    }
    out
}

/// The throttled answers of one AWS service counted on `/metrics`.
fn throttled(text: &str, service: &str) -> f64 {
    let label = format!("service=\"{service}\"");
    text.lines()
        .filter(|l| l.starts_with("chimewatch_aws_throttled_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn under_every_kinesis_fault_the_gateway_loses_no_acknowledged_event() {
    let moto = moto_url();
    let stream = unique("it-faults-kinesis");
    create_stream(&kinesis_client(&moto), &stream, 4).await;
    let proxy = FaultProxy::start(&moto);
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_KINESIS", proxy.url.clone()));
    let gateway = Server::start(
        &[
            "gateway",
            "--stream",
            &stream,
            "--pipeline-metrics",
            "false",
            "--linger-ms",
            "20",
            "--max-in-flight-bytes",
            "262144",
            "--put-timeout",
            "2s",
        ],
        &borrow(&env),
    );
    let url = target(gateway.url("/v1/meeting-events"));
    let load = Load::default();
    let t0 = Stamps::From(chimewatch_stream::system_clock().as_i64());
    let phases = [
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "throttle", "rate": 0.5}),
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "partial", "rate": 0.3}),
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "error500", "rate": 0.3}),
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "latency", "latency_ms": 400}),
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "reset", "rate": 0.2}),
        // An outage: every put throttled. Clients are told to come back (503 with Retry-After) after the put timeout.
        json!({"service": "kinesis", "operation": "PutRecords", "mode": "throttle", "rate": 1.0}),
    ];
    let phase = Duration::from_secs(4);
    let until = Instant::now() + phase * (phases.len() as u32 + 1);
    let running = {
        let (load, url) = (load.clone(), url.clone());
        tokio::spawn(async move { load.run(&url, 8, until, Duration::from_millis(20), t0).await })
    };
    let mut acked_per_phase = Vec::new();
    for rule in &phases {
        proxy.clear().await;
        proxy.rule(rule.clone()).await;
        let before = load.acked.lock().unwrap().len();
        tokio::time::sleep(phase).await;
        acked_per_phase.push((rule["mode"].as_str().unwrap().to_owned(), load.acked.lock().unwrap().len() - before));
    }
    proxy.clear().await;
    running.await.unwrap();
    let metrics = reqwest::get(gateway.url("/metrics")).await.unwrap().text().await.unwrap();
    let stats = proxy.stats().await;
    drop(gateway);

    let lines = dump(&["--stream", &stream], &borrow(&aws_env(&moto)));
    let stored = dumped_seqs(&lines);
    let acked = load.acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains_key(*s)).collect();
    let statuses = load.statuses.lock().unwrap().clone();
    eprintln!(
        "kinesis faults: acknowledged per phase {acked_per_phase:?}; answers {statuses:?}; injected {}, entries failed {}",
        stats["injected_by_mode"], stats["entries_failed"]
    );
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let (faults, outage) = acked_per_phase.split_at(acked_per_phase.len() - 1);
    assert!(faults.iter().all(|(_, n)| *n > 0), "load was held under every fault: {acked_per_phase:?}");
    assert!(statuses.keys().all(|s| matches!(s, 200 | 429 | 503)), "{statuses:?}");
    assert!(
        statuses.get(&503).is_some_and(|n| *n > 0),
        "during the outage ({outage:?}) clients were told to come back: {statuses:?}"
    );
    assert_eq!(*load.without_retry_after.lock().unwrap(), 0, "every 429/503 carries Retry-After");
    assert!(stats["injected"].as_u64().unwrap() > 0 && stats["entries_failed"].as_u64().unwrap() > 0, "{stats}");
    assert!(metric(&metrics, "chimewatch_stream_retries_total") > 0.0, "retries show on /metrics");
    assert!(metric(&metrics, "chimewatch_stream_throttles_total") > 0.0, "throttles show on /metrics");
}

#[tokio::test]
async fn under_kinesis_dynamodb_cloudwatch_and_logs_faults_the_aggregator_publishes_everything_once() {
    let moto = moto_url();
    let bridge = crate::pipeline::cloudwatch_url();
    let stream = unique("it-faults-aggregator");
    let namespace = unique("ChimeWatchTest/Faults");
    let group = unique("/chimewatch/it-faults");
    create_stream(&kinesis_client(&moto), &stream, 2).await;
    let cw_proxy = FaultProxy::start(&bridge);
    let logs_proxy = FaultProxy::start(&moto);
    // The consumer side too: reads throttled and failing, lease writes throttled.
    let read_proxy = FaultProxy::start(&moto);
    let lease_proxy = FaultProxy::start(&moto);
    for (proxy, rule) in [
        (&read_proxy, json!({"service": "kinesis", "operation": "GetRecords", "mode": "throttle", "rate": 0.4})),
        (&read_proxy, json!({"service": "kinesis", "operation": "GetRecords", "mode": "error500", "rate": 0.2})),
        (
            &read_proxy,
            json!({"service": "kinesis", "operation": "GetRecords", "mode": "latency", "latency_ms": 300, "rate": 0.3}),
        ),
        (
            &lease_proxy,
            json!({"service": "dynamodb", "mode": "throttle", "rate": 0.2, "error_code": "ThrottlingException"}),
        ),
        (&cw_proxy, json!({"service": "cloudwatch", "operation": "PutMetricData", "mode": "throttle", "rate": 0.5})),
        (&cw_proxy, json!({"service": "cloudwatch", "operation": "PutMetricData", "mode": "error500", "rate": 0.3})),
        (&logs_proxy, json!({"service": "logs", "operation": "PutLogEvents", "mode": "throttle", "rate": 0.5})),
        (&logs_proxy, json!({"service": "logs", "operation": "PutLogEvents", "mode": "reset", "rate": 0.2})),
    ] {
        proxy.rule(rule).await;
    }
    let env = aws_env(&moto);
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let mut faulty = aws_env(&moto);
    faulty.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_proxy.url.clone()));
    faulty.push(("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", logs_proxy.url.clone()));
    faulty.push(("AWS_ENDPOINT_URL_KINESIS", read_proxy.url.clone()));
    faulty.push(("AWS_ENDPOINT_URL_DYNAMODB", lease_proxy.url.clone()));
    let lease_table = unique("it-faults-leases");
    let aggregator = Server::start(
        &[
            "aggregator",
            "--stream",
            &stream,
            "--lease-table",
            &lease_table,
            "--namespace",
            &namespace,
            "--log-group",
            &group,
            "--window-secs",
            "60",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "2",
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&faulty),
    );
    let load = Load::default();
    let t0 = Stamps::From(chimewatch_stream::system_clock().as_i64() - 600_000);
    load.run(
        &target(gateway.url("/v1/meeting-events")),
        4,
        Instant::now() + Duration::from_secs(6),
        Duration::from_millis(50),
        t0,
    )
    .await;
    let acked = load.acked.lock().unwrap().len();
    assert!(acked > 0);

    // Everything acknowledged is counted once in CloudWatch and logged once, however often a request failed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let logs = crate::harness::logs_client(&moto);
    let (counted, logged) = loop {
        let data = crate::harness::captured_datums(&bridge, &namespace).await;
        let counted: f64 = data
            .iter()
            .filter(|d| {
                d["MetricName"] == "meetingStartRequested" && d["Dimensions"].as_array().is_some_and(Vec::is_empty)
            })
            .map(|d| d["Value"].as_f64().unwrap())
            .sum();
        let logged = crate::harness::all_log_events(&logs, &group).await;
        if (counted as usize >= acked && logged.len() >= acked) || Instant::now() > deadline {
            break (counted, logged);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let metrics = reqwest::get(aggregator.url("/metrics")).await.unwrap().text().await.unwrap();
    let (cw_stats, logs_stats) = (cw_proxy.stats().await, logs_proxy.stats().await);
    let (read_stats, lease_stats) = (read_proxy.stats().await, lease_proxy.stats().await);
    aggregator.terminate();
    drop(gateway);
    eprintln!(
        "aggregator faults: {acked} acknowledged; counted {counted}; logged {}; injected: cloudwatch {}, logs {}, \
         kinesis reads {}, lease table {}",
        logged.len(),
        cw_stats["injected_by_mode"],
        logs_stats["injected_by_mode"],
        read_stats["injected_by_mode"],
        lease_stats["injected_by_mode"],
    );
    assert_eq!(counted as usize, acked, "each acknowledged event counted exactly once");
    let seqs: BTreeSet<&str> = logged.iter().filter_map(|(_, m)| m["attributes"]["loadSeq"].as_str()).collect();
    assert_eq!((logged.len(), seqs.len()), (acked, acked), "each acknowledged event logged exactly once");
    for stats in [&cw_stats, &logs_stats, &read_stats, &lease_stats] {
        assert!(stats["injected"].as_u64().unwrap() > 0, "{stats}");
    }
    for service in ["kinesis", "dynamodb", "logs"] {
        assert!(throttled(&metrics, service) > 0.0, "{service}'s throttles show on /metrics:\n{metrics}");
    }
    // The SDK retries a throttle or a 5xx itself a few times before the aggregator sees a failure; either way it
    // shows on /metrics.
    let retried = metric(&metrics, "chimewatch_aggregator_publish_failures_total")
        + metric(&metrics, "chimewatch_aws_retries_total");
    assert!(retried > 0.0, "retries show on /metrics:\n{metrics}");
}

#[tokio::test]
async fn under_s3_faults_the_archiver_archives_every_acknowledged_event_once() {
    let moto = moto_url();
    let stream = unique("it-faults-archiver");
    let bucket = unique("it-faults-archive").to_lowercase();
    create_stream(&kinesis_client(&moto), &stream, 2).await;
    crate::archive::s3_client(&moto).create_bucket().bucket(&bucket).send().await.unwrap();
    let proxy = FaultProxy::start(&moto);
    for rule in [
        json!({"service": "s3", "operation": "PutObject", "mode": "error500", "rate": 0.3}),
        json!({"service": "s3", "operation": "PutObject", "mode": "reset", "rate": 0.2}),
        json!({"service": "s3", "mode": "throttle", "rate": 0.2}),
    ] {
        proxy.rule(rule).await;
    }
    let env = aws_env(&moto);
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let mut faulty = aws_env(&moto);
    faulty.push(("AWS_ENDPOINT_URL_S3", proxy.url.clone()));
    let spool = tempfile::tempdir().unwrap();
    let archiver_leases = unique("it-faults-archiver-leases");
    let archiver = Server::start(
        &[
            "archiver",
            "--stream",
            &stream,
            "--bucket",
            &bucket,
            "--lease-table",
            &archiver_leases,
            "--archive-max-age",
            "1s",
            "--archive-spool-dir",
            spool.path().to_str().unwrap(),
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&faulty),
    );
    let load = Load::default();
    let t0 = Stamps::From(1_763_596_800_000);
    load.run(
        &target(gateway.url("/v1/meeting-events")),
        4,
        Instant::now() + Duration::from_secs(6),
        Duration::from_millis(50),
        t0,
    )
    .await;
    let lines = dump(&["--stream", &stream], &borrow(&aws_env(&moto)));
    wait_until_checkpointed(&moto, &archiver_leases, &lines, Duration::from_secs(120)).await;
    let metrics = reqwest::get(archiver.url("/metrics")).await.unwrap().text().await.unwrap();
    let printed = archiver.terminate();
    assert!(printed.iter().any(|l| l.contains("wrote its buffered rows")), "{printed:?}");
    drop(gateway);
    let stats = proxy.stats().await;

    let local = tempfile::tempdir().unwrap();
    crate::archive::download_bucket(&crate::archive::s3_client(&moto), &bucket, local.path()).await;
    let rows = crate::archive::duckdb(
        local.path(),
        "SELECT json_extract_string(attributes, '$.loadSeq') AS seq, count(*) AS n \
         FROM read_parquet('meeting_events/*/*/*.parquet', hive_partitioning = true) GROUP BY seq",
    );
    let archived: BTreeMap<String, f64> =
        rows.iter().map(|r| (r["seq"].as_str().unwrap().to_owned(), crate::archive::number(&r["n"]))).collect();
    let acked = load.acked.lock().unwrap().clone();
    eprintln!(
        "archiver faults: {} acknowledged, {} archived; injected {}",
        acked.len(),
        archived.len(),
        stats["injected_by_mode"]
    );
    assert!(stats["injected"].as_u64().unwrap() > 0, "{stats}");
    assert!(throttled(&metrics, "s3") > 0.0, "S3's throttles show on /metrics:\n{metrics}");
    assert!(
        metric(&metrics, "chimewatch_aws_retries_total") + metric(&metrics, "chimewatch_archiver_write_failures_total")
            > 0.0,
        "retries show on /metrics"
    );
    for seq in &acked {
        assert_eq!(archived.get(seq), Some(&1.0), "{seq} archived exactly once");
    }
    assert_eq!(archived.len(), acked.len(), "nothing archived that was not acknowledged");
}
