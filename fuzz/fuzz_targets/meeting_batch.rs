//! Fuzzes the gateway's parse path for `{name, attributes}` batches: any bytes give per-element results or a batch
//! error, never a panic; every accepted event encodes to a record that decodes back to itself, whole and indexed.
//! The one-pass parse of a whole batch, when it succeeds, gives what the element-by-element parse gives; the fast
//! path, when it takes an element, writes the record the general path writes.
#![no_main]

use chimewatch_model::event::{Limits, normalize};
use chimewatch_model::json::{parse_strict, parse_strict_batch, split_batch, utf8};
use chimewatch_model::transcode::transcode;
use chimewatch_model::{IndexedRecord, Ingest, Record, partition_key_for};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_300_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = utf8(data) else { return };
    // A small cap, so that its edge is reached too.
    let whole = parse_strict_batch(text, 8);
    if split_batch(text, 8).is_err() {
        assert_eq!(whole, None, "the one-pass parse took a body the split refuses");
    }
    let Ok(elements) = split_batch(text, 10_000) else { return };
    let values: Vec<_> = elements.iter().map(|raw| parse_strict(raw.get())).collect();
    if let Some(whole) = &whole {
        let each: Vec<_> = values.iter().map(|v| v.as_ref().ok()).collect();
        assert_eq!(whole.iter().map(Some).collect::<Vec<_>>(), each, "the one-pass parse differs");
    }
    let limits = Limits { max_history_entries: 8, max_attribute_bytes: 64, max_attributes: 16, ..Limits::default() };
    for (raw, value) in elements.iter().zip(values) {
        let fast = transcode(raw.get(), &limits, NOW, 1 << 20);
        let Ok(value) = value else {
            assert_eq!(fast, None, "the fast path took an element the strict parse refuses");
            continue;
        };
        let normalized = normalize(value, &limits, NOW);
        if normalized.is_err() {
            assert_eq!(fast, None, "the fast path took an element normalization refuses");
        }
        if let Ok(n) = normalized {
            let record = Record::meeting_event(n, Ingest::Batch, NOW);
            let bytes = record.encode();
            if let Some(fast) = fast {
                assert_eq!(String::from_utf8_lossy(&fast.data), String::from_utf8_lossy(&bytes), "the fast path differs");
                assert_eq!(fast.partition_key, partition_key_for(&record));
            }
            let indexed = IndexedRecord::decode(&bytes).expect("an encoded record decodes indexed");
            let decoded = Record::decode(&bytes).expect("an encoded record decodes");
            assert_eq!(decoded, record);
            assert_eq!(indexed, IndexedRecord::from(record));
        }
    }
});
