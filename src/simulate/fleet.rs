//! The fleet: meetings arriving, attendees joining and leaving, Voice Connector calls, played on the fleet's own
//! clock one tick at a time. Pure and deterministic: no I/O, no clock of its own; the wall clock enters as `now_ms`
//! and only stamps the events. The same seed gives the same requests in the same order, whatever the wall clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::rngs::StdRng;
use serde_json::Value;

use super::profile::{Sdk, Upload};
use super::random::{self, exponential_ms};
use super::scenario::Scenario;
use super::session::{self, Action, Credential, Endpoint, FLUSH_MS, Occurred, Planned, Request, Session};
use super::voice::Voice;

/// Fleet time advances this much per [`Fleet::step`]; the driver calls it as often in wall time.
pub const TICK_MS: i64 = 100;
/// Share of the rate that is Voice Connector SIP messages; the rest is meeting events.
pub const SIP_SHARE: f64 = 0.15;
/// Meetings already under way when the run starts are planned from this far back, so the fleet starts in its steady
/// state (ends, drops and reconnects from the first second) rather than with everyone joining at once.
const PREHISTORY_MS: i64 = 15 * 60_000;
/// The JS SDK's flush sends at most three groups of two payloads; Android and iOS twenty payloads.
const JS_FLUSH_PAYLOADS: usize = 6;
const MOBILE_FLUSH_PAYLOADS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetConfig {
    pub seed: u64,
    pub scenario: Scenario,
    /// Events per second (meeting events and SIP messages), on average.
    pub rate: f64,
}

#[derive(Debug, PartialEq, Eq)]
struct Scheduled {
    at: i64,
    seq: u64,
    session: u64,
    action: Action,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    rng: StdRng,
    users: u64,
    /// Fleet time reached (ms since the run started).
    clock_ms: i64,
    meeting_gap_ms: f64,
    next_meeting_ms: f64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    voice: Voice,
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Self {
        let rate = if config.rate.is_finite() && config.rate > 0.0 { config.rate } else { 1.0 };
        // People are drawn from a pool that grows with the fleet; each keeps their own device and SDK.
        let users = ((rate * 200.0) as u64).clamp(1_000, 10_000_000);
        let events_per_meeting = calibrate(config.seed, users);
        let meeting_gap_ms = events_per_meeting / (rate * (1.0 - SIP_SHARE) / 1000.0);
        let mut fleet = Self {
            config,
            rng: random::stream(config.seed, 1),
            users,
            clock_ms: 0,
            meeting_gap_ms,
            next_meeting_ms: -PREHISTORY_MS as f64,
            queue: BinaryHeap::new(),
            seq: 0,
            sessions: BTreeMap::new(),
            next_session: 0,
            voice: Voice::new(config.seed, config.scenario, rate * SIP_SHARE),
        };
        fleet.arrivals(0);
        fleet
    }

    /// Sessions in progress (joined or joining, not yet stopped).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Plans the meetings that arrive up to `until` (fleet ms).
    fn arrivals(&mut self, until: i64) {
        let rate = 1.0 / self.meeting_gap_ms;
        while self.next_meeting_ms <= until as f64 {
            let start = self.next_meeting_ms as i64;
            for Planned { session, actions } in
                session::plan_meeting(&mut self.rng, self.config.scenario, self.config.seed, self.users, start)
            {
                // A session over before the run started left nothing to send.
                if actions.last().is_some_and(|(at, _)| *at <= 0) {
                    continue;
                }
                let id = self.next_session;
                self.next_session += 1;
                self.sessions.insert(id, session);
                for (at, action) in actions {
                    let at = if action == Action::Flush { first_flush(at) } else { at };
                    self.schedule(at, id, action);
                }
            }
            self.next_meeting_ms += exponential_ms(&mut self.rng, rate);
        }
    }

