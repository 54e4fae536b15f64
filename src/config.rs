//! Settings, each declared once: one field is its flag, its `CHIMEWATCH_*` variable and its key in the `--config`
//! TOML file. They are resolved here and nowhere else, with the precedence CLI > environment > file > defaults, into
//! the typed configs the commands run with; each typed config then validates itself.
//!
//! clap reads a flag or, failing that, its variable; [`resolve`] lays what it read over the file; the methods of
//! [`Settings`] apply the defaults and the validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chimewatch_aggregator::AggregatorServiceConfig;
use chimewatch_aggregator::config::DEFAULT_SIP_LOG_GROUP;
use chimewatch_archiver::{ArchiverConfig, Format};
use chimewatch_gateway::GatewayConfig;
use chimewatch_gateway::auth::AuthConfig;
use chimewatch_gateway::privacy::ExternalIds;
use chimewatch_model::Limits;
use chimewatch_stream::consumer::WorkerConfig;
use chimewatch_stream::kinesis::KinesisProducerConfig;
use chimewatch_stream::local::LocalLogConfig;
use clap::Args;
use serde::{Deserialize, Serialize};

/// Every setting, shaped like the `--config` file. A `None` is "not given" at its layer.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: Listen,
    pub data_dir: DataDir,
    pub stream: Stream,
    pub gateway: GatewaySettings,
    pub limits: LimitsSettings,
    pub local: LocalSettings,
    pub kinesis: KinesisSettings,
    pub pipeline: PipelineSettings,
    pub aggregator: AggregatorSettings,
    pub cloudwatch: CloudWatchSettings,
    pub consumer: ConsumerSettings,
    pub archiver: ArchiverSettings,
    pub archive: ArchiveSettings,
    pub console: ConsoleSettings,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Listen {
    /// Address to listen on (the gateway; `/metrics` and `/healthz` of the consumer services).
    #[arg(long, env = "CHIMEWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataDir {
    /// Directory of the embedded backends' data (`up`).
    #[arg(long, env = "CHIMEWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stream {
    /// Name of the Amazon Kinesis data stream.
    #[arg(long, env = "CHIMEWATCH_STREAM")]
    pub stream: Option<String>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Largest request body in bytes, before and after gzip inflation.
    #[arg(long, env = "CHIMEWATCH_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most events in one request.
    #[arg(long, env = "CHIMEWATCH_MAX_EVENTS_PER_REQUEST")]
    pub max_events_per_request: Option<usize>,
    /// Origins allowed by CORS (comma-separated; `*` for any).
    #[arg(long, env = "CHIMEWATCH_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// API keys accepted by the gateway (comma-separated). Prefer the environment or the config file for secrets.
    #[arg(long, env = "CHIMEWATCH_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Option<Vec<String>>,
    /// HMAC secret of attendee tokens (HS256 JWTs with meetingId, attendeeId and exp claims), at least 32 bytes.
    #[arg(long, env = "CHIMEWATCH_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Earlier token secrets still accepted while their tokens live (comma-separated): rotation without downtime.
    #[arg(long, env = "CHIMEWATCH_PREVIOUS_TOKEN_SECRETS", value_delimiter = ',', hide_env_values = true)]
    pub previous_token_secrets: Option<Vec<String>>,
    /// Seconds an event delivered with the SDK ingestion protocol is remembered to drop its duplicates.
    #[arg(long, env = "CHIMEWATCH_DEDUP_WINDOW_SECS")]
    pub dedup_window_secs: Option<u64>,
    /// Most event keys remembered to drop duplicates; the oldest are forgotten first.
    #[arg(long, env = "CHIMEWATCH_DEDUP_MAX_KEYS")]
    pub dedup_max_keys: Option<usize>,
    /// Seconds a JoinToken registered at /v1/admin/attendees is accepted, unless the registration says otherwise.
    #[arg(long, env = "CHIMEWATCH_JOIN_TOKEN_TTL_SECS")]
    pub join_token_ttl_secs: Option<u64>,
    /// Most requests handled at once; beyond, clients get 503 with Retry-After.
    #[arg(long, env = "CHIMEWATCH_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Longest a client may take to send its request headers (e.g. 10s).
    #[arg(long, env = "CHIMEWATCH_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub header_read_timeout: Option<Duration>,
    /// Longest a client may take to send its request body (e.g. 30s); beyond, 408.
    #[arg(long, env = "CHIMEWATCH_BODY_READ_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub body_read_timeout: Option<Duration>,
    /// PEM certificate chain to serve TLS with (with --tls-key).
    #[arg(long, env = "CHIMEWATCH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS certificate.
    #[arg(long, env = "CHIMEWATCH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics and /healthz on this address instead of the ingest port (keep the figures off the internet).
    #[arg(long, env = "CHIMEWATCH_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// What becomes of externalUserId and externalMeetingId before events reach the stream, the logs and the
    /// archive: keep them, hash them (HMAC-SHA256 with --external-id-key), or drop them.
    #[arg(long, env = "CHIMEWATCH_EXTERNAL_IDS", value_enum)]
    pub external_ids: Option<ExternalIdsPolicy>,
    /// Key of the external ids' hash, at least 32 bytes.
    #[arg(long, env = "CHIMEWATCH_EXTERNAL_ID_KEY", hide_env_values = true)]
    pub external_id_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalIdsPolicy {
    Keep,
    Hash,
    Drop,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Most recent meetingHistory entries kept per event.
    #[arg(long, env = "CHIMEWATCH_MAX_HISTORY_ENTRIES")]
    pub max_history_entries: Option<usize>,
    /// Longest string attribute value in bytes.
    #[arg(long, env = "CHIMEWATCH_MAX_ATTRIBUTE_BYTES")]
    pub max_attribute_bytes: Option<usize>,
    /// Most attributes kept per event (unknown ones beyond it are dropped, known ones never).
    #[arg(long, env = "CHIMEWATCH_MAX_ATTRIBUTES")]
    pub max_attributes: Option<usize>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSettings {
    /// Shards of a new embedded log (an existing log keeps its count).
    #[arg(long = "local-shards", env = "CHIMEWATCH_LOCAL_SHARDS")]
    pub shards: Option<u32>,
    /// Size in bytes at which a segment of the embedded log is sealed.
    #[arg(long = "local-segment-bytes", env = "CHIMEWATCH_LOCAL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Hours sealed segments of the embedded log are kept.
    #[arg(long = "local-retention-hours", env = "CHIMEWATCH_LOCAL_RETENTION_HOURS")]
    pub retention_hours: Option<u64>,
    /// Bytes a shard of the embedded log may hold before its oldest sealed segments are deleted.
    #[arg(long = "local-max-shard-bytes", env = "CHIMEWATCH_LOCAL_MAX_SHARD_BYTES")]
    pub max_shard_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KinesisSettings {
    /// Longest a record waits to be batched with others, in milliseconds.
    #[arg(long, env = "CHIMEWATCH_KINESIS_LINGER_MS")]
    pub linger_ms: Option<u64>,
    /// Pack user records into KPL aggregates (true) or put one Kinesis record each (false).
    #[arg(long, env = "CHIMEWATCH_KINESIS_AGGREGATION")]
    pub aggregation: Option<bool>,
    /// Bytes accepted and not yet durable before clients get 429.
    #[arg(long, env = "CHIMEWATCH_KINESIS_MAX_IN_FLIGHT_BYTES")]
    pub max_in_flight_bytes: Option<u64>,
    /// Longest Kinesis may keep refusing a request's records (throttled, failing) before its client gets 503
    /// with Retry-After (e.g. 10s).
    #[arg(long, env = "CHIMEWATCH_KINESIS_PUT_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub put_timeout: Option<Duration>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Publish the service's own metrics to CloudWatch (on by default against AWS).
    #[arg(id = "pipeline_enabled", long = "pipeline-metrics", env = "CHIMEWATCH_PIPELINE_METRICS")]
    pub enabled: Option<bool>,
    /// Seconds between two publications of the pipeline metrics.
    #[arg(
        id = "pipeline_interval_secs",
        long = "pipeline-metrics-interval-secs",
        env = "CHIMEWATCH_PIPELINE_METRICS_INTERVAL_SECS"
    )]
    pub interval_secs: Option<u64>,
    /// CloudWatch namespace of the pipeline metrics.
    #[arg(id = "pipeline_namespace", long = "pipeline-namespace", env = "CHIMEWATCH_PIPELINE_NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// URL that each alarm state change is POSTed to, as the JSON CloudWatch sends to SNS.
    #[arg(long, env = "CHIMEWATCH_ALARM_WEBHOOK")]
    pub alarm_webhook: Option<String>,
    /// Seconds between two evaluations of the alarms.
    #[arg(long, env = "CHIMEWATCH_ALARM_INTERVAL_SECS")]
    pub alarm_interval_secs: Option<u64>,
}

/// A comma-separated list of dimension names on the command line (`""` is fleet-wide), a list in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DimensionSet(pub Vec<String>);

impl FromStr for DimensionSet {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect()))
    }
}

