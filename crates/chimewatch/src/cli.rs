//! The command line: every flag can also come from the environment (`CHIMEWATCH_*`) and from the `--config` file.
//!
//! Flags are `Option`s without clap defaults, so that [`crate::config`] can tell "not given" from a value and apply
//! the precedence CLI > env > file > defaults in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chimewatch",
    version,
    about = "Observability pipeline for Amazon Chime SDK meetings and Voice Connector calls"
)]
pub struct Cli {
    /// TOML file with settings (flags and CHIMEWATCH_* variables override it).
    #[arg(long, env = "CHIMEWATCH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `chimewatch_stream=debug`.
    #[arg(long, env = "CHIMEWATCH_LOG", default_value = "info", global = true)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on embedded backends (no AWS account needed).
    Up(UpArgs),
    /// Run the gateway against an Amazon Kinesis stream.
    Gateway(GatewayArgs),
    /// Run the aggregator against an Amazon Kinesis stream: windowed metrics into CloudWatch, events into Logs.
    Aggregator(AggregatorArgs),
    /// Run the archiver against an Amazon Kinesis stream: Parquet (or gzip NDJSON) files in S3 for analysts.
    Archiver(ArchiverArgs),
    /// Work on an archive (S3 or `up`'s local one).
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Query the metrics of the embedded store (`up`), as JSON lines.
    #[command(subcommand)]
    Metrics(MetricsCommand),
    /// Query the log events of the embedded store (`up`), as JSON lines.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Inspect a stream.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Attendee tokens for the gateway's token authentication.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Shards of a new embedded log.
    #[arg(long, env = "CHIMEWATCH_LOCAL_SHARDS")]
    pub local_shards: Option<u32>,
    #[command(flatten)]
    pub aggregation: AggregationArgs,
    #[command(flatten)]
    pub archiving: ArchivingArgs,
}

/// How the archiver writes files, in AWS and under `up`.
#[derive(Debug, Args)]
pub struct ArchivingArgs {
    /// File format of the archive.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_FORMAT", value_enum)]
    pub archive_format: Option<ArchiveFormat>,
    /// A partition's rows are written out once their file would reach about this many MiB.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_MAX_FILE_MB")]
    pub archive_max_file_mb: Option<u64>,
    /// ... or once the oldest buffered row has waited this long (e.g. 300s, 5m).
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_MAX_AGE")]
    pub archive_max_age: Option<String>,
    /// Directory where rows wait for their files (default: the system's temporary directory).
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_SPOOL_DIR")]
    pub archive_spool_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// Parquet with ZSTD: columnar and splittable (the default).
    Parquet,
    /// Newline-delimited JSON, gzip-compressed.
    Ndjson,
}

