//! Precedence and validation: flags over the file over the defaults, every command reading the same settings.

use std::io::Write;

use clap::Parser;

use super::*;
use crate::cli::Cli;

/// The settings `args` (after `chimewatch`) resolve to over a config file holding `toml`.
fn settings(args: &[&str], toml: &str) -> anyhow::Result<Settings> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let cli = Cli::try_parse_from(std::iter::once("chimewatch").chain(args.iter().copied())).unwrap();
    resolve(Some(file.path()), cli.command.settings())
}

const FILE: &str = r#"
listen = "127.0.0.1:9000"
stream = "from-file"
[gateway]
max_body_bytes = 1000
cors_origins = ["https://a.example"]
[limits]
max_history_entries = 10
[local]
shards = 2
[aggregator]
namespace = "Team/Meetings"
window_secs = 10
dimension_sets = [[], ["sdkName", "osName"]]
[aggregator.sip]
ring_timeout_secs = 60
[archive]
max_age = "90s"
"#;

#[test]
fn the_command_line_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn flags_beat_the_file_which_beats_the_defaults() {
    let up = settings(&["up", "--max-body-bytes", "2000", "--local-shards", "3"], FILE).unwrap().up().unwrap();
    assert_eq!(up.serving.listen.port(), 9000, "from the file");
    assert_eq!(up.gateway.max_body_bytes, 2000, "the flag");
    assert_eq!(up.gateway.cors_origins, ["https://a.example"]);
    assert_eq!(up.gateway.limits.max_history_entries, 10);
    assert_eq!(up.gateway.max_events_per_request, GatewayConfig::default().max_events_per_request, "a default");
    assert_eq!(up.local.shards, 3);
    assert_eq!(up.archiving.max_age, Duration::from_secs(90));
    assert_eq!(up.aggregation.sip_policy.ring_timeout_ms, 60_000);
    let bare = settings(&["up"], "").unwrap().up().unwrap();
    assert_eq!(bare.serving.listen, GATEWAY_LISTEN);
    assert_eq!(bare.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn every_service_reads_listen_and_stream_from_the_file() {
    let s = settings(&["archiver", "--bucket", "b"], FILE).unwrap();
    let archiver = s.archiver_command().unwrap();
    assert_eq!((archiver.listen.port(), archiver.consumer.stream.as_str()), (9000, "from-file"));
    assert_eq!(archiver.consumer.lease_table, "chimewatch-archiver-from-file");
    let aggregator = settings(&["aggregator", "--stream", "flag"], FILE).unwrap().aggregator_command().unwrap();
    assert_eq!((aggregator.listen.port(), aggregator.consumer.stream.as_str()), (9000, "flag"));
    let defaults = settings(&["aggregator", "--stream", "s"], "").unwrap().aggregator_command().unwrap();
    assert_eq!(defaults.listen, AGGREGATOR_LISTEN);
}

#[test]
fn aggregation_settings_layer_and_validate() {
    let up = |args: &[&str]| settings(&[&["up"], args].concat(), FILE).and_then(|s| s.aggregation());
    let a = up(&["--window-secs", "1", "--dimension-set", "sdkName;;browserName,sdkVersion"]).unwrap();
    assert_eq!((a.namespace.as_str(), a.windows.window_ms), ("Team/Meetings", 1_000));
    assert_eq!(
        a.catalogue.dimension_sets,
        [vec!["sdkName".to_owned()], vec![], vec!["browserName".into(), "sdkVersion".into()]]
    );
    assert_eq!(up(&[]).unwrap().catalogue.dimension_sets[1], ["sdkName", "osName"], "from the file");
    assert_eq!(up(&["--event-logs", "false"]).unwrap().log_group, None);
    let err = |args: &[&str]| up(args).unwrap_err().to_string();
    assert!(err(&["--window-secs", "0"]).contains("aggregator.window_secs"), "{}", err(&["--window-secs", "0"]));
    assert!(err(&["--namespace", "AWS/X"]).contains("aggregator.namespace"));
}

#[test]
fn unknown_keys_and_bad_values_are_errors_that_name_the_setting() {
    let err = settings(&["up"], "[gateway]\nmax_body = 1").unwrap_err();
    assert!(format!("{err:#}").contains("unknown field `max_body`"), "{err:#}");
    let err = settings(&["up"], "[archive]\nmax_age = \"soon\"").unwrap_err();
    assert!(format!("{err:#}").contains("\"soon\""), "{err:#}");
    let short = settings(&["up", "--token-secret", "short"], "").unwrap().gateway().unwrap_err().to_string();
    assert!(
        short.contains("gateway.token_secret (and each of gateway.previous_token_secrets) must be at least 32 bytes"),
        "{short}"
    );
    let aws = settings(&["gateway", "--stream", "s", "--pipeline-namespace", "AWS/Chime"], "").unwrap();
    assert!(aws.gateway_command().unwrap_err().to_string().contains("pipeline.namespace"));
    let off = settings(&["gateway", "--stream", "s", "--pipeline-metrics", "false"], "").unwrap();
    assert_eq!(off.gateway_command().unwrap().pipeline, None);
    let no_stream = settings(&["gateway"], "").unwrap().gateway_command().unwrap_err().to_string();
    assert!(no_stream.contains("no Kinesis stream given"), "{no_stream}");
    let retention = settings(&["aggregator", "--stream", "s", "--log-retention-days", "31"], "").unwrap();
    assert!(retention.aggregator_command().unwrap_err().to_string().contains("not one CloudWatch Logs allows"));
    let failover = settings(&["aggregator", "--stream", "s", "--failover-secs", "2"], "").unwrap();
    assert!(failover.aggregator_command().unwrap_err().to_string().contains("consumer.failover_secs"));
}

#[test]
fn durations_read_like_people_write_them() {
    let up = settings(&["up", "--archive-max-age", "2m 30s"], "").unwrap().up().unwrap();
    assert_eq!(up.archiving.max_age, Duration::from_secs(150));
    let bare = Cli::try_parse_from(["chimewatch", "up", "--archive-max-age", "90"]).unwrap_err().to_string();
    assert!(bare.contains("time unit needed"), "{bare}");
}