/// What the aggregator computes and where it writes, in AWS and under `up`.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorSettings {
    /// CloudWatch namespace of the meeting metrics (the blog sample's by default, so its dashboard keeps working).
    #[arg(long, env = "CHIMEWATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log group every event is written to.
    #[arg(long, env = "CHIMEWATCH_LOG_GROUP")]
    pub log_group: Option<String>,
    /// Write events to the log group (true) or publish metrics only (false).
    #[arg(long, env = "CHIMEWATCH_EVENT_LOGS")]
    pub event_logs: Option<bool>,
    /// Window length in seconds (1 publishes high-resolution metrics).
    #[arg(long, env = "CHIMEWATCH_WINDOW_SECS")]
    pub window_secs: Option<u64>,
    /// How late (in event time) an event may arrive behind its shard's newest and still be on time, in seconds.
    #[arg(long, env = "CHIMEWATCH_OUT_OF_ORDERNESS_SECS")]
    pub out_of_orderness_secs: Option<u64>,
    /// Seconds without events after which a shard no longer holds windows open.
    #[arg(long, env = "CHIMEWATCH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Dimension sets of the distributions, each a comma-separated list ("" = fleet-wide); repeat the flag.
    #[arg(long = "dimension-set", env = "CHIMEWATCH_DIMENSION_SETS", value_delimiter = ';')]
    pub dimension_sets: Option<Vec<DimensionSet>>,
    /// Distinct dimension combinations per metric per window before values fold into `Other`.
    #[arg(long, env = "CHIMEWATCH_MAX_SERIES_PER_METRIC")]
    pub max_series_per_metric: Option<usize>,
    /// CloudWatch namespace of the Voice Connector metrics derived from SIP message logs.
    #[arg(long, env = "CHIMEWATCH_VOICE_NAMESPACE")]
    pub voice_namespace: Option<String>,
    /// Log group the SIP message log records are also written to (none by default; `up`: /chimewatch/sip-messages).
    #[arg(long, env = "CHIMEWATCH_SIP_LOG_GROUP")]
    pub sip_log_group: Option<String>,
    #[command(flatten)]
    pub sip: SipSettings,
}