    fn schedule(&mut self, at: i64, session: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, session, action }));
    }

    /// Advances the fleet by one tick and returns the requests its clients and backends make in it, registrations
    /// first (they must reach the gateway before the clients' own requests). `now_ms` is the wall clock at the end
    /// of the tick; events of the tick are stamped up to it.
    pub fn step(&mut self, now_ms: i64) -> Vec<Request> {
        let end = self.clock_ms + TICK_MS;
        let anchor = now_ms - end;
        self.arrivals(end);
        let mut out = Vec::new();
        let mut registrations = Vec::new();
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > end {
                break;
            }
            let Some(Reverse(Scheduled { at, session: id, action, .. })) = self.queue.pop() else { break };
            if action == Action::Stop {
                if let Some(mut session) = self.sessions.remove(&id) {
                    out.extend(stop(&mut session));
                }
                continue;
            }
            let Some(session) = self.sessions.get_mut(&id) else { continue };
            match action {
                Action::Register => registrations.push(session.registration()),
                Action::Occur(ev) => {
                    let Some(o) = session.occur(ev, at, anchor + at) else { continue };
                    match session.profile.upload {
                        Upload::Blog => session.hold(o),
                        // What happened before the run was sent before the run.
                        Upload::Native if at <= 0 || !session.native_sends(ev) => {}
                        Upload::Native if session.sends_at_once(ev) => out.push(ingestion(session, &[o], false)),
                        Upload::Native => session.hold(o),
                    }
                }
                Action::Flush => {
                    let limit = if session.sdk() == Sdk::Js { JS_FLUSH_PAYLOADS } else { MOBILE_FLUSH_PAYLOADS };
                    let events = session.take(limit);
                    if !events.is_empty() {
                        out.push(ingestion(session, &events, false));
                    }
                    self.schedule(at + FLUSH_MS, id, Action::Flush);
                }
                Action::Stop => {}
            }
        }
        out.extend(self.voice.step(end, anchor));
        self.clock_ms = end;
        if !registrations.is_empty() {
            out.insert(0, attendees(registrations));
        }
        out
    }

    /// The run ends: every native client flushes what it holds (the JS SDK by beacon, as when a page closes; Android
    /// and iOS by a last flush), and the SIP forwarder sends its last records. Blog-style apps post only when their
    /// meeting stops, so what they collected is lost, as it is when a tab closes before the upload.
    pub fn finish(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        for session in self.sessions.values_mut() {
            if session.profile.upload != Upload::Native {
                continue;
            }
            while session.pending() > 0 {
                if session.sdk() == Sdk::Js {
                    let events = session.take(usize::MAX);
                    out.push(ingestion(session, &events, true));
                } else {
                    let events = session.take(MOBILE_FLUSH_PAYLOADS);
                    out.push(ingestion(session, &events, false));
                }
            }
        }
        self.sessions.clear();
        self.queue.clear();
        out.extend(self.voice.finish());
        out
    }
}

/// The first periodic flush at or after the start of the run.
fn first_flush(at: i64) -> i64 {
    if at > 0 { at } else { at + (-at / FLUSH_MS + 1) * FLUSH_MS }
}

fn ingestion(session: &mut Session, events: &[Occurred], beacon: bool) -> Request {
    let body = session.ingestion_body(events, beacon);
    let (endpoint, credential) =
        if beacon { (Endpoint::Beacon, Credential::None) } else { (Endpoint::ClientEvents, session.credential()) };
    // The JS SDK posts a string body (text/plain, fetch's default); Android and iOS post JSON.
    let content_type = if session.sdk() == Sdk::Js { "text/plain;charset=UTF-8" } else { "application/json" };
    Request {
        endpoint,
        credential,
        content_type,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        kinds: events.iter().map(|o| o.ev.name()).collect(),
    }
}

/// What a stopping client sends.
fn stop(session: &mut Session) -> Vec<Request> {
    let mut out = Vec::new();
    match session.profile.upload {
        Upload::Blog => {
            let events = session.take(usize::MAX);
            if !events.is_empty() {
                let body: Vec<Value> = events.iter().map(|o| session.blog_event(o)).collect();
                out.push(Request {
                    endpoint: Endpoint::MeetingEvents,
                    credential: session.credential(),
                    content_type: "application/json",
                    body: serde_json::to_vec(&body).unwrap_or_default(),
                    kinds: events.iter().map(|o| o.ev.name()).collect(),
                });
            }
        }
        Upload::Native if session.sdk() == Sdk::Js => {
            let events = session.take(usize::MAX);
            if !events.is_empty() {
                out.push(ingestion(session, &events, true));
            }
        }
        Upload::Native => {
            while session.pending() > 0 {
                let events = session.take(MOBILE_FLUSH_PAYLOADS);
                out.push(ingestion(session, &events, false));
            }
        }
    }
    out
}

fn attendees(registrations: Vec<Value>) -> Request {
    let kinds = vec!["attendee"; registrations.len()];
    Request {
        endpoint: Endpoint::Attendees,
        credential: Credential::ApiKey,
        content_type: "application/json",
        body: serde_json::to_vec(&Value::Array(registrations)).unwrap_or_default(),
        kinds,
    }
}

/// Meeting events per meeting on average, from a sample of meetings planned on a generator of their own (the
/// fleet's draws are not disturbed): the meeting arrival rate that gives the requested event rate.
fn calibrate(seed: u64, users: u64) -> f64 {
    const SAMPLE: usize = 300;
    let mut rng = random::stream(seed, 2);
    let mut events = 0usize;
    for _ in 0..SAMPLE {
        for Planned { session, actions } in session::plan_meeting(&mut rng, Scenario::Steady, seed, users, 0) {
            let sdk = session.sdk();
            events += actions
                .iter()
                .filter(|(_, a)| match a {
                    Action::Occur(ev) => {
                        ev.is_event(sdk) && (session.profile.upload == Upload::Blog || session.native_sends(*ev))
                    }
                    _ => false,
                })
                .count();
        }
    }
    (events as f64 / SAMPLE as f64).max(1.0)
}
