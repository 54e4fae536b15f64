//! Call tracker tests: the fixture's calls with the facts its README states, route failover, re-INVITEs, timeouts,
//! and property tests over generated dialogs: every attempt ends in exactly one outcome, and
//! attempts = answered + failed + cancelled + still ringing.

use proptest::prelude::*;

use super::*;

struct Captured {
    vc: String,
    region: String,
    call_id: String,
    at: i64,
    message: Message,
}

fn fixture() -> Vec<Captured> {
    include_str!("../../../../fixtures/sip/voice-connector-sip-messages.jsonl")
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            Captured {
                vc: r["voice_connector_id"].as_str().unwrap().into(),
                region: r["aws_region"].as_str().unwrap().into(),
                call_id: r["call_id"].as_str().unwrap().into(),
                at: r["event_timestamp"].as_i64().unwrap(),
                message: Message::parse(r["sip_message"].as_str().unwrap().as_bytes()).unwrap(),
            }
        })
        .collect()
}

fn run(tracker: &mut CallTracker, messages: &[Captured], end: i64) -> Vec<Observed> {
    let mut facts = Vec::new();
    for c in messages {
        facts.extend(tracker.observe(&c.vc, &c.region, &c.call_id, c.at, &c.message));
        facts.extend(tracker.advance(c.at));
    }
    facts.extend(tracker.advance(end));
    facts
}

#[test]
fn the_fixture_gives_the_facts_its_readme_states() {
    let messages = fixture();
    let t0 = messages[0].at;
    let mut tracker = CallTracker::new(Policy::default());
    let mut facts = run(&mut tracker, &messages, t0 + 3_600_000);
    // The file is in call order, not time order; the facts carry their own times.
    facts.sort_by_key(|o| o.at_ms);
    let active: Vec<i64> =
        facts.iter().filter(|o| matches!(o.fact, CallFact::Active { .. })).map(|o| o.at_ms - t0).collect();
    assert_eq!(active, [0, 60_000, 120_000, 180_000], "call 1 is up in its first four minutes (4.2 s to 184.2 s)");
    let calls: Vec<&CallFact> = facts
        .iter()
        .map(|o| &o.fact)
        .filter(|f| !matches!(f, CallFact::Response { .. } | CallFact::Active { .. }))
        .collect();
    assert_eq!(
        calls,
        [
            &CallFact::Attempt { direction: Direction::Inbound },
            &CallFact::Ringing { direction: Direction::Inbound, post_dial_delay_ms: 950 },
            &CallFact::Answered { direction: Direction::Inbound, setup_ms: 4_200 },
            &CallFact::Attempt { direction: Direction::Outbound },
            &CallFact::Throttled,
            &CallFact::Failed {
                direction: Direction::Outbound,
                status: 503,
                reason: "Service Unavailable".into(),
                rang: false
            },
            &CallFact::Attempt { direction: Direction::Outbound },
            &CallFact::Ringing { direction: Direction::Outbound, post_dial_delay_ms: 1_500 },
            &CallFact::Cancelled { direction: Direction::Outbound, rang: true },
            &CallFact::Ended { direction: Direction::Inbound, duration_ms: 180_000, reason: None, timed_out: false },
        ],
        "one attempt per call (the retransmitted INVITE is not another); OPTIONS is not a call"
    );
    let mut classes = [0; 7];
    for f in &facts {
        if let CallFact::Response { class, .. } = f.fact {
            classes[class as usize] += 1;
        }
    }
    assert_eq!(classes[1..], [5, 4, 0, 1, 1, 0], "1xx 5, 2xx 4, 4xx 1, 5xx 1");
    assert_eq!(tracker.calls(), 0, "every finished call is forgotten after the linger time");
    assert!(facts.iter().all(|o| o.voice_connector_id == "abcdef1ghij2klmno3pqr4" && o.region == "us-east-1"));
}

#[test]
fn a_call_is_active_from_its_answer_to_its_bye() {
    let messages = fixture();
    let mut tracker = CallTracker::new(Policy::default());
    for c in &messages[..4] {
        tracker.observe(&c.vc, &c.region, &c.call_id, c.at, &c.message);
    }
    let key = ("abcdef1ghij2klmno3pqr4".to_owned(), "us-east-1".to_owned(), Direction::Inbound);
    assert_eq!(tracker.active().get(&key), Some(&1));
    for c in &messages[4..7] {
        tracker.observe(&c.vc, &c.region, &c.call_id, c.at, &c.message);
    }
    assert!(tracker.active().is_empty());
}

