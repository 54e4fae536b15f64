//! The command line: the commands and the settings each takes. Settings are declared in [`crate::config`] (flag,
//! environment variable and file key in one field); a command only says which of them it takes, and
//! [`Command::settings`] hands them to [`crate::config::resolve`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    AggregatorSettings, ArchiveFormat, ArchiveSettings, ArchiverSettings, CloudWatchSettings, ConsoleSettings,
    ConsumerSettings, DataDir, GatewaySettings, KinesisSettings, LimitsSettings, Listen, LocalSettings,
    PipelineSettings, Settings, Stream,
};
use crate::simulate::Scenario;

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
    Up(Box<UpArgs>),
    /// Run the gateway against an Amazon Kinesis stream.
    Gateway(Box<GatewayArgs>),
    /// Run the aggregator against an Amazon Kinesis stream: windowed metrics into CloudWatch, events into Logs.
    Aggregator(Box<AggregatorArgs>),
    /// Run the archiver against an Amazon Kinesis stream: Parquet (or gzip NDJSON) files in S3 for analysts.
    Archiver(Box<ArchiverArgs>),
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
    /// The alarms: states and history in a running `up`, and `put` into CloudWatch.
    #[command(subcommand)]
    Alarms(AlarmsCommand),
    /// The dashboards: `put` into CloudWatch.
    #[command(subcommand)]
    Dashboards(DashboardsCommand),
    /// Play a simulated fleet (JS, Android and iOS attendees, Voice Connector calls) against a gateway.
    Simulate(Box<SimulateArgs>),
    /// Explain one attendee, meeting or call: its timeline (or SIP ladder), the outcome and the likely cause.
    Explain(Box<ExplainArgs>),
}

impl Command {
    /// The settings given on the command line or in the environment (the rest `None`), to lay over the file.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::default();
        match self {
            Command::Up(a) => {
                s.listen = a.listen.clone();
                s.data_dir = a.data_dir.clone();
                s.gateway = a.gateway.clone();
                s.limits = a.limits.clone();
                s.local = a.local.clone();
                s.aggregator = a.aggregator.clone();
                s.archive = a.archive.clone();
                s.pipeline = a.pipeline.clone();
                s.console = a.console.clone();
            }
            Command::Gateway(a) => {
                s.listen = a.listen.clone();
                s.stream = a.stream.clone();
                s.gateway = a.gateway.clone();
                s.limits = a.limits.clone();
                s.kinesis = a.kinesis.clone();
                s.pipeline = a.pipeline.clone();
            }
            Command::Aggregator(a) => {
                s.listen = a.listen.clone();
                s.stream = a.stream.clone();
                s.consumer = a.consumer.clone();
                s.aggregator = a.aggregator.clone();
                s.cloudwatch = a.cloudwatch.clone();
                s.pipeline = a.pipeline.clone();
            }
            Command::Archiver(a) => {
                s.listen = a.listen.clone();
                s.stream = a.stream.clone();
                s.archiver = a.archiver.clone();
                s.consumer = a.consumer.clone();
                s.archive = a.archive.clone();
                s.pipeline = a.pipeline.clone();
            }
            Command::Archive(ArchiveCommand::Compact(a)) => {
                s.data_dir = a.data_dir.clone();
                s.archiver = a.archiver.clone();
                s.archive.format = a.format;
            }
            Command::Metrics(MetricsCommand::Query(a)) => {
                s.data_dir = a.data_dir.clone();
                s.aggregator.namespace = a.namespace.clone();
            }
            Command::Metrics(MetricsCommand::List(a)) => s.data_dir = a.data_dir.clone(),
            Command::Logs(LogsCommand::Query(a)) => {
                s.data_dir = a.data_dir.clone();
                s.aggregator.log_group = a.log_group.clone();
            }
            Command::Stream(StreamCommand::Dump(a)) => {
                s.data_dir = a.data_dir.clone();
                s.stream = a.stream.clone();
            }
            Command::Token(TokenCommand::Mint(a)) => s.gateway.token_secret = a.token_secret.clone(),
            Command::Alarms(AlarmsCommand::List(a) | AlarmsCommand::History(a)) => s.listen = a.listen.clone(),
            Command::Alarms(AlarmsCommand::Put(a)) => a.target.apply(&mut s),
            Command::Dashboards(DashboardsCommand::Put(a)) => a.target.apply(&mut s),
            Command::Simulate(a) => s.gateway.token_secret = a.token_secret.clone(),
            Command::Explain(a) => {
                s.data_dir = a.data_dir.clone();
                s.archiver = a.archiver.clone();
            }
        }
        s
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub data_dir: DataDir,
    #[command(flatten, next_help_heading = "Gateway")]
    pub gateway: GatewaySettings,
    #[command(flatten, next_help_heading = "Event limits")]
    pub limits: LimitsSettings,
    #[command(flatten, next_help_heading = "Embedded log")]
    pub local: LocalSettings,
    #[command(flatten, next_help_heading = "Aggregator")]
    pub aggregator: AggregatorSettings,
    #[command(flatten, next_help_heading = "Archive files")]
    pub archive: ArchiveSettings,
    #[command(flatten, next_help_heading = "Pipeline metrics")]
    pub pipeline: PipelineSettings,
    #[command(flatten, next_help_heading = "Console and alarms")]
    pub console: ConsoleSettings,
    /// Also run a simulated fleet against this `up`, with an incident that fires an alarm and resolves it.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub stream: Stream,
    #[command(flatten, next_help_heading = "Gateway")]
    pub gateway: GatewaySettings,
    #[command(flatten, next_help_heading = "Event limits")]
    pub limits: LimitsSettings,
    #[command(flatten, next_help_heading = "Kinesis producer")]
    pub kinesis: KinesisSettings,
    #[command(flatten, next_help_heading = "Pipeline metrics")]
    pub pipeline: PipelineSettings,
}

