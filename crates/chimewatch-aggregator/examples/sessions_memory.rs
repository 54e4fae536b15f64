//! A load run of the aggregator's memory with many sessions in one window: SESSIONS attendee sessions (three SDKs,
//! a tenth of them dropped, a third reconnecting) are decoded from stream records and fed through the catalogue and
//! the windowed aggregator, every session open at once (all started, then all ended), all in one minute; then the
//! process's peak resident set is printed. Run it with a small SESSIONS for the baseline:
//! `cargo run --release -p chimewatch-aggregator --example sessions_memory -- 1000`.

use chimewatch_metrics::{Aggregator, AggregatorConfig, Catalogue, CatalogueConfig};
use chimewatch_model::record::{Ingest, Record};

const T0: i64 = 1_763_712_000_000;

fn record(name: &str, session: u64, at: i64, extra: serde_json::Value) -> Vec<u8> {
    let sdk = ["amazon-chime-sdk-js", "amazon-chime-sdk-android", "amazon-chime-sdk-ios"][(session % 3) as usize];
    let mut attributes = serde_json::json!({
        "meetingId": format!("m-{:08}", session / 8), "attendeeId": format!("a-{session:08}"), "sdkName": sdk,
        "sdkVersion": "3.32.0", "browserName": "Chrome", "browserMajorVersion": "142", "osName": "Mac OS",
        "osVersion": "10.15.7", "timestampMs": at,
    });
    if let (Some(a), Some(e)) = (attributes.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    let event = serde_json::json!({ "name": name, "attributes": attributes });
    let limits = chimewatch_model::Limits::default();
    match chimewatch_model::event::normalize(event, &limits, T0 + 60_000) {
        Ok(normalized) => Record::meeting_event(normalized, Ingest::Batch, at).encode(),
        Err(e) => panic!("a generated event is invalid: {e:?}"),
    }
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions: u64 = std::env::args().nth(1).as_deref().unwrap_or("100000").parse()?;
    let mut catalogue = Catalogue::new(CatalogueConfig::default());
    let mut windows = Aggregator::new(AggregatorConfig::default());
    let mut feed = |catalogue: &mut Catalogue, bytes: &[u8], at: i64| {
        if let Ok(Record::MeetingEvent(m)) = Record::decode(bytes) {
            let facts = catalogue.facts(&m.event, true);
            windows.add("shard-1", at, facts, T0 + 60_000);
        }
    };
    // Every session starts (and a third reconnect) before any ends, so all are open at once.
    for s in 0..sessions {
        let at = T0 + (s % 50_000) as i64;
        feed(&mut catalogue, &record("meetingStartRequested", s, at, serde_json::json!({})), at);
        let started = serde_json::json!({ "meetingStartDurationMs": 900 + s % 4_000, "signalingOpenDurationMs": 200 });
        feed(&mut catalogue, &record("meetingStartSucceeded", s, at + 1, started), at + 1);
        if s % 3 == 0 {
            let status = serde_json::json!({ "meetingStatus": "ConnectionHealthReconnect" });
            feed(&mut catalogue, &record("meetingReconnected", s, at + 2, status), at + 2);
        }
    }
    let open = catalogue.sessions();
    for s in 0..sessions {
        let at = T0 + 50_000 + (s % 9_000) as i64;
        let (name, status) = if s % 10 == 0 {
            ("meetingFailed", "SignalingChannelClosedUnexpectedly")
        } else {
            ("meetingEnded", "Left")
        };
        let end =
            serde_json::json!({ "meetingStatus": status, "meetingDurationMs": 50_000, "poorConnectionCount": s % 4 });
        feed(&mut catalogue, &record(name, s, at, end), at);
    }
    let closed = windows.close_all();
    let series: usize = closed.iter().map(|w| w.series.len()).sum();
    println!(
        "{sessions} sessions ({open} held open at once by the catalogue) in {} window(s), {series} series: peak RSS {} MB",
        closed.len(),
        peak_rss_kb().unwrap_or(0) / 1000
    );
    Ok(())
}
