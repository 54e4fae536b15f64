//! One call explained from its captured messages: a ladder (who sent what to whom, when, retransmissions marked),
//! the figures the metrics count (setup time, post-dial delay, the final response, the teardown reason, the
//! duration) from the same [`CallTracker`] the aggregator runs, and a verdict.
//!
//! The two sides of the ladder are the caller's and the callee's. For an inbound call (from the PSTN) the caller's
//! side is the Voice Connector and the callee's your SIP host; for an outbound call it is the other way round. A
//! request whose From tag is the initial INVITE's goes from the caller's side; a response goes back the way its
//! request came.

use std::collections::HashSet;

use crate::message::{Message, StartLine};
use crate::tracker::{CallFact, CallTracker, Direction, Policy};

/// What became of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallVerdict {
    Answered,
    /// A route failed, a new INVITE of the same call went another way, and that one was answered.
    FailedOverThenAnswered,
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 480, 408, or no final response before the ring timeout.
    NoAnswer,
    /// Any other final 3xx-6xx from the far end.
    Rejected,
    /// The caller sent CANCEL and the INVITE ended with 487.
    Cancelled,
    /// 429 Too Many Requests: a rate limit refused the call.
    Throttled,
    /// Still ringing (no final response yet, and the ring timeout has not passed).
    Ringing,
    /// No initial INVITE among the messages (an OPTIONS keep-alive, or messages of a call that began earlier).
    NotACall,
}

impl CallVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::FailedOverThenAnswered => "failed over, then answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no answer",
            Self::Rejected => "rejected by the far end",
            Self::Cancelled => "cancelled by the caller",
            Self::Throttled => "throttled",
            Self::Ringing => "ringing",
            Self::NotACall => "not a call",
        }
    }
}

/// One arrow of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderStep {
    pub at_ms: i64,
    /// Since the first message of the call.
    pub offset_ms: i64,
    /// From the caller's side to the callee's.
    pub towards_callee: bool,
    /// `INVITE`, `180 Ringing`.
    pub label: String,
    /// `101 INVITE`.
    pub cseq: String,
    /// The same request or response was seen before (same transaction, same status).
    pub retransmission: bool,
    /// The `Reason` header's text, when there is one.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallExplanation {
    pub direction: Option<Direction>,
    /// The caller's side and the callee's, as the ladder names them.
    pub sides: (&'static str, &'static str),
    pub steps: Vec<LadderStep>,
    pub setup_ms: Option<i64>,
    pub post_dial_delay_ms: Option<i64>,
    /// The final response to the INVITE that decided the call (status, reason phrase or `Reason` text).
    pub final_response: Option<(u16, String)>,
    pub retry_after_s: Option<u32>,
    pub teardown: Option<String>,
    pub duration_ms: Option<i64>,
    /// Counted in `Throttles` by the counting policy (an outbound INVITE refused with 503, or a 4xx with
    /// Retry-After).
    pub counted_as_throttle: bool,
    pub retransmissions: usize,
    pub verdict: CallVerdict,
}

impl CallExplanation {
    /// One line: the verdict and the figures behind it.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.verdict.as_str().to_owned()];
        if let Some(d) = self.direction {
            parts[0] = format!("{} {}", d.as_str().to_ascii_lowercase(), parts[0]);
        }
        if let Some((status, reason)) = &self.final_response {
            parts.push(format!("final response {status} {reason}"));
        }
        if let Some(s) = self.retry_after_s {
            parts.push(format!("Retry-After {s} s"));
        }
        if let Some(v) = self.setup_ms {
            parts.push(format!("setup {v} ms"));
        }
        if let Some(v) = self.post_dial_delay_ms {
            parts.push(format!("post-dial delay {v} ms"));
        }
        if let Some(v) = self.duration_ms {
            parts.push(format!("{} s long", v / 1000));
        }
        if let Some(t) = &self.teardown {
            parts.push(format!("torn down: {t}"));
        }
        if self.retransmissions > 0 {
            parts.push(format!("{} retransmission(s)", self.retransmissions));
        }
        if self.counted_as_throttle {
            parts.push("counted in Throttles".to_owned());
        }
        parts.join(", ")
    }
}

