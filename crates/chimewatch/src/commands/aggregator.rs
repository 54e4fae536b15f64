//! `chimewatch aggregator`: the aggregator against Kinesis (DynamoDB leases) into CloudWatch and CloudWatch Logs;
//! and the wiring `up` shares with it on embedded backends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::bail;
use chimewatch_aggregator::{Aggregation, AggregatorServiceConfig, AggregatorTelemetry};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::cloudwatch_logs::CloudWatchLogsSink;
use chimewatch_sinks::emf::EmfSink;
use chimewatch_sinks::{LogSink, MetricSink};
use chimewatch_stream::consumer::{ConsumerTelemetry, DeadLetters, ShardSource, WorkerConfig};
use chimewatch_stream::lease::LeaseStore;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::consumer;
use crate::cli::{AggregatorArgs, MetricsFormat};
use crate::config::{self, FileConfig, PipelineConfig};

const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// Where EMF lines go with `--metrics-format emf`.
const DEFAULT_EMF_LOG_GROUP: &str = "/chimewatch/meeting-metrics";

/// Everything an aggregator worker runs on: the stream, the leases, the sinks.
pub struct Parts {
    pub source: Arc<dyn ShardSource>,
    pub leases: Arc<dyn LeaseStore>,
    pub metrics: Arc<dyn MetricSink>,
    pub logs: Arc<dyn LogSink>,
    pub dead_letters: DeadLetters,
    pub worker: WorkerConfig,
    pub config: AggregatorServiceConfig,
    /// Where the aggregator's own metrics go (`ChimeWatch/Pipeline`, `Service=aggregator`).
    pub reporting: Option<(Arc<dyn MetricSink>, PipelineConfig)>,
}

/// Starts the aggregator worker (and its pipeline reporting) with its telemetry on `registry`; the returned task
/// ends after `stop` is cancelled and the worker flushed its windows and released its leases.
pub fn start(parts: Parts, registry: &mut Registry, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let consumer_telemetry = ConsumerTelemetry::default();
    consumer_telemetry.register(registry);
    let telemetry = AggregatorTelemetry::default();
    telemetry.register(registry);
    let worker_id = parts.worker.worker_id.clone();
    let aggregation = Aggregation::new(parts.config, worker_id, parts.metrics, Some(parts.logs), telemetry.clone());
    let service = consumer::Service {
        name: "aggregator",
        worker: parts.worker,
        source: parts.source,
        leases: parts.leases,
        processors: Arc::new(aggregation),
        dead_letters: parts.dead_letters,
        samples: Box::new(move || telemetry.samples()),
        reporting: parts.reporting,
    };
    consumer::start(service, consumer_telemetry, stop)
}

pub async fn run(args: AggregatorArgs, file: &FileConfig) -> anyhow::Result<()> {
    let Some(stream) = args.stream.clone().or_else(|| file.kinesis.stream.clone()) else {
        bail!(
            "no Kinesis stream given: pass --stream NAME, set CHIMEWATCH_STREAM, or set kinesis.stream in the config file"
        );
    };
    let aggregation = config::aggregation(&args.aggregation, file)?;
    let (table, worker, dead_letter_stream) =
        config::consumer(&args.consumer, file, &format!("chimewatch-aggregator-{stream}"))?;
    let retention = config::log_retention_days(args.log_retention_days, file)?;
    let pipeline = config::pipeline(&args.pipeline, file)?;
    let listen: SocketAddr = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8081))));

    let sdk = super::aws_config().await;
    let aws = consumer::aws(&sdk, &stream, &table, dead_letter_stream).await?;
    let cloudwatch: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&sdk)));
    let logs_client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
    let logs = Arc::new(CloudWatchLogsSink::new(logs_client.clone(), retention));
    let metrics: Arc<dyn MetricSink> = match args.metrics_format.or(file.aggregator.metrics_format) {
        Some(MetricsFormat::Emf) => {
            let group = args
                .emf_log_group
                .clone()
                .or_else(|| file.aggregator.emf_log_group.clone())
                .unwrap_or_else(|| DEFAULT_EMF_LOG_GROUP.to_owned());
            let emf_logs = Arc::new(CloudWatchLogsSink::new(logs_client, retention).emf());
            Arc::new(EmfSink::new(emf_logs, group, worker.worker_id.clone()))
        }
        Some(MetricsFormat::Cloudwatch) | None => cloudwatch.clone(),
    };
    let parts = Parts {
        source: aws.source,
        leases: aws.leases,
        metrics,
        logs,
        dead_letters: aws.dead_letters,
        worker,
        config: aggregation,
        reporting: pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let banner = format!("stream {stream}, lease table {table}");
    consumer::serve_until_signal(
        "aggregator",
        listen,
        registry,
        stop,
        worker,
        &banner,
        "flushed and released its leases",
    )
    .await
}
