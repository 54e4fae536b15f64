//! What no client can do to the gateway: unauthenticated bodies are not read, beacons are read within their limit,
//! another person's re-sent events are refused, overload is answered at once, slow clients time out (on a real
//! socket), and TLS serves.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use crate::auth::{AttendeeClaims, AuthConfig, mint_token};
use crate::ingest::tests::harness;
use crate::{GatewayConfig, serve};

const SECRET: &[u8] = b"gateway-test-secret-of-32-bytes!";

fn authenticated() -> GatewayConfig {
    GatewayConfig {
        auth: AuthConfig { api_keys: vec!["admin-key".into()], token_secrets: vec![SECRET.to_vec()] },
        ..GatewayConfig::default()
    }
}

/// A body that never arrives: reading it would hang the request.
fn never() -> Body {
    Body::from_stream(futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>())
}

fn token(meeting: &str, attendee: &str, user: Option<&str>) -> String {
    let claims = AttendeeClaims {
        meeting_id: meeting.into(),
        attendee_id: attendee.into(),
        exp: 4_000_000_000,
        external_user_id: user.map(Into::into),
    };
    mint_token(SECRET, &claims).unwrap()
}

#[tokio::test]
async fn a_request_with_bad_credentials_is_refused_before_its_body_is_read() {
    let h = harness(authenticated());
    for auth in ["Bearer not-a-token", "Bearer admin-ke"] {
        let req = Request::post("/v1/client-events").header(header::AUTHORIZATION, auth).body(never()).unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(5), h.send(req)).await;
        let (status, _, body) = answered.expect("answered without reading the body");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
}

#[tokio::test]
async fn a_beacon_is_read_within_the_beacon_limit_before_it_is_authenticated() {
    let h = harness(authenticated());
    let big = json!({"authorization": "x", "metadata": {}, "events": [{"type": "Meet", "v": 1, "payloads": [{"name": "x".repeat(70_000)}]}]});
    let (status, _, body) = h.post("/v1/client-events?beacon=1", big.to_string(), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("65536"), "{body}");
    let small = json!({"authorization": "not-a-token", "metadata": {}, "events": []});
    assert_eq!(h.post("/v1/client-events?beacon=1", small.to_string(), &[]).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn re_sent_events_pass_only_for_the_same_person() {
    let h = harness(authenticated());
    // The backend registered two earlier sessions: one of user-1, one of user-2.
    let registrations = json!([
        {"meetingId": "old-meeting", "attendeeId": "old-1", "joinToken": "jt-1", "externalUserId": "user-1"},
        {"meetingId": "old-meeting", "attendeeId": "old-2", "joinToken": "jt-2", "externalUserId": "user-2"},
    ]);
    let (status, _, _) = h.post("/v1/admin/attendees", registrations.to_string(), &[("x-api-key", "admin-key")]).await;
    assert_eq!(status, StatusCode::OK);
    // user-1 joins a new meeting; its device re-sends stored events with `ttl`.
    let bearer = format!("Bearer {}", token("new-meeting", "new-1", Some("user-1")));
    let resend = |meeting: &str, attendee: &str| {
        json!({"metadata": {"sdkName": "amazon-chime-sdk-ios"}, "events": [{"type": "Meet", "v": 1,
            "metadata": {"meetingId": meeting, "attendeeId": attendee},
            "payloads": [{"name": "meetingEnded", "ts": 1_763_712_000_000_i64, "id": "p1", "ttl": 4_000_000_000_000_i64}]}]})
        .to_string()
    };
    let (status, _, body) =
        h.post("/v1/client-events", resend("old-meeting", "old-1"), &[("authorization", &bearer)]).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(1)), "user-1's own earlier session: {body}");
    let (status, _, body) =
        h.post("/v1/client-events", resend("old-meeting", "old-2"), &[("authorization", &bearer)]).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(0)), "user-2's session: {body}");
    assert!(body["rejected"][0]["error"].as_str().unwrap().contains("same registered externalUserId"), "{body}");
    // A token naming no person can re-send nothing but its own attendee's events.
    let anonymous = format!("Bearer {}", token("new-meeting", "new-1", None));
    let (_, _, body) =
        h.post("/v1/client-events", resend("old-meeting", "old-1"), &[("authorization", &anonymous)]).await;
    assert_eq!(body["accepted"], 0, "{body}");
}

#[tokio::test]
async fn at_capacity_the_gateway_answers_503_at_once_and_recovers() {
    let h = harness(GatewayConfig { max_concurrent_requests: 1, ..GatewayConfig::default() });
    // One request holds the only slot, sending its body slowly.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let slow = Request::post("/v1/meeting-events").body(Body::from_stream(tokio_stream_from(rx))).unwrap();
    let first = {
        let router = crate::router(h.state.clone());
        tokio::spawn(async move { tower::ServiceExt::oneshot(router, slow).await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, headers, body) = h.post("/v1/meeting-events", "[]", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert!(body["error"].as_str().unwrap().contains("at capacity"));
    // Health checks are not ingest: they are never refused.
    assert_eq!(h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await.0, StatusCode::OK);
    tx.send(Ok(bytes::Bytes::from_static(b"[]"))).await.unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(h.post("/v1/meeting-events", "[]", &[]).await.0, StatusCode::OK, "the slot is free again");
    let (_, _, metrics) = h.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("gateway_at_capacity_total 1"), "{metrics}");
    assert!(metrics.contains(r#"gateway_requests_total{route="meeting_events",status="503"} 1"#), "{metrics}");
}

/// A stream of what the channel receives.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let h = harness(GatewayConfig { body_read_timeout: Duration::from_millis(100), ..GatewayConfig::default() });
    let req = Request::post("/v1/meeting-events").body(never()).unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
}

#[tokio::test]
async fn no_cross_origin_page_may_post_unless_its_origin_is_configured() {
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/client-events")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap()
    };
    let closed = harness(GatewayConfig::default());
    let (_, headers, _) = closed.send(preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none(), "{headers:?}");
    let open = harness(GatewayConfig { cors_origins: vec!["https://app.example".into()], ..GatewayConfig::default() });
    let (_, headers, _) = open.send(preflight("https://app.example")).await;
    assert_eq!(headers["access-control-allow-origin"], "https://app.example");
    let (_, headers, _) = open.send(preflight("https://evil.example")).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = harness(GatewayConfig { header_read_timeout: Duration::from_millis(300), ..GatewayConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.state.clone(), None, async move {
        let _ = stopped.await;
    }));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /v1/meeting-events HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server hung up on the slow client");
    // A client that sends its headers in time is served.
    let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
    quick.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    quick.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_serves_with_the_configured_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = crate::tls::server_config(&cert_path, &key_path).unwrap();
    let missing = crate::tls::server_config(&dir.path().join("none.pem"), &key_path).unwrap_err().to_string();
    assert!(missing.contains("none.pem"), "{missing}");

    let h = harness(GatewayConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, h.state.clone(), Some(tls), async move {
        let _ = stopped.await;
    }));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
