//! `chimewatch archiver`: the archiver against Kinesis (DynamoDB leases) into S3; `chimewatch archive compact`; and
//! the wiring `up` shares with them on embedded backends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use chimewatch_archiver::compact::{CompactOptions, compact};
use chimewatch_archiver::{ArchiverConfig, ArchiverTelemetry, Archiving, Table};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::s3::S3Objects;
use chimewatch_sinks::{LocalObjects, MetricSink, ObjectStore};
use chimewatch_stream::consumer::{ConsumerTelemetry, DeadLetters, ShardSource, WorkerConfig};
use chimewatch_stream::lease::LeaseStore;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::consumer;
use crate::cli::{ArchiverArgs, CompactArgs};
use crate::config::{self, FileConfig, PipelineConfig};

const DEFAULT_LISTEN: &str = "127.0.0.1:8082";
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
    let archiving = Archiving::new(parts.config, parts.store, telemetry.clone());
    let service = consumer::Service {
        name: "archiver",
        worker: parts.worker,
        source: parts.source,
        leases: parts.leases,
        processors: Arc::new(archiving),
        dead_letters: parts.dead_letters,
        samples: Box::new(move || telemetry.samples()),
        reporting: parts.reporting,
    };
    consumer::start(service, consumer_telemetry, stop)
}

/// The S3 client: path-style addressing when an endpoint is set (S3-compatible stores and emulators on an IP).
async fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

pub async fn run(args: ArchiverArgs, file: &FileConfig) -> anyhow::Result<()> {
    let Some(stream) = args.stream.clone().or_else(|| file.kinesis.stream.clone()) else {
        bail!(
            "no Kinesis stream given: pass --stream NAME, set CHIMEWATCH_STREAM, or set kinesis.stream in the config file"
        );
    };
    let Some(bucket) = args.bucket.clone().or_else(|| file.archiver.bucket.clone()) else {
        bail!(
            "no S3 bucket given: pass --bucket NAME, set CHIMEWATCH_ARCHIVE_BUCKET, or set archiver.bucket in the config file"
        );
    };
    let mut archiving = config::archiving(&args.archiving, file, std::env::temp_dir().join("chimewatch-spool"))?;
    archiving.prefix = args.prefix.clone().or_else(|| file.archiver.prefix.clone()).unwrap_or_default();
    let (table, worker, dead_letter_stream) =
        config::consumer(&args.consumer, file, &format!("chimewatch-archiver-{stream}"))?;
    let pipeline = config::pipeline(&args.pipeline, file)?;
    let listen: SocketAddr =
        args.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8082))));

    let sdk = super::aws_config().await;
    let aws = consumer::aws(&sdk, &stream, &table, dead_letter_stream).await?;
    let store = S3Objects::new(s3_client(&sdk).await, &bucket);
    store
        .list(&archiving.claims_prefix(""))
        .await
        .with_context(|| format!("listing the archive in bucket {bucket} (does it exist, may this role list it?)"))?;
    let cloudwatch: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&sdk)));
    let location = format!("s3://{bucket}/{}", archiving.prefix.trim_matches('/'));
    let parts = Parts {
        source: aws.source,
        leases: aws.leases,
        store: Arc::new(store),
        dead_letters: aws.dead_letters,
        worker,
        config: archiving,
        reporting: pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let banner = format!("stream {stream} into {location}, lease table {table}");
    consumer::serve_until_signal(
        "archiver",
        listen,
        registry,
        stop,
        worker,
        &banner,
        "wrote its buffered rows and released its leases",
    )
    .await
}

pub async fn compact_command(args: CompactArgs, file: &FileConfig) -> anyhow::Result<()> {
    let tables = match args.table.as_deref() {
        None => vec![Table::MeetingEvents, Table::SipMessages],
        Some("meeting_events") => vec![Table::MeetingEvents],
        Some("sip_messages") => vec![Table::SipMessages],
        Some(other) => bail!("unknown table {other:?}: meeting_events or sip_messages"),
    };
    if args.target_mb == 0 {
        bail!("--target-mb must be at least 1");
    }
    let bucket = args.bucket.clone().or_else(|| file.archiver.bucket.clone());
    let (store, prefix): (Arc<dyn ObjectStore>, String) = match bucket {
        Some(bucket) => {
            let sdk = super::aws_config().await;
            let prefix = args.prefix.clone().or_else(|| file.archiver.prefix.clone()).unwrap_or_default();
            (Arc::new(S3Objects::new(s3_client(&sdk).await, bucket)), prefix)
        }
        None => {
            let dir = config::data_dir(args.data.data_dir.as_ref(), file).join(ARCHIVE_DIR);
            if !dir.is_dir() {
                bail!("no archive at {} (pass --data-dir of `up`, or --bucket)", dir.display());
            }
            (Arc::new(LocalObjects::new(dir)), args.prefix.clone().unwrap_or_default())
        }
    };
    let work_dir = std::env::temp_dir();
    let options = CompactOptions {
        prefix,
        tables,
        format: config::archive_format(Some(args.format)),
        target_bytes: args.target_mb * 1024 * 1024,
        min_age: config::parse_duration(&args.min_age).context("--min-age")?,
        partitions: args.partition.clone(),
        work_dir,
        now_ms: chimewatch_stream::system_clock_ms(),
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
