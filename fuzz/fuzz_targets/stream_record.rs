//! Fuzzes what a consumer meets on the stream: KPL de-aggregation and record decoding of arbitrary bytes.
#![no_main]

use chimewatch_model::Record;
use chimewatch_model::kpl::deaggregate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(users) = deaggregate(data, "pk") {
        for u in users {
            let _ = Record::decode(&u.data);
        }
    }
    let _ = Record::decode(data);
});
