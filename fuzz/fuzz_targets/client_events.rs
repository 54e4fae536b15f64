//! Fuzzes the SDK ingestion protocol's body: any bytes give a batch of per-payload results or a body error, never a
//! panic; every accepted payload's record decodes back to itself.
#![no_main]

use chimewatch_model::Record;
use chimewatch_model::event::Limits;
use chimewatch_model::ingestion::parse_client_events;
use chimewatch_model::json::{parse_strict, utf8};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_795_300_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = utf8(data) else { return };
    let Ok(value) = parse_strict(text) else { return };
    let limits = Limits { max_history_entries: 8, max_attribute_bytes: 64, max_attributes: 16, ..Limits::default() };
    let Ok(batch) = parse_client_events(value, &limits, NOW, 1_000) else { return };
    for event in batch.payloads.into_iter().flatten() {
        let record = Record::client_event(event, NOW);
        assert_eq!(Record::decode(&record.encode()).expect("an encoded record decodes"), record);
    }
});