fn label(m: &Message) -> String {
    match &m.start {
        StartLine::Request { method, .. } => method.clone(),
        StartLine::Response { status, reason } => format!("{status} {reason}"),
    }
}

/// Explains one call from its messages with their capture times (any order), at `now_ms` (event time: the
/// newest message, or later, decides what a silent call has become).
pub fn explain(messages: &[(i64, Message)], now_ms: i64) -> CallExplanation {
    let mut ordered: Vec<&(i64, Message)> = messages.iter().collect();
    ordered.sort_by_key(|(t, _)| *t);
    let first_at = ordered.first().map_or(0, |(t, _)| *t);
    let invite = ordered
        .iter()
        .find(|(_, m)| m.method().is_some_and(|x| x.eq_ignore_ascii_case("INVITE")) && m.to_tag().is_none());
    let caller_tag = invite.and_then(|(_, m)| m.from_tag()).map(str::to_owned);

    // The tracker decides the figures, exactly as it does for the metrics.
    let mut tracker = CallTracker::new(Policy::default());
    let mut facts = Vec::new();
    for (t, m) in &ordered {
        facts.extend(tracker.observe("", "", "call", *t, m));
    }
    let newest = ordered.last().map_or(now_ms, |(t, _)| *t);
    facts.extend(tracker.advance(now_ms.max(newest)));

    let mut seen: HashSet<(bool, String, String, String)> = HashSet::new();
    let mut steps = Vec::new();
    let mut failure_before_answer = false;
    let mut answered = false;
    for (t, m) in &ordered {
        let from_caller = caller_tag.as_deref().is_none_or(|tag| m.from_tag() == Some(tag));
        let is_request = matches!(m.start, StartLine::Request { .. });
        let towards_callee = from_caller == is_request;
        let cseq = m.cseq().map(|(n, method)| format!("{n} {method}")).unwrap_or_default();
        let key = (towards_callee, label(m), cseq.clone(), m.branch().unwrap_or_default().to_owned());
        let retransmission = !seen.insert(key);
        if let (Some(status), Some((_, method))) = (m.status(), m.cseq())
            && method.eq_ignore_ascii_case("INVITE")
            && !answered
        {
            // A route's final failure before any answer; a 401/407 is a credentials challenge, not a route.
            answered = (200..300).contains(&status);
            failure_before_answer |= status >= 300 && !matches!(status, 401 | 407 | 487);
        }
        steps.push(LadderStep {
            at_ms: *t,
            offset_ms: t.saturating_sub(first_at),
            towards_callee,
            label: label(m),
            cseq,
            retransmission,
            reason: m.reason_text(),
        });
    }

    let mut x = CallExplanation {
        direction: None,
        sides: ("caller", "callee"),
        retransmissions: steps.iter().filter(|s| s.retransmission).count(),
        steps,
        setup_ms: None,
        post_dial_delay_ms: None,
        final_response: None,
        retry_after_s: None,
        teardown: None,
        duration_ms: None,
        counted_as_throttle: false,
        verdict: CallVerdict::NotACall,
    };
    for o in facts {
        match o.fact {
            CallFact::Attempt { direction } => {
                x.direction = Some(direction);
                x.verdict = CallVerdict::Ringing;
            }
            CallFact::Ringing { post_dial_delay_ms, .. } => x.post_dial_delay_ms = Some(post_dial_delay_ms),
            CallFact::Answered { setup_ms, .. } => {
                x.setup_ms = Some(setup_ms);
                x.verdict =
                    if failure_before_answer { CallVerdict::FailedOverThenAnswered } else { CallVerdict::Answered };
            }
            CallFact::Failed { status, reason, .. } => {
                x.verdict = match status {
                    486 | 600 => CallVerdict::Busy,
                    408 | 480 => CallVerdict::NoAnswer,
                    429 => CallVerdict::Throttled,
                    _ => CallVerdict::Rejected,
                };
                x.final_response = Some((status, reason));
            }
            CallFact::Cancelled { .. } => {
                x.verdict = CallVerdict::Cancelled;
                x.final_response = Some((487, "Request Terminated".to_owned()));
            }
            CallFact::Ended { duration_ms, reason, timed_out, .. } => {
                x.duration_ms = Some(duration_ms);
                x.teardown = reason.or_else(|| timed_out.then(|| "no BYE before the call timeout".to_owned()));
            }
            CallFact::Throttled => x.counted_as_throttle = true,
            CallFact::Active { .. } | CallFact::Response { .. } => {}
        }
    }
    if let Some((status, _)) = &x.final_response {
        // The decisive response's own reason phrase and Retry-After, from the ladder.
        let decisive = ordered.iter().rev().find(|(_, m)| m.status() == Some(*status));
        x.retry_after_s = decisive.and_then(|(_, m)| m.retry_after());
    }
    x.sides = match x.direction {
        Some(Direction::Inbound) => ("Voice Connector", "your SIP host"),
        Some(Direction::Outbound) => ("your SIP host", "Voice Connector"),
        None => ("sender", "receiver"),
    };
    x
}

