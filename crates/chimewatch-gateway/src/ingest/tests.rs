//! Router tests: every status code the gateway answers, driven by the shared fixtures, without a socket.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chimewatch_model::Record;
use chimewatch_stream::{ProduceError, Producer};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::auth::{AttendeeClaims, AuthConfig, mint_token};
use crate::{AppState, GatewayConfig, GatewayTelemetry, router};

/// A producer that keeps what it is given, or fails as told.
#[derive(Debug, Default)]
pub(crate) struct FakeProducer {
    pub records: Mutex<Vec<chimewatch_stream::OutRecord>>,
    pub fail: Mutex<Option<ProduceError>>,
}

#[async_trait]
impl Producer for FakeProducer {
    async fn put(&self, records: Vec<chimewatch_stream::OutRecord>) -> Result<(), ProduceError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.records.lock().unwrap().extend(records);
        Ok(())
    }
    fn is_ready(&self) -> bool {
        self.fail.lock().unwrap().is_none()
    }
    async fn close(&self) {}
}

pub(crate) struct Harness {
    pub state: AppState,
    pub producer: std::sync::Arc<FakeProducer>,
}

pub(crate) fn harness(config: GatewayConfig) -> Harness {
    let producer = std::sync::Arc::new(FakeProducer::default());
    let telemetry = std::sync::Arc::new(GatewayTelemetry::default());
    let mut registry = Registry::default();
    telemetry.register(&mut registry);
    let mut state = AppState::new(config, producer.clone(), telemetry, std::sync::Arc::new(registry));
    state.clock = || chimewatch_stream::UnixMillis(1_795_300_000_000);
    Harness { state, producer }
}

fn fixture_bytes(rel: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

impl Harness {
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let response = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, body)
    }

    pub async fn post(
        &self,
        path: &str,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::post(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    pub fn stored(&self) -> Vec<Record> {
        self.producer.records.lock().unwrap().iter().map(|r| Record::decode(&r.data).unwrap()).collect()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn valid_batches_are_accepted_on_both_paths_and_as_text_plain() {
    let h = harness(GatewayConfig::default());
    let body = fixture_bytes("meeting-events/js-mixed-meetings.json");
    let (status, _, resp) = h.post("/meetingevents", body.clone(), &[("content-type", "application/json")]).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"accepted": 5, "rejected": []})));
    let (status, _, _) = h.post("/v1/meeting-events", body, &[("content-type", "text/plain;charset=UTF-8")]).await;
    assert_eq!(status, StatusCode::OK);
    let stored = h.stored();
    assert_eq!(stored.len(), 10);
    // Batches may mix meetings: each event keeps its own meeting and partition key.
    let meetings: std::collections::BTreeSet<_> = h
        .producer
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.partition_key.split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(meetings.len(), 2);
}

#[tokio::test]
async fn empty_batch_is_ok() {
    let h = harness(GatewayConfig::default());
    let (status, _, resp) = h.post("/v1/meeting-events", "[]", &[]).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"accepted": 0, "rejected": []})));
}

#[tokio::test]
async fn every_sdk_fixture_is_accepted() {
    let h = harness(GatewayConfig::default());
    for f in ["meeting-events/android-session.json", "meeting-events/ios-session-stringified.json"] {
        let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes(f), &[]).await;
        assert_eq!(status, StatusCode::OK, "{f}: {resp}");
        assert_eq!(resp["rejected"], json!([]), "{f}");
    }
    assert_eq!(h.stored().len(), 7);
}

