//! `chimewatch gateway`: the gateway against an Amazon Kinesis stream.

use std::sync::Arc;

use anyhow::Context;
use chimewatch_sinks::MetricSink;
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_stream::ProducerTelemetry;
use chimewatch_stream::kinesis::KinesisProducer;
use prometheus_client::registry::Registry;

use crate::cli::GatewayArgs;
use crate::config::{self, FileConfig};

pub async fn run(args: GatewayArgs, file: &FileConfig) -> anyhow::Result<()> {
    let kinesis = config::kinesis(&args.kinesis, file)?;
    let gateway = config::gateway(&args.serve, file)?;
    let pipeline = config::pipeline(&args.pipeline, file)?;
    let listen = config::listen(&args.serve, file);
    let sdk = super::aws_config().await;
    let mut registry = Registry::with_prefix("chimewatch");
    let telemetry = ProducerTelemetry::default();
    telemetry.register(&mut registry);
    let stream = kinesis.stream.clone();
    let producer = KinesisProducer::start(aws_sdk_kinesis::Client::new(&sdk), kinesis, telemetry.clone())
        .await
        .with_context(|| format!("starting the Kinesis producer for stream {stream}"))?;
    let reporting = pipeline.map(|p| {
        let sink: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(aws_sdk_cloudwatch::Client::new(&sdk)));
        (sink, p)
    });
    super::serve_gateway(listen, gateway, Arc::new(producer), telemetry, registry, reporting, super::shutdown_signal())
        .await
}