#[derive(Debug, Args)]
pub struct AggregatorArgs {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub stream: Stream,
    #[command(flatten, next_help_heading = "Consumer")]
    pub consumer: ConsumerSettings,
    #[command(flatten, next_help_heading = "Aggregator")]
    pub aggregator: AggregatorSettings,
    #[command(flatten, next_help_heading = "CloudWatch")]
    pub cloudwatch: CloudWatchSettings,
    #[command(flatten, next_help_heading = "Pipeline metrics")]
    pub pipeline: PipelineSettings,
}

#[derive(Debug, Args)]
pub struct ArchiverArgs {
    #[command(flatten)]
    pub listen: Listen,
    #[command(flatten)]
    pub stream: Stream,
    #[command(flatten)]
    pub archiver: ArchiverSettings,
    #[command(flatten, next_help_heading = "Consumer")]
    pub consumer: ConsumerSettings,
    #[command(flatten, next_help_heading = "Archive files")]
    pub archive: ArchiveSettings,
    #[command(flatten, next_help_heading = "Pipeline metrics")]
    pub pipeline: PipelineSettings,
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
    pub data_dir: DataDir,
    #[command(flatten)]
    pub archiver: ArchiverSettings,
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
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
    /// Format of the files to merge.
    #[arg(long, env = "CHIMEWATCH_ARCHIVE_FORMAT", value_enum)]
    pub format: Option<ArchiveFormat>,
}

#[derive(Debug, Subcommand)]
pub enum AlarmsCommand {
    /// Each alarm with its state, when it last changed and why.
    List(AlarmsArgs),
    /// Every state change still held (the latest 100 per alarm), newest first.
    History(AlarmsArgs),
    /// Create or update the alarms of deploy/alarms/ in CloudWatch (PutMetricAlarm), for deployments without the
    /// CloudFormation template.
    Put(AlarmsPutArgs),
}

#[derive(Debug, Subcommand)]
pub enum DashboardsCommand {
    /// Create or update the dashboards of deploy/dashboards/ in CloudWatch (PutDashboard), for deployments without
    /// the CloudFormation template.
    Put(DashboardsPutArgs),
}

/// Where dashboards and alarms go, and what their placeholders stand for.
#[derive(Debug, Args)]
pub struct PutTarget {
    /// AWS region (by default the SDK's: AWS_REGION, then the profile).
    #[arg(long)]
    pub region: Option<String>,
    /// Names are `PREFIX-meetings`, `PREFIX-dead-letters`...; one prefix per pipeline sharing an account.
    #[arg(long, default_value = "chimewatch")]
    pub name_prefix: String,
    /// The aggregator's meeting metric namespace.
    #[arg(long, env = "CHIMEWATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// The aggregator's Voice Connector metric namespace.
    #[arg(long, env = "CHIMEWATCH_VOICE_NAMESPACE")]
    pub voice_namespace: Option<String>,
    /// The services' own metric namespace.
    #[arg(long, env = "CHIMEWATCH_PIPELINE_NAMESPACE")]
    pub pipeline_namespace: Option<String>,
    /// The log group of meeting events (the dashboards' Logs Insights widgets).
    #[arg(long, env = "CHIMEWATCH_LOG_GROUP")]
    pub log_group: Option<String>,
    /// Print the API requests as JSON lines instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
}

impl PutTarget {
    /// The namespaces and log group are the services' settings, so a config file shared with them applies.
    fn apply(&self, s: &mut Settings) {
        s.aggregator.namespace = self.namespace.clone();
        s.aggregator.voice_namespace = self.voice_namespace.clone();
        s.aggregator.log_group = self.log_group.clone();
        s.pipeline.namespace = self.pipeline_namespace.clone();
    }
}

