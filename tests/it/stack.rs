//! The CloudFormation template on moto: CreateStack makes every resource whose type moto's CloudFormation implements
//! (the others are named below, with why), the dashboards it makes are the ones `dashboards put` would put, and the
//! gateway, the aggregator, the archiver and the compaction task run against the resources it made, with the
//! environment and secrets their task definitions give them: an event posted to the gateway reaches the stream, the
//! metrics, the log group and the archive.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::archive::{download_bucket, s3_client};
use crate::harness::{BIN, Server, dump, logs_client, moto_url, unique};
use crate::pipeline::{cloudwatch, cloudwatch_url};

/// Resource types of the template that moto 5.2's CloudFormation has no handler for: it logs "No Moto
/// CloudFormation support" and goes on without them. What each does is checked elsewhere, as noted.
const MOTO_LACKS: [(&str, &str); 11] = [
    ("AWS::S3::BucketPolicy", "TLS-only and log-delivery policies; checkov and cfn-lint read them"),
    ("AWS::EC2::SecurityGroupEgress", "the load balancer's egress to the tasks; cfn-lint reads it"),
    ("AWS::Scheduler::Schedule", "the daily `archive compact`; its task definition runs below"),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "autoscaling of the three services"),
    ("AWS::ApplicationAutoScaling::ScalingPolicy", "autoscaling of the three services"),
    ("AWS::CloudWatch::Alarm", "the alarms; `alarms put` round-trips the same definitions (cloudwatch_put.rs)"),
    ("AWS::SNS::TopicPolicy", "lets CloudWatch publish to the alarm topic"),
    ("AWS::SNS::Subscription", "the optional e-mail subscription"),
    ("AWS::Glue::Database", "the Athena database; check_glue.py compares the tables with deploy/athena/"),
    ("AWS::Glue::Table", "the Athena tables; check_glue.py compares them with deploy/athena/"),
    ("AWS::Athena::WorkGroup", "the analysts' workgroup"),
];

/// Conditions that are false with the parameters below (no SIP log group, no private ECR repository, no DNS zone).
const FALSE_CONDITIONS: [&str; 3] = ["HasSipLogGroup", "HasEcrRepository", "CreateDnsRecord"];

fn python() -> String {
    std::env::var("CHIMEWATCH_TEST_PYTHON").expect("CHIMEWATCH_TEST_PYTHON is not set: run `scripts/test.sh`")
}

