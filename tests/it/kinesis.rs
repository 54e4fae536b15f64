//! The gateway against Kinesis on moto: fixtures posted over HTTP come back from the stream, de-aggregated.

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;
use chimewatch_model::kpl;

use crate::harness::{Server, aws_env, borrow, dump, dumped_keys, event_keys, fixture, moto_url, unique};

pub fn client(moto: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client.create_stream().stream_name(name).shard_count(shards).send().await.expect("creating the stream on moto");
}

/// Every raw Kinesis record on the stream (before de-aggregation).
async fn raw_records(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<u8>)> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        let it = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let records = client.get_records().shard_iterator(it.shard_iterator().unwrap()).send().await.unwrap();
        out.extend(
            records
                .records()
                .iter()
                .map(|r| (r.partition_key().unwrap_or_default().to_owned(), r.data().as_ref().to_vec())),
        );
    }
    out
}

async fn post_fixtures(server: &Server) -> Vec<(String, String, String, i64)> {
    let mut expected = Vec::new();
    for f in [
        "meeting-events/js-mixed-meetings.json",
        "meeting-events/android-session.json",
        "meeting-events/ios-session-stringified.json",
    ] {
        let body = fixture(f);
        let (status, resp) = server.post("/v1/meeting-events", body.clone(), "application/json").await;
        assert_eq!(status, 200, "{f}: {resp}");
        expected.extend(event_keys(&body));
    }
    let (status, resp) = server
        .post("/v1/sip-messages", fixture("sip/voice-connector-sip-messages.jsonl"), "application/x-ndjson")
        .await;
    assert_eq!((status, resp["accepted"].as_u64()), (200, Some(20)));
    expected.sort();
    expected
}

#[tokio::test]
async fn gateway_puts_aggregated_records_that_read_back_whole() {
    let moto = moto_url();
    let kinesis = client(&moto);
    create_stream(&kinesis, &unique("it-gateway-aggregated"), 4).await;
    let env = aws_env(&moto);
    let server = Server::start(&["gateway", "--stream", &unique("it-gateway-aggregated")], &borrow(&env));
    let expected = post_fixtures(&server).await;
    let printed = server.terminate();
    assert!(printed.iter().any(|l| l.contains("flushed the stream")), "{printed:?}");

    let lines = dump(&["--stream", &unique("it-gateway-aggregated")], &borrow(&env));
    let mut got = dumped_keys(&lines);
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(lines.iter().filter(|l| l["record"]["kind"] == "sipMessage").count(), 20);
    assert!(lines.iter().all(|l| l.get("error").is_none()));

    let raw = raw_records(&kinesis, &unique("it-gateway-aggregated")).await;
    assert!(raw.iter().all(|(_, data)| kpl::is_aggregated(data)), "every Kinesis record is a KPL aggregate");
    let users: usize = raw.iter().map(|(pk, data)| kpl::deaggregate(data, pk).unwrap().len()).sum();
    assert_eq!(users, expected.len() + 20);
    assert!(raw.len() < users / 2, "{} Kinesis records carry {users} events", raw.len());
    // What a consumer will do with them: every item of every aggregate decodes to a record.
    let items: Vec<_> =
        raw.iter().flat_map(|(pk, data)| chimewatch_model::envelope::decode_kinesis_record(data, pk, 0)).collect();
    assert_eq!(items.len(), users);
    assert!(items.iter().all(|i| i.decoded.is_ok()), "{:?}", items.iter().find(|i| i.decoded.is_err()));
}

#[tokio::test]
async fn without_aggregation_each_event_is_one_kinesis_record_in_order() {
    let moto = moto_url();
    let kinesis = client(&moto);
    create_stream(&kinesis, &unique("it-gateway-plain"), 2).await;
    let env = aws_env(&moto);
    let server =
        Server::start(&["gateway", "--stream", &unique("it-gateway-plain"), "--aggregation", "false"], &borrow(&env));
    let expected = post_fixtures(&server).await;
    drop(server);
    let raw = raw_records(&kinesis, &unique("it-gateway-plain")).await;
    assert_eq!(raw.len(), expected.len() + 20);
    assert!(raw.iter().all(|(_, data)| !kpl::is_aggregated(data)));
    // One attendee's events of one meeting keep their order on their shard.
    let android: Vec<String> = raw
        .iter()
        .filter(|(pk, _)| pk.ends_with("a1b2c3d4-0000-4000-8000-00000000a001"))
        .map(|(_, d)| {
            serde_json::from_slice::<serde_json::Value>(d).unwrap()["event"]["name"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(android, ["meetingStartRequested", "meetingStartSucceeded", "meetingReconnected", "meetingEnded"]);
}

#[test]
fn gateway_refuses_to_start_without_its_stream() {
    let moto = moto_url();
    let env = aws_env(&moto);
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["gateway", "--stream", "it-does-not-exist", "--listen", "127.0.0.1:0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stream it-does-not-exist was not found"), "{stderr}");
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_before_exiting() {
    let moto = moto_url();
    let kinesis = client(&moto);
    create_stream(&kinesis, &unique("it-graceful"), 1).await;
    let env = aws_env(&moto);
    // A long linger holds the request inside the producer when the signal arrives.
    let server = Server::start(
        &["gateway", "--stream", &unique("it-graceful"), "--linger-ms", "2000", "--pipeline-metrics", "false"],
        &borrow(&env),
    );
    let url = server.url("/v1/meeting-events");
    let body = fixture("meeting-events/android-session.json");
    let request = tokio::spawn(async move {
        reqwest::Client::new().post(url).header("content-type", "application/json").body(body).send().await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!request.is_finished(), "the request is still waiting for the linger");
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let printed = server.terminate_after_signal();
    assert!(printed.iter().any(|l| l.contains("flushed the stream")), "{printed:?}");
    let raw = raw_records(&kinesis, &unique("it-graceful")).await;
    let users: usize = raw.iter().map(|(pk, data)| kpl::deaggregate(data, pk).unwrap().len()).sum();
    assert_eq!(users, 4, "all four events of the in-flight request are on the stream");
}

#[tokio::test]
async fn dump_decodes_cloudwatch_logs_envelopes_and_names_what_it_cannot() {
    use std::io::Write;
    let moto = moto_url();
    let kinesis = client(&moto);
    create_stream(&kinesis, &unique("it-envelopes"), 1).await;
    // What a CloudWatch Logs subscription filter puts: gzip JSON envelopes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&crate::harness::fixture("sip/cloudwatch-logs-subscription-envelope.json")).unwrap();
    let envelope = gz.finish().unwrap();
    for (key, data) in [("envelope", envelope), ("junk", b"\x00not a record".to_vec())] {
        kinesis
            .put_record()
            .stream_name(unique("it-envelopes"))
            .partition_key(key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    let lines = dump(&["--stream", &unique("it-envelopes")], &borrow(&aws_env(&moto)));
    let sip: Vec<_> = lines.iter().filter(|l| l["record"]["kind"] == "sipMessage").collect();
    assert!(!sip.is_empty());
    assert!(sip.iter().all(|l| l["record"]["ingest"] == "logSubscription" && l.get("logEvent").is_some()));
    assert_eq!(sip[0]["record"]["record"]["call_id"], "vc-call-0001");
    let bad: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["error"].as_str().unwrap().starts_with("not a chimewatch record"), "{}", bad[0]);
    assert!(bad[0]["dataBase64"].is_string(), "the undecodable bytes are shown, not dropped");
}
