//! A fixed amount of the aggregator's work from the stream, to be counted in instructions under callgrind: on a
//! shared machine whose speed drifts by a fifth between runs, instruction counts compare two builds where timings
//! cannot.
//!
//! ```sh
//! cargo build --release -p chimewatch-metrics --example decode_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/decode_instructions MODE
//! ```
//!
//! The records are the 7 events of the real JS SDK blog capture (`fixtures/real-sdk-js/0004-blog.json`, with their
//! long histories), normalized and encoded as the gateway writes them, each read 1,000 times. MODE is `value` (the
//! baseline: parse each record into a `serde_json::Value`), `scan` (serde_json's scan of each record alone, which
//! builds nothing: the floor of any read through serde_json), `decode` (the indexed read alone) or `aggregate` (the
//! indexed read, the catalogue and the windowed aggregator). It prints how many records it read: divide the count by
//! that for a record's share. An optional second argument sets the rounds (1,000 by default), to time the work
//! outside callgrind. It allocates with mimalloc, as the `chimewatch` binary does.

use std::hint::black_box;

use chimewatch_metrics::{Aggregator, AggregatorConfig, Catalogue, CatalogueConfig};
use chimewatch_model::event::{Limits, normalize};
use chimewatch_model::{IndexedRecord, Ingest, Record};

const NOW: i64 = 1_795_300_000_000;

// The product's allocator: the path's figure is the binary's, and allocation is part of it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(clippy::disallowed_methods, clippy::disallowed_macros)] // A tool reads its fixture and says what it read; the code it measures does neither.
fn main() -> Result<(), String> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let rounds: u32 = std::env::args().nth(2).map_or(Ok(1_000), |r| r.parse()).map_err(|e| format!("ROUNDS: {e}"))?;
    let path = format!("{}/../../fixtures/real-sdk-js/0004-blog.json", env!("CARGO_MANIFEST_DIR"));
    let capture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)
            .map_err(|e| format!("{path}: {e}"))?;
    let body = capture["body"].as_array().ok_or(format!("{path}: no body array"))?;
    let records: Vec<Vec<u8>> = body
        .iter()
        .map(|e| {
            let event = normalize(e.clone(), &Limits::default(), NOW).map_err(|e| format!("{path}: {e}"))?;
            Ok(Record::meeting_event(event, Ingest::Batch, NOW).encode())
        })
        .collect::<Result<_, String>>()?;
    let (mut catalogue, mut aggregator) =
        (Catalogue::new(CatalogueConfig::default()), Aggregator::new(AggregatorConfig::default()));
    for _ in 0..rounds {
        for r in &records {
            match mode.as_str() {
                "value" => drop(black_box(serde_json::from_slice::<serde_json::Value>(black_box(r)))),
                "scan" => drop(black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(r)))),
                "decode" => drop(black_box(IndexedRecord::decode(black_box(r)))),
                "aggregate" => {
                    if let Ok(IndexedRecord::MeetingEvent(m)) = IndexedRecord::decode(black_box(r)) {
                        let facts = catalogue.facts(&m.event, true);
                        black_box(aggregator.add("s1", NOW, facts, NOW));
                    }
                }
                other => return Err(format!("MODE is value, scan, decode or aggregate, not {other:?}")),
            }
        }
    }
    println!(
        "    {mode}: {} records read ({} records x {rounds} rounds)",
        records.len() as u64 * u64::from(rounds),
        records.len()
    );
    Ok(())
}