/// The SIP counting policy (`chimewatch_sip::Policy`), the `[aggregator.sip]` table.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSettings {
    /// Count a 487 after CANCEL (the caller hung up) as a call failure.
    #[arg(long = "sip-cancel-is-failure", env = "CHIMEWATCH_SIP_CANCEL_IS_FAILURE")]
    pub cancel_is_failure: Option<bool>,
    /// Milliseconds after a failed INVITE within which a new INVITE of the call is a route failover (one attempt).
    #[arg(long = "sip-failover-ms", env = "CHIMEWATCH_SIP_FAILOVER_MS")]
    pub failover_ms: Option<i64>,
    /// Count responses to OPTIONS keep-alives in Sip1xxCodes..Sip6xxCodes.
    #[arg(long = "sip-count-options", env = "CHIMEWATCH_SIP_COUNT_OPTIONS")]
    pub count_options: Option<bool>,
    /// Count outbound INVITEs rejected with 503 (or a 4xx with Retry-After) as Throttles.
    #[arg(long = "sip-throttles-from-rejections", env = "CHIMEWATCH_SIP_THROTTLES_FROM_REJECTIONS")]
    pub throttles_from_rejections: Option<bool>,
    /// Seconds a call may ring without a final response before it fails with 408.
    #[arg(long = "sip-ring-timeout-secs", env = "CHIMEWATCH_SIP_RING_TIMEOUT_SECS")]
    pub ring_timeout_secs: Option<u64>,
    /// Seconds an answered call may last without a BYE before it is ended.
    #[arg(long = "sip-call-timeout-secs", env = "CHIMEWATCH_SIP_CALL_TIMEOUT_SECS")]
    pub call_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// PutMetricData.
    Cloudwatch,
    /// Embedded Metric Format lines in CloudWatch Logs.
    Emf,
}