fn msg(text: &str) -> Message {
    Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap()
}

fn invite(branch: &str, to_tag: Option<&str>) -> Message {
    let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    msg(&format!(
        "INVITE sip:+1@x.voiceconnector.chime.aws SIP/2.0\nVia: SIP/2.0/UDP h;branch={branch}\nTo: <sip:+1@x>{to}\nCSeq: 1 INVITE\nCall-ID: c\n\n"
    ))
}

fn response(status: u16, method: &str, extra: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {status} X\nVia: SIP/2.0/UDP h;branch=b\nTo: <sip:+1@x>;tag=t\nCSeq: 1 {method}\nCall-ID: c\n{extra}\n"
    ))
}

#[test]
fn a_failure_followed_by_another_route_that_answers_is_one_answered_call() {
    let mut t = CallTracker::new(Policy::default());
    let mut facts = t.observe("vc", "r", "c1", 0, &invite("b1", None));
    facts.extend(t.observe("vc", "r", "c1", 100, &response(480, "INVITE", "")));
    facts.extend(t.advance(500));
    facts.extend(t.observe("vc", "r", "c1", 600, &invite("b2", None)));
    facts.extend(t.observe("vc", "r", "c1", 900, &response(200, "INVITE", "")));
    // A re-INVITE in the dialog and its 200 change nothing.
    facts.extend(t.observe("vc", "r", "c1", 5_000, &invite("b3", Some("t"))));
    facts.extend(t.observe("vc", "r", "c1", 5_100, &response(200, "INVITE", "")));
    facts.extend(t.observe(
        "vc",
        "r",
        "c1",
        9_000,
        &msg("BYE sip:a SIP/2.0\nReason: SIP;cause=200;text=\"ACK timeout\"\nCSeq: 2 BYE\n\n"),
    ));
    let outcomes: Vec<&CallFact> = facts
        .iter()
        .map(|o| &o.fact)
        .filter(|f| !matches!(f, CallFact::Response { .. } | CallFact::Active { .. }))
        .collect();
    assert_eq!(
        outcomes,
        [
            &CallFact::Attempt { direction: Direction::Outbound },
            &CallFact::Answered { direction: Direction::Outbound, setup_ms: 900 },
            &CallFact::Ended {
                direction: Direction::Outbound,
                duration_ms: 8_100,
                reason: Some("ACK timeout".into()),
                timed_out: false
            },
        ]
    );
}

#[test]
fn timeouts_end_what_never_finishes_and_the_cap_bounds_memory() {
    let policy = Policy { ring_timeout_ms: 1_000, call_timeout_ms: 10_000, max_calls: 3, ..Policy::default() };
    let mut t = CallTracker::new(policy);
    t.observe("vc", "r", "ringing", 0, &invite("a", None));
    t.observe("vc", "r", "talking", 0, &invite("b", None));
    t.observe("vc", "r", "talking", 50, &response(200, "INVITE", ""));
    let facts: Vec<CallFact> = t.advance(1_000).into_iter().map(|o| o.fact).collect();
    assert_eq!(
        facts,
        [CallFact::Failed {
            direction: Direction::Outbound,
            status: 408,
            reason: "no final response before the ring timeout".into(),
            rang: false
        }]
    );
    let facts: Vec<CallFact> = t.advance(10_050).into_iter().map(|o| o.fact).collect();
    assert_eq!(
        facts,
        [
            CallFact::Active { direction: Direction::Outbound },
            CallFact::Ended { direction: Direction::Outbound, duration_ms: 0, reason: None, timed_out: true }
        ]
    );
    for i in 0..10 {
        t.observe("vc", "r", &format!("c{i}"), 20_000 + i, &invite("x", None));
    }
    t.advance(20_010);
    assert!(t.calls() <= 3, "{} calls kept", t.calls());
}

/// A generated dialog: what the far end does with one INVITE.
#[derive(Debug, Clone)]
enum Dialog {
    Answer { ring: bool, retransmit: bool, bye: bool },
    Reject { status: u16, failover_then_answer: bool },
    CancelByCaller,
    NoAnswer,
}

