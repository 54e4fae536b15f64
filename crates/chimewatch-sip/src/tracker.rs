//! The call tracker: follows each call through its INVITE transactions, provisional and final responses, ACK, CANCEL,
//! BYE, re-INVITEs and retransmissions, and tells what happened as [`CallFact`]s at the time they happened.
//!
//! The counting policy (Amazon does not publish its own; the README's "The counting policy" is the same table):
//! - a call is attempted when its first initial INVITE (no To-tag) is seen; retransmissions (same Via branch and
//!   CSeq) and re-INVITEs (To-tag present) are not new attempts;
//! - direction: outbound when the Request-URI host ends in `.voiceconnector.chime.aws`, otherwise inbound;
//! - answered: a 2xx to an initial INVITE; failed: a final 3xx-6xx and no 2xx, decided once no new INVITE of the
//!   same call follows within the failover time (a failure on one route then success on another is one answered
//!   call); cancelled: a 487 after CANCEL, not a failure unless the policy says so;
//! - every attempt ends in exactly one outcome: answered, failed, cancelled, or - when the ring timeout passes with
//!   no final response - failed with 408;
//! - active: answered and not yet ended by BYE (or by the call timeout). Each call counts once in every minute it
//!   was up (`Active` facts at the minutes' starts): at its end for the minutes not yet counted, and, while it is
//!   up, for the minutes that ended more than the active margin before the newest message seen (so a BYE that
//!   arrives a little out of order does not count a minute the call was not up);
//! - Throttles (an approximation, no status code identifies them): outbound INVITEs rejected with 503, or with a 4xx
//!   carrying Retry-After;
//! - every response counts in its status class (1xx..6xx), OPTIONS responses included unless the policy says not.
//!
//! Memory is bounded: a finished call is forgotten after the linger time (to absorb retransmissions), a ringing one
//! after the ring timeout, an answered one after the call timeout.

use std::collections::{HashMap, HashSet};

use crate::message::{Message, StartLine};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "Inbound",
            Self::Outbound => "Outbound",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A 487 after CANCEL counts as a failure (default: no, the caller hung up).
    pub cancel_is_failure: bool,
    /// A new INVITE of a call within this long after a failure continues the same attempt (route failover).
    pub failover_ms: i64,
    /// Responses to OPTIONS count in the status classes.
    pub count_options: bool,
    /// Outbound INVITEs rejected with 503 (or a 4xx with Retry-After) count as Throttles.
    pub throttles_from_rejections: bool,
    /// A finished call is remembered this long after its last message (retransmissions, late ACKs).
    pub linger_ms: i64,
    /// A call with no final response for this long fails with 408.
    pub ring_timeout_ms: i64,
    /// An answered call with no BYE for this long is ended.
    pub call_timeout_ms: i64,
    /// Most calls tracked at once; beyond, the least recently seen are closed as by their timeouts.
    pub max_calls: usize,
    /// Length of the periods active calls are counted in (CloudWatch's one minute).
    pub minute_ms: i64,
    /// A minute of a call still up is counted once the newest message seen is this far past its end.
    pub active_margin_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            cancel_is_failure: false,
            failover_ms: 2_000,
            count_options: true,
            throttles_from_rejections: true,
            linger_ms: 32_000,
            ring_timeout_ms: 300_000,
            call_timeout_ms: 4 * 3600 * 1000,
            max_calls: 500_000,
            minute_ms: 60_000,
            active_margin_ms: 60_000,
        }
    }
}