/// How the aggregator reaches CloudWatch in AWS.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudWatchSettings {
    /// Days the log groups keep events (CloudWatch Logs' allowed values, e.g. 30, 90, 365).
    #[arg(long, env = "CHIMEWATCH_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<i32>,
    /// How metrics reach CloudWatch: PutMetricData (`cloudwatch`), or Embedded Metric Format log lines (`emf`).
    #[arg(long, env = "CHIMEWATCH_METRICS_FORMAT", value_enum)]
    pub metrics_format: Option<MetricsFormat>,
    /// Log group of the EMF lines (with `--metrics-format emf`).
    #[arg(long, env = "CHIMEWATCH_EMF_LOG_GROUP")]
    pub emf_log_group: Option<String>,
}

/// How a consumer service shares the stream with its peers.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerSettings {
    /// DynamoDB lease table (created when missing); workers of one application share it.
    #[arg(long, env = "CHIMEWATCH_LEASE_TABLE")]
    pub lease_table: Option<String>,
    /// This worker's id in the lease table (default: host, process id and a random suffix).
    #[arg(long, env = "CHIMEWATCH_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Seconds without renewal after which another worker takes a lease over.
    #[arg(long, env = "CHIMEWATCH_FAILOVER_SECS")]
    pub failover_secs: Option<u64>,
    /// Kinesis stream that receives records that cannot be decoded (otherwise they are logged and counted).
    #[arg(long, env = "CHIMEWATCH_DEAD_LETTER_STREAM")]
    pub dead_letter_stream: Option<String>,
}

/// Where the archive is in S3.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiverSettings {
    /// S3 bucket of the archive.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix of the archive in the bucket (the tables go under it).
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_PREFIX")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// Parquet with ZSTD: columnar and splittable (the default).
    Parquet,
    /// Newline-delimited JSON, gzip-compressed.
    Ndjson,
}

impl From<ArchiveFormat> for Format {
    fn from(format: ArchiveFormat) -> Self {
        match format {
            ArchiveFormat::Parquet => Format::Parquet,
            ArchiveFormat::Ndjson => Format::NdjsonGzip,
        }
    }
}

/// How the archive's files are written, in AWS and under `up`.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// File format of the archive.
    #[arg(long = "archive-format", env = "CHIMEWATCH_ARCHIVE_FORMAT", value_enum)]
    pub format: Option<ArchiveFormat>,
    /// A partition's rows are written out once their file would reach about this many MiB.
    #[arg(long = "archive-max-file-mb", env = "CHIMEWATCH_ARCHIVE_MAX_FILE_MB")]
    pub max_file_mb: Option<u64>,
    /// ... or once the oldest buffered row has waited this long (e.g. 300s, 5m).
    #[arg(long = "archive-max-age", env = "CHIMEWATCH_ARCHIVE_MAX_AGE", value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub max_age: Option<Duration>,
    /// Directory where rows wait for their files (default: the system's temporary directory; `up`: the data dir).
    #[arg(long = "archive-spool-dir", env = "CHIMEWATCH_ARCHIVE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
}

/// Durations as people write them in the file (`"5m"`, `"90s"`), read and written with humantime.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
            })
            .transpose()
    }
}

/// Reads the `--config` file (every key optional, unknown keys are errors) and lays `cli` (flags and environment)
/// over it.
pub fn resolve(file: Option<&Path>, cli: Settings) -> anyhow::Result<Settings> {
    let from_file = match file {
        None => Settings::default(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?
        }
    };
    let mut merged = serde_json::to_value(from_file)?;
    overlay(&mut merged, serde_json::to_value(cli)?);
    serde_json::from_value(merged).context("merging the command line over the config file")
}

/// Lays `over` onto `base`, table by table; a null in `over` (a setting not given) leaves `base` as it is.
fn overlay(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (_, serde_json::Value::Null) => {}
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                overlay(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

pub const DEFAULT_DATA_DIR: &str = "./chimewatch-data";

/// Where a service's own metrics go, and how often; `None` when it does not publish them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub namespace: String,
    pub interval: Duration,
}

/// How a consumer service joins its peers in AWS.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub stream: String,
    pub lease_table: String,
    pub worker: WorkerConfig,
    pub dead_letter_stream: Option<String>,
}

