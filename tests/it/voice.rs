//! Voice Connector analytics end to end: the fixture's SIP message log records, posted to `up` and as gzipped
//! CloudWatch Logs subscription envelopes on Kinesis (moto) for `aggregator`, come out as the 15 Amazon metrics and
//! the setup-time distributions, with the counts the fixture's README states; and a simulated call load.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{BIN, Server, aws_env, borrow, fixture, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};
use crate::pipeline::cloudwatch_url;

const VC: &str = "abcdef1ghij2klmno3pqr4";

/// What the fixture's calls give under the default policy (its README, and the status classes of its responses).
fn expected_counts() -> BTreeMap<&'static str, f64> {
    BTreeMap::from([
        ("InboundCallAttempts", 1.0),
        ("OutboundCallAttempts", 2.0),
        ("InboundCallsAnswered", 1.0),
        ("OutboundCallFailures", 1.0),
        ("Throttles", 1.0),
        ("Sip1xxCodes", 5.0),
        ("Sip2xxCodes", 4.0),
        ("Sip4xxCodes", 1.0),
        ("Sip5xxCodes", 1.0),
        ("CallsCancelled", 1.0),
    ])
}

/// The metrics the fixture must not produce: no outbound answer, no inbound failure, no 3xx or 6xx.
const ABSENT: &[&str] =
    &["OutboundCallsAnswered", "InboundCallFailures", "Sip3xxCodes", "Sip6xxCodes", "OutboundCallsActive"];

fn records(shift_to: Option<i64>) -> Vec<Value> {
    let text = String::from_utf8(fixture("sip/voice-connector-sip-messages.jsonl")).unwrap();
    let mut records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    if let Some(start) = shift_to {
        let first = records[0]["event_timestamp"].as_i64().unwrap();
        for r in &mut records {
            r["event_timestamp"] = json!(r["event_timestamp"].as_i64().unwrap() - first + start);
        }
    }
    records
}

