//! Settings resolved once, with the precedence CLI > environment > `--config` file > defaults, into typed configs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chimewatch_gateway::GatewayConfig;
use chimewatch_gateway::auth::AuthConfig;
use chimewatch_model::Limits;
use chimewatch_stream::kinesis::KinesisProducerConfig;
use chimewatch_stream::local::LocalLogConfig;
use serde::Deserialize;

use crate::cli::{
    AggregationArgs, ArchiveFormat, ArchivingArgs, ConsumerArgs, KinesisArgs, PipelineArgs, ServeArgs, UpArgs,
};
use chimewatch_aggregator::AggregatorServiceConfig;
use chimewatch_archiver::{ArchiverConfig, Format};
use chimewatch_stream::consumer::WorkerConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./chimewatch-data";

/// The `--config` TOML file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub gateway: FileGateway,
    pub limits: Option<Limits>,
    #[serde(default)]
    pub local: FileLocal,
    #[serde(default)]
    pub kinesis: FileKinesis,
    #[serde(default)]
    pub pipeline: FilePipeline,
    #[serde(default)]
    pub aggregator: FileAggregator,
    #[serde(default)]
    pub consumer: FileConsumer,
    #[serde(default)]
    pub archiver: FileArchiver,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArchiver {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub format: Option<crate::cli::ArchiveFormat>,
    pub max_file_mb: Option<u64>,
    /// e.g. "5m".
    pub max_age: Option<String>,
    pub spool_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAggregator {
    pub namespace: Option<String>,
    pub log_group: Option<String>,
    pub event_logs: Option<bool>,
    pub log_retention_days: Option<i32>,
    pub window_secs: Option<u64>,
    pub out_of_orderness_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    /// Each set a list of dimension names; `[]` is fleet-wide.
    pub dimension_sets: Option<Vec<Vec<String>>>,
    pub max_series_per_metric: Option<usize>,
    pub metrics_format: Option<crate::cli::MetricsFormat>,
    pub emf_log_group: Option<String>,
    pub voice_namespace: Option<String>,
    pub sip_log_group: Option<String>,
    #[serde(default)]
    pub sip: FileSip,
}

/// The SIP counting policy (`chimewatch_sip::Policy`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSip {
    pub cancel_is_failure: Option<bool>,
    pub failover_ms: Option<i64>,
    pub count_options: Option<bool>,
    pub throttles_from_rejections: Option<bool>,
    pub ring_timeout_secs: Option<u64>,
    pub call_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    pub lease_table: Option<String>,
    pub worker_id: Option<String>,
    pub failover_secs: Option<u64>,
    pub dead_letter_stream: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePipeline {
    pub enabled: Option<bool>,
    pub interval_secs: Option<u64>,
    pub namespace: Option<String>,
}

/// Where and how often a service publishes its own metrics; `None` when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub namespace: String,
    pub interval: Duration,
}

