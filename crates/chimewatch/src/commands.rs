//! The commands: each resolves its settings, wires ports to adapters, and runs. No decisions beyond wiring here.

mod aggregator;
mod archiver;
mod consumer;
mod dump;
mod gateway;
mod query;
mod token;
mod up;

use std::sync::Arc;

use anyhow::Context;
use chimewatch_gateway::{AppState, GatewayConfig, GatewayTelemetry};
use chimewatch_sinks::{MetricSink, PipelineReporter};
use chimewatch_stream::{Producer, ProducerTelemetry};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::cli::{ArchiveCommand, Cli, Command, LogsCommand, MetricsCommand, StreamCommand, TokenCommand};
use crate::config::{self, PipelineConfig};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = config::load_file(cli.config.as_deref())?;
    match cli.command {
        Command::Up(args) => up::run(args, &file).await,
        Command::Gateway(args) => gateway::run(args, &file).await,
        Command::Aggregator(args) => aggregator::run(args, &file).await,
        Command::Archiver(args) => archiver::run(args, &file).await,
        Command::Archive(ArchiveCommand::Compact(args)) => archiver::compact_command(args, &file).await,
        Command::Metrics(MetricsCommand::Query(args)) => query::metrics(args, &file),
        Command::Logs(LogsCommand::Query(args)) => query::logs(args, &file),
        Command::Stream(StreamCommand::Dump(args)) => dump::run(args, &file).await,
        Command::Token(TokenCommand::Mint(args)) => token::mint(args, &file),
    }
}

/// Where a service reports its own metrics, and what reports there.
struct Reporting {
    reporter: PipelineReporter,
    interval: std::time::Duration,
}

/// Binds the listener and serves the gateway until `shutdown`; reports pipeline metrics meanwhile, and once more
/// after the stream is flushed, so the final counts are published too.
async fn serve_gateway(
    listen: std::net::SocketAddr,
    config: GatewayConfig,
    producer: Arc<dyn Producer>,
    producer_telemetry: ProducerTelemetry,
    mut registry: Registry,
    reporting: Option<(Arc<dyn MetricSink>, PipelineConfig)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.auth.is_anonymous() && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "The gateway accepts unauthenticated requests on a non-loopback address; set API keys or a token secret.");
    }
    let telemetry = Arc::new(GatewayTelemetry::default());
    telemetry.register(&mut registry);
    let reporting = reporting.map(|(sink, p)| {
        let t = telemetry.clone();
        let reporter = PipelineReporter::new(sink, p.namespace, "gateway")
            .source(move || t.samples())
            .source(move || producer_telemetry.samples());
        Reporting { reporter, interval: p.interval }
    });
    let state = AppState::new(config, producer, telemetry, Arc::new(registry));
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "chimewatch gateway listening on http://{addr} (POST /v1/meeting-events, /meetingevents, /v1/sip-messages; GET /metrics)"
    );
    let (stopped, stop_reporting) = tokio::sync::oneshot::channel::<()>();
    let reporter = reporting.map(|r| {
        tokio::spawn(r.reporter.run(r.interval, chimewatch_stream::system_clock_ms, async move {
            let _ = stop_reporting.await;
        }))
    });
    let served = chimewatch_gateway::serve(listener, state, shutdown).await.context("serving HTTP");
    let _ = stopped.send(());
    if let Some(task) = reporter {
        let _ = task.await;
    }
    served
}

/// A token cancelled on Ctrl-C or SIGTERM, for services that stop in several steps.
fn cancel_on_signal() -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    });
    stop
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Could not listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Loads the AWS SDK configuration from the standard environment (region, credentials, `AWS_ENDPOINT_URL*`).
async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// Serves `/metrics` (the registry, in the OpenMetrics text format) and `/healthz` until `shutdown`, for the
/// services without the gateway's HTTP interface.
async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let metrics = move || {
        let registry = registry.clone();
        async move {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                Ok(()) => {
                    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                        .into_response()
                }
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
    };
    let router = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }));
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await.context("serving /metrics")
}
