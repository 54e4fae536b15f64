//! Router tests of the ingestion protocol: the real JS SDK's captured requests replayed, Android and iOS bodies,
//! re-sends, duplicates, beacons, JoinToken registration and malformed bodies.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chimewatch_model::Record;
use serde_json::{Value, json};

use crate::GatewayConfig;
use crate::auth::AuthConfig;
use crate::ingest::tests::{Harness, harness};

fn capture(name: &str) -> Value {
    let path = format!("{}/../../fixtures/real-sdk-js/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn own(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn captures() -> Vec<(String, Value)> {
    let dir = format!("{}/../../fixtures/real-sdk-js", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), capture(&n))).collect()
}

/// Replays a captured request: its method, URL, and the headers a server acts on.
async fn replay(h: &Harness, c: &Value) -> (StatusCode, Value) {
    let mut req = Request::builder().method(c["method"].as_str().unwrap()).uri(c["url"].as_str().unwrap());
    for (k, v) in c["headers"].as_object().unwrap() {
        if ["content-type", "authorization"].contains(&k.as_str()) {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
    }
    let (status, _, body) = h.send(req.body(Body::from(serde_json::to_vec(&c["body"]).unwrap())).unwrap()).await;
    (status, body)
}

fn meeting_events(h: &Harness) -> Vec<chimewatch_model::MeetingEventRecord> {
    h.stored().into_iter().filter_map(|r| if let Record::MeetingEvent(m) = r { Some(m) } else { None }).collect()
}

#[tokio::test]
async fn every_captured_request_is_accepted_whole() {
    let h = harness(GatewayConfig::default());
    for (name, c) in captures() {
        let (status, body) = replay(&h, &c).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["rejected"], json!([]), "{name}");
    }
    let records = meeting_events(&h);
    assert!(records.iter().any(|r| r.ingest == chimewatch_model::Ingest::SdkIngestion));
    assert!(records.iter().any(|r| r.ingest == chimewatch_model::Ingest::Batch));
}

#[tokio::test]
async fn native_uploads_yield_the_blog_uploads_events() {
    const ONE_SIDED: &[&str] =
        &["meetingHistory", "externalMeetingId", "externalUserId", "engineName", "engineMajorVersion"];
    let comparable = |r: &chimewatch_model::MeetingEventRecord| {
        let attrs: std::collections::BTreeMap<_, _> = r
            .event
            .attributes
            .iter()
            .filter(|(k, _)| !ONE_SIDED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (r.event.name.clone(), attrs)
    };
    let native = harness(GatewayConfig::default());
    let blog = harness(GatewayConfig::default());
    for (name, c) in captures() {
        let target = if name.contains("blog") { &blog } else { &native };
        assert_eq!(replay(target, &c).await.0, StatusCode::OK);
    }
    let native: Vec<_> = meeting_events(&native).iter().map(comparable).collect();
    let blog: Vec<_> =
        meeting_events(&blog).iter().filter(|r| r.event.name != "signalingDropped").map(comparable).collect();
    assert!(blog.len() >= 20);
    for e in &blog {
        assert!(native.contains(e), "{} of the blog upload was not delivered natively alike", e.0);
    }
}

#[tokio::test]
async fn retries_and_beacon_resends_are_dropped_as_duplicates() {
    let h = harness(GatewayConfig::default());
    let c = capture("0003-native.json");
    let (_, first) = replay(&h, &c).await;
    let (status, again) = replay(&h, &c).await;
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(1), Some(0)));
    assert_eq!((status, again["accepted"].as_u64(), again["duplicates"].as_u64()), (StatusCode::OK, Some(0), Some(1)));
    assert_eq!(meeting_events(&h).len(), 1);
    let (_, _, text) = h.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(text.as_str().unwrap().contains("gateway_duplicates_total 1"));
}

#[tokio::test]
async fn a_failed_put_is_not_remembered_so_the_retry_goes_through() {
    let h = harness(GatewayConfig::default());
    let c = capture("0001-native.json");
    *h.producer.fail.lock().unwrap() = Some(chimewatch_stream::ProduceError::Unavailable {
        reason: "down".into(),
        retry_after: std::time::Duration::from_secs(1),
    });
    assert_eq!(replay(&h, &c).await.0, StatusCode::SERVICE_UNAVAILABLE);
    *h.producer.fail.lock().unwrap() = None;
    let (status, body) = replay(&h, &c).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(1)));
}

#[tokio::test]
async fn android_and_ios_resends_with_ttl() {
    let h = harness(GatewayConfig::default());
    for (batch, resend, n, dups) in [
        ("sdk-ingestion/android-batch.json", "sdk-ingestion/android-resend.json", 3, 3),
        ("sdk-ingestion/ios-batch.json", "sdk-ingestion/ios-resend.json", 3, 2),
    ] {
        let (status, _, body) = h.post("/v1/client-events", own(batch), &[("content-type", "application/json")]).await;
        assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(n)), "{batch}: {body}");
        let (status, _, body) = h.post("/v1/client-events", own(resend), &[("content-type", "application/json")]).await;
        assert_eq!(
            (status, body["duplicates"].as_u64(), body["accepted"].as_u64()),
            (StatusCode::OK, Some(dups), Some(0)),
            "{resend}: {body}"
        );
    }
    let records = meeting_events(&h);
    let ios = records.iter().find(|r| r.event.name == "meetingStartFailed").unwrap();
    assert_eq!(ios.event.str_attr("meetingStatus"), Some("AudioCallAtCapacity"));
    assert_eq!(ios.delivery.as_ref().and_then(|d| d.id.as_deref()), Some("E2B4A3F0-1111-4C3B-9A1D-000000000003"));
}