pub fn pipeline(args: &PipelineArgs, file: &FileConfig) -> anyhow::Result<Option<PipelineConfig>> {
    let p = &file.pipeline;
    if !args.pipeline_metrics.or(p.enabled).unwrap_or(true) {
        return Ok(None);
    }
    let namespace = args
        .pipeline_namespace
        .clone()
        .or_else(|| p.namespace.clone())
        .unwrap_or_else(|| chimewatch_sinks::pipeline::DEFAULT_NAMESPACE.to_owned());
    if namespace.is_empty() || namespace.starts_with("AWS/") {
        bail!("pipeline namespace {namespace:?} is invalid: it must be non-empty and must not start with \"AWS/\"");
    }
    let secs = args.pipeline_metrics_interval_secs.or(p.interval_secs).unwrap_or(60);
    if secs == 0 {
        bail!("pipeline metrics interval must be at least 1 second");
    }
    Ok(Some(PipelineConfig { namespace, interval: Duration::from_secs(secs) }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGateway {
    pub max_body_bytes: Option<usize>,
    pub max_events_per_request: Option<usize>,
    pub cors_origins: Option<Vec<String>>,
    pub api_keys: Option<Vec<String>>,
    pub token_secret: Option<String>,
    pub dedup_window_secs: Option<u64>,
    pub dedup_max_keys: Option<usize>,
    pub join_token_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLocal {
    pub shards: Option<u32>,
    pub segment_bytes: Option<u64>,
    pub retention_hours: Option<u64>,
    pub max_shard_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKinesis {
    pub stream: Option<String>,
    pub linger_ms: Option<u64>,
    pub aggregation: Option<bool>,
    pub max_in_flight_bytes: Option<u64>,
}

pub fn load_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

pub fn listen(serve: &ServeArgs, file: &FileConfig) -> SocketAddr {
    serve
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))))
}

pub fn data_dir(arg: Option<&PathBuf>, file: &FileConfig) -> PathBuf {
    arg.cloned().or_else(|| file.data_dir.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

pub fn gateway(serve: &ServeArgs, file: &FileConfig) -> anyhow::Result<GatewayConfig> {
    let defaults = GatewayConfig::default();
    let g = &file.gateway;
    let mut limits = file.limits.clone().unwrap_or_default();
    if let Some(n) = serve.max_history_entries {
        limits.max_history_entries = n;
    }
    if let Some(n) = serve.max_attribute_bytes {
        limits.max_attribute_bytes = n;
    }
    let config = GatewayConfig {
        max_body_bytes: serve.max_body_bytes.or(g.max_body_bytes).unwrap_or(defaults.max_body_bytes),
        max_events_per_request: serve
            .max_events_per_request
            .or(g.max_events_per_request)
            .unwrap_or(defaults.max_events_per_request),
        max_record_bytes: defaults.max_record_bytes,
        limits,
        cors_origins: serve.cors_origins.clone().or_else(|| g.cors_origins.clone()).unwrap_or(defaults.cors_origins),
        auth: AuthConfig {
            api_keys: serve
                .api_keys
                .clone()
                .or_else(|| g.api_keys.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|k| !k.is_empty())
                .collect(),
            token_secret: serve
                .token_secret
                .clone()
                .or_else(|| g.token_secret.clone())
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
        },
        dedup_window_ms: secs_to_ms(serve.dedup_window_secs.or(g.dedup_window_secs))
            .unwrap_or(defaults.dedup_window_ms),
        dedup_max_keys: g.dedup_max_keys.unwrap_or(defaults.dedup_max_keys),
        join_token_ttl_ms: secs_to_ms(serve.join_token_ttl_secs.or(g.join_token_ttl_secs))
            .unwrap_or(defaults.join_token_ttl_ms),
        max_join_tokens: defaults.max_join_tokens,
    };
    if config.max_body_bytes == 0 || config.max_events_per_request == 0 {
        bail!("max_body_bytes and max_events_per_request must be positive");
    }
    if config.limits.max_history_entries == 0 || config.limits.max_attribute_bytes < 64 {
        bail!("limits: max_history_entries must be positive and max_attribute_bytes at least 64");
    }
    if config.auth.token_secret.as_ref().is_some_and(|s| s.len() < 16) {
        bail!("token_secret must be at least 16 bytes");
    }
    Ok(config)
}

fn secs_to_ms(secs: Option<u64>) -> Option<i64> {
    secs.map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
}

pub fn local(up: &UpArgs, file: &FileConfig) -> anyhow::Result<LocalLogConfig> {
    let defaults = LocalLogConfig::default();
    let l = &file.local;
    let config = LocalLogConfig {
        shards: up.local_shards.or(l.shards).unwrap_or(defaults.shards),
        segment_bytes: l.segment_bytes.unwrap_or(defaults.segment_bytes),
        retention: l.retention_hours.map_or(defaults.retention, |h| Duration::from_secs(h * 3600)),
        max_shard_bytes: l.max_shard_bytes.unwrap_or(defaults.max_shard_bytes),
        max_in_flight_bytes: defaults.max_in_flight_bytes,
    };
    if config.shards == 0 || config.shards > 1024 {
        bail!("local shards must be between 1 and 1024, got {}", config.shards);
    }
    Ok(config)
}

pub fn kinesis(args: &KinesisArgs, file: &FileConfig) -> anyhow::Result<KinesisProducerConfig> {
    let k = &file.kinesis;
    let Some(stream) = args.stream.clone().or_else(|| k.stream.clone()) else {
        bail!(
            "no Kinesis stream given: pass --stream NAME, set CHIMEWATCH_STREAM, or set kinesis.stream in the config file"
        );
    };
    let defaults = KinesisProducerConfig::new(stream);
    Ok(KinesisProducerConfig {
        linger: args.linger_ms.or(k.linger_ms).map_or(defaults.linger, Duration::from_millis),
        aggregation: args.aggregation.or(k.aggregation).unwrap_or(defaults.aggregation),
        max_in_flight_bytes: k.max_in_flight_bytes.unwrap_or(defaults.max_in_flight_bytes),
        ..defaults
    })
}

/// What the aggregator computes and where it writes.
pub fn aggregation(args: &AggregationArgs, file: &FileConfig) -> anyhow::Result<AggregatorServiceConfig> {
    let a = &file.aggregator;
    let defaults = AggregatorServiceConfig::default();
    let namespace = args.namespace.clone().or_else(|| a.namespace.clone()).unwrap_or(defaults.namespace);
    if namespace.is_empty() || namespace.starts_with("AWS/") || namespace.len() > 255 {
        bail!("namespace {namespace:?} is invalid: 1 to 255 characters, not starting with \"AWS/\"");
    }
    let log_group = args.log_group.clone().or_else(|| a.log_group.clone()).or(defaults.log_group);
    let log_group = if args.event_logs.or(a.event_logs).unwrap_or(true) { log_group } else { None };
    let secs = |arg: Option<u64>, file: Option<u64>, default_ms: i64, what: &str| -> anyhow::Result<i64> {
        match arg.or(file) {
            None => Ok(default_ms),
            Some(0) if what == "window" => bail!("window_secs must be at least 1"),
            Some(s) => Ok(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)),
        }
    };
    let mut windows = defaults.windows.clone();
    windows.window_ms = secs(args.window_secs, a.window_secs, windows.window_ms, "window")?;
    windows.out_of_orderness_ms =
        secs(args.out_of_orderness_secs, a.out_of_orderness_secs, windows.out_of_orderness_ms, "out_of_orderness")?;
    windows.idle_timeout_ms = secs(args.idle_timeout_secs, a.idle_timeout_secs, windows.idle_timeout_ms, "idle")?;
    windows.max_series_per_metric =
        args.max_series_per_metric.or(a.max_series_per_metric).unwrap_or(windows.max_series_per_metric);
    if windows.max_series_per_metric == 0 {
        bail!("max_series_per_metric must be at least 1");
    }
    let mut catalogue = defaults.catalogue.clone();
    let sets = match &args.dimension_sets {
        Some(flags) => Some(
            flags
                .iter()
                .map(|set| set.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect())
                .collect::<Vec<Vec<String>>>(),
        ),
        None => a.dimension_sets.clone(),
    };
    if let Some(sets) = sets {
        if let Some(big) = sets.iter().find(|s| s.len() > 29) {
            bail!("dimension set {big:?} has more than 29 dimensions (CloudWatch allows 30 with the metric's own)");
        }
        catalogue.dimension_sets = sets;
    }
    let voice_namespace =
        args.voice_namespace.clone().or_else(|| a.voice_namespace.clone()).unwrap_or(defaults.voice_namespace);
    if voice_namespace.is_empty() || voice_namespace.starts_with("AWS/") || voice_namespace.len() > 255 {
        bail!("voice namespace {voice_namespace:?} is invalid: 1 to 255 characters, not starting with \"AWS/\"");
    }
    let p = &a.sip;
    let mut sip_policy = defaults.sip_policy.clone();
    sip_policy.cancel_is_failure =
        args.sip_cancel_is_failure.or(p.cancel_is_failure).unwrap_or(sip_policy.cancel_is_failure);
    sip_policy.failover_ms = args.sip_failover_ms.or(p.failover_ms).unwrap_or(sip_policy.failover_ms).max(0);
    sip_policy.count_options = args.sip_count_options.or(p.count_options).unwrap_or(sip_policy.count_options);
    sip_policy.throttles_from_rejections = args
        .sip_throttles_from_rejections
        .or(p.throttles_from_rejections)
        .unwrap_or(sip_policy.throttles_from_rejections);
    if let Some(secs) = p.ring_timeout_secs {
        sip_policy.ring_timeout_ms = secs as i64 * 1000;
    }
    if let Some(secs) = p.call_timeout_secs {
        sip_policy.call_timeout_ms = secs as i64 * 1000;
    }
    let sip_log_group = args.sip_log_group.clone().or_else(|| a.sip_log_group.clone()).filter(|g| !g.is_empty());
    Ok(AggregatorServiceConfig {
        namespace,
        voice_namespace,
        sip_policy,
        sip_log_group,
        log_group,
        windows,
        catalogue,
        ..defaults
    })
}

pub fn log_retention_days(arg: Option<i32>, file: &FileConfig) -> anyhow::Result<Option<i32>> {
    const ALLOWED: &[i32] =
        &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
    match arg.or(file.aggregator.log_retention_days) {
        Some(d) if !ALLOWED.contains(&d) => {
            bail!("log retention of {d} days is not one CloudWatch Logs allows: {ALLOWED:?}")
        }
        other => Ok(other),
    }
}

/// How a consumer service joins its peers: the lease table, its worker settings, the dead-letter stream.
pub fn consumer(
    args: &ConsumerArgs,
    file: &FileConfig,
    default_table: &str,
) -> anyhow::Result<(String, WorkerConfig, Option<String>)> {
    let c = &file.consumer;
    let table = args.lease_table.clone().or_else(|| c.lease_table.clone()).unwrap_or_else(|| default_table.to_owned());
    let worker_id =
        args.worker_id.clone().or_else(|| c.worker_id.clone()).unwrap_or_else(WorkerConfig::default_worker_id);
    let mut worker = WorkerConfig::new(worker_id);
    if let Some(secs) = args.failover_secs.or(c.failover_secs) {
        if secs < 3 {
            bail!("failover_secs must be at least 3 (leases are renewed every third of it)");
        }
        worker.failover = Duration::from_secs(secs);
        worker.round_interval = worker.failover / 3;
    }
    Ok((table, worker, args.dead_letter_stream.clone().or_else(|| c.dead_letter_stream.clone())))
}

/// How the archiver writes: format, cut triggers, spool directory (the prefix is set by the caller).
pub fn archiving(args: &ArchivingArgs, file: &FileConfig, default_spool: PathBuf) -> anyhow::Result<ArchiverConfig> {
    let a = &file.archiver;
    let spool = args.archive_spool_dir.clone().or_else(|| a.spool_dir.clone()).unwrap_or(default_spool);
    let mut config = ArchiverConfig::new(spool);
    config.format = archive_format(args.archive_format.or(a.format));
    if let Some(mb) = args.archive_max_file_mb.or(a.max_file_mb) {
        if mb == 0 {
            bail!("archive max_file_mb must be at least 1");
        }
        config.max_file_bytes = mb * 1024 * 1024;
    }
    if let Some(age) = args.archive_max_age.as_deref().or(a.max_age.as_deref()) {
        config.max_age = parse_duration(age).context("archive max_age")?;
    }
    Ok(config)
}

pub fn archive_format(format: Option<ArchiveFormat>) -> Format {
    match format {
        Some(ArchiveFormat::Ndjson) => Format::NdjsonGzip,
        Some(ArchiveFormat::Parquet) | None => Format::Parquet,
    }
}

/// `90s`, `15m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().with_context(|| format!("{text:?} is not a duration like 90s, 15m, 1h or 2d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{text:?} has an unknown unit {unit:?}: use s, m, h or d"),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn up_args(args: &[&str]) -> UpArgs {
        match Cli::try_parse_from([&["chimewatch", "up"], args].concat()).unwrap().command {
            Command::Up(up) => up,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn cli_beats_file_beats_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9000"
            [gateway]
            max_body_bytes = 1000
            cors_origins = ["https://a.example"]
            [limits]
            max_history_entries = 10
            [local]
            shards = 2
            "#,
        )
        .unwrap();
        let up = up_args(&["--max-body-bytes", "2000", "--local-shards", "3"]);
        assert_eq!(listen(&up.serve, &file).port(), 9000);
        let g = gateway(&up.serve, &file).unwrap();
        assert_eq!(g.max_body_bytes, 2000);
        assert_eq!(g.cors_origins, ["https://a.example"]);
        assert_eq!(g.limits.max_history_entries, 10);
        assert_eq!(g.max_events_per_request, GatewayConfig::default().max_events_per_request);
        assert_eq!(local(&up, &file).unwrap().shards, 3);
        assert_eq!(listen(&up_args(&[]).serve, &FileConfig::default()).to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let err = toml::from_str::<FileConfig>("[gateway]\nmax_body = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field `max_body`"), "{err}");
        let up = up_args(&["--token-secret", "short"]);
        assert!(gateway(&up.serve, &FileConfig::default()).unwrap_err().to_string().contains("at least 16 bytes"));
        let k = KinesisArgs { stream: None, linger_ms: None, aggregation: None };
        let p = PipelineArgs {
            pipeline_metrics: None,
            pipeline_metrics_interval_secs: None,
            pipeline_namespace: Some("AWS/Chime".into()),
        };
        assert!(pipeline(&p, &FileConfig::default()).unwrap_err().to_string().contains("must not start with"));
        let off = PipelineArgs { pipeline_metrics: Some(false), ..p };
        assert_eq!(pipeline(&off, &FileConfig::default()).unwrap(), None);
        assert!(kinesis(&k, &FileConfig::default()).unwrap_err().to_string().contains("no Kinesis stream given"));
    }

    #[test]
    fn aggregation_settings_layer_and_validate() {
        let file: FileConfig = toml::from_str(
            r#"
            [aggregator]
            namespace = "Team/Meetings"
            window_secs = 10
            dimension_sets = [[], ["sdkName", "osName"]]
            "#,
        )
        .unwrap();
        let up = up_args(&["--window-secs", "1", "--dimension-set", "sdkName;;browserName,sdkVersion"]);
        let a = aggregation(&up.aggregation, &file).unwrap();
        assert_eq!((a.namespace.as_str(), a.windows.window_ms), ("Team/Meetings", 1_000));
        assert_eq!(
            a.catalogue.dimension_sets,
            [vec!["sdkName".to_owned()], vec![], vec!["browserName".into(), "sdkVersion".into()]]
        );
        let from_file = aggregation(&up_args(&[]).aggregation, &file).unwrap();
        assert_eq!(from_file.catalogue.dimension_sets[1], ["sdkName", "osName"]);
        assert_eq!(aggregation(&up_args(&["--event-logs", "false"]).aggregation, &file).unwrap().log_group, None);
        assert!(aggregation(&up_args(&["--window-secs", "0"]).aggregation, &file).is_err());
        assert!(aggregation(&up_args(&["--namespace", "AWS/X"]).aggregation, &file).is_err());
        assert!(
            log_retention_days(Some(31), &file).unwrap_err().to_string().contains("not one CloudWatch Logs allows")
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("1w").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }
}
