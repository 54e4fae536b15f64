//! The dashboards and alarms of `deploy/`, compiled into the binary: `up` renders and evaluates exactly the files
//! that `dashboards put`, `alarms put` and the CloudFormation template deploy.

use chimewatch_metrics::alarm::{AlarmDefinition, AlarmMetric, MetricStat, QueryKind};

use crate::body::{Dashboard, SeriesSpec, WidgetKind};
use crate::search;
use crate::template::Values;

/// The dashboards, in the console's menu order: (name, body with placeholders).
pub const DASHBOARDS: [(&str, &str); 3] = [
    ("meetings", include_str!("../../../deploy/dashboards/meetings.json")),
    ("voice", include_str!("../../../deploy/dashboards/voice.json")),
    ("pipeline", include_str!("../../../deploy/dashboards/pipeline.json")),
];

/// The alarms: (file name without `.json`, PutMetricAlarm request with placeholders).
pub const ALARMS: [(&str, &str); 11] = [
    ("meeting-start-duration-p99", include_str!("../../../deploy/alarms/meeting-start-duration-p99.json")),
    ("join-failure-ratio", include_str!("../../../deploy/alarms/join-failure-ratio.json")),
    ("meetings-failed", include_str!("../../../deploy/alarms/meetings-failed.json")),
    ("server-cause-spike", include_str!("../../../deploy/alarms/server-cause-spike.json")),
    ("voice-failure-ratio", include_str!("../../../deploy/alarms/voice-failure-ratio.json")),
    ("sip-5xx-burst", include_str!("../../../deploy/alarms/sip-5xx-burst.json")),
    ("aggregator-iterator-age", include_str!("../../../deploy/alarms/aggregator-iterator-age.json")),
    ("archiver-iterator-age", include_str!("../../../deploy/alarms/archiver-iterator-age.json")),
    ("dead-letters", include_str!("../../../deploy/alarms/dead-letters.json")),
    ("gateway-5xx", include_str!("../../../deploy/alarms/gateway-5xx.json")),
    ("gateway-throttles", include_str!("../../../deploy/alarms/gateway-throttles.json")),
];

/// The dashboards with their placeholders filled, parsed and checked.
pub fn dashboards(values: &Values) -> Result<Vec<(String, Dashboard)>, String> {
    DASHBOARDS
        .iter()
        .map(|(name, text)| {
            let file = format!("deploy/dashboards/{name}.json");
            let filled = values.fill(&file, text).map_err(|e| e.to_string())?;
            let body = Dashboard::parse(&filled).map_err(|e| format!("{file}: {e}"))?;
            Ok(((*name).to_owned(), body))
        })
        .collect()
}

/// The alarms with their placeholders filled, validated as PutMetricAlarm validates them.
pub fn alarms(values: &Values) -> Result<Vec<AlarmDefinition>, String> {
    ALARMS
        .iter()
        .map(|(name, text)| {
            let file = format!("deploy/alarms/{name}.json");
            let filled = values.fill(&file, text).map_err(|e| e.to_string())?;
            AlarmDefinition::from_json(&filled).map_err(|e| format!("{file}: {e}"))
        })
        .collect()
}

/// Checks a deployment's name prefix: dashboard names take letters, digits, `-` and `_` (PutDashboard), and the
/// alarms are named after it too.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok =
        (1..=64).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("name prefix {prefix:?}: 1 to 64 letters, digits, '-' or '_' (a dashboard name takes no others)"))
    }
}

/// The PutDashboard requests of one deployment: (`{prefix}-{name}`, the filled body as compact JSON), each body
/// checked as the console checks it.
pub fn dashboard_requests(values: &Values, prefix: &str) -> Result<Vec<(String, String)>, String> {
    check_prefix(prefix)?;
    DASHBOARDS
        .iter()
        .map(|(name, text)| {
            let file = format!("deploy/dashboards/{name}.json");
            let filled = values.fill(&file, text).map_err(|e| e.to_string())?;
            Dashboard::parse(&filled).map_err(|e| format!("{file}: {e}"))?;
            let body: serde_json::Value = serde_json::from_str(&filled).map_err(|e| format!("{file}: {e}"))?;
            Ok((format!("{prefix}-{name}"), body.to_string()))
        })
        .collect()
}

