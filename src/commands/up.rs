//! `chimewatch up`: the pipeline on embedded backends, in one process: the gateway on the embedded log; the
//! aggregator reading it into the embedded store (metrics and logs) that `metrics query` and `logs query` read; and
//! the archiver reading it into Parquet files under `<data-dir>/archive/`, laid out as in S3.

use std::sync::Arc;

use anyhow::Context;
use chimewatch_sinks::embedded::EmbeddedStore;
use chimewatch_sinks::{LocalObjects, MetricSink};
use chimewatch_stream::consumer::{DeadLetters, WorkerConfig};
use chimewatch_stream::lease::file::FileLeaseStore;
use chimewatch_stream::local::{LocalLog, LocalLogConfig, LocalSource};
use chimewatch_stream::{Producer, ProducerTelemetry};
use prometheus_client::registry::Registry;

use super::aggregator::{self, Parts};
use super::archiver;
use crate::config::{PipelineConfig, UpConfig};

/// The embedded store's file under the data directory.
pub const STORE_FILE: &str = "embedded.sqlite";

pub async fn run(config: UpConfig) -> anyhow::Result<()> {
    let UpConfig { serving, data_dir, local, gateway, aggregation, archiving } = config;
    let archive_dir = data_dir.join(archiver::ARCHIVE_DIR);

    let mut registry = Registry::with_prefix("chimewatch");
    let producer_telemetry = ProducerTelemetry::default();
    producer_telemetry.register(&mut registry);
    let stream_dir = data_dir.join("stream");
    let dead_dir = data_dir.join("dead-letter");
    let store_path = data_dir.join(STORE_FILE);
    let (log, dead, store) = tokio::task::spawn_blocking({
        let (stream_dir, dead_dir, store_path) = (stream_dir.clone(), dead_dir.clone(), store_path.clone());
        let producer_telemetry = producer_telemetry.clone();
        move || -> anyhow::Result<_> {
            let log = LocalLog::open(&stream_dir, &local, producer_telemetry)
                .with_context(|| format!("opening the embedded log in {}", stream_dir.display()))?;
            let dead_config = LocalLogConfig { shards: 1, ..LocalLogConfig::default() };
            let dead = LocalLog::open(&dead_dir, &dead_config, ProducerTelemetry::default())
                .with_context(|| format!("opening the dead-letter log in {}", dead_dir.display()))?;
            let store = EmbeddedStore::open(&store_path).context("opening the embedded store")?;
            Ok((log, dead, store))
        }
    })
    .await??;
    let log = Arc::new(log);
    let dead: Arc<dyn Producer> = Arc::new(dead);
    eprintln!(
        "chimewatch up: embedded stream in {} ({} shards); metrics and logs in {}; archive in {}",
        stream_dir.display(),
        log.shard_count(),
        store_path.display(),
        archive_dir.display()
    );
    let store = Arc::new(store);
    let metrics: Arc<dyn MetricSink> = store.clone();
    let pipeline = PipelineConfig {
        namespace: chimewatch_sinks::pipeline::DEFAULT_NAMESPACE.to_owned(),
        interval: std::time::Duration::from_secs(60),
    };

    let stop = super::cancel_on_signal();
    // One process holds every shard: take them all at once.
    let up_worker = |id: &str| WorkerConfig {
        round_interval: std::time::Duration::from_secs(1),
        max_takes_per_round: usize::MAX,
        ..WorkerConfig::new(id)
    };
    // Each consumer's checkpoints hold the log's retention: nothing it would read again after a crash is deleted.
    let leases = FileLeaseStore::open(data_dir.join("consumers/aggregator/checkpoints.json"))
        .context("opening the aggregator's checkpoints")?;
    let leases = log.hold("aggregator").checkpoints(leases);
    let parts = Parts {
        source: Arc::new(LocalSource::new(log.clone())),
        leases: Arc::new(leases),
        metrics: metrics.clone(),
        logs: store,
        dead_letters: DeadLetters::to(dead.clone()),
        worker: up_worker("up"),
        config: aggregation,
        aws: None,
        reporting: Some((metrics.clone(), pipeline.clone())),
    };
    let archiver_leases = FileLeaseStore::open(data_dir.join("consumers/archiver/checkpoints.json"))
        .context("opening the archiver's checkpoints")?;
    let archiver_leases = log.hold("archiver").checkpoints(archiver_leases);
    let archiver_parts = archiver::Parts {
        source: Arc::new(LocalSource::new(log.clone())),
        leases: Arc::new(archiver_leases),
        store: Arc::new(LocalObjects::new(&archive_dir)),
        dead_letters: DeadLetters::to(dead.clone()),
        worker: up_worker("up-archiver"),
        config: archiving,
        aws: None,
        reporting: Some((metrics.clone(), pipeline.clone())),
    };
    let log_telemetry = log.log_telemetry().clone();
    log_telemetry.register(&mut registry);
    let archiver_worker = archiver::start(archiver_parts, &mut registry, stop.clone());
    let worker = aggregator::start(parts, &mut registry, stop.clone());
    let served = super::gateway::serve_gateway(
        serving,
        gateway,
        log,
        producer_telemetry,
        registry,
        Some((metrics, pipeline, vec![Box::new(move || log_telemetry.samples()) as super::gateway::SampleSource])),
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    worker.await.context("the aggregator worker")?;
    archiver_worker.await.context("the archiver worker")?;
    dead.close().await;
    eprintln!("chimewatch up: the aggregator flushed its windows and the archiver wrote its files; stopped");
    served
}
