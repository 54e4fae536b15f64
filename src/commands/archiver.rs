//! `chimewatch archiver`: the archiver against Kinesis (DynamoDB leases) into S3; `chimewatch archive compact`; and
//! the wiring `up` shares with them on embedded backends.

use std::sync::Arc;

use anyhow::{Context, bail};
use chimewatch_archiver::compact::{CompactOptions, compact};
use chimewatch_archiver::{ArchiverConfig, ArchiverTelemetry, Archiving, Format, Table};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::s3::S3Objects;
use chimewatch_sinks::{LocalObjects, MetricSink, ObjectStore};
use chimewatch_stream::consumer::{ConsumerTelemetry, DeadLetters, ShardSource, WorkerConfig};
use chimewatch_stream::lease::LeaseStore;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::consumer;
use crate::aws::AwsTelemetry;
use crate::cli::CompactArgs;
use crate::config::{ArchiverCommandConfig, PipelineConfig, Settings};

/// `up`'s archive under its data directory.
pub const ARCHIVE_DIR: &str = "archive";

/// Everything an archiver worker runs on.
pub struct Parts {
    pub source: Arc<dyn ShardSource>,
    pub leases: Arc<dyn LeaseStore>,
    pub store: Arc<dyn ObjectStore>,
    pub dead_letters: DeadLetters,
    pub worker: WorkerConfig,
    pub config: ArchiverConfig,
    /// The AWS calls' retries and throttles, reported beside the service's own figures (`None` under `up`).
    pub aws: Option<AwsTelemetry>,
    /// Where the archiver's own metrics go (`ChimeWatch/Pipeline`, `Service=archiver`).
    pub reporting: Option<(Arc<dyn MetricSink>, PipelineConfig)>,
}

/// Starts the archiver worker (and its pipeline reporting) with its telemetry on `registry`; the returned task ends
/// after `stop` is cancelled and every shard wrote its buffered rows and released its lease.
pub fn start(parts: Parts, registry: &mut Registry, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let consumer_telemetry = ConsumerTelemetry::default();
    // `up` runs two consumers on one registry: the archiver's runtime metrics get their own prefix.
    consumer_telemetry.register(registry.sub_registry_with_prefix("archiver"));
    let telemetry = ArchiverTelemetry::default();
    telemetry.register(registry);
    let aws = parts.aws;
    if let Some(aws) = &aws {
        aws.register(registry);
    }
    let archiving = Archiving::new(parts.config, parts.store, telemetry.clone());
    let service = consumer::Service {
        name: "archiver",
        worker: parts.worker,
        source: parts.source,
        leases: parts.leases,
        processors: Arc::new(archiving),
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

pub async fn run(config: ArchiverCommandConfig) -> anyhow::Result<()> {
    let (consumer, bucket, archiving) = (config.consumer, config.bucket, config.archiving);
    let sdk = crate::aws::sdk_config().await;
    let counting = AwsTelemetry::default();
    let aws = consumer::aws(&sdk, &consumer, &counting).await?;
    let store = S3Objects::new(chimewatch_sinks::s3::client(&sdk, &counting.counting("s3")), &bucket);
    store
        .list(&archiving.claims_prefix(""))
        .await
        .with_context(|| format!("listing the archive in bucket {bucket} (does it exist, may this role list it?)"))?;
    let cloudwatch: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(
        chimewatch_sinks::cloudwatch::client(&sdk, &counting.counting("cloudwatch")),
        chimewatch_stream::system_clock,
    ));
    let location = format!("s3://{bucket}/{}", archiving.prefix.trim_matches('/'));
    let parts = Parts {
        source: aws.source,
        leases: aws.leases,
        store: Arc::new(store),
        dead_letters: aws.dead_letters,
        worker: consumer.worker,
        config: archiving,
        aws: Some(counting),
        reporting: config.pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let banner = format!("stream {} into {location}, lease table {}", consumer.stream, consumer.lease_table);
    consumer::serve_until_signal(
        "archiver",
        config.listen,
        registry,
        stop,
        worker,
        &banner,
        "wrote its buffered rows and released its leases",
    )
    .await
}

pub async fn compact_command(args: CompactArgs, settings: &Settings) -> anyhow::Result<()> {
    let tables = match args.table.as_deref() {
        None => vec![Table::MeetingEvents, Table::SipMessages],
        Some("meeting_events") => vec![Table::MeetingEvents],
        Some("sip_messages") => vec![Table::SipMessages],
        Some(other) => bail!("unknown table {other:?}: meeting_events or sip_messages"),
    };
    if args.target_mb == 0 {
        bail!("--target-mb must be at least 1");
    }
    let store: Arc<dyn ObjectStore> = match &settings.archiver.bucket {
        Some(bucket) => {
            let sdk = crate::aws::sdk_config().await;
            Arc::new(S3Objects::new(chimewatch_sinks::s3::client(&sdk, &[]), bucket))
        }
        None => {
            let dir = settings.data_dir().join(ARCHIVE_DIR);
            if !dir.is_dir() {
                bail!("no archive at {} (pass --data-dir of `up`, or --bucket)", dir.display());
            }
            Arc::new(LocalObjects::new(dir))
        }
    };
    let work_dir = std::env::temp_dir();
    let options = CompactOptions {
        prefix: settings.archive_prefix(),
        tables,
        format: settings.archive.format.map_or(Format::Parquet, Format::from),
        target_bytes: args.target_mb.saturating_mul(1024 * 1024),
        min_age: args.min_age,
        partitions: args.partition.clone(),
        work_dir,
        now_ms: chimewatch_stream::system_clock().as_i64(),
    };
    eprintln!("chimewatch archive compact: {}", store.location());
    let report = compact(store.as_ref(), &options, |line| eprintln!("  {line}")).await?;
    eprintln!(
        "merged {} files in {} partitions into {} ({} rows, {} -> {} bytes); interrupted runs finished: {}, dropped: {}",
        report.files_merged,
        report.partitions_merged,
        report.files_written,
        report.rows,
        report.bytes_before,
        report.bytes_after,
        report.intents_completed,
        report.intents_dropped
    );
    Ok(())
}