/// The PutMetricAlarm requests of one deployment, as the JSON `aws cloudwatch put-metric-alarm --cli-input-json`
/// takes and as validated definitions: each alarm named `{prefix}-{file name}`, with `actions` (SNS topic ARNs, say)
/// notified when it goes into ALARM and back to OK.
pub fn alarm_requests(
    values: &Values,
    prefix: &str,
    actions: &[String],
) -> Result<Vec<(serde_json::Value, AlarmDefinition)>, String> {
    check_prefix(prefix)?;
    if let Some(bad) = actions.iter().find(|a| !a.starts_with("arn:")) {
        return Err(format!("alarm action {bad:?} is not an ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC, for one)"));
    }
    ALARMS
        .iter()
        .map(|(name, text)| {
            let file = format!("deploy/alarms/{name}.json");
            let filled = values.fill(&file, text).map_err(|e| e.to_string())?;
            let mut request: serde_json::Value = serde_json::from_str(&filled).map_err(|e| format!("{file}: {e}"))?;
            request["AlarmName"] = format!("{prefix}-{name}").into();
            if !actions.is_empty() {
                request["AlarmActions"] = actions.into();
                request["OKActions"] = actions.into();
            }
            let definition = AlarmDefinition::from_json(&request.to_string()).map_err(|e| format!("{file}: {e}"))?;
            Ok((request, definition))
        })
        .collect()
}

/// A series a dashboard or alarm names: its namespace, metric and dimension names (a `SEARCH` schema names no values).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesRef {
    pub namespace: String,
    pub metric: String,
    pub dimension_names: Vec<String>,
    /// Where it is named, for messages.
    pub named_in: String,
}

fn named(namespace: &str, metric: &str, dimensions: impl Iterator<Item = String>, named_in: String) -> SeriesRef {
    let mut dimension_names: Vec<String> = dimensions.collect();
    dimension_names.sort();
    SeriesRef { namespace: namespace.to_owned(), metric: metric.to_owned(), dimension_names, named_in }
}