/// The aggregator's way to CloudWatch in AWS.
#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    pub log_retention_days: Option<i32>,
    /// `Some(log group)` to write metrics as EMF lines instead of PutMetricData.
    pub emf_log_group: Option<String>,
}

/// CloudWatch Logs' allowed retention periods, in days (PutRetentionPolicy).
const RETENTION_DAYS: &[i32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn valid(result: Result<(), String>) -> anyhow::Result<()> {
    result.map_err(|e| anyhow!("invalid setting: {e}"))
}

impl Settings {
    pub fn listen(&self, default: SocketAddr) -> SocketAddr {
        self.listen.listen.unwrap_or(default)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The Kinesis stream a command against AWS needs.
    pub fn stream(&self) -> anyhow::Result<String> {
        match &self.stream.stream {
            Some(s) if !s.is_empty() => Ok(s.clone()),
            _ => bail!(
                "no Kinesis stream given: pass --stream NAME, set CHIMEWATCH_STREAM, or set stream in the config file"
            ),
        }
    }

    pub fn gateway(&self) -> anyhow::Result<GatewayConfig> {
        let defaults = GatewayConfig::default();
        let (g, l) = (&self.gateway, &self.limits);
        let default_limits = Limits::default();
        let config = GatewayConfig {
            max_body_bytes: g.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            max_events_per_request: g.max_events_per_request.unwrap_or(defaults.max_events_per_request),
            limits: Limits {
                max_history_entries: l.max_history_entries.unwrap_or(default_limits.max_history_entries),
                max_attribute_bytes: l.max_attribute_bytes.unwrap_or(default_limits.max_attribute_bytes),
                max_attributes: l.max_attributes.unwrap_or(default_limits.max_attributes),
                ..default_limits
            },
            cors_origins: g.cors_origins.clone().unwrap_or(defaults.cors_origins.clone()),
            auth: AuthConfig {
                api_keys: g.api_keys.iter().flatten().filter(|k| !k.is_empty()).cloned().collect(),
                token_secrets: g
                    .token_secret
                    .iter()
                    .chain(g.previous_token_secrets.iter().flatten())
                    .filter(|s| !s.is_empty())
                    .map(|s| s.clone().into_bytes())
                    .collect(),
            },
            dedup_window_ms: g.dedup_window_secs.map_or(defaults.dedup_window_ms, secs_to_ms),
            dedup_max_keys: g.dedup_max_keys.unwrap_or(defaults.dedup_max_keys),
            join_token_ttl_ms: g.join_token_ttl_secs.map_or(defaults.join_token_ttl_ms, secs_to_ms),
            external_ids: match (g.external_ids, &g.external_id_key) {
                (None | Some(ExternalIdsPolicy::Keep), _) => ExternalIds::Keep,
                (Some(ExternalIdsPolicy::Drop), _) => ExternalIds::Drop,
                (Some(ExternalIdsPolicy::Hash), Some(key)) => ExternalIds::Hash(key.clone().into_bytes()),
                (Some(ExternalIdsPolicy::Hash), None) => {
                    bail!("invalid setting: gateway.external_ids = hash needs gateway.external_id_key")
                }
            },
            max_concurrent_requests: g.max_concurrent_requests.unwrap_or(defaults.max_concurrent_requests),
            header_read_timeout: g.header_read_timeout.unwrap_or(defaults.header_read_timeout),
            body_read_timeout: g.body_read_timeout.unwrap_or(defaults.body_read_timeout),
            ..defaults
        };
        valid(config.validate())?;
        Ok(config)
    }

    pub fn local(&self) -> anyhow::Result<LocalLogConfig> {
        let defaults = LocalLogConfig::default();
        let l = &self.local;
        let config = LocalLogConfig {
            shards: l.shards.unwrap_or(defaults.shards),
            segment_bytes: l.segment_bytes.unwrap_or(defaults.segment_bytes),
            retention: l.retention_hours.map_or(defaults.retention, |h| Duration::from_secs(h.saturating_mul(3600))),
            max_shard_bytes: l.max_shard_bytes.unwrap_or(defaults.max_shard_bytes),
            ..defaults
        };
        valid(config.validate())?;
        Ok(config)
    }

    pub fn kinesis_producer(&self) -> anyhow::Result<KinesisProducerConfig> {
        let defaults = KinesisProducerConfig::new(self.stream()?);
        let k = &self.kinesis;
        Ok(KinesisProducerConfig {
            linger: k.linger_ms.map_or(defaults.linger, Duration::from_millis),
            aggregation: k.aggregation.unwrap_or(defaults.aggregation),
            max_in_flight_bytes: k.max_in_flight_bytes.unwrap_or(defaults.max_in_flight_bytes),
            put_timeout: match k.put_timeout {
                Some(d) if d.is_zero() => bail!("invalid setting: kinesis.put_timeout must be more than zero"),
                Some(d) => d,
                None => defaults.put_timeout,
            },
            ..defaults
        })
    }

    pub fn console(&self) -> anyhow::Result<ConsoleConfig> {
        let c = &self.console;
        let alarm_webhook = match &c.alarm_webhook {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| anyhow::anyhow!("invalid setting: console.alarm_webhook {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("invalid setting: console.alarm_webhook {url:?}: the URL must be http or https");
                }
                Some(parsed)
            }
        };
        let alarm_interval = match c.alarm_interval_secs.unwrap_or(10) {
            0 => bail!("invalid setting: console.alarm_interval_secs must be at least 1"),
            secs => Duration::from_secs(secs),
        };
        Ok(ConsoleConfig { alarm_webhook, alarm_interval })
    }

    pub fn pipeline(&self) -> anyhow::Result<Option<PipelineConfig>> {
        let p = &self.pipeline;
        if !p.enabled.unwrap_or(true) {
            return Ok(None);
        }
        let namespace = p.namespace.clone().unwrap_or_else(|| chimewatch_sinks::pipeline::DEFAULT_NAMESPACE.to_owned());
        if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with("AWS/") {
            bail!(
                "invalid setting: pipeline.namespace {namespace:?}: 1 to 255 characters, and it must not start with \"AWS/\""
            );
        }
        match p.interval_secs.unwrap_or(60) {
            0 => bail!("invalid setting: pipeline.interval_secs must be at least 1"),
            secs => Ok(Some(PipelineConfig { namespace, interval: Duration::from_secs(secs) })),
        }
    }

    /// What the aggregator computes and where it writes.
    pub fn aggregation(&self) -> anyhow::Result<AggregatorServiceConfig> {
        let a = &self.aggregator;
        let defaults = AggregatorServiceConfig::default();
        let mut windows = defaults.windows.clone();
        windows.window_ms = a.window_secs.map_or(windows.window_ms, secs_to_ms);
        windows.out_of_orderness_ms = a.out_of_orderness_secs.map_or(windows.out_of_orderness_ms, secs_to_ms);
        windows.idle_timeout_ms = a.idle_timeout_secs.map_or(windows.idle_timeout_ms, secs_to_ms);
        windows.max_series_per_metric = a.max_series_per_metric.unwrap_or(windows.max_series_per_metric);
        let mut catalogue = defaults.catalogue.clone();
        if let Some(sets) = &a.dimension_sets {
            catalogue.dimension_sets = sets.iter().map(|s| s.0.clone()).collect();
        }
        let p = &a.sip;
        let mut sip_policy = defaults.sip_policy.clone();
        sip_policy.cancel_is_failure = p.cancel_is_failure.unwrap_or(sip_policy.cancel_is_failure);
        sip_policy.failover_ms = p.failover_ms.unwrap_or(sip_policy.failover_ms);
        sip_policy.count_options = p.count_options.unwrap_or(sip_policy.count_options);
        sip_policy.throttles_from_rejections =
            p.throttles_from_rejections.unwrap_or(sip_policy.throttles_from_rejections);
        sip_policy.ring_timeout_ms = p.ring_timeout_secs.map_or(sip_policy.ring_timeout_ms, secs_to_ms);
        sip_policy.call_timeout_ms = p.call_timeout_secs.map_or(sip_policy.call_timeout_ms, secs_to_ms);
        let log_group = match a.event_logs.unwrap_or(true) {
            true => a.log_group.clone().or(defaults.log_group.clone()),
            false => None,
        };
        let config = AggregatorServiceConfig {
            namespace: a.namespace.clone().unwrap_or(defaults.namespace.clone()),
            voice_namespace: a.voice_namespace.clone().unwrap_or(defaults.voice_namespace.clone()),
            sip_log_group: a.sip_log_group.clone().filter(|g| !g.is_empty()),
            sip_policy,
            log_group,
            windows,
            catalogue,
            ..defaults
        };
        valid(config.validate())?;
        Ok(config)
    }

    pub fn cloudwatch(&self) -> anyhow::Result<CloudWatchConfig> {
        let c = &self.cloudwatch;
        if let Some(days) = c.log_retention_days.filter(|d| !RETENTION_DAYS.contains(d)) {
            bail!(
                "invalid setting: cloudwatch.log_retention_days: {days} is not one CloudWatch Logs allows: {RETENTION_DAYS:?}"
            );
        }
        let emf_log_group = match c.metrics_format {
            Some(MetricsFormat::Emf) => {
                Some(c.emf_log_group.clone().unwrap_or_else(|| "/chimewatch/meeting-metrics".to_owned()))
            }
            Some(MetricsFormat::Cloudwatch) | None => None,
        };
        Ok(CloudWatchConfig { log_retention_days: c.log_retention_days, emf_log_group })
    }

    /// How a consumer service joins its peers: the stream, the lease table (`chimewatch-<service>-<stream>` by
    /// default), the worker, the dead-letter stream.
    pub fn consumer(&self, service: &str) -> anyhow::Result<ConsumerConfig> {
        let stream = self.stream()?;
        let c = &self.consumer;
        let lease_table = c.lease_table.clone().unwrap_or_else(|| format!("chimewatch-{service}-{stream}"));
        let mut worker = WorkerConfig::new(c.worker_id.clone().unwrap_or_else(WorkerConfig::default_worker_id));
        if let Some(secs) = c.failover_secs {
            worker.failover = Duration::from_secs(secs);
            worker.round_interval = worker.failover / 3;
        }
        valid(worker.validate())?;
        Ok(ConsumerConfig { stream, lease_table, worker, dead_letter_stream: c.dead_letter_stream.clone() })
    }

    /// How the archiver writes: format, cut triggers, spool directory (the prefix is the archive's root, empty).
    pub fn archiving(&self, default_spool: PathBuf) -> anyhow::Result<ArchiverConfig> {
        let a = &self.archive;
        let mut config = ArchiverConfig::new(a.spool_dir.clone().unwrap_or(default_spool));
        config.format = a.format.map_or(Format::Parquet, Format::from);
        config.max_file_bytes = a.max_file_mb.map_or(config.max_file_bytes, |mb| mb.saturating_mul(1024 * 1024));
        config.max_age = a.max_age.unwrap_or(config.max_age);
        valid(config.validate())?;
        Ok(config)
    }

    /// The archive's key prefix in its bucket (empty for the bucket's root).
    pub fn archive_prefix(&self) -> String {
        self.archiver.prefix.clone().unwrap_or_default()
    }

    /// The archive's bucket, for the commands against S3.
    pub fn bucket(&self) -> anyhow::Result<String> {
        match &self.archiver.bucket {
            Some(b) if !b.is_empty() => Ok(b.clone()),
            _ => bail!(
                "no S3 bucket given: pass --bucket NAME, set CHIMEWATCH_ARCHIVE_BUCKET, or set archiver.bucket in the config file"
            ),
        }
    }
}

/// Default listen addresses: the gateway's, and the consumer services' `/metrics` (distinct, so that all three run
/// on one host).
pub const GATEWAY_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);
pub const AGGREGATOR_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8081);
pub const ARCHIVER_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8082);

