//! The wiring every consumer service (aggregator, archiver) shares: its AWS side (the Kinesis source, the DynamoDB
//! lease table, the dead-letter stream), starting its worker with pipeline reporting, and serving `/metrics` until
//! a signal.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use chimewatch_model::{FromStream, Record};
use chimewatch_sinks::{MetricSink, PipelineReporter};
use chimewatch_stream::ProducerTelemetry;
use chimewatch_stream::consumer::{
    ConsumerTelemetry, DeadLetters, ProcessorFactory, ShardSource, Worker, WorkerConfig,
};
use chimewatch_stream::kinesis::{KinesisProducer, KinesisProducerConfig, KinesisSource, KinesisSourceConfig};
use chimewatch_stream::lease::LeaseStore;
use chimewatch_stream::lease::dynamodb::DynamoLeaseStore;
use chimewatch_telemetry::Sample;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConsumerConfig, PipelineConfig};

/// What a consumer service reads and where it keeps its leases and dead letters, in AWS.
pub struct AwsConsumer {
    pub source: Arc<dyn ShardSource>,
    pub leases: Arc<dyn LeaseStore>,
    pub dead_letters: DeadLetters,
}

/// Connects to the stream (listing its shards, to fail early on a wrong name or missing permission), the lease
/// table (created when missing) and the dead-letter stream, if one is given.
pub async fn aws(
    sdk: &aws_config::SdkConfig,
    config: &ConsumerConfig,
    counting: &crate::aws::AwsTelemetry,
) -> anyhow::Result<AwsConsumer> {
    let (stream, lease_table) = (config.stream.as_str(), config.lease_table.as_str());
    let kinesis = chimewatch_stream::kinesis::client(sdk, &counting.counting("kinesis"));
    let source = KinesisSource::new(kinesis.clone(), KinesisSourceConfig::new(stream));
    source.shards().await.with_context(|| format!("listing the shards of stream {stream}"))?;
    let dynamodb = chimewatch_stream::lease::dynamodb::client(sdk, &counting.counting("dynamodb"));
    let leases = DynamoLeaseStore::open(dynamodb, lease_table)
        .await
        .with_context(|| format!("opening the lease table {lease_table}"))?;
    let dead_letters = match &config.dead_letter_stream {
        Some(dead) => {
            let producer =
                KinesisProducer::start(kinesis, KinesisProducerConfig::new(dead), ProducerTelemetry::default())
                    .await
                    .with_context(|| format!("starting the dead-letter producer for stream {dead}"))?;
            DeadLetters::to(Arc::new(producer))
        }
        None => {
            tracing::warn!("No dead-letter stream: records that cannot be decoded are logged and counted only.");
            DeadLetters::log_only()
        }
    };
    Ok(AwsConsumer { source: Arc::new(source), leases: Arc::new(leases), dead_letters })
}

/// A consumer service's worker, before it starts; `R` is what its processors read of each record.
pub struct Service<R: Send + 'static = Record> {
    /// The `Service` dimension of its pipeline metrics.
    pub name: &'static str,
    pub worker: WorkerConfig,
    pub source: Arc<dyn ShardSource>,
    pub leases: Arc<dyn LeaseStore>,
    pub processors: Arc<dyn ProcessorFactory<R>>,
    pub dead_letters: DeadLetters,
    /// The service's own figures, published beside the consumer runtime's.
    pub samples: Box<dyn Fn() -> Vec<Sample> + Send + Sync>,
    /// Where the figures go (`ChimeWatch/Pipeline`), if anywhere.
    pub reporting: Option<(Arc<dyn MetricSink>, PipelineConfig)>,
}

/// Starts the worker (and its pipeline reporting) with the runtime's telemetry on `registry`; the returned task
/// ends after `stop` is cancelled and the worker flushed its shards and released its leases.
pub fn start<R: FromStream>(
    service: Service<R>,
    consumer_telemetry: ConsumerTelemetry,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let worker = Worker::new(
        service.worker,
        service.source,
        service.leases,
        service.processors,
        service.dead_letters,
        consumer_telemetry.clone(),
    );
    let samples = service.samples;
    let reporter = service.reporting.map(|(sink, p)| {
        let reporter = PipelineReporter::new(sink, p.namespace, service.name)
            .source(move || consumer_telemetry.samples())
            .source(samples);
        tokio::spawn(reporter.run(p.interval, chimewatch_stream::system_clock, stop.clone().cancelled_owned()))
    });
    tokio::spawn(async move {
        worker.run(stop.cancelled_owned()).await;
        if let Some(r) = reporter {
            let _ = r.await;
        }
    })
}

/// Serves `/metrics` and `/healthz` on `listen` until a signal, then waits for the worker to finish. `banner` is
/// printed after "listening on http://ADDR", and `done` once the worker finished.
pub async fn serve_until_signal(
    name: &str,
    listen: SocketAddr,
    registry: Registry,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
    banner: &str,
    done: &str,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!("chimewatch {name} listening on http://{} (GET /metrics, /healthz); {banner}", listener.local_addr()?);
    let served = super::serve_metrics(listener, Arc::new(registry), stop.clone().cancelled_owned()).await;
    stop.cancel();
    worker.await.with_context(|| format!("the {name} worker"))?;
    eprintln!("chimewatch {name}: {done}");
    served
}
