//! Benchmarks of SIP parsing (against splitting the same bytes into lines, the least any parser does) and of the
//! call tracker over the fixture's dialogs.

use chimewatch_sip::{CallTracker, Message, Policy};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn messages() -> Vec<(String, i64, String)> {
    include_str!("../../../fixtures/sip/voice-connector-sip-messages.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            (
                r["call_id"].as_str().unwrap_or_default().to_owned(),
                r["event_timestamp"].as_i64().unwrap_or_default(),
                r["sip_message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let all = messages();
    let mut g = c.benchmark_group("20 fixture messages");
    g.bench_function("baseline: split into lines", |b| {
        b.iter(|| all.iter().map(|(_, _, m)| black_box(m).split("\r\n").count()).sum::<usize>())
    });
    g.bench_function("parse", |b| {
        b.iter(|| all.iter().filter(|(_, _, m)| Message::parse(black_box(m).as_bytes()).is_ok()).count())
    });
    g.bench_function("parse + track", |b| {
        b.iter(|| {
            let mut t = CallTracker::new(Policy::default());
            let mut n = 0;
            for (call, at, m) in &all {
                if let Ok(msg) = Message::parse(m.as_bytes()) {
                    n += t.observe("vc", "us-east-1", call, *at, &msg).len();
                }
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
