//! The producer gateway: takes meeting events and SIP log records over HTTP, validates and normalizes them, and
//! answers 2xx only once they are durable on the stream.
//!
//! Built like mini-redis: [`serve`] takes a bound listener and a shutdown future, so tests bind port 0 and need no
//! globals; [`router`] is the whole HTTP surface, testable without a socket.
//!
//! # Layout
//! - [`config`]: the gateway's typed settings.
//! - [`auth`]: API keys and signed attendee tokens, and the principal a request acts as.
//! - [`body`]: reading a request body within limits (size, gzip inflation, content type).
//! - [`ingest`]: the ingest handlers: parse, normalize, validate, encode, put.
//! - [`client_events`]: the Chime SDKs' own ingestion protocol, and JoinToken registration.
//! - [`dedup`]: dropping events delivered twice within a window.
//! - [`error`]: every error a client can see, and its status code, in one `match`.
//! - [`telemetry`]: the gateway's self-metrics, named once.

pub mod auth;
pub mod body;
pub mod client_events;
pub mod config;
pub mod dedup;
pub mod error;
pub mod ingest;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chimewatch_stream::{Clock, Producer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::GatewayConfig;
pub use telemetry::GatewayTelemetry;

/// Everything a request handler needs, shared by all requests.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<GatewayConfig>,
    pub producer: Arc<dyn Producer>,
    pub telemetry: Arc<GatewayTelemetry>,
    /// Every self-metric of the process, rendered on `/metrics`.
    pub registry: Arc<Registry>,
    pub shutting_down: Arc<AtomicBool>,
    pub dedup: Arc<dedup::Deduplicator>,
    pub join_tokens: Arc<auth::JoinTokenRegistry>,
    /// The server's clock in milliseconds since the epoch; injected so tests can pin it.
    pub clock: Clock,
}

impl AppState {
    pub fn new(
        config: GatewayConfig,
        producer: Arc<dyn Producer>,
        telemetry: Arc<GatewayTelemetry>,
        registry: Arc<Registry>,
    ) -> Self {
        let dedup = Arc::new(dedup::Deduplicator::new(config.dedup_window_ms, config.dedup_max_keys));
        let join_tokens = Arc::new(auth::JoinTokenRegistry::new(config.max_join_tokens));
        Self {
            config: Arc::new(config),
            producer,
            telemetry,
            registry,
            shutting_down: Arc::new(AtomicBool::new(false)),
            dedup,
            join_tokens,
            clock: chimewatch_stream::system_clock,
        }
    }
}

/// The gateway's HTTP surface.
pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    Router::new()
        .route("/v1/meeting-events", post(ingest::meeting_events))
        .route("/meetingevents", post(ingest::meeting_events))
        .route("/v1/sip-messages", post(ingest::sip_messages))
        .route("/v1/client-events", post(client_events::client_events))
        .route("/v1/admin/attendees", post(client_events::register_attendees))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .merge(telemetry_router(state.registry))
        .layer(cors)
}

/// `GET /metrics` (every self-metric of the process, in the OpenMetrics text format) and `GET /healthz`: on the
/// gateway's port, and on the consumer services' own.
pub fn telemetry_router(registry: Arc<Registry>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz)).with_state(registry)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            axum::http::HeaderName::from_static("x-api-key"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"})))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let ready = !state.shutting_down.load(Ordering::Acquire) && state.producer.is_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({"ready": ready})))
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves until `shutdown` resolves, then stops accepting, finishes the requests in flight (each waits for its
/// events to be durable), and flushes the producer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let producer = state.producer.clone();
    let flag = state.shutting_down.clone();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "The gateway is listening.");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            flag.store(true, Ordering::Release);
            tracing::info!("The gateway is shutting down: no new connections; finishing requests in flight.");
        })
        .await?;
    producer.close().await;
    tracing::info!("The gateway has flushed the stream and stopped.");
    Ok(())
}