fn dialog() -> impl Strategy<Value = Dialog> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(ring, retransmit, bye)| Dialog::Answer {
            ring,
            retransmit,
            bye
        }),
        (prop::sample::select(vec![404u16, 480, 486, 503, 603, 302]), any::<bool>())
            .prop_map(|(status, failover_then_answer)| Dialog::Reject { status, failover_then_answer }),
        Just(Dialog::CancelByCaller),
        Just(Dialog::NoAnswer),
    ]
}

proptest! {
    #[test]
    fn every_attempt_ends_in_exactly_one_outcome(dialogs in prop::collection::vec(dialog(), 1..40), finish in any::<bool>()) {
        let mut t = CallTracker::new(Policy::default());
        let mut facts = Vec::new();
        let mut now = 0;
        for (i, d) in dialogs.iter().enumerate() {
            let call = format!("call-{i}");
            let mut send = |t: &mut CallTracker, at: i64, m: Message| facts.extend(t.observe("vc", "r", &call, at, &m));
            send(&mut t, now, invite(&format!("b{i}"), None));
            match d {
                Dialog::Answer { ring, retransmit, bye } => {
                    if *retransmit { send(&mut t, now + 500, invite(&format!("b{i}"), None)); }
                    if *ring { send(&mut t, now + 800, response(180, "INVITE", "")); }
                    send(&mut t, now + 1_000, response(200, "INVITE", ""));
                    if *bye { send(&mut t, now + 60_000, msg("BYE sip:a SIP/2.0\nCSeq: 2 BYE\n\n")); }
                }
                Dialog::Reject { status, failover_then_answer } => {
                    send(&mut t, now + 300, response(*status, "INVITE", ""));
                    if *failover_then_answer {
                        send(&mut t, now + 1_000, invite(&format!("b{i}-2"), None));
                        send(&mut t, now + 1_500, response(200, "INVITE", ""));
                    }
                }
                Dialog::CancelByCaller => {
                    send(&mut t, now + 2_000, msg("CANCEL sip:a SIP/2.0\nCSeq: 1 CANCEL\n\n"));
                    send(&mut t, now + 2_050, response(487, "INVITE", ""));
                }
                Dialog::NoAnswer => {}
            }
            now += 70_000;
            facts.extend(t.advance(now));
        }
        if finish {
            facts.extend(t.advance(now + 10 * 3600 * 1000));
        }
        let count = |f: fn(&CallFact) -> bool| facts.iter().filter(|o| f(&o.fact)).count();
        let attempts = count(|f| matches!(f, CallFact::Attempt { .. }));
        let answered = count(|f| matches!(f, CallFact::Answered { .. }));
        let failed = count(|f| matches!(f, CallFact::Failed { .. }));
        let cancelled = count(|f| matches!(f, CallFact::Cancelled { .. }));
        prop_assert_eq!(attempts, dialogs.len(), "one attempt per call, retransmissions and failovers included");
        prop_assert_eq!(attempts, answered + failed + cancelled + t.undecided());
        if finish {
            prop_assert_eq!(t.undecided(), 0, "the ring timeout decides every attempt");
        }
        let expected_answered = dialogs.iter().filter(|d| matches!(d, Dialog::Answer { .. } | Dialog::Reject { failover_then_answer: true, .. })).count();
        prop_assert_eq!(answered, expected_answered);
        prop_assert_eq!(cancelled, dialogs.iter().filter(|d| matches!(d, Dialog::CancelByCaller)).count());
    }
}

#[test]
fn a_call_still_up_is_counted_in_each_minute_that_ended_a_margin_ago_and_never_twice() {
    let mut t = CallTracker::new(Policy::default());
    t.observe("vc", "r", "long", 30_000, &invite("a", None));
    t.observe("vc", "r", "long", 35_000, &response(200, "INVITE", ""));
    let minutes = |facts: Vec<Observed>| -> Vec<i64> {
        facts.into_iter().filter(|o| matches!(o.fact, CallFact::Active { .. })).map(|o| o.at_ms).collect()
    };
    assert!(minutes(t.advance(100_000)).is_empty(), "minute 0 ended 40 s ago, under the margin");
    assert_eq!(minutes(t.advance(130_000)), [0], "minute 0 ended a margin ago");
    assert_eq!(minutes(t.advance(250_000)), [60_000, 120_000]);
    let bye = t.observe("vc", "r", "long", 260_000, &msg("BYE sip:a SIP/2.0\nCSeq: 2 BYE\n\n"));
    assert_eq!(minutes(bye), [180_000, 240_000], "the rest, through the BYE's minute");
    assert!(minutes(t.advance(1_000_000)).is_empty());
}