/// A service's command and environment as its task definition has them, with what only ECS and AWS provide replaced
/// for this machine: the emulators' endpoints and credentials, loopback ports, a scratch directory for the volume.
fn service_env(service: &Value, scratch: &str, moto: &str, bridge: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    for (k, v) in &mut env {
        if k == "TMPDIR" || k == "CHIMEWATCH_ARCHIVE_SPOOL_DIR" {
            *v = v.replace("/var/tmp/chimewatch", scratch);
        } else if k == "CHIMEWATCH_METRICS_LISTEN" {
            *v = "127.0.0.1:0".into();
        }
    }
    env.extend(
        [
            ("AWS_ENDPOINT_URL", moto),
            ("AWS_ENDPOINT_URL_CLOUDWATCH", bridge),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn start(service: &Value, extra: &[&str], env: &[(String, String)]) -> Server {
    let mut args: Vec<&str> = service["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    args.extend(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&args, &env)
}

async fn eventually<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_stack_is_created_on_moto_and_the_services_run_on_what_it_made() {
    let (moto, bridge) = (moto_url(), cloudwatch_url());
    let stack = unique("cwstack");
    let api_key = format!("{:064x}", std::process::id());
    // Namespaces of this run's own, so that other tests against the same moto do not add to what is read here.
    let meetings = unique("StackTest/Meetings");
    let pipeline = unique("StackTest/Pipeline");
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto_stack.py"))
        .args([&moto, &stack, &api_key])
        .args([format!("MeetingNamespace={meetings}"), format!("PipelineNamespace={pipeline}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "moto_stack.py: {}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["status"], "CREATE_COMPLETE", "{}", made["reason"]);

    // Every resource moto did not make is of a type it lacks, or behind a condition that is false here; and every
    // type named as lacking is still lacking (when moto learns one, this list must shrink).
    let lacks: BTreeSet<&str> = MOTO_LACKS.iter().map(|(t, _)| *t).collect();
    let mut skipped = BTreeSet::new();
    for m in made["missing"].as_array().unwrap() {
        let (kind, condition) = (m["type"].as_str().unwrap(), m["condition"].as_str());
        if lacks.contains(kind) {
            skipped.insert(kind);
        } else {
            assert!(condition.is_some_and(|c| FALSE_CONDITIONS.contains(&c)), "moto did not make {m}");
        }
    }
    assert_eq!(skipped, lacks, "types moto lacks that the template has");
    let mut created: BTreeMap<&str, usize> = BTreeMap::new();
    for r in made["created"].as_array().unwrap() {
        *created.entry(r["type"].as_str().unwrap()).or_default() += 1;
    }
    for (kind, n) in [
        ("AWS::Kinesis::Stream", 2),
        ("AWS::DynamoDB::Table", 2),
        ("AWS::S3::Bucket", 2),
        ("AWS::KMS::Key", 1),
        ("AWS::Logs::LogGroup", 6),
        ("AWS::IAM::Role", 7),
        ("AWS::SNS::Topic", 1),
        ("AWS::ECS::Cluster", 1),
        ("AWS::ECS::TaskDefinition", 4),
        ("AWS::ECS::Service", 3),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", 1),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", 1),
        ("AWS::ElasticLoadBalancingV2::Listener", 2),
        ("AWS::CloudWatch::Dashboard", 3),
    ] {
        assert_eq!(created.get(kind), Some(&n), "{kind} in {created:?}");
    }

    // The dashboards CloudFormation made (render.py's Fn::Sub) are the ones `dashboards put` puts (chimewatch's own
    // filling), for the same deployment.
    let outputs = &made["outputs"];
    let log_group = outputs["MeetingEventsLogGroupName"].as_str().unwrap().to_owned();
    let dry = Command::new(BIN)
        .args(["dashboards", "put", "--dry-run", "--region", "us-east-1", "--name-prefix", &stack])
        .args(["--namespace", &meetings, "--pipeline-namespace", &pipeline, "--log-group", &log_group])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let cw = cloudwatch(&bridge);
    for line in String::from_utf8(dry.stdout).unwrap().lines() {
        let request: Value = serde_json::from_str(line).unwrap();
        let name = request["request"]["DashboardName"].as_str().unwrap();
        let held = chimewatch_sinks::cloudwatch_admin::get_dashboard(&cw, name).await.unwrap();
        let want: Value = serde_json::from_str(request["request"]["DashboardBody"].as_str().unwrap()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&held).unwrap(), want, "dashboard {name}");
    }

    // The services, as ECS would start them.
    let services = &made["services"];
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path().to_str().unwrap();
    let env = |name: &str| service_env(&services[name], scratch, &moto, &bridge);
    // Test pace: own figures every second, windows closed as soon as the minute's events are in, leases moved in
    // seconds, files cut at 2 s.
    let gateway = start(&services["gateway"], &["--pipeline-metrics-interval-secs", "1"], &env("gateway"));
    let pace = ["--failover-secs", "3", "--pipeline-metrics-interval-secs", "1"];
    let aggregator = start(
        &services["aggregator"],
        &[&pace[..], &["--out-of-orderness-secs", "0", "--idle-timeout-secs", "2"]].concat(),
        &env("aggregator"),
    );
    let archiver = start(&services["archiver"], &[&pace[..], &["--archive-max-age", "2s"]].concat(), &env("archiver"));

    // The fixture's session, in the minute before the last, so that its window is complete.
    let minute = (chimewatch_stream::system_clock().as_i64() / 60_000 - 2) * 60_000;
    let mut events: Vec<Value> =
        serde_json::from_slice(&crate::harness::fixture("meeting-events/js-mixed-meetings.json")).unwrap();
    for (i, e) in events.iter_mut().enumerate() {
        e["attributes"]["timestampMs"] = json!(minute + 1_000 + i as i64 * 1_000);
    }
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/meeting-events"))
        .header("x-api-key", &api_key)
        .json(&events)
        .send()
        .await
        .unwrap();
    let (status, body): (u16, Value) = (response.status().as_u16(), response.json().await.unwrap());
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(events.len() as u64)), "{body}");
    let unauthenticated = reqwest::Client::new().post(gateway.url("/v1/meeting-events")).json(&events).send().await;
    assert_eq!(unauthenticated.unwrap().status(), 401, "the key from Secrets Manager is the only way in");

    // The stream.
    let stream = outputs["StreamName"].as_str().unwrap();
    let gateway_env = env("gateway");
    let envs: Vec<(&str, &str)> = gateway_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dumped = dump(&["--stream", stream], &envs);
    assert_eq!(dumped.iter().filter(|l| l["record"]["kind"] == "meetingEvent").count(), events.len(), "on the stream");

    // The metrics (through the CloudWatch bridge) and the log group.
    let named: Vec<String> = events.iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    eventually("the minute's metrics reaching CloudWatch", 90, async || {
        let data = crate::harness::captured_datums(&bridge, &meetings).await;
        data.iter().any(|d| d["MetricName"] == "meetingStartRequested").then_some(())
    })
    .await;
    let logs = logs_client(&moto);
    eventually("every event reaching the log group", 60, async || {
        let out = logs.filter_log_events().log_group_name(&log_group).send().await.ok()?;
        let found: Vec<String> = out
            .events()
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e.message()?).ok())
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        (found.len() >= named.len()).then_some(())
    })
    .await;
    let own = crate::harness::captured_datums(&bridge, &pipeline).await;
    let services_seen: BTreeSet<&str> = own.iter().filter_map(|d| d["Dimensions"][0]["Value"].as_str()).collect();
    for service in ["gateway", "aggregator", "archiver"] {
        assert!(services_seen.contains(service), "{service}'s own figures in {pipeline}: {services_seen:?}");
    }

    // The archive.
    let bucket = outputs["ArchiveBucketName"].as_str().unwrap();
    let s3 = s3_client(&moto);
    eventually("a file in the archive bucket", 60, async || {
        let listed = s3.list_objects_v2().bucket(bucket).prefix("chimewatch/meeting_events/").send().await.ok()?;
        (!listed.contents().is_empty()).then_some(())
    })
    .await;
    let printed = archiver.terminate();
    assert!(printed.iter().any(|l| l.contains("wrote its buffered rows")), "{printed:?}");
    drop(aggregator);
    drop(gateway);
    let local = tempfile::tempdir().unwrap();
    let keys = download_bucket(&s3, bucket, local.path()).await;
    let rows = crate::archive::duckdb(
        local.path(),
        "SELECT count(*) AS n FROM read_parquet('chimewatch/meeting_events/*/*/*.parquet', hive_partitioning = true)",
    );
    assert_eq!(crate::archive::number(&rows[0]["n"]) as usize, events.len(), "archived once each: {keys:?}");

    // The compaction task, with its own environment.
    let compact = &services["compact"];
    let mut cmd = Command::new(BIN);
    cmd.args(compact["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap())).args(["--min-age", "0s"]);
    let out = cmd.envs(env("compact")).output().unwrap();
    assert!(out.status.success(), "archive compact: {}", String::from_utf8_lossy(&out.stderr));
}
