//! `chimewatch aggregator`: the aggregator against Kinesis (DynamoDB leases) into CloudWatch and CloudWatch Logs;
//! and the wiring `up` shares with it on embedded backends.

use std::sync::Arc;

use chimewatch_aggregator::processor::Sinks;
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
use crate::aws::AwsTelemetry;
use crate::config::{AggregatorCommandConfig, PipelineConfig};

/// Everything an aggregator worker runs on: the stream, the leases, the sinks.
pub struct Parts {
    pub source: Arc<dyn ShardSource>,
    pub leases: Arc<dyn LeaseStore>,
    pub metrics: Arc<dyn MetricSink>,
    pub logs: Arc<dyn LogSink>,
    pub dead_letters: DeadLetters,
    pub worker: WorkerConfig,
    pub config: AggregatorServiceConfig,
    /// The AWS calls' retries and throttles, reported beside the service's own figures (`None` under `up`).
    pub aws: Option<AwsTelemetry>,
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
    let aws = parts.aws;
    if let Some(aws) = &aws {
        aws.register(registry);
    }
    let worker_id = parts.worker.worker_id.clone();
    let sinks = Sinks { metrics: parts.metrics, logs: Some(parts.logs), dead_letters: parts.dead_letters.clone() };
    let aggregation = Aggregation::new(parts.config, worker_id, sinks, telemetry.clone());
    let service = consumer::Service {
        name: "aggregator",
        worker: parts.worker,
        source: parts.source,
        leases: parts.leases,
        processors: Arc::new(aggregation),
        dead_letters: parts.dead_letters,
        samples: Box::new(move || {
            let mut samples = telemetry.samples();
            samples.extend(aws.as_ref().map(AwsTelemetry::samples).unwrap_or_default());
            samples
        }),
        reporting: parts.reporting,
    };
    consumer::start(service, consumer_telemetry, stop)
}

pub async fn run(config: AggregatorCommandConfig) -> anyhow::Result<()> {
    let consumer = config.consumer;
    let sdk = crate::aws::sdk_config().await;
    let counting = AwsTelemetry::default();
    let aws = consumer::aws(&sdk, &consumer, &counting).await?;
    let cloudwatch_client = chimewatch_sinks::cloudwatch::client(&sdk, &counting.counting("cloudwatch"));
    let cloudwatch: Arc<dyn MetricSink> =
        Arc::new(CloudWatchSink::new(cloudwatch_client, chimewatch_stream::system_clock));
    let logs_client = chimewatch_sinks::cloudwatch_logs::client(&sdk, &counting.counting("logs"));
    let retention = config.cloudwatch.log_retention_days;
    let logs = Arc::new(CloudWatchLogsSink::new(logs_client.clone(), retention, chimewatch_stream::system_clock));
    let metrics: Arc<dyn MetricSink> = match config.cloudwatch.emf_log_group {
        Some(group) => {
            let emf_logs =
                Arc::new(CloudWatchLogsSink::new(logs_client, retention, chimewatch_stream::system_clock).emf());
            Arc::new(EmfSink::new(emf_logs, group, consumer.worker.worker_id.clone()))
        }
        None => cloudwatch.clone(),
    };
    let parts = Parts {
        source: aws.source,
        leases: aws.leases,
        metrics,
        logs,
        dead_letters: aws.dead_letters,
        worker: consumer.worker,
        config: config.aggregation,
        aws: Some(counting),
        reporting: config.pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let banner = format!("stream {}, lease table {}", consumer.stream, consumer.lease_table);
    consumer::serve_until_signal(
        "aggregator",
        config.listen,
        registry,
        stop,
        worker,
        &banner,
        "flushed and released its leases",
    )
    .await
}
