//! Parser tests: the fixtures' messages, compact forms, folding, several Via, bodies, and errors that name the
//! problem and its place; a property test that any bytes give a message or an error.

use proptest::prelude::*;

use super::*;

fn fixture_messages() -> Vec<String> {
    include_str!("../../../../fixtures/sip/voice-connector-sip-messages.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sip_message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_fixture_message_parses_with_its_transaction_identifiers() {
    let messages = fixture_messages();
    assert_eq!(messages.len(), 20);
    for m in &messages {
        let parsed = Message::parse(m.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{m}"));
        assert!(parsed.call_id().is_some() && parsed.cseq().is_some() && parsed.branch().is_some(), "{m}");
    }
    let invite = Message::parse(messages[0].as_bytes()).unwrap();
    assert_eq!(invite.method(), Some("INVITE"));
    assert_eq!(invite.request_host(), Some("203.0.113.10"));
    assert_eq!(
        (invite.cseq(), invite.branch(), invite.from_tag(), invite.to_tag()),
        (Some((101, "INVITE")), Some("z9hG4bK-in1"), Some("f00d"), None)
    );
    assert_eq!(invite.header("X-VoiceConnector-ID"), Some("abcdef1ghij2klmno3pqr4"));
    let ringing = Message::parse(messages[2].as_bytes()).unwrap();
    assert_eq!((ringing.status(), ringing.to_tag()), (Some(180), Some("cust77")));
    let unavailable = Message::parse(messages[9].as_bytes()).unwrap();
    assert_eq!((unavailable.status(), unavailable.retry_after()), (Some(503), Some(5)));
    let outbound = Message::parse(messages[7].as_bytes()).unwrap();
    assert_eq!(outbound.request_host(), Some("abcdef1ghij2klmno3pqr4.voiceconnector.chime.aws"));
}

#[test]
fn compact_forms_folding_several_vias_and_the_body() {
    let raw = "BYE sip:alice@example.com SIP/2.0\r\n\
               v: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example;branch=z9hG4bK0\r\n\
               Via: SIP/2.0/UDP c.example;branch=z9hG4bKc\r\n\
               i: abc@host\r\n\
               f: <sip:bob@example.com>;tag=77\r\n\
               t: <sip:alice@example.com>;tag=88\r\n\
               CSeq: 2 BYE\r\n\
               Reason: SIP;cause=200;\r\n \ttext=\"ACK timeout\"\r\n\
               l: 5\r\n\r\nhello and more";
    let m = Message::parse(raw.as_bytes()).unwrap();
    assert_eq!(m.call_id(), Some("abc@host"));
    assert_eq!(m.headers_named("via").count(), 3, "two in one line, one more");
    assert_eq!(m.branch(), Some("z9hG4bK1"), "the topmost Via");
    assert_eq!((m.from_tag(), m.to_tag()), (Some("77"), Some("88")));
    assert_eq!(m.reason_text().as_deref(), Some("ACK timeout"), "a folded header joins its value");
    assert_eq!(m.body, b"hello", "the body is as long as Content-Length says");
    let no_length = Message::parse(b"OPTIONS sip:x SIP/2.0\nCall-ID: 1\n\nbody").unwrap();
    assert_eq!(no_length.body, b"body", "bare LF line ends and no Content-Length: the rest is the body");
}

#[test]
fn bad_messages_are_errors_naming_what_and_where() {
    for (raw, at, reason) in [
        ("INVITE sip:a SIP/2.0\r\nCall-ID: 1\r\n", 34, "no empty line ends the headers"),
        ("HELLO\r\n\r\n", 0, "start line is neither"),
        ("INVITE sip:a SIP/3.0\r\n\r\n", 13, "unsupported version"),
        ("SIP/2.0 99 Odd\r\n\r\n", 8, "outside 100-699"),
        ("SIP/2.0 abc OK\r\n\r\n", 8, "is not a number"),
        ("INVITE sip:a SIP/2.0\r\nBroken header\r\n\r\n", 22, "without a colon"),
        ("INVITE sip:a SIP/2.0\r\n folded\r\n\r\n", 22, "continuation line before any header"),
        ("INVITE sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", 49, "shorter than its Content-Length"),
        ("INVITE sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n", 22, "is not a number"),
        ("INV@TE sip:a SIP/2.0\r\n\r\n", 0, "invalid method"),
    ] {
        let e = Message::parse(raw.as_bytes()).unwrap_err();
        assert!(e.reason.contains(reason), "{raw:?}: {e}");
        assert_eq!(e.at, at, "{raw:?}: {e}");
    }
    let e = Message::parse(b"INVITE sip:a SIP/2.0\r\nX: \xff\r\n\r\n").unwrap_err();
    assert!(e.reason.contains("not UTF-8") && e.at == 25, "{e}");
}

proptest! {
    #[test]
    fn any_bytes_give_a_message_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&bytes);
    }

    #[test]
    fn mangled_fixture_messages_give_a_message_or_an_error(index in 0usize..20, cut in 0usize..400, junk in ".{0,8}") {
        let messages = fixture_messages();
        let m = &messages[index];
        let mut mangled = m.as_bytes()[..cut.min(m.len())].to_vec();
        mangled.extend(junk.as_bytes());
        mangled.extend(&m.as_bytes()[cut.min(m.len())..]);
        let _ = Message::parse(&mangled);
    }
}
