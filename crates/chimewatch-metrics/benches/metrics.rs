//! Benchmarks of the aggregator's hot paths: recording into a distribution (against a plain Vec push as the
//! baseline), turning one event into facts and windows (against encoding its log line), and the whole way from a
//! stream record's bytes into windows (against parsing the same bytes into a `serde_json::Value`).

use chimewatch_metrics::{Aggregator, AggregatorConfig, Catalogue, CatalogueConfig, Distribution};
use chimewatch_model::{EventFields, IndexedEvent, MeetingEvent};
use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn record(c: &mut Criterion) {
    let values: Vec<u64> = (0..10_000u64).map(|i| (i * 7919) % 60_000).collect();
    let mut g = c.benchmark_group("record 10k values");
    g.bench_function("baseline: Vec push", |b| {
        b.iter(|| {
            let mut v = Vec::with_capacity(values.len());
            values.iter().for_each(|x| v.push(black_box(*x)));
            v
        })
    });
    g.bench_function("distribution", |b| {
        b.iter(|| {
            let mut d = Distribution::new();
            values.iter().for_each(|x| d.record(black_box(*x)));
            d
        })
    });
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    let attributes = serde_json::json!({
        "meetingId": "m-1", "attendeeId": "a-1", "sdkName": "amazon-chime-sdk-js", "osName": "Mac OS",
        "timestampMs": 1_763_712_000_000i64, "meetingStartDurationMs": 1834, "signalingOpenDurationMs": 211,
        "iceGatheringDurationMs": 95,
    });
    let event = MeetingEvent {
        name: "meetingStartSucceeded".into(),
        attributes: attributes.as_object().cloned().unwrap_or_default(),
    };
    let mut g = c.benchmark_group("one meetingStartSucceeded");
    // The baseline: encoding the event as the log line the aggregator writes for it anyway.
    g.bench_function("baseline: its log line (serde_json)", |b| b.iter(|| serde_json::to_string(black_box(&event))));
    // As the aggregator reads it from the stream.
    let indexed = IndexedEvent::of(&event);
    g.bench_function("catalogue + aggregator", |b| {
        let mut catalogue = Catalogue::new(CatalogueConfig::default());
        let mut agg = Aggregator::new(AggregatorConfig::default());
        b.iter(|| {
            let facts = catalogue.facts(black_box(&indexed), true);
            agg.add("s1", 1_763_712_000_000, facts, 1_763_712_000_000)
        })
    });
    g.finish();
}

/// From the stream into windows: decode the record the gateway wrote, then catalogue and aggregator, for a session's
/// mix of events.
fn from_the_stream(c: &mut Criterion) {
    use chimewatch_model::IndexedRecord;
    use chimewatch_model::record::{Ingest, Record};
    let limits = chimewatch_model::Limits::default();
    let events = [
        ("meetingStartRequested", serde_json::json!({})),
        ("meetingStartSucceeded", serde_json::json!({"meetingStartDurationMs": 1834, "signalingOpenDurationMs": 211})),
        ("attendeePresenceReceived", serde_json::json!({"attendeePresenceDurationMs": 310})),
        ("meetingReconnected", serde_json::json!({"meetingStatus": "NetworkBecomePoor", "retryCount": 1})),
        ("meetingEnded", serde_json::json!({"meetingStatus": "Left", "meetingDurationMs": 612_000})),
    ];
    let records: Vec<Vec<u8>> = events
        .iter()
        .map(|(name, extra)| {
            let mut attributes = serde_json::json!({
                "meetingId": "m-1", "attendeeId": "a-1", "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0",
                "browserName": "Chrome", "browserMajorVersion": "142", "osName": "Mac OS", "osVersion": "10.15.7",
                "deviceName": "Mac", "timestampMs": 1_763_712_000_000i64,
            });
            if let (Some(a), Some(e)) = (attributes.as_object_mut(), extra.as_object()) {
                a.extend(e.clone());
            }
            let event = serde_json::json!({"name": name, "attributes": attributes});
            let normalized = chimewatch_model::event::normalize(event, &limits, 1_763_712_000_000).expect("valid");
            Record::meeting_event(normalized, Ingest::Batch, 1_763_712_000_100).encode()
        })
        .collect();
    let mut g = c.benchmark_group("five records from the stream");
    g.bench_function("baseline: serde_json::from_slice::<Value>", |b| {
        b.iter(|| {
            for r in &records {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(r)).expect("json"));
            }
        })
    });
    // What the aggregator does: the event indexed in place, not built into maps.
    g.bench_function("decode + catalogue + aggregator", |b| {
        decode_and_aggregate(b, &records, |r| match IndexedRecord::decode(r) {
            Ok(IndexedRecord::MeetingEvent(m)) => Some(m.event),
            _ => None,
        })
    });
    // The same from the whole record, as `stream dump` decodes it (and the aggregator did before 2026-12-02).
    g.bench_function("whole-record decode + catalogue + aggregator", |b| {
        decode_and_aggregate(b, &records, |r| match Record::decode(r) {
            Ok(Record::MeetingEvent(m)) => Some(m.event),
            _ => None,
        })
    });
    g.finish();
}

/// Decodes each record with `decode`, then takes its event through the catalogue into the aggregator's windows.
fn decode_and_aggregate<E: EventFields>(b: &mut Bencher, records: &[Vec<u8>], decode: impl Fn(&[u8]) -> Option<E>) {
    let mut catalogue = Catalogue::new(CatalogueConfig::default());
    let mut agg = Aggregator::new(AggregatorConfig::default());
    b.iter(|| {
        for r in records {
            if let Some(event) = decode(black_box(r)) {
                let facts = catalogue.facts(&event, true);
                agg.add("s1", 1_763_712_000_000, facts, 1_763_712_000_000);
            }
        }
    })
}

criterion_group!(benches, record, aggregate, from_the_stream);
criterion_main!(benches);