/// What happened, for one call (or one message, for status classes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFact {
    Attempt {
        direction: Direction,
    },
    /// The first 180 or 183: post-dial delay since the INVITE.
    Ringing {
        direction: Direction,
        post_dial_delay_ms: i64,
    },
    Answered {
        direction: Direction,
        setup_ms: i64,
    },
    Failed {
        direction: Direction,
        status: u16,
        reason: String,
        /// The far end had rung (180 or 183) before the call failed.
        rang: bool,
    },
    Cancelled {
        direction: Direction,
        /// The far end had rung (180 or 183) before the caller gave up.
        rang: bool,
    },
    Ended {
        direction: Direction,
        duration_ms: i64,
        reason: Option<String>,
        timed_out: bool,
    },
    Throttled,
    /// The call was up during the minute starting at the fact's time.
    Active {
        direction: Direction,
    },
    /// A response, by status class (1..=6) and the method of its CSeq.
    Response {
        class: u8,
        method: String,
    },
}

/// A fact with when it happened and the connector it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub at_ms: i64,
    pub voice_connector_id: String,
    pub region: String,
    pub fact: CallFact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Failed,
    Cancelled,
}

#[derive(Debug)]
struct Call {
    voice_connector_id: String,
    region: String,
    direction: Direction,
    transactions: HashSet<(String, u32)>,
    invite_at: i64,
    ringing: bool,
    cancelled: bool,
    answered_at: Option<i64>,
    pending_failure: Option<(i64, u16, String)>,
    outcome: Option<Outcome>,
    ended: bool,
    last_seen: i64,
    /// Minutes before this were counted as active.
    active_through: i64,
}

fn observed(c: &Call, at_ms: i64, fact: CallFact) -> Observed {
    Observed { at_ms, voice_connector_id: c.voice_connector_id.clone(), region: c.region.clone(), fact }
}

fn minute(t: i64, minute_ms: i64) -> i64 {
    t.div_euclid(minute_ms.max(1)) * minute_ms.max(1)
}

/// Counts a call as active in each minute from where it was counted through, to `until` (exclusive); at most a day.
fn count_active(c: &mut Call, until: i64, minute_ms: i64, facts: &mut Vec<Observed>) {
    let step = minute_ms.max(1);
    let mut m = c.active_through.max(until - 1440 * step);
    while m < until {
        facts.push(observed(c, m, CallFact::Active { direction: c.direction }));
        m += step;
    }
    c.active_through = c.active_through.max(until);
}

#[derive(Debug, Default)]
pub struct CallTracker {
    policy: Policy,
    calls: HashMap<(String, String), Call>,
}

