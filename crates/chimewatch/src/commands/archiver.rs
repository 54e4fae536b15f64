//! `chimewatch archiver`: the archiver against Kinesis (DynamoDB leases) into S3; `chimewatch archive compact`; and
//! the wiring `up` shares with them on embedded backends.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use chimewatch_archiver::compact::{CompactOptions, compact};
use chimewatch_archiver::{ArchiverConfig, ArchiverTelemetry, Archiving, Table};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::s3::S3Objects;
use chimewatch_sinks::{LocalObjects, MetricSink, ObjectStore, PipelineReporter};
use chimewatch_stream::ProducerTelemetry;
use chimewatch_stream::consumer::{ConsumerTelemetry, DeadLetters, ShardSource, Worker, WorkerConfig};
use chimewatch_stream::kinesis::{KinesisProducer, KinesisProducerConfig, KinesisSource, KinesisSourceConfig};
use chimewatch_stream::lease::LeaseStore;
use chimewatch_stream::lease::dynamodb::DynamoLeaseStore;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let worker = Worker::new(
        parts.worker,
        parts.source,
        parts.leases,
        Arc::new(archiving),
        parts.dead_letters,
        consumer_telemetry.clone(),
    );
    let reporter = parts.reporting.map(|(sink, p)| {
        let reporter = PipelineReporter::new(sink, p.namespace, "archiver")
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
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let source = KinesisSource::new(kinesis.clone(), KinesisSourceConfig::new(&stream));
    source.shards().await.with_context(|| format!("listing the shards of stream {stream}"))?;
    let store = S3Objects::new(s3_client(&sdk).await, &bucket);
    store
        .list(&archiving.claims_prefix(""))
        .await
        .with_context(|| format!("listing the archive in bucket {bucket} (does it exist, may this role list it?)"))?;
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
        None => DeadLetters::log_only(),
    };
    let cloudwatch: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&sdk)));
    let location = format!("s3://{bucket}/{}", archiving.prefix.trim_matches('/'));
    let parts = Parts {
        source: Arc::new(source),
        leases: Arc::new(leases),
        store: Arc::new(store),
        dead_letters,
        worker,
        config: archiving,
        reporting: pipeline.map(|p| (cloudwatch, p)),
    };

    let stop = super::cancel_on_signal();
    let mut registry = Registry::with_prefix("chimewatch");
    let worker = start(parts, &mut registry, stop.clone());
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    eprintln!(
        "chimewatch archiver listening on http://{} (GET /metrics, /healthz); stream {stream} into {location}, lease table {table}",
        listener.local_addr()?
    );
    let served = super::serve_metrics(listener, Arc::new(registry), stop.clone().cancelled_owned()).await;
    stop.cancel();
    worker.await.context("the archiver worker")?;
    eprintln!("chimewatch archiver: wrote its buffered rows and released its leases");
    served
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
