//! `chimewatch dashboards put` and `chimewatch alarms put`: the dry run prints the requests, filled for the
//! deployment the flags name; the real run round-trips through the emulators (PutDashboard then GetDashboard,
//! PutMetricAlarm then DescribeAlarms give back what was put); a CloudWatch that cannot be reached fails the command
//! with the alarm named.

use std::process::Command;

use chimewatch_metrics::alarm::AlarmDefinition;
use serde_json::Value;

use crate::harness::{BIN, unique};
use crate::pipeline::{cloudwatch, cloudwatch_url};

/// Runs chimewatch against the endpoint with the flags; (exit success, stdout JSON lines, stderr).
fn run(endpoint: &str, args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "2")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.success(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

const TARGET: [&str; 12] = [
    "--region",
    "us-east-1",
    "--namespace",
    "Prod/Meetings",
    "--voice-namespace",
    "Prod/Voice",
    "--pipeline-namespace",
    "Prod/Pipeline",
    "--log-group",
    "/prod/meeting-events",
    "--name-prefix",
    "PREFIX",
];

fn args<'a>(command: [&'a str; 2], prefix: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut out = command.to_vec();
    out.extend(TARGET.iter().map(|a| if *a == "PREFIX" { prefix } else { a }));
    out.extend(more);
    out
}

#[tokio::test]
async fn dashboards_and_alarms_put_round_trip_through_cloudwatch() {
    let url = cloudwatch_url();
    let prefix = unique("put");
    let topic = "arn:aws:sns:us-east-1:123456789012:chimewatch-alarms";

    // The dry run: every request, filled for this deployment, nothing sent (no endpoint would answer).
    let (ok, dashboards, err) = run("http://127.0.0.1:9", &args(["dashboards", "put"], &prefix, &["--dry-run"]));
    assert!(ok, "{err}");
    let names: Vec<String> =
        dashboards.iter().map(|d| d["request"]["DashboardName"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["meetings", "voice", "pipeline"].map(|n| format!("{prefix}-{n}")));
    let bodies: Vec<&str> = dashboards.iter().map(|d| d["request"]["DashboardBody"].as_str().unwrap()).collect();
    for body in &bodies {
        assert!(!body.contains("${"), "unfilled placeholder in {body}");
        assert!(body.contains("us-east-1"));
    }
    let all = bodies.concat();
    for value in ["Prod/Meetings", "Prod/Voice", "Prod/Pipeline", "/prod/meeting-events"] {
        assert!(all.contains(value), "{value} is in no dashboard");
    }
    let (ok, alarms, err) =
        run("http://127.0.0.1:9", &args(["alarms", "put"], &prefix, &["--dry-run", "--alarm-action", topic]));
    assert!(ok, "{err}");
    assert_eq!(alarms.len(), 11);
    let put: Vec<AlarmDefinition> = alarms
        .iter()
        .map(|a| {
            assert_eq!(a["operation"], "PutMetricAlarm");
            AlarmDefinition::from_json(&a["request"].to_string()).unwrap()
        })
        .collect();
    for alarm in &put {
        assert!(alarm.name().starts_with(&format!("{prefix}-")), "{}", alarm.name());
        assert_eq!(alarm.alarm_actions(), [topic]);
        assert_eq!(alarm.ok_actions(), [topic]);
    }

    // For real, through the CloudWatch emulator; then read back with CloudWatch's own read APIs.
    let (ok, lines, err) = run(&url, &args(["dashboards", "put"], &prefix, &[]));
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let client = cloudwatch(&url);
    for (name, body) in names.iter().zip(&bodies) {
        let held = chimewatch_sinks::cloudwatch_admin::get_dashboard(&client, name).await.unwrap();
        let (held, sent): (Value, Value) = (serde_json::from_str(&held).unwrap(), serde_json::from_str(body).unwrap());
        assert_eq!(held, sent, "dashboard {name}");
    }
    let (ok, lines, err) = run(&url, &args(["alarms", "put"], &prefix, &["--alarm-action", topic]));
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 11, "{lines:?}");
    let names: Vec<String> = put.iter().map(|a| a.name().to_owned()).collect();
    let mut held = chimewatch_sinks::cloudwatch_admin::describe_alarms(&client, &names).await.unwrap();
    held.sort_by(|a, b| a.name().cmp(b.name()));
    let mut put = put;
    put.sort_by(|a, b| a.name().cmp(b.name()));
    assert_eq!(held, put, "what DescribeAlarms gives back is what was put");

    // Putting again replaces rather than duplicates.
    let (ok, _, err) = run(&url, &args(["alarms", "put"], &prefix, &["--alarm-action", topic]));
    assert!(ok, "{err}");
    assert_eq!(chimewatch_sinks::cloudwatch_admin::describe_alarms(&client, &names).await.unwrap().len(), 11);
}

#[test]
fn a_put_that_cannot_reach_cloudwatch_fails_and_names_what_was_not_put() {
    // Port 9 (discard) on loopback: nothing listens, every connection is refused.
    let (ok, lines, err) = run("http://127.0.0.1:9", &args(["alarms", "put"], "unreachable", &[]));
    assert!(!ok, "the command must fail");
    assert!(lines.is_empty(), "nothing was put: {lines:?}");
    assert!(err.contains("PutMetricAlarm unreachable-meeting-start-duration-p99"), "{err}");
    assert!(err.contains("11 of 11 alarms were not put"), "{err}");
    let (ok, _, err) = run("http://127.0.0.1:9", &["dashboards", "put", "--dry-run"]);
    assert!(!ok && err.contains("no AWS region: pass --region or set AWS_REGION"), "{err}");
}