/// How the gateway is reached: TLS or not, and where `/metrics` is.
#[derive(Debug, Clone)]
pub struct Serving {
    pub listen: SocketAddr,
    pub tls: Option<Arc<chimewatch_gateway::tls::ServerConfig>>,
    /// `/metrics` on a listener of its own; `None` serves it on the ingest port.
    pub metrics_listen: Option<SocketAddr>,
}

/// `chimewatch up`, finished.
#[derive(Debug)]
pub struct UpConfig {
    pub serving: Serving,
    pub data_dir: PathBuf,
    /// The services' own figures, into the embedded store.
    pub pipeline: PipelineConfig,
    pub console: ConsoleConfig,
    pub local: LocalLogConfig,
    pub gateway: GatewayConfig,
    pub aggregation: AggregatorServiceConfig,
    pub archiving: ArchiverConfig,
}

/// The console of `up`: alarm evaluation and notification.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub alarm_webhook: Option<reqwest::Url>,
    pub alarm_interval: Duration,
}

/// `chimewatch gateway`, finished.
#[derive(Debug)]
pub struct GatewayCommandConfig {
    pub serving: Serving,
    pub producer: KinesisProducerConfig,
    pub gateway: GatewayConfig,
    pub pipeline: Option<PipelineConfig>,
}