#[derive(Debug, Args)]
pub struct ArchiverArgs {
    /// Address of the /metrics and /healthz endpoint.
    #[arg(long, env = "CHIMEWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Name of the Kinesis data stream.
    #[arg(long, env = "CHIMEWATCH_STREAM")]
    pub stream: Option<String>,
    /// S3 bucket of the archive.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix of the archive in the bucket (the tables go under it).
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_PREFIX")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub archiving: ArchivingArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Merge each partition's small files into large ones (sorted by event time; safe to re-run after a crash).
    Compact(CompactArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The local archive of `up` under this data directory (unless --bucket is given).
    #[command(flatten)]
    pub data: DataArgs,
    /// S3 bucket of the archive.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_BUCKET")]
    pub bucket: Option<String>,
    /// Key prefix of the archive in the bucket.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_PREFIX")]
    pub prefix: Option<String>,
    /// Only this table (meeting_events or sip_messages); both by default.
    #[arg(long)]
    pub table: Option<String>,
    /// Only partitions whose path starts with this, e.g. dt=2026-11-21 or dt=2026-11-21/hour=13.
    #[arg(long)]
    pub partition: Option<String>,
    /// Files of this many MiB or more are left alone; merged files aim at it.
    #[arg(long, default_value_t = 128)]
    pub target_mb: u64,
    /// Only files older than this are merged (the archiver may still rewrite its newest files after a crash).
    #[arg(long, default_value = "15m")]
    pub min_age: String,
    /// Format of the files to merge.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_FORMAT", value_enum, default_value = "parquet")]
    pub format: ArchiveFormat,
}

/// What the aggregator computes and where it writes, in AWS and under `up`.
#[derive(Debug, Args)]
pub struct AggregationArgs {
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
    pub dimension_sets: Option<Vec<String>>,
    /// Distinct dimension combinations per metric per window before values fold into `Other`.
    #[arg(long, env = "CHIMEWATCH_MAX_SERIES_PER_METRIC")]
    pub max_series_per_metric: Option<usize>,
    /// Log group the SIP message log records are also written to (none by default).
    #[arg(long, env = "CHIMEWATCH_SIP_LOG_GROUP")]
    pub sip_log_group: Option<String>,
    /// CloudWatch namespace of the Voice Connector metrics derived from SIP message logs.
    #[arg(long, env = "CHIMEWATCH_VOICE_NAMESPACE")]
    pub voice_namespace: Option<String>,
    /// Count a 487 after CANCEL (the caller hung up) as a call failure.
    #[arg(long, env = "CHIMEWATCH_SIP_CANCEL_IS_FAILURE")]
    pub sip_cancel_is_failure: Option<bool>,
    /// Milliseconds after a failed INVITE within which a new INVITE of the call is a route failover (one attempt).
    #[arg(long, env = "CHIMEWATCH_SIP_FAILOVER_MS")]
    pub sip_failover_ms: Option<i64>,
    /// Count responses to OPTIONS keep-alives in Sip1xxCodes..Sip6xxCodes.
    #[arg(long, env = "CHIMEWATCH_SIP_COUNT_OPTIONS")]
    pub sip_count_options: Option<bool>,
    /// Count outbound INVITEs rejected with 503 (or a 4xx with Retry-After) as Throttles.
    #[arg(long, env = "CHIMEWATCH_SIP_THROTTLES_FROM_REJECTIONS")]
    pub sip_throttles_from_rejections: Option<bool>,
}

#[derive(Debug, Args)]
pub struct AggregatorArgs {
    /// Address of the /metrics and /healthz endpoint.
    #[arg(long, env = "CHIMEWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Name of the Kinesis data stream.
    #[arg(long, env = "CHIMEWATCH_STREAM")]
    pub stream: Option<String>,
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    #[command(flatten)]
    pub aggregation: AggregationArgs,
    /// Days the log group keeps events (CloudWatch Logs' allowed values, e.g. 30, 90, 365).
    #[arg(long, env = "CHIMEWATCH_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<i32>,
    /// How metrics reach CloudWatch: PutMetricData (`cloudwatch`), or Embedded Metric Format log lines (`emf`).
    #[arg(long, env = "CHIMEWATCH_METRICS_FORMAT", value_enum)]
    pub metrics_format: Option<MetricsFormat>,
    /// Log group of the EMF lines (with `--metrics-format emf`).
    #[arg(long, env = "CHIMEWATCH_EMF_LOG_GROUP")]
    pub emf_log_group: Option<String>,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// How a consumer service shares the stream with its peers.
#[derive(Debug, Args)]
pub struct ConsumerArgs {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    Cloudwatch,
    Emf,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Statistics of one metric series per period.
    Query(MetricsQueryArgs),
}

#[derive(Debug, Args)]
pub struct MetricsQueryArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Metric name, e.g. meetingStartDurationMs.
    #[arg(long)]
    pub metric: String,
    /// The series' dimensions, `name=value`; repeat for each (none = the fleet-wide series).
    #[arg(long = "dimension")]
    pub dimensions: Vec<String>,
    /// Statistics: SampleCount, Sum, Minimum, Maximum, Average, pNN; repeat or comma-separate.
    #[arg(long = "stat", value_delimiter = ',', default_values_t = ["SampleCount".to_owned(), "p50".to_owned(), "p90".to_owned(), "p99".to_owned()])]
    pub stats: Vec<String>,
    /// How far back, e.g. 15m, 1h, 2d.
    #[arg(long, default_value = "15m")]
    pub since: String,
    /// Period of each point, e.g. 60s, 5m.
    #[arg(long, default_value = "60s")]
    pub period: String,
    #[arg(long, env = "CHIMEWATCH_NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Log events matching a Logs Insights filter, oldest first.
    Query(LogsQueryArgs),
}

#[derive(Debug, Args)]
pub struct LogsQueryArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A Logs Insights filter, e.g. 'name = "meetingFailed" and attributes.attendeeId = "..."'.
    #[arg(long)]
    pub filter: Option<String>,
    /// How far back, e.g. 15m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Most events printed.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long, env = "CHIMEWATCH_LOG_GROUP")]
    pub log_group: Option<String>,
}

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Directory of the embedded backends' data.
    #[arg(long, env = "CHIMEWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub kinesis: KinesisArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Publish the service's own metrics to CloudWatch (on by default against AWS).
    #[arg(long, env = "CHIMEWATCH_PIPELINE_METRICS")]
    pub pipeline_metrics: Option<bool>,
    /// Seconds between two publications of the pipeline metrics.
    #[arg(long, env = "CHIMEWATCH_PIPELINE_METRICS_INTERVAL_SECS")]
    pub pipeline_metrics_interval_secs: Option<u64>,
    /// CloudWatch namespace of the pipeline metrics.
    #[arg(long, env = "CHIMEWATCH_PIPELINE_NAMESPACE")]
    pub pipeline_namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct KinesisArgs {
    /// Name of the Kinesis data stream.
    #[arg(long, env = "CHIMEWATCH_STREAM")]
    pub stream: Option<String>,
    /// Longest a record waits to be batched with others, in milliseconds.
    #[arg(long, env = "CHIMEWATCH_KINESIS_LINGER_MS")]
    pub linger_ms: Option<u64>,
    /// Pack user records into KPL aggregates (true) or put one Kinesis record each (false).
    #[arg(long, env = "CHIMEWATCH_KINESIS_AGGREGATION")]
    pub aggregation: Option<bool>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CHIMEWATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
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
    /// HMAC secret of attendee tokens (HS256 JWTs with meetingId, attendeeId and exp claims).
    #[arg(long, env = "CHIMEWATCH_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Most recent meetingHistory entries kept per event.
    #[arg(long, env = "CHIMEWATCH_MAX_HISTORY_ENTRIES")]
    pub max_history_entries: Option<usize>,
    /// Longest string attribute value in bytes.
    #[arg(long, env = "CHIMEWATCH_MAX_ATTRIBUTE_BYTES")]
    pub max_attribute_bytes: Option<usize>,
    /// Seconds an event delivered with the SDK ingestion protocol is remembered to drop its duplicates.
    #[arg(long, env = "CHIMEWATCH_DEDUP_WINDOW_SECS")]
    pub dedup_window_secs: Option<u64>,
    /// Seconds a JoinToken registered at /v1/admin/attendees is accepted, unless the registration says otherwise.
    #[arg(long, env = "CHIMEWATCH_JOIN_TOKEN_TTL_SECS")]
    pub join_token_ttl_secs: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Print the records on a stream as JSON lines, de-aggregated.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Read this Kinesis stream instead of the embedded log.
    #[arg(long, env = "CHIMEWATCH_STREAM")]
    pub stream: Option<String>,
    /// Start at the oldest retained record (and stop at the end unless --follow); otherwise follow new records.
    #[arg(long)]
    pub from_start: bool,
    /// Keep waiting for new records.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint an attendee token, as a customer's backend would when it creates an attendee.
    Mint(MintArgs),
}

#[derive(Debug, Args)]
pub struct MintArgs {
    #[arg(long)]
    pub meeting_id: String,
    #[arg(long)]
    pub attendee_id: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
    #[arg(long, env = "CHIMEWATCH_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}