/// The ladder as text, one arrow per message, for a terminal.
pub fn ladder_text(x: &CallExplanation) -> String {
    const WIDTH: usize = 40;
    let mut out = format!("{:>10}  {:<w$}{}\n", "", x.sides.0, x.sides.1, w = WIDTH + 2);
    for s in &x.steps {
        let mut label = format!(" {} ", s.label);
        if s.retransmission {
            label.push_str("(again) ");
        }
        let label: String = label.chars().take(WIDTH - 4).collect();
        let dashes = WIDTH - label.chars().count();
        let (left, right) = (dashes / 2, dashes - dashes / 2);
        let arrow = if s.towards_callee {
            format!("|{}{}{}>|", "-".repeat(left), label, "-".repeat(right.saturating_sub(1)))
        } else {
            format!("|<{}{}{}|", "-".repeat(left.saturating_sub(1)), label, "-".repeat(right))
        };
        let mut line = format!("{:>10}  {arrow}", format!("+{} ms", s.offset_ms));
        if !s.cseq.is_empty() {
            line.push_str(&format!("  {}", s.cseq));
        }
        if let Some(r) = &s.reason {
            line.push_str(&format!("  Reason: {r}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's messages of one call, parsed, with their times.
    fn call(id: &str) -> Vec<(i64, Message)> {
        let text = include_str!("../../../fixtures/sip/voice-connector-sip-messages.jsonl");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["call_id"] == id)
            .map(|r| {
                let m = Message::parse(r["sip_message"].as_str().unwrap().as_bytes()).unwrap();
                (r["event_timestamp"].as_i64().unwrap(), m)
            })
            .collect()
    }

    fn explain_fixture(id: &str) -> CallExplanation {
        let messages = call(id);
        let last = messages.iter().map(|(t, _)| *t).max().unwrap();
        explain(&messages, last + 60_000)
    }

    #[test]
    fn the_answered_inbound_call_has_its_setup_time_and_post_dial_delay() {
        let x = explain_fixture("vc-call-0001");
        assert_eq!(x.verdict, CallVerdict::Answered);
        assert_eq!(x.direction, Some(Direction::Inbound));
        assert_eq!((x.setup_ms, x.post_dial_delay_ms), (Some(4_200), Some(950)));
        assert_eq!(x.duration_ms, Some(180_000));
        assert_eq!(x.sides, ("Voice Connector", "your SIP host"));
        let arrows: Vec<(bool, &str)> = x.steps.iter().map(|s| (s.towards_callee, s.label.as_str())).collect();
        assert_eq!(
            arrows,
            [
                (true, "INVITE"),
                (false, "100 Trying"),
                (false, "180 Ringing"),
                (false, "200 OK"),
                (true, "ACK"),
                (true, "BYE"),
                (false, "200 OK")
            ]
        );
        let text = ladder_text(&x);
        assert!(text.contains("+4200 ms  |<"), "{text}");
        assert_eq!(x.summary(), "inbound answered, setup 4200 ms, post-dial delay 950 ms, 180 s long");
    }

    #[test]
    fn the_outbound_503_is_rejected_and_counted_as_a_throttle() {
        let x = explain_fixture("vc-call-0002");
        assert_eq!(x.verdict, CallVerdict::Rejected);
        assert_eq!(x.direction, Some(Direction::Outbound));
        assert_eq!(x.final_response, Some((503, "Service Unavailable".to_owned())));
        assert_eq!(x.retry_after_s, Some(5));
        assert!(x.counted_as_throttle);
        assert_eq!(x.sides, ("your SIP host", "Voice Connector"));
    }

    #[test]
    fn the_cancelled_call_marks_its_retransmitted_invite() {
        let x = explain_fixture("vc-call-0003");
        assert_eq!(x.verdict, CallVerdict::Cancelled);
        assert_eq!(x.final_response.as_ref().map(|(s, _)| *s), Some(487));
        assert_eq!(x.retransmissions, 1);
        assert!(x.steps[1].retransmission && x.steps[1].label == "INVITE", "{:?}", x.steps[1]);
        assert!(ladder_text(&x).contains("INVITE (again)"), "{}", ladder_text(&x));
        assert_eq!(x.post_dial_delay_ms, Some(1_500));
    }

    #[test]
    fn an_options_ping_is_not_a_call_and_a_silent_invite_is_unanswered_after_the_ring_timeout() {
        assert_eq!(explain_fixture("vc-options-0001").verdict, CallVerdict::NotACall);
        let invite = call("vc-call-0001").into_iter().take(3).collect::<Vec<_>>();
        assert_eq!(explain(&invite, 1_763_712_001_000).verdict, CallVerdict::Ringing);
        assert_eq!(explain(&invite, 1_763_712_001_000 + 600_000).verdict, CallVerdict::NoAnswer);
    }

    fn msg(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_route_that_fails_then_another_that_answers_is_a_failover_and_busy_is_busy() {
        let invite = |branch: &str| {
            msg(&format!(
                "INVITE sip:+1@x.voiceconnector.chime.aws SIP/2.0\nVia: SIP/2.0/UDP h;branch={branch}\nFrom: <sip:a@h>;tag=t\nTo: <sip:b@x>\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
            ))
        };
        let response = |status: &str, branch: &str| {
            msg(&format!(
                "SIP/2.0 {status}\nVia: SIP/2.0/UDP h;branch={branch}\nFrom: <sip:a@h>;tag=t\nTo: <sip:b@x>;tag=r\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 0\n\n"
            ))
        };
        let messages = vec![
            (0, invite("b1")),
            (300, response("500 Server Error", "b1")),
            (500, invite("b2")),
            (900, response("200 OK", "b2")),
        ];
        let x = explain(&messages, 60_000);
        assert_eq!(x.verdict, CallVerdict::FailedOverThenAnswered, "{}", x.summary());
        let busy = vec![(0, invite("b1")), (300, response("486 Busy Here", "b1"))];
        assert_eq!(explain(&busy, 60_000).verdict, CallVerdict::Busy);
        // A credentials challenge answered with credentials is not a failover.
        let challenged = vec![
            (0, invite("b1")),
            (100, response("407 Proxy Authentication Required", "b1")),
            (200, invite("b2")),
            (900, response("200 OK", "b2")),
        ];
        assert_eq!(explain(&challenged, 60_000).verdict, CallVerdict::Answered);
        let limited = vec![(0, invite("b1")), (300, response("429 Too Many Requests", "b1"))];
        assert_eq!(explain(&limited, 60_000).verdict, CallVerdict::Throttled);
    }
}
