//! `chimewatch aggregator`: the aggregator against Kinesis (DynamoDB leases) into CloudWatch and CloudWatch Logs;
//! and the wiring `up` shares with it on embedded backends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use chimewatch_aggregator::{Aggregation, AggregatorServiceConfig, AggregatorTelemetry};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::cloudwatch_logs::CloudWatchLogsSink;
use chimewatch_sinks::emf::EmfSink;
use chimewatch_sinks::{LogSink, MetricSink, PipelineReporter};
use chimewatch_stream::ProducerTelemetry;
use chimewatch_stream::consumer::{ConsumerTelemetry, DeadLetters, ShardSource, Worker, WorkerConfig};
use chimewatch_stream::kinesis::{KinesisProducer, KinesisProducerConfig, KinesisSource, KinesisSourceConfig};
use chimewatch_stream::lease::LeaseStore;
use chimewatch_stream::lease::dynamodb::DynamoLeaseStore;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let worker = Worker::new(
        parts.worker,
        parts.source,
        parts.leases,
        Arc::new(aggregation),
        parts.dead_letters,
        consumer_telemetry.clone(),
    );
    let reporter = parts.reporting.map(|(sink, p)| {
        let reporter = PipelineReporter::new(sink, p.namespace, "aggregator")
            .source(move || consumer_telemetry.samples())
            .source(move || telemetry.samples());
        tokio::spawn(reporter.run(p.interval, chimewatch_stream::system_clock_ms, stop.clone().cancelled_owned()))
    });
    tokio::spawn(async move {
        worker.run(stop.cancelled_owned()).await;
        if let Some(r) = reporter {
            let _ = r.await;
        }
    })
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
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let source = KinesisSource::new(kinesis.clone(), KinesisSourceConfig::new(&stream));
    source.shards().await.with_context(|| format!("listing the shards of stream {stream}"))?;
    let leases = DynamoLeaseStore::open(aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .with_context(|| format!("opening the lease table {table}"))?;
    let dead_letters = match dead_letter_stream {
        Some(dead) => {
            let producer =
                KinesisProducer::start(kinesis, KinesisProducerConfig::new(&dead), ProducerTelemetry::default())
                    .await
                    .with_context(|| format!("starting the dead-letter producer for stream {dead}"))?;
            DeadLetters::to(Arc::new(producer))
        }
        None => {
            tracing::warn!("No dead-letter stream: records that cannot be decoded are logged and counted only.");
            DeadLetters::log_only()
        }
    };
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
        source: Arc::new(source),
        leases: Arc::new(leases),
        metrics,
        logs,
        dead_letters,
        worker,
        config: aggregation,
        reporting: pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "chimewatch aggregator listening on http://{} (GET /metrics, /healthz); stream {stream}, lease table {table}",
        listener.local_addr()?
    );
    let served = super::serve_metrics(listener, Arc::new(registry), stop.clone().cancelled_owned()).await;
    stop.cancel();
    worker.await.context("the aggregator worker")?;
    eprintln!("chimewatch aggregator: flushed and released its leases");
    served
}