/// `chimewatch aggregator`, finished.
#[derive(Debug)]
pub struct AggregatorCommandConfig {
    pub listen: SocketAddr,
    pub consumer: ConsumerConfig,
    pub aggregation: AggregatorServiceConfig,
    pub cloudwatch: CloudWatchConfig,
    pub pipeline: Option<PipelineConfig>,
}

/// `chimewatch archiver`, finished.
#[derive(Debug)]
pub struct ArchiverCommandConfig {
    pub listen: SocketAddr,
    pub consumer: ConsumerConfig,
    pub bucket: String,
    pub archiving: ArchiverConfig,
    pub pipeline: Option<PipelineConfig>,
}

impl Settings {
    /// Where and how the gateway serves.
    pub fn serving(&self) -> anyhow::Result<Serving> {
        let g = &self.gateway;
        let tls = match (&g.tls_cert, &g.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(chimewatch_gateway::tls::server_config(cert, key)?),
            _ => bail!("invalid setting: gateway.tls_cert and gateway.tls_key go together"),
        };
        Ok(Serving { listen: self.listen(GATEWAY_LISTEN), tls, metrics_listen: g.metrics_listen })
    }

    pub fn up(&self) -> anyhow::Result<UpConfig> {
        let data_dir = self.data_dir();
        let mut aggregation = self.aggregation()?;
        // The embedded store takes any timestamp: CloudWatch's two weeks back and two hours ahead do not apply, so
        // that old captures and fixtures can be replayed.
        aggregation.windows.max_age_ms = i64::MAX / 4;
        aggregation.windows.max_future_ms = i64::MAX / 4;
        // `chimewatch explain --call` and the console find a call's messages in the store.
        if self.aggregator.sip_log_group.is_none() {
            aggregation.sip_log_group = Some(DEFAULT_SIP_LOG_GROUP.to_owned());
        }
        let serving = self.serving()?;
        let mut gateway = self.gateway()?;
        // On loopback, `up` is a developer's: let any local page post to it unless origins were configured.
        if self.gateway.cors_origins.is_none() && serving.listen.ip().is_loopback() {
            gateway.cors_origins = vec!["*".into()];
        }
        // `up` always reports its own figures (into its own store); the interval and namespace are settings.
        let pipeline = match self.pipeline()? {
            Some(p) => p,
            None => bail!("invalid setting: pipeline.enabled: `up` always records its own figures"),
        };
        Ok(UpConfig {
            serving,
            pipeline,
            console: self.console()?,
            local: self.local()?,
            gateway,
            aggregation,
            archiving: self.archiving(data_dir.join("spool"))?,
            data_dir,
        })
    }

    pub fn gateway_command(&self) -> anyhow::Result<GatewayCommandConfig> {
        Ok(GatewayCommandConfig {
            serving: self.serving()?,
            producer: self.kinesis_producer()?,
            gateway: self.gateway()?,
            pipeline: self.pipeline()?,
        })
    }

    pub fn aggregator_command(&self) -> anyhow::Result<AggregatorCommandConfig> {
        Ok(AggregatorCommandConfig {
            listen: self.listen(AGGREGATOR_LISTEN),
            consumer: self.consumer("aggregator")?,
            aggregation: self.aggregation()?,
            cloudwatch: self.cloudwatch()?,
            pipeline: self.pipeline()?,
        })
    }

    pub fn archiver_command(&self) -> anyhow::Result<ArchiverCommandConfig> {
        let mut archiving = self.archiving(std::env::temp_dir().join("chimewatch-spool"))?;
        archiving.prefix = self.archive_prefix();
        Ok(ArchiverCommandConfig {
            listen: self.listen(ARCHIVER_LISTEN),
            consumer: self.consumer("archiver")?,
            bucket: self.bucket()?,
            archiving,
            pipeline: self.pipeline()?,
        })
    }
}

#[cfg(test)]
mod tests;
