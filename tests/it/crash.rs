//! Durability under crashes. Kill -9 `chimewatch up` while clients post, restart it, and check that every event the
//! gateway acknowledged is in the log exactly once (the load generator never retries, so nothing may repeat). Then
//! the AWS deployment on the emulators, each of its processes killed at random moments: nothing acknowledged is
//! missing from the stream, the metrics, the logs or the archive, and the duplicates stay within their bound.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use chimewatch_stream::SequenceNumber;
use chimewatch_stream::lease::Checkpoint;

use crate::harness::{Server, borrow, dump};

const CLIENTS: usize = 6;
const EVENTS_PER_REQUEST: usize = 25;

fn batch(client: usize, request: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
        .map(|i| {
            json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": format!("crash-meeting-{}", request % 4),
                "attendeeId": format!("attendee-{client}"),
                "timestampMs": 1_763_712_000_000_i64 + (request * EVENTS_PER_REQUEST + i) as i64,
                "loadSeq": format!("{client}-{request}-{i}"),
            }})
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

#[tokio::test]
async fn kill_minus_nine_loses_no_acknowledged_event() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let mut server = Server::start(&["up", "--data-dir", &dir], &[]);
    let url = server.url("/v1/meeting-events");
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(20);

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, acked, sent) = (url.clone(), acked.clone(), sent.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for request in 0.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let seqs: Vec<String> =
                        (0..EVENTS_PER_REQUEST).map(|i| format!("{client}-{request}-{i}")).collect();
                    sent.lock().unwrap().extend(seqs.iter().cloned());
                    let response = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(batch(client, request))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            if body["accepted"] == EVENTS_PER_REQUEST {
                                acked.lock().unwrap().extend(seqs);
                            }
                        }
                        // The server is gone: stop, without retrying.
                        _ => break,
                    }
                }
            })
        })
        .collect();

    // Let the load run, then crash the server mid-stream.
    while acked.lock().unwrap().len() < 2_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(acked.len() >= 2_000, "the load ran: {} acknowledged", acked.len());

    // Restart on the same directory: recovery cuts any torn tail, and the log serves again.
    let server = Server::start(&["up", "--data-dir", &dir], &[]);
    let (status, _) = server.post("/v1/meeting-events", batch(99, 0), "application/json").await;
    assert_eq!(status, 200, "the restarted gateway accepts events");
    drop(server);

    let lines = dump(&["--data-dir", &dir], &[]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let seq = l["record"]["event"]["attributes"]["loadSeq"].as_str().unwrap().to_owned();
        *counts.entry(seq).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|s| !counts.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "events stored twice: {repeated:?}");
    let unknown: Vec<_> = counts.keys().filter(|s| !sent.contains(*s) && !s.starts_with("99-")).collect();
    assert!(unknown.is_empty(), "records nobody sent: {unknown:?}");
    let in_flight = counts.len() - acked.len() - EVENTS_PER_REQUEST;
    eprintln!(
        "crash test: {} acknowledged, all present once; {in_flight} unacknowledged in-flight events were also durable",
        acked.len()
    );
}

/// One process of the AWS deployment that the test kills and restarts: how to start it, and the one running now.
struct Role {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    server: Option<Server>,
    /// Wall-clock milliseconds of each kill.
    kills: Vec<i64>,
    /// What its processes printed, collected at each `drain`.
    printed: Vec<String>,
}

impl Role {
    fn new(name: &'static str, args: &[&str], env: Vec<(&'static str, String)>) -> Self {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut role = Self { name, args, env, server: None, kills: Vec::new(), printed: Vec::new() };
        role.start();
        role
    }

    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Some(Server::start(&args, &borrow(&self.env)));
    }

    /// Collects what the running process printed so far; returns the shards it restarted from their checkpoints
    /// after an error (a replay within one worker, without a lease move).
    fn drain(&mut self) -> Vec<String> {
        let lines = self.server.as_ref().map(Server::printed).unwrap_or_default();
        let restarted = lines
            .iter()
            .filter(|l| l.contains("restarts from its checkpoint"))
            .filter_map(|l| {
                let at = l.find("shardId-")?;
                Some(l[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect())
            })
            .collect();
        self.printed.extend(lines);
        restarted
    }

    /// kill -9, then start again at once, as a supervisor would.
    fn crash(&mut self) {
        self.drain();
        let mut server = self.server.take().expect("running");
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        self.kills.push(chimewatch_stream::system_clock().as_i64());
        self.start();
    }

    fn url(&self, path: &str) -> String {
        self.server.as_ref().expect("running").url(path)
    }
}

