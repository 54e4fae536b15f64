//! `chimewatch up`: the pipeline on embedded backends, in one process: the gateway on the embedded log; the
//! aggregator reading it into the embedded store (metrics and logs) that `metrics query` and `logs query` read; and
//! the archiver reading it into Parquet files under `<data-dir>/archive/`, laid out as in S3.

use std::sync::Arc;

use anyhow::Context;
use chimewatch_aggregator::config::{AggregatorServiceConfig, DEFAULT_LOG_GROUP, DEFAULT_SIP_LOG_GROUP};
use chimewatch_sinks::embedded::EmbeddedStore;
use chimewatch_sinks::{LocalObjects, MetricSink};
use chimewatch_stream::consumer::{DeadLetters, WorkerConfig};
use chimewatch_stream::lease::file::FileLeaseStore;
use chimewatch_stream::local::{LocalLog, LocalLogConfig, LocalSource};
use chimewatch_stream::{Producer, ProducerTelemetry};
use prometheus_client::registry::Registry;

use super::aggregator::{self, Parts};
use super::archiver;
use crate::config::{ConsoleConfig, PipelineConfig, UpConfig};

/// The region `up`'s dashboards and alarm notifications name: it has none.
const LOCAL_REGION: &str = "local";

/// The embedded store's file under the data directory.
pub const STORE_FILE: &str = "embedded.sqlite";

pub async fn run(config: UpConfig, demo: bool) -> anyhow::Result<()> {
    let UpConfig { serving, data_dir, pipeline, console, local, gateway, aggregation, archiving } = config;
    if demo && !gateway.auth.is_anonymous() {
        anyhow::bail!("--demo posts its fleet without credentials: run it without --api-keys and --token-secret");
    }
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

    let stop = super::cancel_on_signal();
    let (console_routes, evaluator) = start_console(&store, &aggregation, &pipeline, console, stop.clone())?;
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
    let (bound, on_bound) = tokio::sync::oneshot::channel();
    let console_task = tokio::spawn(console_ready(on_bound, demo, stop.clone()));
    let served = super::gateway::serve_gateway(
        serving,
        gateway,
        log,
        producer_telemetry,
        registry,
        super::gateway::Extras {
            reporting: Some((
                metrics,
                pipeline,
                vec![Box::new(move || log_telemetry.samples()) as super::gateway::SampleSource],
            )),
            routes: console_routes,
            bound: Some(bound),
        },
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    let _ = evaluator.await;
    let _ = console_task.await;
    worker.await.context("the aggregator worker")?;
    archiver_worker.await.context("the archiver worker")?;
    dead.close().await;
    eprintln!("chimewatch up: the aggregator flushed its windows and the archiver wrote its files; stopped");
    served
}

/// The console's routes and the alarm evaluator: the deploy files' dashboards and alarms, filled with this `up`'s
/// namespaces and log group, over its store.
fn start_console(
    store: &EmbeddedStore,
    aggregation: &AggregatorServiceConfig,
    pipeline: &PipelineConfig,
    console: ConsoleConfig,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(axum::Router, tokio::task::JoinHandle<()>)> {
    use chimewatch_console::alarms::{self, Alarms, Notify};
    use chimewatch_console::{Console, builtin};

    let log_group = aggregation.log_group.clone().unwrap_or_else(|| DEFAULT_LOG_GROUP.to_owned());
    let values = super::deploy_values(LOCAL_REGION, aggregation, &pipeline.namespace);
    let dashboards = builtin::dashboards(&values).map_err(anyhow::Error::msg)?;
    let now = || chimewatch_stream::system_clock().as_i64();
    let set = chimewatch_metrics::alarm::AlarmSet::with_definitions(
        builtin::alarms(&values).map_err(anyhow::Error::msg)?,
        now(),
    )
    .map_err(|e| anyhow::anyhow!("the built-in alarms: {e}"))?;
    let alarms = Arc::new(Alarms::new(set));
    let notify = Notify { webhook: console.alarm_webhook, region: LOCAL_REGION.into(), account: "000000000000".into() };
    let evaluator = tokio::spawn(alarms::run(
        alarms.clone(),
        store.clone(),
        console.alarm_interval,
        notify,
        now,
        stop.cancelled_owned(),
    ));
    let sip_log_group = aggregation.sip_log_group.clone().unwrap_or_else(|| DEFAULT_SIP_LOG_GROUP.to_owned());
    let console = Console { store: store.clone(), dashboards, log_group, sip_log_group, alarms, now };
    Ok((chimewatch_console::router(Arc::new(console)), evaluator))
}

/// Seconds between two publications of `up --demo`'s own figures, so the pipeline dashboard fills at once.
pub const DEMO_PIPELINE_INTERVAL_SECS: u64 = 10;

/// Once the gateway is listening: says where the console is, and with `--demo` plays the incident scenario against
/// this `up` until it stops, so every panel fills and the outage fires an alarm that then resolves.
async fn console_ready(
    bound: tokio::sync::oneshot::Receiver<std::net::SocketAddr>,
    demo: bool,
    stop: tokio_util::sync::CancellationToken,
) {
    use crate::simulate::{DEMO_BACKFILL, DEMO_RATE, DEMO_SEED, Options, Scenario};

    let Ok(addr) = bound.await else { return };
    let url = format!("http://{addr}");
    eprintln!("chimewatch console on {url}/ (dashboards, alarms, search one attendee or meeting)");
    if !demo {
        return;
    }
    let back = DEMO_BACKFILL.as_secs();
    let outage = Scenario::Incident.phases().into_iter().find(|p| p.name == "outage");
    let (from, to) = outage.map_or((0, 0), |p| (p.from_secs, p.to_secs.unwrap_or(p.from_secs)));
    eprintln!(
        "chimewatch up --demo: a simulated fleet (incident scenario, {DEMO_RATE} events/s) posts to {url}, starting \
         {back} s in the past so the charts have history at once; its outage runs from {} s to {} s from now, \
         fires an alarm and resolves it. Open {url}/ to watch.",
        from as i64 - back as i64,
        to as i64 - back as i64,
    );
    let options = Options {
        url,
        rate: DEMO_RATE,
        duration: None,
        backfill: DEMO_BACKFILL,
        seed: DEMO_SEED,
        scenario: Scenario::Incident,
        api_key: None,
        token_secret: None,
        concurrency: 4,
        progress: false,
    };
    let stopping = stop.clone();
    if let Err(failure) = crate::simulate::run(options, stop.cancelled_owned()).await {
        // Its last flush can race the gateway's own shutdown; only a failure while `up` runs is news.
        if !stopping.is_cancelled() {
            tracing::error!(error = %failure.message, "The demo fleet stopped.");
        }
    }
}
