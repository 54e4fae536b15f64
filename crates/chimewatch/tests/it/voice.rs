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
        ("CallsCancelled", 0.0),
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
    while sum("Sip1xxCodes") < 5.0 || sum("OutboundCallFailures") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the SIP metrics were not published");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (metric, want) in expected_counts() {
        assert_eq!(sum(metric), want, "{metric}");
    }
    for metric in ABSENT {
        assert_eq!(sum(metric), 0.0, "{metric}");
    }
    // Call 1 is up from 4.2 s to 184.2 s: active at the end of its first three minutes.
    let active: Vec<f64> = query(&data, "InboundCallsActive", &base, "Sum", "2000d", "60s")
        .iter()
        .map(|p| p["Sum"].as_f64().unwrap())
        .collect();
    assert_eq!(active, [1.0, 1.0, 1.0]);
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
    let captured = || async {
        let url = format!("{cw_url}/captured?namespace={}", namespace.replace('/', "%2F"));
        let requests: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
        requests
            .into_iter()
            .flat_map(|r| r["MetricData"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<Value>>()
    };
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
        if got.contains_key("OutboundCallFailures") && got.contains_key("CallDurationMs") {
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
    assert_eq!(got.get("InboundCallsActive"), Some(&3.0), "three minutes up");
    assert_eq!((got.get("CallSetupTimeMs"), got.get("PostDialDelayMs")), (Some(&1.0), Some(&2.0)), "sample counts");
    let data = captured().await;
    let dims = &data.iter().find(|d| d["MetricName"] == "InboundCallAttempts").unwrap()["Dimensions"];
    assert_eq!(dims, &json!([{ "Name": "VoiceConnectorId", "Value": VC }, { "Name": "Region", "Value": "us-east-1" }]));
    aggregator.terminate();
}
