//! Fuzzes SIP log record intake: JSON arrays or lines of arbitrary bytes give records or precise errors.
#![no_main]

use chimewatch_model::SipLogRecord;
use chimewatch_model::json::{parse_strict, split_array_or_lines, utf8};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = utf8(data) else { return };
    let Ok(elements) = split_array_or_lines(text, 10_000) else { return };
    for raw in elements {
        if let Ok(value) = parse_strict(raw) {
            let _ = SipLogRecord::from_value(value);
        }
    }
});