#[tokio::test]
async fn bad_elements_are_rejected_one_by_one_and_valid_ones_kept() {
    let h = harness(GatewayConfig::default());
    let mut batch: Vec<Value> = serde_json::from_slice(&fixture_bytes("bad-input/wrong-types.json")).unwrap();
    batch.push(json!({"name": "meetingEnded", "attributes": {"meetingId": "m1", "attendeeId": "a1", "timestampMs": 1763712000000_i64}}));
    let (status, _, resp) = h.post("/v1/meeting-events", serde_json::to_vec(&batch).unwrap(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["accepted"], 1);
    let indexes: Vec<u64> = resp["rejected"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert_eq!(resp["rejected"][4]["error"], "attributes.meetingStartDurationMs: must not be negative, got -5");
    assert_eq!(h.stored().len(), 1);
}

/// A body mixing events in the JS SDK's form (the fast path), events normalization changes, and bad elements: each
/// record is the general path's, in the body's order, whether the body parses in one pass or element by element.
#[tokio::test]
async fn fast_and_general_paths_mix_in_one_body() {
    let h = harness(GatewayConfig::default());
    let js = |m: &str| json!({"name": "meetingEnded", "attributes": {"meetingId": m, "attendeeId": "a1", "timestampMs": 1763712000000_i64, "meetingHistory": [{"name": "meetingStartRequested", "timestampMs": 1763711999000_i64}]}});
    let ios = json!({"name": "meetingEnded", "attributes": {"meetingId": "m2", "attendeeId": "a1", "timestampMs": "1763712000000", "meetingStatus": "audioCallEnded"}});
    let bad = r#"{"name":"meetingEnded","attributes":{"meetingId":"m3","meetingId":"m3"}}"#;
    let whole = format!("[{},{ios},{}]", js("m1"), js("m4"));
    let split = format!("[{},{ios},{bad},{}]", js("m1"), js("m4"));
    for (body, rejected) in [(whole, 0), (split, 1)] {
        let (status, _, resp) = h.post("/v1/meeting-events", body.clone(), &[]).await;
        assert_eq!((status, resp["rejected"].as_array().unwrap().len()), (StatusCode::OK, rejected), "{resp}");
        let expected: Vec<Vec<u8>> = serde_json::from_str::<Vec<Value>>(&body)
            .unwrap()
            .into_iter()
            .filter_map(|v| {
                chimewatch_model::event::normalize(v, &GatewayConfig::default().limits, 1_795_300_000_000).ok()
            })
            .map(|n| Record::meeting_event(n, chimewatch_model::Ingest::Batch, 1_795_300_000_000).encode())
            .collect();
        let records: Vec<Vec<u8>> = h.producer.records.lock().unwrap().drain(..).map(|r| r.data).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records, expected);
    }
}

#[tokio::test]
async fn hostile_fixtures_get_clear_answers() {
    let h = harness(GatewayConfig::default());
    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/not-an-array.json"), &[]).await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "body must be a JSON array of events, but it is an object")
    );

    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/truncated.json"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(resp["error"], "body is not valid JSON: EOF while parsing an object at line 1 column 101");
    assert_eq!((resp["line"].as_u64(), resp["column"].as_u64()), (Some(1), Some(101)));

    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/invalid-utf8.json"), &[]).await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "body is not valid UTF-8: invalid byte at offset 0")
    );

    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/duplicate-keys.json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["rejected"][0]["error"], "duplicate key `timestampMs` at line 1 column 113");

    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/deep-nesting.json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(resp["rejected"][0]["error"].as_str().unwrap().starts_with("recursion limit exceeded"), "{resp}");

    let (status, _, resp) = h.post("/v1/meeting-events", fixture_bytes("bad-input/huge-history.json"), &[]).await;
    assert_eq!((status, resp["accepted"].as_u64()), (StatusCode::OK, Some(1)));
    let Record::MeetingEvent(r) = &h.stored()[0] else { panic!("not a meeting event") };
    assert_eq!(r.truncation.history_entries_dropped, 200_000 - 256);

    let (status, _, resp) = h
        .post("/v1/meeting-events", fixture_bytes("bad-input/gzip-bomb.json.gz"), &[("content-encoding", "gzip")])
        .await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "request body inflates past 16777216 bytes")
    );
}

#[tokio::test]
async fn gzip_bodies_are_inflated_and_other_encodings_refused() {
    let h = harness(GatewayConfig::default());
    let body = gzip(&fixture_bytes("meeting-events/js-mixed-meetings.json"));
    let (status, _, resp) = h.post("/v1/meeting-events", body, &[("content-encoding", "gzip")]).await;
    assert_eq!((status, resp["accepted"].as_u64()), (StatusCode::OK, Some(5)));

    let (status, _, resp) = h.post("/v1/meeting-events", "[]", &[("content-encoding", "br")]).await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content encoding \"br\" is not supported; send gzip or no encoding")
    );
    let (status, _, _) = h.post("/v1/meeting-events", "[]", &[("content-type", "application/xml")]).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, resp) = h.post("/v1/meeting-events", "not gzip", &[("content-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
}

#[tokio::test]
async fn size_limits() {
    let h = harness(GatewayConfig { max_body_bytes: 100, max_events_per_request: 2, ..GatewayConfig::default() });
    let (status, _, resp) = h.post("/v1/meeting-events", vec![b' '; 101], &[]).await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds 100 bytes")
    );
    // Without a Content-Length (chunked), the limit holds while reading.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(vec![b' '; 60]), Ok(vec![b' '; 60])]);
    let (status, _, _) = h.post("/v1/meeting-events", Body::from_stream(stream), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, resp) = h.post("/v1/meeting-events", "[1,2,3]", &[]).await;
    assert_eq!(
        (status, resp["error"].as_str().unwrap()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body holds 3 events; at most 2 are accepted per request")
    );
}

#[tokio::test]
async fn stream_backpressure_becomes_429_or_503_with_retry_after() {
    let h = harness(GatewayConfig::default());
    let body = fixture_bytes("meeting-events/js-mixed-meetings.json");
    *h.producer.fail.lock().unwrap() =
        Some(ProduceError::Overloaded { in_flight_bytes: 10, limit_bytes: 10, retry_after: Duration::from_secs(2) });
    let (status, headers, _) = h.post("/v1/meeting-events", body.clone(), &[]).await;
    assert_eq!((status, headers[header::RETRY_AFTER].to_str().unwrap()), (StatusCode::TOO_MANY_REQUESTS, "2"));

    *h.producer.fail.lock().unwrap() =
        Some(ProduceError::Unavailable { reason: "throttled".into(), retry_after: Duration::from_secs(5) });
    let (status, headers, resp) = h.post("/v1/meeting-events", body, &[]).await;
    assert_eq!((status, headers[header::RETRY_AFTER].to_str().unwrap()), (StatusCode::SERVICE_UNAVAILABLE, "5"));
    assert_eq!(resp["error"], "the stream is unavailable: throttled");

    let (status, _, resp) = h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, resp), (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false})));
}

