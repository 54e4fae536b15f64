//! Fuzzes the gateway's parse path for `{name, attributes}` batches: any bytes give per-element results or a batch
//! error, never a panic; every accepted event encodes to a record that decodes back to itself, whole and indexed.
#![no_main]

use chimewatch_model::event::{Limits, normalize};
use chimewatch_model::json::{parse_strict, split_batch, utf8};
use chimewatch_model::{IndexedRecord, Ingest, Record};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_300_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = utf8(data) else { return };
    let Ok(elements) = split_batch(text, 10_000) else { return };
    let limits = Limits { max_history_entries: 8, max_attribute_bytes: 64, max_attributes: 16, ..Limits::default() };
    for raw in elements {
        let Ok(value) = parse_strict(raw.get()) else { continue };
        if let Ok(n) = normalize(value, &limits, NOW) {
            let record = Record::meeting_event(n, Ingest::Batch, NOW);
            let bytes = record.encode();
            let indexed = IndexedRecord::decode(&bytes).expect("an encoded record decodes indexed");
            let decoded = Record::decode(&bytes).expect("an encoded record decodes");
            assert_eq!(decoded, record);
            assert_eq!(indexed, IndexedRecord::from(record));
        }
    }
});