/// A lease as one poll saw it: when, its owner, its checkpoint.
type Observed = (i64, String, Checkpoint);

/// When a shard may have been processed twice: every lease move, seen by polling the lease table, and every restart
/// of a shard from its checkpoint within a worker, seen in the workers' output. Each is kept as the shard, the
/// checkpoint the replay started from at the earliest (one seen before it), and the latest time it happened.
#[derive(Clone, Default)]
struct Replays {
    /// Per shard, the owner and checkpoint of each poll that saw a change, with when.
    seen: Arc<Mutex<BTreeMap<String, Vec<Observed>>>>,
    replays: Arc<Mutex<Vec<(String, Checkpoint, i64)>>>,
}

impl Replays {
    fn watch(&self, store: chimewatch_stream::lease::dynamodb::DynamoLeaseStore) -> tokio::task::JoinHandle<()> {
        use chimewatch_stream::lease::LeaseStore;
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(leases) = store.list().await {
                    let now = chimewatch_stream::system_clock().as_i64();
                    let mut seen = this.seen.lock().unwrap();
                    for lease in leases {
                        let Some(owner) = lease.owner else { continue };
                        let history = seen.entry(lease.shard_id.clone()).or_default();
                        match history.last() {
                            Some((_, o, c)) if *o == owner && *c == lease.checkpoint => {}
                            Some((_, before, checkpoint)) if *before != owner => {
                                let moved = (lease.shard_id.clone(), checkpoint.clone(), now);
                                this.replays.lock().unwrap().push(moved);
                                history.push((now, owner, lease.checkpoint));
                            }
                            _ => history.push((now, owner, lease.checkpoint)),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// A shard restarted from its checkpoint somewhere between `since` and `by`.
    fn restarted(&self, shard: &str, since: i64, by: i64) {
        let seen = self.seen.lock().unwrap();
        let checkpoint = seen
            .get(shard)
            .and_then(|h| h.iter().rev().find(|(at, _, _)| *at <= since))
            .map_or(Checkpoint::TrimHorizon, |(_, _, c)| c.clone());
        self.replays.lock().unwrap().push((shard.to_owned(), checkpoint, by));
    }

    /// The `loadSeq` of every record a replay may have processed twice: after the checkpoint it started from, and
    /// old enough to have been read before it (plus a lease-renewal round, the time an owner that lost its lease to
    /// a steal needs to notice).
    fn replayable(&self, lines: &[Value]) -> BTreeSet<String> {
        let replays = self.replays.lock().unwrap();
        let mut out = BTreeSet::new();
        for l in lines {
            let (Some(shard), Some(seq), Some(stamp), Some(id)) = (
                l["shardId"].as_str(),
                l["sequenceNumber"].as_str().and_then(|s| SequenceNumber::parse(s).ok()),
                l["record"]["event"]["attributes"]["timestampMs"].as_i64(),
                l["record"]["event"]["attributes"]["loadSeq"].as_str(),
            ) else {
                continue;
            };
            let sub = l["subSequenceNumber"].as_u64().unwrap_or(0);
            let after = |c: &Checkpoint| match c {
                Checkpoint::TrimHorizon => true,
                Checkpoint::At { sequence, sub_sequence } => (&seq, sub) > (sequence, *sub_sequence),
                Checkpoint::ShardEnd => false,
            };
            if replays.iter().any(|(s, c, by)| s == shard && after(c) && stamp <= by + 2_000) {
                out.insert(id.to_owned());
            }
        }
        out
    }
}

/// Collects every aggregator's output since the last call and records the shard restarts it tells of.
fn drain_restarts(roles: &mut [Role], replays: &Replays, since: &mut i64) {
    let now = chimewatch_stream::system_clock().as_i64();
    for role in roles.iter_mut().filter(|r| r.name.starts_with("aggregator")) {
        for shard in role.drain() {
            replays.restarted(&shard, *since, now);
        }
    }
    *since = now;
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The whole AWS deployment on the emulators: a gateway, two aggregator workers and two archiver workers. While
/// clients post, one process after another, in a random order and at random moments, is killed with SIGKILL and
/// restarted. Then the stream, CloudWatch (through the bridge), CloudWatch Logs and the S3 archive are compared with
/// what clients got 2xx for. `CHIMEWATCH_CRASH_ITERATIONS` (default 6) and `CHIMEWATCH_CRASH_SEED` make longer and
/// repeatable runs.
#[tokio::test]
async fn kill_minus_nine_of_any_process_at_random_moments_loses_no_acknowledged_event() {
    use rand::seq::SliceRandom;
    use rand::{RngExt, SeedableRng};

    use crate::faults::{Load, Stamps, dumped_seqs, target};
    use crate::harness::{aws_env, captured_datums, logs_client, moto_url, unique};

    let iterations: usize = setting("CHIMEWATCH_CRASH_ITERATIONS", 6);
    let seed: u64 = setting("CHIMEWATCH_CRASH_SEED", chimewatch_stream::system_clock().as_i64() as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (window_secs, out_of_orderness_secs) = (2, 1);

    let moto = moto_url();
    let bridge = crate::pipeline::cloudwatch_url();
    let stream = unique("it-crash");
    let bucket = unique("it-crash-archive").to_lowercase();
    let namespace = unique("ChimeWatchTest/Crash");
    let group = unique("/chimewatch/it-crash");
    crate::kinesis::create_stream(&crate::kinesis::client(&moto), &stream, 4).await;
    crate::archive::s3_client(&moto).create_bucket().bucket(&bucket).send().await.unwrap();
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", bridge.clone()));
    let (aggregator_leases, archiver_leases) = (unique("it-crash-aggregator"), unique("it-crash-archiver"));
    let (window, ooo) = (window_secs.to_string(), out_of_orderness_secs.to_string());
    let aggregator = [
        "aggregator",
        "--stream",
        &stream,
        "--lease-table",
        &aggregator_leases,
        "--namespace",
        &namespace,
        "--log-group",
        &group,
        "--window-secs",
        &window,
        "--out-of-orderness-secs",
        &ooo,
        "--idle-timeout-secs",
        "1",
        "--failover-secs",
        "3",
        "--pipeline-metrics",
        "false",
    ];
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_str().unwrap();
    let archiver = [
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
        spool_dir,
        "--failover-secs",
        "3",
        "--pipeline-metrics",
        "false",
    ];
    let mut roles = [
        Role::new("gateway", &["gateway", "--stream", &stream, "--pipeline-metrics", "false"], env.clone()),
        Role::new("aggregator-1", &aggregator, env.clone()),
        Role::new("aggregator-2", &aggregator, env.clone()),
        Role::new("archiver-1", &archiver, env.clone()),
        Role::new("archiver-2", &archiver, env.clone()),
    ];

    let replays = Replays::default();
    let leases =
        chimewatch_stream::lease::dynamodb::DynamoLeaseStore::open(crate::leases::client(&moto), &aggregator_leases);
    let watching = replays.watch(leases.await.unwrap());
    let mut drained = chimewatch_stream::system_clock().as_i64();
    let url = target(roles[0].url("/v1/meeting-events"));
    let load = Load::default();
    let running = {
        let (load, url) = (load.clone(), url.clone());
        // Until the test stops it: the kills decide how long the load runs.
        let until = Instant::now() + Duration::from_secs(3600);
        tokio::spawn(async move { load.run(&url, 4, until, Duration::from_millis(50), Stamps::Now).await })
    };
    let mut order: Vec<usize> = Vec::new();
    for _ in 0..iterations {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
        if order.is_empty() {
            order = (0..roles.len()).collect();
            order.shuffle(&mut rng);
        }
        drain_restarts(&mut roles, &replays, &mut drained);
        let victim = &mut roles[order.pop().unwrap()];
        victim.crash();
        if victim.name == "gateway" {
            *url.lock().unwrap() = victim.url("/v1/meeting-events");
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    running.await.unwrap();
    let acked = load.acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "the load ran");

    // The stream: every acknowledged event, once (clients never retry; a put cut short by a kill was not acknowledged).
    let stored = dumped_seqs(&dump(&["--stream", &stream], &borrow(&aws_env(&moto))));
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains_key(*s)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events missing from the stream, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored twice: {twice:?}");

    let lines = dump(&["--stream", &stream], &borrow(&aws_env(&moto)));
    // CloudWatch and CloudWatch Logs: every stored event counted and logged at least once.
    let logs = logs_client(&moto);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (counted, logged) = loop {
        let counted: f64 = captured_datums(&bridge, &namespace)
            .await
            .iter()
            .filter(|d| {
                d["MetricName"] == "meetingStartRequested" && d["Dimensions"].as_array().is_some_and(Vec::is_empty)
            })
            .map(|d| d["Value"].as_f64().unwrap())
            .sum();
        let mut logged: BTreeMap<String, usize> = BTreeMap::new();
        for (_, m) in crate::harness::all_log_events(&logs, &group).await {
            if let Some(seq) = m["attributes"]["loadSeq"].as_str() {
                *logged.entry(seq.to_owned()).or_default() += 1;
            }
        }
        let done = counted as usize >= stored.len() && logged.len() >= stored.len();
        if done || Instant::now() > deadline {
            break (counted as usize, logged);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Duplicates downstream come only from replays: after a lease moved (a crash, or a steal to rebalance) or a shard
    // restarted, of records after the checkpoint that had already been processed.
    drain_restarts(&mut roles, &replays, &mut drained);
    watching.abort();
    let replayable = replays.replayable(&lines);
    let replay_count = replays.replays.lock().unwrap().len();
    let restarts = roles.iter().flat_map(|r| &r.printed).filter(|l| l.contains("restarts from its checkpoint")).count();
    // The archivers write what they buffered when stopped, once they have read everything; then the archive is read.
    crate::faults::wait_until_checkpointed(&moto, &archiver_leases, &lines, Duration::from_secs(120)).await;
    for role in roles.iter_mut().filter(|r| r.name.starts_with("archiver")) {
        role.server.take().unwrap().terminate();
    }
    let local = tempfile::tempdir().unwrap();
    crate::archive::download_bucket(&crate::archive::s3_client(&moto), &bucket, local.path()).await;
    let rows = crate::archive::duckdb(
        local.path(),
        "SELECT json_extract_string(attributes, '$.loadSeq') AS seq, count(*) AS n \
         FROM read_parquet('meeting_events/*/*/*.parquet', hive_partitioning = true) GROUP BY seq",
    );
    let archived: BTreeMap<String, f64> =
        rows.iter().map(|r| (r["seq"].as_str().unwrap().to_owned(), crate::archive::number(&r["n"]))).collect();

    let kills: Vec<String> = roles.iter().map(|r| format!("{} x{}", r.name, r.kills.len())).collect();
    let log_duplicates: usize = logged.values().map(|n| n - 1).sum();
    let metric_duplicates = counted.saturating_sub(stored.len());
    eprintln!(
        "crash test (seed {seed}): {iterations} kills ({}); {} acknowledged, {} in the stream, {} unanswered requests; \
         counted {counted} (duplicates {metric_duplicates}), logged {} distinct (duplicates {log_duplicates}), \
         archived {} distinct; {replay_count} replays ({restarts} shard restarts), {} records replayable",
        kills.join(", "),
        acked.len(),
        stored.len(),
        load.unanswered.lock().unwrap(),
        logged.len(),
        archived.len(),
        replayable.len(),
    );
    assert!(counted >= stored.len(), "every stored event counted: {counted} of {}", stored.len());
    assert!(
        metric_duplicates <= replayable.len(),
        "{metric_duplicates} events counted twice, more than the {} a lease move could replay",
        replayable.len()
    );
    let unlogged: Vec<&String> = stored.keys().filter(|s| !logged.contains_key(*s)).collect();
    assert!(
        unlogged.is_empty(),
        "{} stored events never logged, e.g. {:?}",
        unlogged.len(),
        &unlogged[..unlogged.len().min(5)]
    );
    let unexplained: Vec<_> = logged.iter().filter(|(s, n)| **n > 1 && !replayable.contains(*s)).collect();
    assert!(unexplained.is_empty(), "events logged twice that no lease move replayed: {unexplained:?}");
    let misarchived: Vec<_> = stored.keys().filter(|s| archived.get(*s) != Some(&1.0)).collect();
    assert!(
        misarchived.is_empty(),
        "stored events not archived exactly once: {:?}",
        &misarchived[..misarchived.len().min(5)]
    );
    assert_eq!(archived.len(), stored.len(), "nothing archived that is not in the stream");
}