impl CallTracker {
    pub fn new(policy: Policy) -> Self {
        Self { policy, calls: HashMap::new() }
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Attempts with no outcome yet: ringing, or failed on a route that may still fail over.
    pub fn undecided(&self) -> usize {
        self.calls.values().filter(|c| c.outcome.is_none()).count()
    }

    /// Answered calls not yet ended, per connector, region and direction.
    pub fn active(&self) -> HashMap<(String, String, Direction), u64> {
        let mut out = HashMap::new();
        for c in self.calls.values().filter(|c| c.outcome == Some(Outcome::Answered) && !c.ended) {
            *out.entry((c.voice_connector_id.clone(), c.region.clone(), c.direction)).or_default() += 1;
        }
        out
    }

    /// One captured message of call `call_id` (the Voice Connector's id; the SIP Call-ID when it has none).
    pub fn observe(&mut self, vc: &str, region: &str, call_id: &str, at_ms: i64, m: &Message) -> Vec<Observed> {
        let mut facts = Vec::new();
        let emit = |facts: &mut Vec<Observed>, at_ms: i64, fact: CallFact| {
            facts.push(Observed { at_ms, voice_connector_id: vc.to_owned(), region: region.to_owned(), fact });
        };
        let cseq_method = m.cseq().map(|(_, method)| method.to_ascii_uppercase()).unwrap_or_default();
        let key = (vc.to_owned(), call_id.to_owned());
        match &m.start {
            StartLine::Response { status, .. } => {
                if cseq_method != "OPTIONS" || self.policy.count_options {
                    let method = if cseq_method.is_empty() { "unknown".to_owned() } else { cseq_method.clone() };
                    emit(&mut facts, at_ms, CallFact::Response { class: (status / 100) as u8, method });
                }
                let Some(call) = self.calls.get_mut(&key) else { return facts };
                call.last_seen = call.last_seen.max(at_ms);
                // Only an undecided attempt's INVITE responses matter (a pending failure is still undecided).
                if cseq_method != "INVITE" || call.outcome.is_some() {
                    return facts;
                }
                let direction = call.direction;
                match status {
                    180 | 183 if !call.ringing => {
                        call.ringing = true;
                        emit(
                            &mut facts,
                            at_ms,
                            CallFact::Ringing { direction, post_dial_delay_ms: at_ms - call.invite_at },
                        );
                    }
                    200..=299 => {
                        call.pending_failure = None;
                        call.outcome = Some(Outcome::Answered);
                        call.answered_at = Some(at_ms);
                        call.active_through = minute(at_ms, self.policy.minute_ms);
                        emit(&mut facts, at_ms, CallFact::Answered { direction, setup_ms: at_ms - call.invite_at });
                    }
                    300..=699 => {
                        if *status == 487 && call.cancelled && !self.policy.cancel_is_failure {
                            call.pending_failure = None;
                            call.outcome = Some(Outcome::Cancelled);
                            emit(&mut facts, at_ms, CallFact::Cancelled { direction, rang: call.ringing });
                        } else {
                            let throttled = direction == Direction::Outbound
                                && (*status == 503 || ((400..500).contains(status) && m.retry_after().is_some()));
                            if throttled && self.policy.throttles_from_rejections {
                                emit(&mut facts, at_ms, CallFact::Throttled);
                            }
                            let reason = m.reason_text().unwrap_or_else(|| match &m.start {
                                StartLine::Response { reason, .. } => reason.clone(),
                                StartLine::Request { .. } => String::new(),
                            });
                            call.pending_failure = Some((at_ms, *status, reason));
                        }
                    }
                    _ => {}
                }
            }
            StartLine::Request { method, .. } => {
                let method = method.to_ascii_uppercase();
                match method.as_str() {
                    "INVITE" if m.to_tag().is_none() => {
                        let transaction = (m.branch().unwrap_or_default().to_owned(), m.cseq().map_or(0, |(n, _)| n));
                        match self.calls.get_mut(&key) {
                            Some(call) => {
                                call.last_seen = call.last_seen.max(at_ms);
                                // A new transaction after a failure: the same attempt on another route.
                                if call.transactions.insert(transaction) && call.outcome.is_none() {
                                    call.pending_failure = None;
                                }
                            }
                            None => {
                                let outbound = m
                                    .request_host()
                                    .is_some_and(|h| h.to_ascii_lowercase().ends_with(".voiceconnector.chime.aws"));
                                let direction = if outbound { Direction::Outbound } else { Direction::Inbound };
                                self.calls.insert(
                                    key,
                                    Call {
                                        voice_connector_id: vc.to_owned(),
                                        region: region.to_owned(),
                                        direction,
                                        transactions: HashSet::from([transaction]),
                                        invite_at: at_ms,
                                        ringing: false,
                                        cancelled: false,
                                        answered_at: None,
                                        pending_failure: None,
                                        outcome: None,
                                        ended: false,
                                        last_seen: at_ms,
                                        active_through: i64::MIN,
                                    },
                                );
                                emit(&mut facts, at_ms, CallFact::Attempt { direction });
                            }
                        }
                    }
                    "CANCEL" => {
                        if let Some(call) = self.calls.get_mut(&key) {
                            call.cancelled = true;
                            call.last_seen = call.last_seen.max(at_ms);
                        }
                    }
                    "BYE" => {
                        if let Some(call) = self.calls.get_mut(&key) {
                            call.last_seen = call.last_seen.max(at_ms);
                            if let (Some(answered), false) = (call.answered_at, call.ended) {
                                call.ended = true;
                                let until = minute(at_ms, self.policy.minute_ms) + self.policy.minute_ms;
                                count_active(call, until, self.policy.minute_ms, &mut facts);
                                let fact = CallFact::Ended {
                                    direction: call.direction,
                                    duration_ms: at_ms - answered,
                                    reason: m.reason_text(),
                                    timed_out: false,
                                };
                                emit(&mut facts, at_ms, fact);
                            }
                        }
                    }
                    _ => {
                        if let Some(call) = self.calls.get_mut(&key) {
                            call.last_seen = call.last_seen.max(at_ms);
                        }
                    }
                }
            }
        }
        facts
    }

    /// Moves the tracker's time to `now_ms` (event time): decides failures whose failover time passed, ends calls
    /// whose timeouts passed, and forgets finished calls after the linger time.
    pub fn advance(&mut self, now_ms: i64) -> Vec<Observed> {
        let policy = self.policy.clone();
        let mut facts = Vec::new();
        let over_cap = self.calls.len().saturating_sub(policy.max_calls);
        let mut oldest: Vec<i64> =
            if over_cap > 0 { self.calls.values().map(|c| c.last_seen).collect() } else { Vec::new() };
        oldest.sort_unstable();
        let cap_cut = oldest.get(over_cap.saturating_sub(1)).copied().filter(|_| over_cap > 0);
        self.calls.retain(|_, c| {
            let forced = cap_cut.is_some_and(|cut| c.last_seen <= cut);
            if let Some((at, status, reason)) = c.pending_failure.clone()
                && (now_ms - at >= policy.failover_ms || forced)
            {
                c.pending_failure = None;
                c.outcome = Some(Outcome::Failed);
                let fact = CallFact::Failed { direction: c.direction, status, reason, rang: c.ringing };
                facts.push(observed(c, at, fact));
            }
            if c.outcome.is_none() && (now_ms - c.last_seen >= policy.ring_timeout_ms || forced) {
                c.outcome = Some(Outcome::Failed);
                let reason = "no final response before the ring timeout".to_owned();
                let fact = CallFact::Failed { direction: c.direction, status: 408, reason, rang: c.ringing };
                facts.push(observed(c, now_ms, fact));
            }
            if c.outcome == Some(Outcome::Answered) && !c.ended {
                if now_ms - c.last_seen >= policy.call_timeout_ms || forced {
                    c.ended = true;
                    count_active(
                        c,
                        minute(c.last_seen, policy.minute_ms) + policy.minute_ms,
                        policy.minute_ms,
                        &mut facts,
                    );
                    let duration_ms = c.last_seen - c.answered_at.unwrap_or(c.last_seen);
                    let ended = CallFact::Ended { direction: c.direction, duration_ms, reason: None, timed_out: true };
                    facts.push(observed(c, c.last_seen, ended));
                } else {
                    count_active(
                        c,
                        minute(now_ms - policy.active_margin_ms, policy.minute_ms),
                        policy.minute_ms,
                        &mut facts,
                    );
                }
            }
            let finished = c.outcome.is_some() && (c.outcome != Some(Outcome::Answered) || c.ended);
            !(finished && (now_ms - c.last_seen >= policy.linger_ms || forced))
        });
        facts
    }

    /// Decides everything now (a shard ended or the worker stops): pending failures fail, ringing calls stay.
    pub fn flush_pending(&mut self) -> Vec<Observed> {
        let mut facts = Vec::new();
        for c in self.calls.values_mut() {
            if let Some((at, status, reason)) = c.pending_failure.take() {
                c.outcome = Some(Outcome::Failed);
                facts.push(Observed {
                    at_ms: at,
                    voice_connector_id: c.voice_connector_id.clone(),
                    region: c.region.clone(),
                    fact: CallFact::Failed { direction: c.direction, status, reason, rang: c.ringing },
                });
            }
        }
        facts
    }
}

#[cfg(test)]
mod tests;
