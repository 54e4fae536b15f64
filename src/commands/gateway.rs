//! `chimewatch gateway`: the gateway against an Amazon Kinesis stream; and serving the gateway, which `up` shares.

use std::sync::Arc;

use anyhow::Context;
use chimewatch_gateway::{AppState, GatewayConfig, GatewayTelemetry};
use chimewatch_sinks::cloudwatch::CloudWatchSink;
use chimewatch_sinks::{MetricSink, PipelineReporter};
use chimewatch_stream::kinesis::KinesisProducer;
use chimewatch_stream::{Producer, ProducerTelemetry};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::aws::AwsTelemetry;
use crate::config::{GatewayCommandConfig, PipelineConfig, Serving};

pub async fn run(config: GatewayCommandConfig) -> anyhow::Result<()> {
    let sdk = crate::aws::sdk_config().await;
    let mut registry = Registry::with_prefix("chimewatch");
    let telemetry = ProducerTelemetry::default();
    telemetry.register(&mut registry);
    let aws = AwsTelemetry::default();
    aws.register(&mut registry);
    let stream = config.producer.stream.clone();
    let kinesis = chimewatch_stream::kinesis::client(&sdk, &aws.counting("kinesis"));
    let producer = KinesisProducer::start(kinesis, config.producer, telemetry.clone())
        .await
        .with_context(|| format!("starting the Kinesis producer for stream {stream}"))?;
    let reporting = config.pipeline.map(|p| {
        let sink: Arc<dyn MetricSink> = Arc::new(CloudWatchSink::new(
            chimewatch_sinks::cloudwatch::client(&sdk, &aws.counting("cloudwatch")),
            chimewatch_stream::system_clock,
        ));
        (sink, p)
    });
    serve_gateway(
        config.serving,
        config.gateway,
        Arc::new(producer),
        telemetry,
        registry,
        Extras {
            reporting: reporting.map(|(sink, p)| {
                let extra: Vec<SampleSource> = vec![Box::new(move || aws.samples())];
                (sink, p, extra)
            }),
            ..Extras::default()
        },
        super::shutdown_signal(),
    )
    .await
}

/// More of the gateway process's own figures to report with the gateway's (its AWS calls, the embedded log).
pub(super) type SampleSource = Box<dyn Fn() -> Vec<chimewatch_telemetry::Sample> + Send + Sync>;

/// Where a service reports its own metrics, and what reports there.
struct Reporting {
    reporter: PipelineReporter,
    interval: std::time::Duration,
}

/// What a gateway runs with beyond its own: the reporting of its figures to CloudWatch (with more sources of them),
/// and in `up`, the console's routes and where to tell the address the gateway bound.
#[derive(Default)]
pub(super) struct Extras {
    pub reporting: Option<(Arc<dyn MetricSink>, PipelineConfig, Vec<SampleSource>)>,
    pub routes: axum::Router,
    pub bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
}

/// Binds the listener and serves the gateway until `shutdown`; reports pipeline metrics meanwhile, and once more
/// after the stream is flushed, so the final counts are published too.
pub(super) async fn serve_gateway(
    serving: Serving,
    config: GatewayConfig,
    producer: Arc<dyn Producer>,
    producer_telemetry: ProducerTelemetry,
    mut registry: Registry,
    extras: Extras,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Extras { reporting, routes: extra_routes, bound } = extras;
    let listen = serving.listen;
    if config.auth.is_anonymous() && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "The gateway accepts unauthenticated requests on a non-loopback address; set API keys or a token secret.");
    }
    let telemetry = Arc::new(GatewayTelemetry::default());
    telemetry.register(&mut registry);
    let reporting = reporting.map(|(sink, p, extra)| {
        let t = telemetry.clone();
        let mut reporter = PipelineReporter::new(sink, p.namespace, "gateway")
            .source(move || t.samples())
            .source(move || producer_telemetry.samples());
        for source in extra {
            reporter = reporter.source(source);
        }
        Reporting { reporter, interval: p.interval }
    });
    let registry = Arc::new(registry);
    let mut state = AppState::new(config, producer, telemetry, registry.clone());
    state.metrics_on_ingest_port = serving.metrics_listen.is_none();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    let metrics_server = match serving.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr} for /metrics"))?;
            eprintln!("chimewatch metrics on http://{} (GET /metrics, /healthz)", listener.local_addr()?);
            Some(tokio::spawn(super::serve_metrics(listener, registry.clone(), stop.clone().cancelled_owned())))
        }
        None => None,
    };
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    let scheme = if serving.tls.is_some() { "https" } else { "http" };
    eprintln!(
        "chimewatch gateway listening on {scheme}://{addr} (POST /v1/meeting-events, /meetingevents, /v1/sip-messages, /v1/client-events; GET /metrics)"
    );
    let (stopped, stop_reporting) = tokio::sync::oneshot::channel::<()>();
    let reporter = reporting.map(|r| {
        tokio::spawn(r.reporter.run(r.interval, chimewatch_stream::system_clock, async move {
            let _ = stop_reporting.await;
        }))
    });
    let served =
        chimewatch_gateway::serve_with(listener, state, extra_routes, serving.tls, stop.clone().cancelled_owned())
            .await
            .context("serving HTTP");
    stop.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    let _ = stopped.send(());
    if let Some(task) = reporter {
        let _ = task.await;
    }
    served
}
