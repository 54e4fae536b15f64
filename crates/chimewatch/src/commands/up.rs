//! `chimewatch up`: the pipeline on embedded backends, in one process.

use std::sync::Arc;

use anyhow::Context;
use chimewatch_stream::ProducerTelemetry;
use chimewatch_stream::local::LocalLog;
use prometheus_client::registry::Registry;

use crate::cli::UpArgs;
use crate::config::{self, FileConfig};

pub async fn run(args: UpArgs, file: &FileConfig) -> anyhow::Result<()> {
    let data_dir = config::data_dir(args.data.data_dir.as_ref(), file);
    let local = config::local(&args, file)?;
    let gateway = config::gateway(&args.serve, file)?;
    let listen = config::listen(&args.serve, file);

    let mut registry = Registry::with_prefix("chimewatch");
    let producer_telemetry = ProducerTelemetry::default();
    producer_telemetry.register(&mut registry);
    let stream_dir = data_dir.join("stream");
    let log = tokio::task::spawn_blocking({
        let stream_dir = stream_dir.clone();
        let producer_telemetry = producer_telemetry.clone();
        move || LocalLog::open(&stream_dir, &local, producer_telemetry)
    })
    .await?
    .with_context(|| format!("opening the embedded log in {}", stream_dir.display()))?;
    eprintln!("chimewatch up: embedded stream in {} ({} shards)", stream_dir.display(), log.shard_count());
    // Embedded backends: the pipeline's own metrics are on /metrics only (the embedded metric store comes with the
    // aggregator).
    super::serve_gateway(listen, gateway, Arc::new(log), producer_telemetry, registry, None).await
}