#[tokio::test]
async fn api_keys_and_attendee_tokens() {
    let secret = b"test-secret-test-secret-test-sec".to_vec();
    let h = harness(GatewayConfig {
        auth: AuthConfig { api_keys: vec!["k1".into()], token_secrets: vec![secret.clone()] },
        ..GatewayConfig::default()
    });
    let event = |m: &str, a: &str| {
        json!([{"name": "meetingEnded", "attributes": {"meetingId": m, "attendeeId": a, "timestampMs": 1763712000000_i64}}]).to_string()
    };

    let (status, headers, resp) = h.post("/v1/meeting-events", event("m1", "a1"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(resp["error"].as_str().unwrap().starts_with("missing credentials"));
    let (status, _, _) = h.post("/v1/meeting-events", event("m1", "a1"), &[("x-api-key", "wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = h.post("/v1/meeting-events", event("m1", "a1"), &[("x-api-key", "k1")]).await;
    assert_eq!(status, StatusCode::OK);

    let token = mint_token(
        &secret,
        &AttendeeClaims {
            meeting_id: "m1".into(),
            attendee_id: "a1".into(),
            exp: 4_000_000_000,
            external_user_id: None,
        },
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let (status, _, _) = h.post("/v1/meeting-events", event("m1", "a1"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    // A beacon cannot set headers: the token rides in the query, even after the SDK's blind `?beacon=1`.
    let (status, _, _) = h.post(&format!("/meetingevents?token={token}?beacon=1"), event("m1", "a1"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, resp) =
        h.post("/v1/meeting-events", event("m1", "someone-else"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        resp["error"],
        "event 0 is for meeting \"m1\" attendee \"someone-else\", but the token is for meeting \"m1\" attendee \"a1\""
    );
    let (status, _, _) = h.post("/v1/sip-messages", "[]", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.stored().len(), 3);
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins() {
    let h = harness(GatewayConfig { cors_origins: vec!["https://app.example".into()], ..GatewayConfig::default() });
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/meeting-events")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, _) = h.send(preflight("https://app.example")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "https://app.example");
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let (_, headers, _) = h.send(preflight("https://evil.example")).await;
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn sip_records_as_lines_or_array() {
    let h = harness(GatewayConfig::default());
    let lines = fixture_bytes("sip/voice-connector-sip-messages.jsonl");
    let (status, _, resp) =
        h.post("/v1/sip-messages", lines.clone(), &[("content-type", "application/x-ndjson")]).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"accepted": 20, "rejected": []})));
    let array: Vec<Value> =
        String::from_utf8(lines).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut array = serde_json::to_value(array).unwrap();
    array[3] = json!({"call_id": 1});
    let (status, _, resp) = h.post("/v1/sip-messages", array.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp["accepted"], 19);
    assert_eq!(resp["rejected"], json!([{"index": 3, "error": "voice_connector_id: missing"}]));
    let Record::SipMessage(first) = &h.stored()[0] else { panic!("not a SIP record") };
    assert_eq!(first.record.call_id, "vc-call-0001");
}

#[tokio::test]
async fn health_and_metrics() {
    let h = harness(GatewayConfig::default());
    let (status, _, resp) = h.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, resp), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _, _) = h.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    h.post("/v1/meeting-events", fixture_bytes("bad-input/wrong-types.json"), &[]).await;
    let (status, _, text) = h.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(text.contains(r#"gateway_requests_total{route="meeting_events",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"gateway_rejected_total{kind="meeting_event",reason="wrong_type"} 2"#), "{text}");
}