/// Every series the dashboards and alarms name.
pub fn references(dashboards: &[(String, Dashboard)], alarms: &[AlarmDefinition]) -> Result<Vec<SeriesRef>, String> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards {
        for widget in &dashboard.widgets {
            let WidgetKind::Metric(m) = &widget.kind else { continue };
            let at = format!("dashboard {name}, widget {:?}", m.title);
            for spec in &m.series {
                match spec {
                    SeriesSpec::Metric { namespace, name, dimensions, .. } => {
                        out.push(named(namespace, name, dimensions.iter().map(|d| d.0.clone()), at.clone()));
                    }
                    SeriesSpec::Expression { expression, .. } => {
                        if let Some(s) = search::parse(expression)? {
                            out.push(named(&s.namespace, &s.metric, s.dimension_names.into_iter(), at.clone()));
                        }
                    }
                }
            }
        }
    }
    for alarm in alarms {
        let at = format!("alarm {}", alarm.name());
        let stats: Vec<&MetricStat> = match alarm.metric() {
            AlarmMetric::Stat(s) => vec![s],
            AlarmMetric::Math(queries) => queries
                .iter()
                .filter_map(|q| match &q.kind {
                    QueryKind::Stat(s) => Some(s),
                    QueryKind::Expression { .. } => None,
                })
                .collect(),
        };
        for s in stats {
            let m = &s.metric;
            out.push(named(&m.namespace, &m.metric_name, m.dimensions.iter().map(|d| d.0.clone()), at.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values::new()
            .set("Region", "eu-west-1")
            .set("MeetingNamespace", "AmazonChimeSDKMeetingEvents")
            .set("VoiceNamespace", "ChimeWatch/VoiceConnector")
            .set("PipelineNamespace", "ChimeWatch/Pipeline")
            .set("MeetingLogGroup", "/chimewatch/meeting-events")
    }

    /// Each file passes CloudWatch's rules once filled, and the console can draw and evaluate all of it: every
    /// `SEARCH` is one it runs, every metric math expression parses, every log query parses.
    #[test]
    fn the_deploy_files_are_valid_and_renderable() {
        let dashboards = dashboards(&values()).unwrap();
        let alarms = alarms(&values()).unwrap();
        assert_eq!((dashboards.len(), alarms.len()), (3, 11));
        for (name, d) in &dashboards {
            for w in &d.widgets {
                match &w.kind {
                    WidgetKind::Metric(m) => {
                        for spec in &m.series {
                            if let SeriesSpec::Expression { expression, .. } = spec
                                && search::parse(expression).unwrap().is_none()
                            {
                                chimewatch_metrics::alarm::math::parse(expression).unwrap();
                            }
                        }
                    }
                    WidgetKind::Log(l) => {
                        chimewatch_sinks::logs_insights::InsightsQuery::parse(&l.query)
                            .unwrap_or_else(|e| panic!("{name} {:?}: {e}", l.title));
                    }
                    WidgetKind::Text(_) => {}
                }
            }
        }
        let refs = references(&dashboards, &alarms).unwrap();
        assert!(refs.iter().any(|r| r.metric == "meetingStartDurationMs" && r.dimension_names == ["sdkName"]));
        assert!(refs.iter().any(|r| r.named_in == "alarm chimewatch-dead-letters" && r.dimension_names == ["Service"]));
    }

    /// Voice Connector series need whole calls of every outcome, which no short end-to-end run produces (the
    /// console test checks the other namespaces against a run): so every call fact the tracker can produce is fed to
    /// the catalogue of Voice Connector metrics, and what the deploy files name must be among its series.
    #[test]
    fn every_voice_series_named_is_one_the_aggregator_publishes() {
        use chimewatch_metrics::voice;
        use chimewatch_sip::{CallFact, Direction, Observed};

        let mut facts = vec![CallFact::Throttled];
        for direction in [Direction::Inbound, Direction::Outbound] {
            facts.extend([
                CallFact::Attempt { direction },
                CallFact::Answered { direction, setup_ms: 1 },
                CallFact::Ringing { direction, post_dial_delay_ms: 1 },
                CallFact::Failed { direction, status: 486, reason: "Busy Here".into(), rang: true },
                CallFact::Cancelled { direction, rang: true },
                CallFact::Ended { direction, duration_ms: 1, reason: Some("ACK timeout".into()), timed_out: false },
                CallFact::Active { direction },
            ]);
        }
        facts.extend((1..=6).map(|class| CallFact::Response { class, method: "INVITE".into() }));
        let published: Vec<(String, Vec<String>)> = facts
            .into_iter()
            .flat_map(|fact| {
                let observed = Observed { at_ms: 0, voice_connector_id: "vc".into(), region: "r".into(), fact };
                // Collected here: the facts borrow `observed`.
                voice::facts(&observed)
                    .into_iter()
                    .map(|f| {
                        let mut names: Vec<String> = f.dimensions.into_iter().map(|d| d.0.into_owned()).collect();
                        names.sort();
                        (f.metric.to_owned(), names)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let refs = references(&dashboards(&values()).unwrap(), &alarms(&values()).unwrap()).unwrap();
        let voice: Vec<&SeriesRef> = refs.iter().filter(|r| r.namespace == "ChimeWatch/VoiceConnector").collect();
        assert!(voice.len() > 20, "{voice:?}");
        for r in voice {
            assert!(published.contains(&(r.metric.clone(), r.dimension_names.clone())), "never published: {r:?}");
        }
    }

    #[test]
    fn an_unfilled_placeholder_is_an_error() {
        let e = dashboards(&Values::new().set("Region", "x")).unwrap_err();
        assert!(e.contains("deploy/dashboards/meetings.json") && e.contains("unknown placeholder"), "{e}");
    }

    /// A file added to `deploy/` but not here would be deployed and never shown or evaluated by `up`.
    #[test]
    fn every_deploy_file_is_compiled_in() {
        for (dir, listed) in [
            ("dashboards", DASHBOARDS.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
            ("alarms", ALARMS.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_owned())
                .collect();
            files.sort();
            let mut listed: Vec<String> = listed.into_iter().map(str::to_owned).collect();
            listed.sort();
            assert_eq!(files, listed, "deploy/{dir}");
        }
    }

    /// The requests `dashboards put` and `alarms put` send: named after the prefix, filled, and for the default
    /// prefix exactly the files' own alarm names; the actions on every alarm; bad prefixes and actions refused.
    #[test]
    fn put_requests_are_named_after_the_prefix_and_carry_the_actions() {
        let dashboards = dashboard_requests(&values(), "prod_1").unwrap();
        let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["prod_1-meetings", "prod_1-voice", "prod_1-pipeline"]);
        for (name, body) in &dashboards {
            assert!(!body.contains("${") && body.contains("eu-west-1"), "{name} is filled");
            Dashboard::parse(body).unwrap();
        }
        let topic = "arn:aws:sns:eu-west-1:123456789012:chimewatch-alarms".to_owned();
        for (request, definition) in alarm_requests(&values(), "chimewatch", std::slice::from_ref(&topic)).unwrap() {
            let file = ALARMS.iter().find(|(n, _)| definition.name() == format!("chimewatch-{n}")).unwrap().1;
            let original: serde_json::Value = serde_json::from_str(file).unwrap();
            assert_eq!(original["AlarmName"], request["AlarmName"]);
            assert_eq!(
                (definition.alarm_actions(), definition.ok_actions()),
                (&[topic.clone()][..], &[topic.clone()][..])
            );
            assert!(!request.to_string().contains("${"));
        }
        assert!(alarm_requests(&values(), "x", &[]).unwrap().iter().all(|(r, _)| r.get("AlarmActions").is_none()));
        for bad in ["", "has space", "a/b", &"x".repeat(65)] {
            assert!(dashboard_requests(&values(), bad).unwrap_err().contains("name prefix"), "{bad:?}");
        }
        let err = alarm_requests(&values(), "x", &["my-topic".into()]).unwrap_err();
        assert!(err.contains("\"my-topic\" is not an ARN"), "{err}");
        let six = vec![topic; 6];
        assert!(
            alarm_requests(&values(), "x", &six).unwrap_err().contains("at most 5 actions"),
            "five actions at most"
        );
    }
}