fn query(data: &str, metric: &str, dims: &[(&str, &str)], stats: &str, since: &str, period: &str) -> Vec<Value> {
    let mut args = vec![
        "metrics",
        "query",
        "--data-dir",
        data,
        "--namespace",
        "ChimeWatch/VoiceConnector",
        "--metric",
        metric,
        "--stat",
        stats,
        "--since",
        since,
        "--period",
        period,
    ];
    let dims: Vec<String> = dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for d in &dims {
        args.extend(["--dimension", d.as_str()]);
    }
    let out = std::process::Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn up_derives_the_voice_connector_metrics_from_posted_sip_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let server =
        Server::start(&["up", "--data-dir", &data, "--out-of-orderness-secs", "0", "--idle-timeout-secs", "1"], &[]);
    let (status, resp) = server
        .post("/v1/sip-messages", fixture("sip/voice-connector-sip-messages.jsonl"), "application/x-ndjson")
        .await;
    assert_eq!((status, resp["accepted"].as_u64()), (200, Some(20)));
    let base = [("VoiceConnectorId", VC), ("Region", "us-east-1")];
    let sum = |metric: &str| -> f64 {
        query(&data, metric, &base, "Sum", "2000d", "1d").iter().map(|p| p["Sum"].as_f64().unwrap()).sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Shards publish their windows independently: wait for every count, then check none went past.
    while expected_counts().iter().any(|(metric, want)| sum(metric) < *want) || sum("InboundCallsActive") < 4.0 {
        assert!(std::time::Instant::now() < deadline, "the SIP metrics were not published");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (metric, want) in expected_counts() {
        assert_eq!(sum(metric), want, "{metric}");
    }
    for metric in ABSENT {
        assert_eq!(sum(metric), 0.0, "{metric}");
    }
    // Call 1 is up from 4.2 s to 184.2 s: active in its first four minutes.
    let active: Vec<f64> = query(&data, "InboundCallsActive", &base, "Sum", "2000d", "60s")
        .iter()
        .map(|p| p["Sum"].as_f64().unwrap())
        .collect();
    assert_eq!(active, [1.0, 1.0, 1.0, 1.0]);
    let setup = query(
        &data,
        "CallSetupTimeMs",
        &[("VoiceConnectorId", VC), ("Region", "us-east-1"), ("Direction", "Inbound")],
        "SampleCount,Maximum",
        "2000d",
        "1d",
    );
    // Distributions hold bucket values, within 0.4 % of each value.
    let near = |got: &Value, want: f64| (got.as_f64().unwrap() - want).abs() <= want * 0.004;
    assert_eq!(setup[0]["SampleCount"].as_f64(), Some(1.0));
    assert!(near(&setup[0]["Maximum"], 4_200.0), "{setup:?}");
    let pdd = query(&data, "PostDialDelayMs", &base, "SampleCount,Minimum,Maximum", "2000d", "1d");
    assert_eq!(pdd[0]["SampleCount"].as_f64(), Some(2.0));
    assert!(near(&pdd[0]["Minimum"], 950.0) && near(&pdd[0]["Maximum"], 1_500.0), "{pdd:?}");
    let duration = query(&data, "CallDurationMs", &base, "Maximum", "2000d", "1d");
    assert!(near(&duration[0]["Maximum"], 180_000.0), "{duration:?}");
    let by_status = query(
        &data,
        "CallFailuresByStatus",
        &[
            ("VoiceConnectorId", VC),
            ("Region", "us-east-1"),
            ("Direction", "Outbound"),
            ("StatusCode", "503"),
            ("Reason", "Service Unavailable"),
        ],
        "Sum",
        "2000d",
        "1d",
    );
    assert_eq!(by_status[0]["Sum"].as_f64(), Some(1.0));
    server.terminate();
}

#[tokio::test]
async fn the_aggregator_derives_them_from_logs_envelopes_on_kinesis() {
    let moto = moto_url();
    let cw_url = cloudwatch_url();
    let stream = unique("it-voice");
    let namespace = unique("ChimeWatchTest/VoiceConnector");
    let sip_group = unique("/chimewatch/it-sip-messages");
    create_stream(&kinesis_client(&moto), &stream, 1).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = (now / 60_000) * 60_000 - 600_000;
    // What a subscription filter on /aws/ChimeVoiceConnectorSipMessages/<id> puts: gzip JSON envelopes.
    let events: Vec<Value> = records(Some(start))
        .iter()
        .enumerate()
        .map(|(i, r)| json!({ "id": format!("{i}"), "timestamp": r["event_timestamp"], "message": r.to_string() }))
        .collect();
    let kinesis = kinesis_client(&moto);
    for chunk in events.chunks(7) {
        let envelope = json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": format!("/aws/ChimeVoiceConnectorSipMessages/{VC}"),
            "logStream": "sip", "subscriptionFilters": ["chimewatch"], "logEvents": chunk,
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(envelope.to_string().as_bytes()).unwrap();
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(VC)
            .data(gz.finish().unwrap().into())
            .send()
            .await
            .unwrap();
    }
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.clone()));
    let aggregator = Server::start(
        &[
            "aggregator",
            "--stream",
            &stream,
            "--lease-table",
            &unique("it-voice-leases"),
            "--voice-namespace",
            &namespace,
            "--sip-log-group",
            &sip_group,
            "--event-logs",
            "false",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "1",
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&env),
    );
    let captured = || crate::harness::captured_datums(&cw_url, &namespace);
    // Sums of the series by connector and region only.
    let sums = |data: &[Value]| {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for d in data.iter().filter(|d| d["Dimensions"].as_array().map(Vec::len) == Some(2)) {
            let v = match d["Values"].as_array() {
                Some(_) => d["Counts"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).sum(),
                None => d["Value"].as_f64().unwrap(),
            };
            *out.entry(d["MetricName"].as_str().unwrap().to_owned()).or_default() += v;
        }
        out
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = sums(&captured().await);
        let complete = expected_counts().iter().all(|(m, want)| got.get(*m).copied().unwrap_or(0.0) >= *want);
        if complete && got.contains_key("CallDurationMs") && got.get("InboundCallsActive") >= Some(&4.0) {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "the SIP metrics did not reach CloudWatch: {got:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (metric, want) in expected_counts() {
        assert_eq!(got.get(metric).copied().unwrap_or(0.0), want, "{metric}: {got:?}");
    }
    for metric in ABSENT {
        assert_eq!(got.get(*metric), None, "{metric}");
    }
    assert_eq!(got.get("InboundCallsActive"), Some(&4.0), "four minutes up");
    assert_eq!((got.get("CallSetupTimeMs"), got.get("PostDialDelayMs")), (Some(&1.0), Some(&2.0)), "sample counts");
    let data = captured().await;
    let attempts: Vec<&Value> = data.iter().filter(|d| d["MetricName"] == "InboundCallAttempts").collect();
    // A fleet-wide datum may leave `Dimensions` out.
    let mut dims: Vec<Value> =
        attempts.iter().map(|d| Value::Array(d["Dimensions"].as_array().cloned().unwrap_or_default())).collect();
    dims.sort_by_key(|d| d.as_array().map_or(0, Vec::len));
    dims.dedup();
    // By connector and region, and fleet-wide (what one alarm watches across connectors).
    assert_eq!(
        dims,
        [json!([]), json!([{ "Name": "VoiceConnectorId", "Value": VC }, { "Name": "Region", "Value": "us-east-1" }])]
    );
    // The SIP records also went to their log group, as Voice Connector logs them.
    let logged = crate::harness::all_log_events(&crate::harness::logs_client(&moto), &sip_group).await;
    assert_eq!(logged.len(), 20);
    assert!(logged.iter().all(
        |(_, r)| r["voice_connector_id"] == VC && r["sip_message"].as_str().is_some_and(|m| m.contains("SIP/2.0"))
    ));
    aggregator.terminate();
}

/// A simulated call load: every outcome in both directions, with the counts the policy must give.
struct Load {
    records: Vec<Value>,
    expected: BTreeMap<&'static str, f64>,
    /// Calls answered and never hung up, by direction: they stay active.
    still_up: (u64, u64),
    /// Minutes the calls that were hung up were up, by direction (each counts in `*CallsActive`).
    active_minutes: (u64, u64),
    /// The telecom KPIs as the generator planned them: ASR and NER (%) over the decided attempts, ACD (s) over the
    /// calls hung up.
    asr: f64,
    ner: f64,
    acd: f64,
}

fn call_load(start: i64, calls: usize) -> Load {
    let mut records = Vec::new();
    let mut expected: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut still_up = (0, 0);
    let mut active_minutes = (0, 0);
    // Attempts decided, answered, effective by E.425 (answered, busy, no answer, terminal reject); calls ended, seconds.
    let (mut decided, mut answered, mut effective, mut ended, mut seconds) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut add = |metric: &'static str, n: f64| *expected.entry(metric).or_default() += n;
    for i in 0..calls {
        // Outcome by i % 8, direction by the next bit: every outcome in both directions.
        let outbound = (i / 8) % 2 == 1;
        let call_id = format!("load-{i:04}");
        let t0 = start + (i as i64 * 617) % 150_000;
        let host = if outbound { format!("{VC}.voiceconnector.chime.aws") } else { "203.0.113.10:5060".to_owned() };
        let uri = format!("sip:+1425555{:04}@{host}", i % 10_000);
        let branch = format!("z9hG4bK-{call_id}");
        let mut msgs: Vec<(i64, String)> = Vec::new();
        let request = |method: &str, cseq: &str, to_tag: bool| {
            let tag = if to_tag { ";tag=far" } else { "" };
            format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\nFrom: <sip:+18155550123@198.51.100.7>;tag=near\r\nTo: <{uri}>{tag}\r\nCall-ID: {call_id}@198.51.100.7\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let response = |status: u16, reason: &str, cseq: &str, extra: &str| {
            format!(
                "SIP/2.0 {status} {reason}\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\nFrom: <sip:+18155550123@198.51.100.7>;tag=near\r\nTo: <{uri}>;tag=far\r\nCall-ID: {call_id}@198.51.100.7\r\nCSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n"
            )
        };
        add(if outbound { "OutboundCallAttempts" } else { "InboundCallAttempts" }, 1.0);
        msgs.push((t0, request("INVITE", "1 INVITE", false)));
        msgs.push((t0 + 20, response(100, "Trying", "1 INVITE", "")));
        add("Sip1xxCodes", 1.0);
        match i % 8 {
            // Answered, then hung up; some are never hung up and stay active.
            0..=3 => {
                msgs.push((t0 + 900, response(180, "Ringing", "1 INVITE", "")));
                msgs.push((t0 + 3_000, response(200, "OK", "1 INVITE", "")));
                msgs.push((t0 + 3_030, request("ACK", "1 ACK", true)));
                add("Sip1xxCodes", 1.0);
                add("Sip2xxCodes", 1.0);
                add(if outbound { "OutboundCallsAnswered" } else { "InboundCallsAnswered" }, 1.0);
                (decided, answered, effective) = (decided + 1.0, answered + 1.0, effective + 1.0);
                if i % 8 == 0 && (i / 8) % 4 < 2 {
                    if outbound { still_up.1 += 1 } else { still_up.0 += 1 }
                } else {
                    msgs.push((t0 + 60_000, request("BYE", "2 BYE", true)));
                    let minutes = ((t0 + 60_000) / 60_000 - (t0 + 3_000) / 60_000 + 1) as u64;
                    if outbound {
                        active_minutes.1 += minutes
                    } else {
                        active_minutes.0 += minutes
                    }
                    msgs.push((t0 + 60_050, response(200, "OK", "2 BYE", "")));
                    (ended, seconds) = (ended + 1.0, seconds + 57.0);
                    add("Sip2xxCodes", 1.0);
                }
            }
            // Busy (4xx), declined (6xx), moved (3xx): failures.
            4..=6 => {
                let (status, reason) = [(486, "Busy Here"), (603, "Decline"), (302, "Moved Temporarily")][i % 8 - 4];
                msgs.push((t0 + 700, response(status, reason, "1 INVITE", "")));
                msgs.push((t0 + 710, request("ACK", "1 ACK", true)));
                add(["Sip4xxCodes", "Sip6xxCodes", "Sip3xxCodes"][i % 8 - 4], 1.0);
                add(if outbound { "OutboundCallFailures" } else { "InboundCallFailures" }, 1.0);
                decided += 1.0;
                // Busy (486) and declined (603) are the network doing its part; a redirect (302) is not.
                if status != 302 {
                    effective += 1.0;
                }
            }
            // Outbound: rejected with 503 and Retry-After (a throttle); inbound: cancelled by the caller before it rang.
            _ => {
                decided += 1.0;
                if outbound {
                    msgs.push((t0 + 300, response(503, "Service Unavailable", "1 INVITE", "Retry-After: 5\r\n")));
                    add("Sip5xxCodes", 1.0);
                    add("Throttles", 1.0);
                    add("OutboundCallFailures", 1.0);
                } else {
                    msgs.push((t0 + 5_000, request("CANCEL", "1 CANCEL", false)));
                    msgs.push((t0 + 5_020, response(200, "OK", "1 CANCEL", "")));
                    msgs.push((t0 + 5_040, response(487, "Request Terminated", "1 INVITE", "")));
                    add("Sip2xxCodes", 1.0);
                    add("Sip4xxCodes", 1.0);
                    add("CallsCancelled", 1.0);
                }
            }
        }
        for (at, message) in msgs {
            records.push(json!({ "voice_connector_id": VC, "aws_region": "us-east-1", "event_timestamp": at, "call_id": call_id, "sip_message": message }));
        }
    }
    let (asr, ner, acd) = (100.0 * answered / decided, 100.0 * effective / decided, seconds / ended);
    Load { records, expected, still_up, active_minutes, asr, ner, acd }
}

fn ndjson(records: &[Value]) -> Vec<u8> {
    records.iter().map(|r| format!("{r}\n")).collect::<String>().into_bytes()
}

#[tokio::test]
async fn a_simulated_call_load_gives_all_fifteen_metrics_in_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let server =
        Server::start(&["up", "--data-dir", &data, "--out-of-orderness-secs", "0", "--idle-timeout-secs", "1"], &[]);
    let load = call_load(1_763_712_000_000, 400);
    for chunk in load.records.chunks(500) {
        let (status, resp) = server.post("/v1/sip-messages", ndjson(chunk), "application/x-ndjson").await;
        assert_eq!((status, resp["accepted"].as_u64()), (200, Some(chunk.len() as u64)), "{resp}");
    }
    let base = [("VoiceConnectorId", VC), ("Region", "us-east-1")];
    let sum = |metric: &str| -> f64 {
        query(&data, metric, &base, "Sum", "2000d", "1d").iter().map(|p| p["Sum"].as_f64().unwrap()).sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Shards publish their windows independently: wait for every count, then check none went past.
    while let Some((metric, want)) = load.expected.iter().find(|(metric, want)| sum(metric) < **want) {
        assert!(std::time::Instant::now() < deadline, "the load's {metric} did not reach {want}: {}", sum(metric));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (metric, want) in &load.expected {
        assert_eq!(sum(metric), *want, "{metric}");
    }
    assert_eq!(load.expected.len(), 14, "every count metric of Amazon's but the two gauges, and cancellations");
    // Each call counts once in every minute it was up: the calls hung up for all their minutes; the calls still up
    // for the minutes that ended a margin before the newest message (at most one per minute of the load).
    for (metric, minutes, up) in [
        ("InboundCallsActive", load.active_minutes.0, load.still_up.0),
        ("OutboundCallsActive", load.active_minutes.1, load.still_up.1),
    ] {
        let total = sum(metric);
        assert!(
            up > 0 && total >= minutes as f64 && total <= (minutes + up * 4) as f64,
            "{metric}: {total}, {minutes} minutes of calls hung up, {up} still up"
        );
    }
    let setup = query(&data, "CallSetupTimeMs", &base, "SampleCount,p50", "2000d", "1d");
    let answered = load.expected["InboundCallsAnswered"] + load.expected["OutboundCallsAnswered"];
    assert_eq!(setup.iter().map(|p| p["SampleCount"].as_f64().unwrap()).sum::<f64>(), answered);
    // ASR, NER and ACD, averaged over the run as CloudWatch averages weighted values, are the generator's.
    for (metric, want) in [("ASR", load.asr), ("NER", load.ner), ("ACD", load.acd)] {
        let points = query(&data, metric, &base, "Average,SampleCount", "2000d", "1d");
        let n: f64 = points.iter().map(|p| p["SampleCount"].as_f64().unwrap()).sum();
        let mean =
            points.iter().map(|p| p["Average"].as_f64().unwrap() * p["SampleCount"].as_f64().unwrap()).sum::<f64>() / n;
        assert!((mean - want).abs() < 1e-9, "{metric}: {mean}, the generator's {want}");
    }
    assert!(
        load.asr > 0.0 && load.ner > load.asr && load.ner < 100.0,
        "every kind of outcome: {} {}",
        load.asr,
        load.ner
    );
    server.terminate();
}

#[tokio::test]
async fn a_simulated_call_load_gives_all_fifteen_metrics_in_cloudwatch() {
    let moto = moto_url();
    let cw_url = cloudwatch_url();
    let stream = unique("it-voice-load");
    let namespace = unique("ChimeWatchTest/VoiceLoad");
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
            &unique("it-voice-load-leases"),
            "--voice-namespace",
            &namespace,
            "--event-logs",
            "false",
            "--out-of-orderness-secs",
            "0",
            "--idle-timeout-secs",
            "1",
            "--pipeline-metrics",
            "false",
        ],
        &borrow(&env),
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let load = call_load((now / 60_000) * 60_000 - 900_000, 240);
    for chunk in load.records.chunks(500) {
        let (status, _) = gateway.post("/v1/sip-messages", ndjson(chunk), "application/x-ndjson").await;
        assert_eq!(status, 200);
    }
    let sums = || async {
        let data = crate::harness::captured_datums(&cw_url, &namespace).await;
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for d in &data {
            if d["Dimensions"].as_array().map(Vec::len) == Some(2) && d["Values"].is_null() {
                *out.entry(d["MetricName"].as_str().unwrap().to_owned()).or_default() += d["Value"].as_f64().unwrap();
            }
        }
        out
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = sums().await;
        if load.expected.iter().all(|(m, want)| got.get(*m).is_some_and(|g| g >= want)) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            break sums().await;
        }
        assert!(std::time::Instant::now() < deadline, "the load's metrics did not reach CloudWatch: {got:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (metric, want) in &load.expected {
        assert_eq!(got.get(*metric), Some(want), "{metric}");
    }
    // ASR, NER and ACD reached CloudWatch as values weighted by their counts: their weighted mean is the generator's.
    let data = crate::harness::captured_datums(&cw_url, &namespace).await;
    for (metric, want) in [("ASR", load.asr), ("NER", load.ner), ("ACD", load.acd)] {
        let (mut sum, mut n) = (0.0, 0.0);
        for d in
            data.iter().filter(|d| d["MetricName"] == metric && d["Dimensions"].as_array().map(Vec::len) == Some(2))
        {
            for (v, c) in d["Values"].as_array().unwrap().iter().zip(d["Counts"].as_array().unwrap()) {
                (sum, n) = (sum + v.as_f64().unwrap() * c.as_f64().unwrap(), n + c.as_f64().unwrap());
            }
        }
        assert!(n > 0.0 && (sum / n - want).abs() < 1e-9, "{metric}: {} over {n}, the generator's {want}", sum / n);
    }
    for (metric, minutes, up) in [
        ("InboundCallsActive", load.active_minutes.0, load.still_up.0),
        ("OutboundCallsActive", load.active_minutes.1, load.still_up.1),
    ] {
        let total = got.get(metric).copied().unwrap_or(0.0);
        assert!(total >= minutes as f64 && total <= (minutes + up * 4) as f64, "{metric}: {total}");
    }
    let amazon = [
        "InboundCallAttempts",
        "InboundCallFailures",
        "InboundCallsAnswered",
        "InboundCallsActive",
        "OutboundCallAttempts",
        "OutboundCallFailures",
        "OutboundCallsAnswered",
        "OutboundCallsActive",
        "Throttles",
        "Sip1xxCodes",
        "Sip2xxCodes",
        "Sip3xxCodes",
        "Sip4xxCodes",
        "Sip5xxCodes",
        "Sip6xxCodes",
    ];
    let missing: Vec<&&str> = amazon.iter().filter(|m| !got.contains_key(**m)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
    aggregator.terminate();
    drop(gateway);
}
