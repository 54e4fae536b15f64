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

use crate::cli::{KinesisArgs, PipelineArgs, ServeArgs, UpArgs};

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
}
