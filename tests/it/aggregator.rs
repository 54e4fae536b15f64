//! The aggregator end to end, on a simulated fleet plus the fixtures: in `up` (embedded log -> embedded store, read
//! back with `metrics query` and `logs query`), and in AWS form (gateway -> Kinesis on moto -> `aggregator` ->
//! CloudWatch through the CBOR bridge, which captures the published Values/Counts, and CloudWatch Logs on moto).
//! Percentiles of what is published are checked against the exact percentiles of the input (1 % bound).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use serde_json::{Value, json};

use crate::harness::{BIN, Server, aws_env, borrow, fixture, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};
use crate::pipeline::{cloudwatch, cloudwatch_url};

/// A simulated fleet: start durations drawn from a skewed, multi-modal distribution per SDK, failures by status,
/// device failures by error name, and sessions ending with reconnects in their history, all in one minute.
struct Fleet {
    minute_ms: i64,
    batches: Vec<Vec<Value>>,
    /// Start durations per sdkName, as posted.
    durations: BTreeMap<String, Vec<u64>>,
    failed_by_status: BTreeMap<String, u64>,
    not_allowed: u64,
    reconnects: Vec<u64>,
    failed_attendee: String,
}

fn fleet(minute_ms: i64) -> Fleet {
    let sdks = ["amazon-chime-sdk-js", "amazon-chime-sdk-android", "amazon-chime-sdk-ios"];
    let statuses = ["AudioCallAtCapacity", "SignalingBadRequest", "TaskFailed"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut f = Fleet {
        minute_ms,
        batches: Vec::new(),
        durations: BTreeMap::new(),
        failed_by_status: BTreeMap::new(),
        not_allowed: 0,
        reconnects: Vec::new(),
        failed_attendee: String::new(),
    };
    for session in 0..900u64 {
        let sdk = sdks[(session % 3) as usize];
        let attendee = format!("attendee-{session:04}");
        let t = minute_ms + (session * 53) as i64 % 59_000;
        let common = |name: &str, extra: Value| {
            let mut a = json!({ "meetingId": format!("meeting-{}", session / 10), "attendeeId": attendee, "sdkName": sdk, "sdkVersion": "3.32.0", "timestampMs": t });
            a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({ "name": name, "attributes": a })
        };
        let mut batch = vec![common("meetingStartRequested", json!({}))];
        if session % 10 == 7 {
            let status = statuses[(session / 10 % 3) as usize];
            *f.failed_by_status.entry(status.to_owned()).or_default() += 1;
            batch.push(common("meetingStartFailed", json!({ "meetingStatus": status })));
        } else {
            // Three modes: cached joins, normal joins, joins behind a TURN fallback; a long tail on each.
            let (u, v) = (next(), next());
            let base = [180.0, 1_600.0, 9_000.0][(u * 3.0) as usize % 3];
            let duration = (base * (1.0 + 2.0 * v * v * v)) as u64;
            f.durations.entry(sdk.to_owned()).or_default().push(duration);
            batch.push(common(
                "meetingStartSucceeded",
                json!({ "meetingStartDurationMs": duration, "signalingOpenDurationMs": duration / 4 }),
            ));
            let reconnects = (next() * next() * 4.0) as u64;
            f.reconnects.push(reconnects);
            let mut history = vec![json!({ "name": "meetingStartRequested", "timestampMs": t })];
            history.extend((0..reconnects).map(|_| json!({ "name": "meetingReconnected", "timestampMs": t })));
            let end = if session % 10 == 3 { "meetingFailed" } else { "meetingEnded" };
            if end == "meetingFailed" {
                f.failed_attendee = attendee.clone();
            }
            batch.push(common(end, json!({ "meetingDurationMs": 60_000 + session, "poorConnectionCount": session % 4, "meetingStatus": "Left", "meetingHistory": history })));
        }
        if session % 30 == 5 {
            f.not_allowed += 1;
            batch.push(common(
                "audioInputFailed",
                json!({ "audioInputErrorMessage": "NotAllowedError: Permission denied" }),
            ));
        }
        f.batches.push(batch);
    }
    f
}

fn exact_percentile(values: &[u64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[((q / 100.0 * sorted.len() as f64).ceil() as usize).max(1) - 1] as f64
}

fn assert_close(got: f64, exact: f64, what: &str) {
    let error = (got - exact).abs() / exact;
    assert!(error <= 0.01, "{what}: published {got}, exact {exact} ({:.3} % off)", error * 100.0);
}

/// A minute that closed a while ago, aligned, well inside what CloudWatch accepts.
fn recent_minute() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    (now / 60_000) * 60_000 - 180_000
}

async fn post_fleet(server: &Server, fleet: &Fleet) {
    for chunk in fleet.batches.chunks(50) {
        let body: Vec<&Value> = chunk.iter().flatten().collect();
        let (status, resp) =
            server.post("/v1/meeting-events", serde_json::to_vec(&body).unwrap(), "application/json").await;
        assert_eq!((status, resp["rejected"].as_array().map(Vec::len)), (200, Some(0)), "{resp}");
    }
}

fn cli(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "chimewatch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn up_aggregates_the_fleet_into_the_embedded_store_within_the_accuracy_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let server = Server::start(
        &["up", "--data-dir", &data, "--window-secs", "60", "--out-of-orderness-secs", "0", "--idle-timeout-secs", "1"],
        &[],
    );
    let f = fleet(recent_minute());
    post_fleet(&server, &f).await;
    for fixture_file in ["meeting-events/js-mixed-meetings.json", "meeting-events/android-session.json"] {
        let (status, _) = server.post("/v1/meeting-events", fixture(fixture_file), "application/json").await;
        assert_eq!(status, 200);
    }
    let minute = f.minute_ms;
    let query = |metric: &str, dims: &[&str], stats: &str| {
        let mut args =
            vec!["metrics", "query", "--data-dir", &data, "--metric", metric, "--since", "1h", "--stat", stats];
        for d in dims {
            args.extend(["--dimension", d]);
        }
        cli(&args).into_iter().find(|p| p["timestampMs"].as_i64() == Some(minute))
    };
    let expected_requests = f.batches.len() as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while query("meetingStartRequested", &[], "Sum").is_none_or(|p| p["Sum"] != expected_requests) {
        assert!(std::time::Instant::now() < deadline, "the fleet's minute was not published");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The lag of the consumer the aggregator runs on is on /metrics.
    let metrics = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    for needle in [
        "chimewatch_consumer_millis_behind_latest{shard=\"shard-0000\"}",
        "chimewatch_consumer_iterator_age_milliseconds{shard=",
        "chimewatch_consumer_leases_held 4",
        "chimewatch_aggregator_windows_published_total",
    ] {
        assert!(metrics.contains(needle), "{needle} not on /metrics:\n{metrics}");
    }

    for (sdk, durations) in &f.durations {
        let p =
            query("meetingStartDurationMs", &[&format!("sdkName={sdk}")], "SampleCount,Minimum,Maximum,p50,p90,p99")
                .unwrap();
        assert_eq!(p["SampleCount"], durations.len() as f64, "{sdk}");
        for q in [50.0, 90.0, 99.0] {
            assert_close(p[format!("p{q}")].as_f64().unwrap(), exact_percentile(durations, q), &format!("{sdk} p{q}"));
        }
        assert_close(p["Maximum"].as_f64().unwrap(), *durations.iter().max().unwrap() as f64, "max");
    }
    let all: Vec<u64> = f.durations.values().flatten().copied().collect();
    let fleet_wide = query("meetingStartDurationMs", &[], "SampleCount,p99").unwrap();
    assert_eq!(fleet_wide["SampleCount"], all.len() as f64);
    assert_close(fleet_wide["p99"].as_f64().unwrap(), exact_percentile(&all, 99.0), "fleet-wide p99");
    for (status, n) in &f.failed_by_status {
        let p = query("meetingStartFailed", &[&format!("meetingStatus={status}")], "Sum").unwrap();
        assert_eq!(p["Sum"], *n as f64, "{status}");
    }
    assert_eq!(query("audioInputFailed", &["errorName=NotAllowedError"], "Sum").unwrap()["Sum"], f.not_allowed as f64);
    let reconnects = query("reconnectCount", &[], "SampleCount,Sum,Maximum").unwrap();
    assert_eq!(reconnects["SampleCount"], f.reconnects.len() as f64);
    assert_eq!(reconnects["Sum"], f.reconnects.iter().sum::<u64>() as f64, "small counts are exact");

    // Every event is in the logs, shaped as the blog sample's, and the blog's per-attendee query finds its own.
    let filter = format!(r#"name = "meetingFailed" and attributes.attendeeId = "{}""#, f.failed_attendee);
    let found = cli(&["logs", "query", "--data-dir", &data, "--since", "1h", "--filter", &filter]);
    assert_eq!(found.len(), 1, "{found:?}");
    let message: Value = serde_json::from_str(found[0]["@message"].as_str().unwrap()).unwrap();
    assert_eq!(message["attributes"]["attendeeId"], f.failed_attendee.as_str());
    let minute = chimewatch_sinks::logs_insights::format_timestamp(f.minute_ms);
    assert_eq!(found[0]["@timestamp"].as_str().unwrap()[..16], minute[..16], "{found:?}");
    let posted: usize = f.batches.iter().map(Vec::len).sum();
    let logged = cli(&["logs", "query", "--data-dir", &data, "--since", "1h", "--limit", "100000"]);
    assert_eq!(logged.len(), posted, "every event of the minute is logged once");
    // The blog dashboard's platform widget, answered as Logs Insights answers it.
    let platforms = cli(&[
        "logs",
        "query",
        "--data-dir",
        &data,
        "--since",
        "1h",
        r#"filter name in ["meetingStartRequested"] | stats count(*) as platform by attributes.sdkName"#,
    ]);
    let expected = ["android", "ios", "js"]
        .map(|sdk| json!({ "attributes.sdkName": format!("amazon-chime-sdk-{sdk}"), "platform": "300" }));
    assert_eq!(platforms, expected);
    let printed = server.terminate();
    assert!(printed.iter().any(|l| l.contains("the aggregator flushed its windows")), "{printed:?}");
}

#[tokio::test]
async fn the_aggregator_publishes_to_cloudwatch_and_logs_from_kinesis() {
    let moto = moto_url();
    let cw_url = cloudwatch_url();
    let stream = unique("it-aggregator");
    let namespace = unique("ChimeWatchTest/Meetings");
    let group = unique("/chimewatch/it-meeting-events");
    let pipeline_namespace = unique("ChimeWatchTest/Pipeline");
    create_stream(&kinesis_client(&moto), &stream, 2).await;
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.clone()));
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let aggregator = Server::start(
        &[
            "aggregator",
            "--stream",
            &stream,
            "--lease-table",
            &unique("it-aggregator-leases"),
            "--namespace",
            &namespace,
            "--log-group",
            &group,
            "--log-retention-days",
            "30",
            "--window-secs",
            "60",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "2",
            "--failover-secs",
            "3",
            "--pipeline-metrics-interval-secs",
            "1",
            "--pipeline-namespace",
            &pipeline_namespace,
        ],
        &borrow(&env),
    );
    let f = fleet(recent_minute());
    post_fleet(&gateway, &f).await;

    // moto cannot compute percentiles: the bridge captured the requests, so the published Values/Counts are read.
    let captured = || crate::harness::captured_datums(&cw_url, &namespace);
    let js = "amazon-chime-sdk-js";
    let values_of = |data: &[Value], metric: &str, dims: &[(&str, &str)]| -> Vec<(f64, f64)> {
        data.iter()
            .filter(|d| d["MetricName"] == metric)
            .filter(|d| {
                let got: Vec<(String, String)> = d["Dimensions"].as_array().map_or(vec![], |a| {
                    a.iter()
                        .map(|x| (x["Name"].as_str().unwrap().into(), x["Value"].as_str().unwrap().into()))
                        .collect()
                });
                got.len() == dims.len() && dims.iter().all(|(k, v)| got.iter().any(|(gk, gv)| gk == k && gv == v))
            })
            .flat_map(|d| match d["Values"].as_array() {
                Some(values) => {
                    assert!(values.len() <= 150, "a datum holds at most 150 values");
                    let counts = d["Counts"].as_array().unwrap();
                    values
                        .iter()
                        .zip(counts)
                        .map(|(v, c)| (v.as_f64().unwrap(), c.as_f64().unwrap()))
                        .collect::<Vec<_>>()
                }
                None => vec![(d["Value"].as_f64().unwrap(), 1.0)],
            })
            .collect()
    };
    let want = f.durations[js].len() as f64;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let data = loop {
        let data = captured().await;
        if values_of(&data, "meetingStartDurationMs", &[("sdkName", js)]).iter().map(|(_, c)| c).sum::<f64>() >= want {
            break data;
        }
        assert!(std::time::Instant::now() < deadline, "the fleet's minute was not published to CloudWatch");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let published = values_of(&data, "meetingStartDurationMs", &[("sdkName", js)]);
    assert_eq!(published.iter().map(|(_, c)| c).sum::<f64>(), want);
    for q in [50.0, 90.0, 99.0] {
        let got = chimewatch_metrics::distribution::percentile(&published, q).unwrap();
        assert_close(got, exact_percentile(&f.durations[js], q), &format!("published p{q}"));
    }
    let requested: f64 = values_of(&data, "meetingStartRequested", &[]).iter().map(|(v, _)| v).sum();
    assert_eq!(requested, f.batches.len() as f64, "counts are sums");
    // The failed joins by their likely cause, as the cause table reads the statuses posted.
    for (status, cause) in [
        ("AudioCallAtCapacity", "atCapacity"),
        ("SignalingBadRequest", "authenticationRejected"),
        ("TaskFailed", "clientError"),
    ] {
        let got: f64 = values_of(&data, "meetingJoinFailureCause", &[("cause", cause)]).iter().map(|(v, _)| v).sum();
        assert_eq!(got, f.failed_by_status[status] as f64, "meetingJoinFailureCause {cause}");
    }

    // CloudWatch (moto) aggregates SampleCount, Sum, Minimum and Maximum from those Values/Counts.
    let cw = cloudwatch(&cw_url);
    let stats = cw
        .get_metric_statistics()
        .namespace(&namespace)
        .metric_name("meetingStartDurationMs")
        .dimensions(Dimension::builder().name("sdkName").value(js).build())
        .start_time(DateTime::from_millis(f.minute_ms))
        .end_time(DateTime::from_millis(f.minute_ms + 60_000))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    let point = &stats.datapoints()[0];
    let sum: f64 = published.iter().map(|(v, c)| v * c).sum();
    assert_eq!(point.sample_count(), Some(want));
    assert!((point.sum().unwrap() - sum).abs() < 1e-6 * sum, "{point:?}");
    let exact_sum: u64 = f.durations[js].iter().sum();
    assert_close(point.sum().unwrap(), exact_sum as f64, "Sum");
    assert_close(point.minimum().unwrap(), *f.durations[js].iter().min().unwrap() as f64, "Minimum");
    assert_close(point.maximum().unwrap(), *f.durations[js].iter().max().unwrap() as f64, "Maximum");

    // Every event reached CloudWatch Logs, in streams per shard and worker, as the blog's messages.
    let logs = crate::harness::logs_client(&moto);
    let posted: usize = f.batches.iter().map(Vec::len).sum();
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while events.len() < posted {
        events = crate::harness::all_log_events(&logs, &group).await;
        assert!(std::time::Instant::now() < deadline, "{} of {posted} events in the log group", events.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(events.len(), posted);
    let streams: std::collections::BTreeSet<String> =
        events.iter().map(|(s, _)| s.split('/').next().unwrap().to_owned()).collect();
    assert!(streams.len() <= 2 && streams.iter().all(|s| s.starts_with("shardId-")), "{streams:?}");
    let failed: Vec<&Value> = events
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m["name"] == "meetingFailed" && m["attributes"]["attendeeId"] == f.failed_attendee.as_str())
        .collect();
    assert_eq!(failed.len(), 1);

    let printed = aggregator.terminate();
    assert!(printed.iter().any(|l| l.contains("flushed and released its leases")), "{printed:?}");
    // The consumer's lag and the aggregator's own figures reached CloudWatch (`ChimeWatch/Pipeline` by default),
    // with Service=aggregator.
    let pipeline = crate::harness::captured_datums(&cw_url, &pipeline_namespace).await;
    let reported: std::collections::BTreeSet<&str> = pipeline
        .iter()
        .filter(|d| d["Dimensions"] == json!([{ "Name": "Service", "Value": "aggregator" }]))
        .filter_map(|d| d["MetricName"].as_str())
        .collect();
    for metric in [
        "ConsumerMillisBehindLatest",
        "ConsumerIteratorAgeMilliseconds",
        "ConsumerRecords",
        "ConsumerLeasesHeld",
        "AggregatorWindowsPublished",
    ] {
        assert!(reported.contains(metric), "{metric} not in {reported:?}");
    }
    drop(gateway);
}

#[tokio::test]
async fn a_crash_loses_no_window_and_publishes_nothing_twice_in_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    // Idle for 5 s closes a window: long enough that posting the second minute and killing cannot let it close.
    let args =
        ["up", "--data-dir", &data, "--window-secs", "60", "--out-of-orderness-secs", "0", "--idle-timeout-secs", "5"];
    let first = fleet(recent_minute() - 60_000);
    let second = fleet(recent_minute());
    let sum = |minute: i64| {
        cli(&[
            "metrics",
            "query",
            "--data-dir",
            &data,
            "--metric",
            "meetingStartRequested",
            "--since",
            "1h",
            "--stat",
            "Sum",
        ])
        .into_iter()
        .find(|p| p["timestampMs"].as_i64() == Some(minute))
        .map_or(0.0, |p| p["Sum"].as_f64().unwrap())
    };
    let wait_for = |minute: i64, want: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sum(minute) < want {
            assert!(std::time::Instant::now() < deadline, "minute {minute} did not reach {want}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let server = Server::start(&args, &[]);
    post_fleet(&server, &first).await;
    wait_for(first.minute_ms, first.batches.len() as f64).await;
    // The checkpoint is written right after a publish; a crash between the two publishes that read again, as the
    // README's "Delivery" says. This test is about a crash after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The second minute is acknowledged (durable in the log) but its window is still open when the process dies.
    post_fleet(&server, &second).await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(sum(second.minute_ms), 0.0, "killed before the second window closed");

    let restarted = Server::start(&args, &[]);
    wait_for(second.minute_ms, second.batches.len() as f64).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b) = (sum(first.minute_ms), sum(second.minute_ms));
    eprintln!("crash in up: minute 1 {a} of {}, minute 2 {b} of {}", first.batches.len(), second.batches.len());
    assert_eq!(a, first.batches.len() as f64, "the published window was checkpointed: not published again");
    assert_eq!(b, second.batches.len() as f64, "the open window was rebuilt from the log after the restart");
    restarted.terminate();
}

#[tokio::test]
async fn with_the_emf_format_metrics_go_to_cloudwatch_logs_as_embedded_metric_lines() {
    let moto = moto_url();
    let stream = unique("it-aggregator-emf");
    let emf_group = unique("/chimewatch/it-meeting-metrics");
    create_stream(&kinesis_client(&moto), &stream, 1).await;
    let env = aws_env(&moto);
    let gateway = Server::start(&["gateway", "--stream", &stream, "--pipeline-metrics", "false"], &borrow(&env));
    let aggregator = Server::start(
        &[
            "aggregator",
            "--stream",
            &stream,
            "--lease-table",
            &unique("it-aggregator-emf-leases"),
            "--metrics-format",
            "emf",
            "--emf-log-group",
            &emf_group,
            "--event-logs",
            "false",
            "--idle-timeout-secs",
            "1",
            "--out-of-orderness-secs",
            "0",
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&env),
    );
    let mut f = fleet(recent_minute());
    f.batches.truncate(60);
    let durations: Vec<u64> =
        f.batches.iter().flatten().filter_map(|e| e["attributes"]["meetingStartDurationMs"].as_u64()).collect();
    post_fleet(&gateway, &f).await;
    let logs = crate::harness::logs_client(&moto);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = crate::harness::all_log_events(&logs, &emf_group).await;
        let starts: f64 = lines
            .iter()
            .filter(|(_, l)| l.get("sdkName").is_none() && l["meetingStartDurationMs"].is_object())
            .map(|(_, l)| l["meetingStartDurationMs"]["Count"].as_f64().unwrap())
            .sum();
        if starts >= durations.len() as f64 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "EMF lines for {} starts, got {starts}", durations.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let requested: f64 = lines
        .iter()
        .filter(|(_, l)| l.get("sdkName").is_none())
        .filter_map(|(_, l)| l["meetingStartRequested"].as_f64())
        .sum();
    assert_eq!(requested, f.batches.len() as f64);
    let (_, line) = lines.iter().find(|(_, l)| l["meetingStartDurationMs"].is_object()).unwrap();
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "AmazonChimeSDKMeetingEvents");
    assert_eq!(directive["Metrics"][0]["Unit"], "Milliseconds");
    assert_eq!(line["_aws"]["Timestamp"].as_i64(), Some(f.minute_ms));
    aggregator.terminate();
    drop(gateway);
}
