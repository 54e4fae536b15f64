//! The commands: each resolves its settings, wires ports to adapters, and runs. No decisions beyond wiring here.

mod aggregator;
mod alarms;
mod archiver;
mod consumer;
mod dump;
mod explain;
mod gateway;
mod put;
mod query;
mod simulate;
mod token;
mod up;

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::cli::{
    AlarmsCommand, ArchiveCommand, Cli, Command, DashboardsCommand, LogsCommand, MetricsCommand, StreamCommand,
    TokenCommand,
};
use crate::config;

/// Resolves the settings once, then runs the command with its finished configuration.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = config::resolve(cli.config.as_deref(), cli.command.settings())?;
    match cli.command {
        Command::Up(args) => {
            if args.demo {
                // The pipeline panels fill from the demo's first seconds, unless an interval was chosen.
                settings.pipeline.interval_secs.get_or_insert(up::DEMO_PIPELINE_INTERVAL_SECS);
            }
            up::run(settings.up()?, args.demo).await
        }
        Command::Gateway(_) => gateway::run(settings.gateway_command()?).await,
        Command::Aggregator(_) => aggregator::run(settings.aggregator_command()?).await,
        Command::Archiver(_) => archiver::run(settings.archiver_command()?).await,
        Command::Archive(ArchiveCommand::Compact(args)) => archiver::compact_command(args, &settings).await,
        Command::Metrics(MetricsCommand::Query(args)) => query::metrics(args, &settings),
        Command::Metrics(MetricsCommand::List(args)) => query::list_metrics(args, &settings),
        Command::Logs(LogsCommand::Query(args)) => query::logs(args, &settings),
        Command::Alarms(AlarmsCommand::List(args)) => alarms::list(args, &settings).await,
        Command::Alarms(AlarmsCommand::History(args)) => alarms::history(args, &settings).await,
        Command::Alarms(AlarmsCommand::Put(args)) => put::alarms(args, &settings).await,
        Command::Dashboards(DashboardsCommand::Put(args)) => put::dashboards(args, &settings).await,
        Command::Stream(StreamCommand::Dump(args)) => dump::run(args, &settings).await,
        Command::Token(TokenCommand::Mint(args)) => token::mint(args, &settings),
        Command::Simulate(args) => simulate::run(*args, &settings).await,
        Command::Explain(args) => explain::run(*args, &settings).await,
    }
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

/// Serves `/metrics` and `/healthz` until `shutdown`: for the services without the gateway's HTTP interface, and
/// for a gateway whose figures have a listener of their own.
async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = chimewatch_gateway::telemetry_router(registry);
    chimewatch_gateway::serve_router(listener, router, None, std::time::Duration::from_secs(10), shutdown)
        .await
        .context("serving /metrics")
}

/// What the deploy files' placeholders stand for in one deployment: its region, the aggregator's namespaces and
/// event log group, and the services' own namespace. `up` renders them, `dashboards put` and `alarms put` apply them.
fn deploy_values(
    region: &str,
    aggregation: &chimewatch_aggregator::config::AggregatorServiceConfig,
    pipeline_namespace: &str,
) -> chimewatch_console::template::Values {
    use chimewatch_aggregator::config::DEFAULT_LOG_GROUP;
    chimewatch_console::template::Values::new()
        .set("Region", region)
        .set("MeetingNamespace", &aggregation.namespace)
        .set("VoiceNamespace", &aggregation.voice_namespace)
        .set("PipelineNamespace", pipeline_namespace)
        .set("MeetingLogGroup", aggregation.log_group.as_deref().unwrap_or(DEFAULT_LOG_GROUP))
}
