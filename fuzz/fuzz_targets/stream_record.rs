//! Fuzzes what a consumer meets on the stream: KPL de-aggregation and record decoding of arbitrary bytes, whole and
//! indexed. What the whole decode takes, the indexed one takes and reads alike.
#![no_main]

use chimewatch_model::kpl::deaggregate;
use chimewatch_model::{EventFields, IndexedRecord, Record};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let indexed = IndexedRecord::decode(bytes);
    let Ok(whole) = Record::decode(bytes) else { return };
    match (whole, indexed.expect("what the whole decode takes, the indexed decode takes")) {
        (Record::MeetingEvent(w), IndexedRecord::MeetingEvent(i)) => {
            let text: serde_json::Value = serde_json::from_str(i.event.json()).expect("the event's text is JSON");
            assert_eq!(text, serde_json::to_value(&w.event).expect("an event serializes"));
            assert_eq!(i.event.event_name(), w.event.name);
            assert_eq!(i.event.event_time_ms(), w.event.timestamp_ms());
            for key in w.event.attributes.keys() {
                assert_eq!(i.event.scalar_text(key), w.event.scalar_text(key), "{key}");
                assert_eq!(i.event.number(key).map(f64::to_bits), w.event.number(key).map(f64::to_bits), "{key}");
            }
        }
        (Record::SipMessage(w), IndexedRecord::SipMessage(i)) => assert_eq!(w, i),
        _ => panic!("the two decodes disagree on the record's kind"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(users) = deaggregate(data, "pk") {
        for u in users {
            check(&u.data);
        }
    }
    check(data);
});