#[derive(Debug, Args)]
pub struct DashboardsPutArgs {
    #[command(flatten)]
    pub target: PutTarget,
}

#[derive(Debug, Args)]
pub struct AlarmsPutArgs {
    #[command(flatten)]
    pub target: PutTarget,
    /// ARN notified when an alarm goes into ALARM and back to OK (an SNS topic, say); repeat for more, up to 5.
    #[arg(long = "alarm-action")]
    pub alarm_actions: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AlarmsArgs {
    /// The address `up` listens on.
    #[command(flatten)]
    pub listen: Listen,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Statistics of one metric series per period.
    Query(MetricsQueryArgs),
    /// The series stored, one JSON line each, as `aws cloudwatch list-metrics` lists them.
    List(MetricsListArgs),
}

#[derive(Debug, Args)]
pub struct MetricsListArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Only this namespace (all by default).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this metric.
    #[arg(long)]
    pub metric: Option<String>,
    /// Only series with values this recent, e.g. 3h (CloudWatch lists metrics of the last two weeks).
    #[arg(long, default_value = "14d", value_parser = humantime::parse_duration)]
    pub since: Duration,
}

#[derive(Debug, Args)]
pub struct MetricsQueryArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
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
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Period of each point, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// CloudWatch namespace (the aggregator's meeting namespace by default).
    #[arg(long, env = "CHIMEWATCH_NAMESPACE")]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Run a Logs Insights query (fields, filter, stats, sort, limit, display) and print one JSON object per row.
    Query(LogsQueryArgs),
}

#[derive(Debug, Args)]
pub struct LogsQueryArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// A Logs Insights query, e.g. 'filter name in ["meetingStartRequested"] | stats count(*) by attributes.sdkName';
    /// a bare filter expression is a `filter` (all events, newest first, when there is no query).
    #[arg(conflicts_with = "filter")]
    pub query: Option<String>,
    /// The query, as a flag: a filter such as 'name = "meetingFailed" and attributes.attendeeId = "..."', or a
    /// whole query.
    #[arg(long)]
    pub filter: Option<String>,
    /// How far back, e.g. 15m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Rows at most when the query has no `limit` command (1 to 100000; Logs Insights returns 10000 by default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: Option<u32>,
    /// Log group (the aggregator's event log group by default).
    #[arg(long, env = "CHIMEWATCH_LOG_GROUP")]
    pub log_group: Option<String>,
}

#[derive(Debug, Args)]
#[group(id = "what", required = true, multiple = false)]
pub struct ExplainWhat {
    /// An attendee id (or external user id).
    #[arg(long)]
    pub attendee: Option<String>,
    /// A meeting id (or external meeting id).
    #[arg(long)]
    pub meeting: Option<String>,
    /// A Voice Connector call id (or SIP Call-ID).
    #[arg(long)]
    pub call: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub what: ExplainWhat,
    /// How far back to look, e.g. 1h, 2d.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
    /// `up`'s store and local archive under this data directory (unless --bucket is given).
    #[command(flatten)]
    pub data_dir: DataDir,
    /// The S3 archive (AWS): --bucket and --prefix.
    #[command(flatten)]
    pub archiver: ArchiverSettings,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Print the records on a stream as JSON lines, de-aggregated.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub data_dir: DataDir,
    /// Read this Kinesis stream instead of the embedded log.
    #[command(flatten)]
    pub stream: Stream,
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
    /// The attendee's ExternalUserId: events its device re-sends from the same person's earlier sessions pass.
    #[arg(long)]
    pub external_user_id: Option<String>,
    #[arg(long, env = "CHIMEWATCH_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The gateway's base URL (`up` listens on http://127.0.0.1:8080 by default).
    #[arg(long, env = "CHIMEWATCH_SIMULATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Events per second (meeting events and SIP messages), on average.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// How long to run, e.g. 30s or 10m (until Ctrl-C when omitted).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Start the fleet this far in the past, e.g. 2m: that stretch is played at once, with its own timestamps,
    /// so charts have history from the first second. Then the fleet follows the wall clock.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub backfill: Duration,
    /// The same seed plays the same fleet: the same requests in the same order, only the timestamps differ.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the fleet's health changes over the run.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,
    /// API key of the customer's backend (attendee registrations, SIP records); by default the first of
    /// gateway.api_keys in the --config file.
    #[arg(long, env = "CHIMEWATCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The gateway's token secret: blog-style apps then post with attendee tokens, as a backend would mint them.
    #[arg(long, env = "CHIMEWATCH_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Requests in flight at once, at most.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}
