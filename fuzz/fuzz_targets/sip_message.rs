//! Fuzzes the SIP parser and the call tracker: any bytes give a message or an error, and whatever parses can be
//! tracked, with every accessor answering, without a panic.
#![no_main]

use chimewatch_sip::{CallTracker, Message, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else { return };
    let _ = (
        m.call_id(),
        m.cseq(),
        m.branch(),
        m.from_tag(),
        m.to_tag(),
        m.request_host(),
        m.reason_text(),
        m.retry_after(),
    );
    let mut tracker = CallTracker::new(Policy::default());
    let call = m.call_id().unwrap_or("c").to_owned();
    tracker.observe("vc", "r", &call, 0, &m);
    tracker.observe("vc", "r", &call, 10, &m);
    tracker.advance(1_000_000_000);
});