#[tokio::test]
async fn registered_join_tokens_admit_their_attendee_and_beacons() {
    let h = harness(GatewayConfig {
        auth: AuthConfig { api_keys: vec!["admin-key".into()], token_secrets: vec![] },
        ..GatewayConfig::default()
    });
    let c = capture("0001-native.json");
    let join_token = c["headers"]["authorization"].as_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let meta = &c["body"]["metadata"];

    assert_eq!(replay(&h, &c).await.0, StatusCode::UNAUTHORIZED, "not registered yet");
    let registration =
        json!({"meetingId": meta["meetingId"], "attendeeId": meta["attendeeId"], "joinToken": join_token});
    let (status, _, _) = h.post("/v1/admin/attendees", registration.to_string(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "registration needs the API key");
    let (status, _, body) =
        h.post("/v1/admin/attendees", registration.to_string(), &[("x-api-key", "admin-key")]).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"registered": 1})));

    assert_eq!(replay(&h, &c).await.0, StatusCode::OK);
    // The beacon has no header; its token is in the body, and `?beacon=1` may follow an existing query.
    let mut beacon = capture("0007-native-beacon.json");
    beacon["url"] = json!("/v1/client-events?tenant=abc?beacon=1");
    assert_eq!(replay(&h, &beacon).await.0, StatusCode::OK);
    let mut tokenless = beacon.clone();
    tokenless["body"].as_object_mut().unwrap().remove("authorization");
    assert_eq!(replay(&h, &tokenless).await.0, StatusCode::UNAUTHORIZED);
    // Another attendee's capture, with this attendee's token: each of its events is refused, none stored.
    let mut other = capture("0002-native.json");
    other["headers"]["authorization"] = json!(format!("Bearer {join_token}"));
    let (status, body) = replay(&h, &other).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(0)), "{body}");
    let (_, _, text) = h.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(text.as_str().unwrap().contains("gateway_beacons_total 2"));
}

#[tokio::test]
async fn malformed_bodies_and_payloads() {
    let h = harness(GatewayConfig::default());
    let (status, _, body) = h.post("/v1/client-events", "{\"events\": [", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().starts_with("body is not valid JSON"));
    let (status, _, body) = h.post("/v1/client-events", "[]", &[]).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "body must be an object {metadata, events}, got an array of 0 items")
    );
    let mixed = json!({"metadata": {"meetingId": "m", "attendeeId": "a", "sdkName": "amazon-chime-sdk-js"}, "events": [{"type": "Meet", "v": 1, "payloads": [
        {"name": "meetingStartRequested", "ts": 1763712000000_i64}, {"name": "meetingEnded"}, {"name": "x", "ts": 1763712000000_i64, "retryCount": -1}]}]});
    let (status, _, body) = h.post("/v1/client-events", mixed.to_string(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 1);
    assert_eq!(
        body["rejected"],
        json!([
            {"index": 1, "error": "events[0].payloads[1].ts: missing"},
            {"index": 2, "error": "events[0].payloads[2].retryCount: must not be negative, got -1"},
        ])
    );
}

#[tokio::test]
async fn browsers_get_their_preflight() {
    let h = harness(GatewayConfig { cors_origins: vec!["*".into()], ..GatewayConfig::default() });
    let req = Request::builder()
        .method("OPTIONS")
        .uri("/v1/client-events")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
}

#[tokio::test]
async fn an_attendee_token_in_the_ingestion_url_admits_that_attendee_only() {
    let secret = b"an-attendee-token-secret-32bytes".to_vec();
    let h = harness(GatewayConfig {
        auth: AuthConfig { api_keys: vec![], token_secrets: vec![secret.clone()] },
        ..GatewayConfig::default()
    });
    let c = capture("0007-native-beacon.json");
    let meta = &c["body"]["metadata"];
    let claims = crate::auth::AttendeeClaims {
        meeting_id: meta["meetingId"].as_str().unwrap().into(),
        attendee_id: meta["attendeeId"].as_str().unwrap().into(),
        exp: 4_000_000_000,
        external_user_id: None,
    };
    let token = crate::auth::mint_token(&secret, &claims).unwrap();
    // The app's ingestion URL carries the token; the SDK appends `?beacon=1` after it.
    let mut beacon = c.clone();
    beacon["url"] = json!(format!("/v1/client-events?token={token}?beacon=1"));
    let (status, body) = replay(&h, &beacon).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(5)), "{body}");
    // The same token on another attendee's events: each is refused, none stored.
    let mut other = capture("0008-native-beacon.json");
    other["url"] = json!(format!("/v1/client-events?token={token}?beacon=1"));
    let (status, body) = replay(&h, &other).await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(0)));
    assert!(body["rejected"][0]["error"].as_str().unwrap().contains("but the credentials are for meeting"), "{body}");
}
