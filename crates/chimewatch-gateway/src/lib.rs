//! The producer gateway: takes meeting events and SIP log records over HTTP, validates and normalizes them, and
//! answers 2xx only once they are durable on the stream.
//!
//! Built like mini-redis: [`serve`] takes a bound listener and a shutdown future, so tests bind port 0 and need no
//! globals; [`router`] is the whole HTTP surface, testable without a socket.
//!
//! Nothing a client does can exhaust it: at most `max_concurrent_requests` are handled at once (beyond, 503 with
//! `Retry-After`), headers must arrive within `header_read_timeout` and bodies within `body_read_timeout`, bodies are
//! capped before and after inflation, and requests are authenticated before their bodies are parsed.
//!
//! - [`tls`]: optional TLS (rustls) from PEM files.
//! - [`privacy`]: the customer's ids for people and meetings, kept, hashed or dropped before the stream.
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
pub mod privacy;
pub mod telemetry;
pub mod tls;

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
    /// Requests in progress on the ingest routes, bounded by `max_concurrent_requests`.
    pub in_progress: Arc<tokio::sync::Semaphore>,
    /// Serve `/metrics` on the ingest port too (false when it has a listener of its own).
    pub metrics_on_ingest_port: bool,
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
        let in_progress = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests));
        Self {
            in_progress,
            metrics_on_ingest_port: true,
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
    let ingest = Router::new()
        .route("/v1/meeting-events", post(ingest::meeting_events))
        .route("/meetingevents", post(ingest::meeting_events))
        .route("/v1/sip-messages", post(ingest::sip_messages))
        .route("/v1/client-events", post(client_events::client_events))
        .route("/v1/admin/attendees", post(client_events::register_attendees))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .route("/readyz", get(readyz))
        .with_state(state.clone());
    let surface = if state.metrics_on_ingest_port {
        ingest.merge(telemetry_router(state.registry.clone()))
    } else {
        ingest.route("/healthz", get(healthz))
    };
    surface.layer(cors)
}

/// Admits a request while fewer than `max_concurrent_requests` are in progress; otherwise answers 503 at once, so
/// that overload costs the gateway nothing and clients back off (the Chime SDKs retry 503).
async fn admit(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match state.in_progress.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            let route = match request.uri().path() {
                "/v1/meeting-events" | "/meetingevents" => "meeting_events",
                "/v1/sip-messages" => "sip_messages",
                "/v1/client-events" => "client_events",
                _ => "admin_attendees",
            };
            state.telemetry.at_capacity.inc();
            state.telemetry.request(route, 503);
            tracing::debug!(route, "The gateway is at capacity; answered 503.");
            error::ApiError::AtCapacity(state.config.max_concurrent_requests).into_response()
        }
    }
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
/// events to be durable), and flushes the producer. With `tls`, connections are TLS (HTTP/1.1 and HTTP/2 by ALPN).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), tls, shutdown).await
}

/// [`serve`], with `extra` routes beside the gateway's (`up`'s console). They are outside the gateway's admission
/// limit and CORS, so that a busy gateway still shows its console and no other origin can read it.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    extra: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let producer = state.producer.clone();
    let flag = state.shutting_down.clone();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), "The gateway is listening.");
    let header_timeout = state.config.header_read_timeout;
    serve_router(listener, router(state).merge(extra), tls, header_timeout, async move {
        shutdown.await;
        flag.store(true, Ordering::Release);
        tracing::info!("The gateway is shutting down: no new connections; finishing requests in flight.");
    })
    .await?;
    producer.close().await;
    tracing::info!("The gateway has flushed the stream and stopped.");
    Ok(())
}

/// Serves `router` on `listener` until `shutdown`, then lets the connections finish what they are doing. Unlike
/// `axum::serve`, headers must arrive within `header_timeout` (a slow client cannot hold a connection open forever),
/// and connections may be TLS.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin, and keep serving.
                    tracing::warn!(error = %e, "Could not accept a connection.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let (builder, acceptor, watcher) = (builder.clone(), acceptor.clone(), graceful.watcher());
        tokio::spawn(async move {
            let served = match acceptor {
                None => {
                    watcher
                        .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
                        .await
                }
                Some(acceptor) => {
                    // The handshake is bounded like the headers: a peer that never finishes it is dropped.
                    let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed."),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out."),
                    };
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned()).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "A connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests;
