//! The gateway's own figures reach CloudWatch (moto, through the test's CBOR bridge) as `ChimeWatch/Pipeline`.

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};

use crate::harness::{Server, aws_env, borrow, fixture, moto_url, unique};
use crate::kinesis::{client as kinesis_client, create_stream};

pub fn cloudwatch_url() -> String {
    std::env::var("CHIMEWATCH_TEST_CLOUDWATCH_URL")
        .expect("CHIMEWATCH_TEST_CLOUDWATCH_URL is not set: run `scripts/test.sh`, which starts the CloudWatch bridge")
}

pub fn cloudwatch(url: &str) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}

async fn sum(cw: &aws_sdk_cloudwatch::Client, namespace: &str, metric: &str) -> f64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let out = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .dimensions(Dimension::builder().name("Service").value("gateway").build())
        .start_time(DateTime::from_secs(now - 3600))
        .end_time(DateTime::from_secs(now + 3600))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("GetMetricStatistics {metric}: {}", aws_sdk_cloudwatch::error::DisplayErrorContext(e))
        });
    out.datapoints().iter().filter_map(|d| d.sum()).sum()
}

#[tokio::test]
async fn gateway_publishes_its_figures_to_cloudwatch() {
    let moto = moto_url();
    let cw_url = cloudwatch_url();
    create_stream(&kinesis_client(&moto), &unique("it-pipeline-metrics"), 1).await;
    let mut env = aws_env(&moto);
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH", cw_url.clone()));
    // A namespace of this run's own, so that earlier runs against the same moto do not add to the sums.
    let namespace = unique("ChimeWatchTest/Pipeline");
    let server = Server::start(
        &[
            "gateway",
            "--stream",
            &unique("it-pipeline-metrics"),
            "--pipeline-metrics-interval-secs",
            "1",
            "--pipeline-namespace",
            &namespace,
        ],
        &borrow(&env),
    );
    let (status, _) =
        server.post("/v1/meeting-events", fixture("meeting-events/js-mixed-meetings.json"), "application/json").await;
    assert_eq!(status, 200);
    let (status, resp) =
        server.post("/v1/meeting-events", fixture("bad-input/wrong-types.json"), "application/json").await;
    assert_eq!((status, resp["rejected"].as_array().map(Vec::len)), (200, Some(5)));
    // Let one periodic report go out, then stop: the final report carries the rest.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, _) = server
        .post("/v1/sip-messages", fixture("sip/voice-connector-sip-messages.jsonl"), "application/x-ndjson")
        .await;
    assert_eq!(status, 200);
    let printed = server.terminate();
    assert!(!printed.iter().any(|l| l.contains("Could not publish pipeline metrics")), "{printed:?}");

    let cw = cloudwatch(&cw_url);
    assert_eq!(sum(&cw, &namespace, "EventsAccepted").await, 25.0, "5 meeting events and 20 SIP records");
    assert_eq!(sum(&cw, &namespace, "EventsRejected").await, 5.0);
    assert_eq!(sum(&cw, &namespace, "Requests").await, 3.0);
    assert_eq!(sum(&cw, &namespace, "StreamRecordsPut").await, 25.0);
    assert_eq!(sum(&cw, &namespace, "ServerErrors").await, 0.0);
}
