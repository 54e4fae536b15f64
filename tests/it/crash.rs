//! Durability under a crash: kill -9 `chimewatch up` while clients post, restart it, and check that every event the
//! gateway acknowledged is in the log exactly once (the load generator never retries, so nothing may repeat).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, dump};

const CLIENTS: usize = 6;
const EVENTS_PER_REQUEST: usize = 25;

fn batch(client: usize, request: usize) -> Vec<u8> {
    let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
        .map(|i| {
            json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": format!("crash-meeting-{}", request % 4),
                "attendeeId": format!("attendee-{client}"),
                "timestampMs": 1_763_712_000_000_i64 + (request * EVENTS_PER_REQUEST + i) as i64,
                "loadSeq": format!("{client}-{request}-{i}"),
            }})
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

#[tokio::test]
async fn kill_minus_nine_loses_no_acknowledged_event() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    let mut server = Server::start(&["up", "--data-dir", &dir], &[]);
    let url = server.url("/v1/meeting-events");
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(20);

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, acked, sent) = (url.clone(), acked.clone(), sent.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for request in 0.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let seqs: Vec<String> =
                        (0..EVENTS_PER_REQUEST).map(|i| format!("{client}-{request}-{i}")).collect();
                    sent.lock().unwrap().extend(seqs.iter().cloned());
                    let response = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(batch(client, request))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            if body["accepted"] == EVENTS_PER_REQUEST {
                                acked.lock().unwrap().extend(seqs);
                            }
                        }
                        // The server is gone: stop, without retrying.
                        _ => break,
                    }
                }
            })
        })
        .collect();

    // Let the load run, then crash the server mid-stream.
    while acked.lock().unwrap().len() < 2_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(acked.len() >= 2_000, "the load ran: {} acknowledged", acked.len());

    // Restart on the same directory: recovery cuts any torn tail, and the log serves again.
    let server = Server::start(&["up", "--data-dir", &dir], &[]);
    let (status, _) = server.post("/v1/meeting-events", batch(99, 0), "application/json").await;
    assert_eq!(status, 200, "the restarted gateway accepts events");
    drop(server);

    let lines = dump(&["--data-dir", &dir], &[]);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let seq = l["record"]["event"]["attributes"]["loadSeq"].as_str().unwrap().to_owned();
        *counts.entry(seq).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|s| !counts.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "events stored twice: {repeated:?}");
    let unknown: Vec<_> = counts.keys().filter(|s| !sent.contains(*s) && !s.starts_with("99-")).collect();
    assert!(unknown.is_empty(), "records nobody sent: {unknown:?}");
    let in_flight = counts.len() - acked.len() - EVENTS_PER_REQUEST;
    eprintln!(
        "crash test: {} acknowledged, all present once; {in_flight} unacknowledged in-flight events were also durable",
        acked.len()
    );
}
