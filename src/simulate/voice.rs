//! Voice Connector calls as SIP message log records: inbound calls (Voice Connector to the customer's PBX) and
//! outbound ones (the PBX to `<id>.voiceconnector.chime.aws`), answered, busy, unanswered, cancelled or refused, with
//! plausible timing (post-dial delay, setup, talk time), INVITE retransmissions, an occasional ACK timeout, and
//! OPTIONS keep-alives. A log forwarder posts the records every second, as newline-delimited JSON.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use serde_json::json;

use super::random::{self, between, chance, exponential_ms, log_normal_ms, weighted};
use super::scenario::Scenario;
use super::session::{Credential, Endpoint, Request};

/// Records per request the forwarder sends at most.
const MAX_RECORDS: usize = 500;
const FORWARD_EVERY_MS: i64 = 1_000;
const KEEPALIVE_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone)]
struct Connector {
    id: String,
    region: &'static str,
    /// Voice Connector's signaling address, and the customer's PBX (documentation ranges).
    vc_ip: String,
    pbx_ip: String,
}

/// How a call ends, as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    /// A final failure response to the INVITE.
    Refused(u16),
    /// The caller hung up while it rang: CANCEL, then 487.
    Cancelled,
}

#[derive(Debug, PartialEq, Eq)]
struct Message {
    at: i64,
    seq: u64,
    connector: usize,
    call_id: String,
    text: String,
    kind: &'static str,
}

impl Ord for Message {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Message {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
pub struct Voice {
    rng: StdRng,
    scenario: Scenario,
    connectors: Vec<Connector>,
    call_gap_ms: f64,
    next_call_ms: f64,
    next_keepalive_ms: i64,
    next_forward_ms: i64,
    queue: BinaryHeap<Reverse<Message>>,
    seq: u64,
    /// Records captured and not yet forwarded.
    pending: Vec<(serde_json::Value, &'static str)>,
}

impl Voice {
    /// `rate`: SIP messages per second, on average.
    pub fn new(seed: u64, scenario: Scenario, rate: f64) -> Self {
        let mut rng = random::stream(seed, 3);
        let connectors = [("us-east-1", 1), ("us-east-1", 2), ("us-west-2", 3)]
            .into_iter()
            .map(|(region, n)| Connector {
                id: random::token(&mut rng, 22),
                region,
                vc_ip: format!("198.51.100.{}", 10 + n),
                pbx_ip: format!("203.0.113.{}", 20 + n),
            })
            .collect();
        let mut voice = Self {
            rng,
            scenario,
            connectors,
            call_gap_ms: f64::INFINITY,
            next_call_ms: 0.0,
            next_keepalive_ms: between(&mut random::stream(seed, 4), 0, 5_000),
            next_forward_ms: FORWARD_EVERY_MS,
            queue: BinaryHeap::new(),
            seq: 0,
            pending: Vec::new(),
        };
        // Messages per call on average, from a sample planned on a generator of its own.
        let mut sample = Self { rng: random::stream(seed, 5), ..voice.shell() };
        let calls = 300;
        for _ in 0..calls {
            sample.plan_call(0);
        }
        let per_call = sample.queue.len() as f64 / calls as f64;
        if rate > 0.0 {
            voice.call_gap_ms = per_call / (rate / 1000.0);
            voice.next_call_ms = exponential_ms(&mut voice.rng, 1.0 / voice.call_gap_ms);
        }
        voice
    }

    fn shell(&self) -> Self {
        Self {
            rng: random::stream(0, 0),
            scenario: self.scenario,
            connectors: self.connectors.clone(),
            call_gap_ms: f64::INFINITY,
            next_call_ms: f64::INFINITY,
            next_keepalive_ms: i64::MAX,
            next_forward_ms: i64::MAX,
            queue: BinaryHeap::new(),
            seq: 0,
            pending: Vec::new(),
        }
    }

    /// Advances to `end` (fleet ms); `anchor` turns fleet time into wall time.
    pub fn step(&mut self, end: i64, anchor: i64) -> Vec<Request> {
        while self.next_call_ms <= end as f64 {
            self.plan_call(self.next_call_ms as i64);
            self.next_call_ms += exponential_ms(&mut self.rng, 1.0 / self.call_gap_ms);
        }
        while self.call_gap_ms.is_finite() && self.next_keepalive_ms <= end {
            for c in 0..self.connectors.len() {
                self.keepalive(self.next_keepalive_ms + c as i64 * 7, c);
            }
            self.next_keepalive_ms += KEEPALIVE_EVERY_MS;
        }
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > end {
                break;
            }
            let Some(Reverse(m)) = self.queue.pop() else { break };
            let c = &self.connectors[m.connector];
            let record = json!({
                "voice_connector_id": c.id,
                "aws_region": c.region,
                "event_timestamp": anchor + m.at,
                "call_id": m.call_id,
                "sip_message": m.text,
            });
            self.pending.push((record, m.kind));
        }
        if end >= self.next_forward_ms {
            self.next_forward_ms += FORWARD_EVERY_MS;
            return self.forward();
        }
        Vec::new()
    }

    /// The forwarder's last post at the end of the run.
    pub fn finish(&mut self) -> Vec<Request> {
        self.queue.clear();
        self.forward()
    }

    fn forward(&mut self) -> Vec<Request> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .chunks(MAX_RECORDS)
            .map(|chunk| {
                let mut body = Vec::new();
                for (record, _) in chunk {
                    body.extend(serde_json::to_vec(record).unwrap_or_default());
                    body.push(b'\n');
                }
                Request {
                    endpoint: Endpoint::SipMessages,
                    credential: Credential::ApiKey,
                    content_type: "application/x-ndjson",
                    body,
                    kinds: chunk.iter().map(|(_, kind)| *kind).collect(),
                }
            })
            .collect()
    }

    fn push(&mut self, at: i64, connector: usize, call_id: &str, text: String, kind: &'static str) {
        self.seq += 1;
        self.queue.push(Reverse(Message { at, seq: self.seq, connector, call_id: call_id.to_owned(), text, kind }));
    }

    fn keepalive(&mut self, at: i64, connector: usize) {
        let rng = &mut self.rng;
        let c = &self.connectors[connector];
        let (call_id, sip_call_id, branch, tag) = (
            random::uuid(rng),
            format!("{}@{}", random::token(rng, 12), c.pbx_ip),
            random::token(rng, 10),
            random::token(rng, 8),
        );
        let d = Dialog {
            request_uri: format!("sip:{}:5060", c.vc_ip),
            via: format!("SIP/2.0/UDP {}:5060;branch=z9hG4bK{branch}", c.pbx_ip),
            from: format!("<sip:ping@{}>;tag={tag}", c.pbx_ip),
            to: format!("<sip:{}>", c.vc_ip),
            call_id: sip_call_id,
        };
        let ping = d.request("OPTIONS", 1, &[], None);
        let pong = d.response(200, "OK", 1, "OPTIONS", Some("o1"), &[], None);
        let reply = between(&mut self.rng, 5, 40);
        self.push(at, connector, &call_id, ping, "OPTIONS");
        self.push(at + reply, connector, &call_id, pong, "200");
    }

    /// Plans one call from its INVITE at `at`, every message of it at its time.
    pub fn plan_call(&mut self, at: i64) -> Outcome {
        let conditions = self.scenario.conditions(at);
        let rng = &mut self.rng;
        let connector = between(rng, 0, self.connectors.len() as i64 - 1) as usize;
        let c = self.connectors[connector].clone();
        let inbound = chance(rng, 0.55);
        let refused = conditions.sip_refused;
        let outcome = weighted(
            rng,
            &[
                (Outcome::Answered, ((1.0 - refused) * 780.0) as u32),
                (Outcome::Refused(486), ((1.0 - refused) * 50.0) as u32),
                (Outcome::Refused(480), ((1.0 - refused) * 60.0) as u32),
                (Outcome::Cancelled, ((1.0 - refused) * 60.0) as u32),
                (Outcome::Refused(404), ((1.0 - refused) * 15.0) as u32),
                (Outcome::Refused(603), ((1.0 - refused) * 5.0) as u32),
                (Outcome::Refused(403), ((1.0 - refused) * 5.0) as u32),
                (Outcome::Refused(503), 20 + (refused * 800.0) as u32),
                (Outcome::Refused(500), 5 + (refused * 200.0) as u32),
            ],
        );
        let caller = phone(rng);
        let callee = phone(rng);
        let (uac_ip, uas_host) = if inbound {
            (c.vc_ip.clone(), format!("{}:5060", c.pbx_ip))
        } else {
            (c.pbx_ip.clone(), format!("{}.voiceconnector.chime.aws", c.id))
        };
        let call_id = random::uuid(rng);
        let branch = format!("z9hG4bK{}", random::token(rng, 12));
        let from_tag = random::token(rng, 8);
        let to_tag = random::token(rng, 8);
        let d = Dialog {
            request_uri: if inbound {
                format!("sip:{callee}@{uas_host};transport=UDP")
            } else {
                format!("sip:{callee}@{uas_host}")
            },
            via: format!("SIP/2.0/UDP {uac_ip}:5060;branch={branch}"),
            from: format!("<sip:{caller}@{uac_ip}:5060>;tag={from_tag}"),
            to: format!("<sip:{callee}@{uas_host}>"),
            call_id: format!("{}@{uac_ip}", random::token(rng, 16)),
        };
        let mut invite_headers = vec![
            ("Contact".to_owned(), format!("<sip:{caller}@{uac_ip}:5060>")),
            ("Allow".to_owned(), "INVITE, ACK, CANCEL, BYE, OPTIONS".to_owned()),
        ];
        if inbound {
            invite_headers.push(("X-VoiceConnector-ID".to_owned(), c.id.clone()));
            invite_headers.push(("User-Agent".to_owned(), "VoiceConnector".to_owned()));
        } else {
            invite_headers.push(("User-Agent".to_owned(), "Asterisk PBX 20.5.0".to_owned()));
        }
        let offer = sdp(rng, &uac_ip);
        let answer_ip = if inbound { c.pbx_ip.clone() } else { c.vc_ip.clone() };
        let answer = sdp(rng, &answer_ip);
        let trying = between(rng, 5, 60);
        let retransmit = chance(rng, 0.04);
        // Post-dial delay: the first 180 (inbound, the PBX rings a phone) or 183 (outbound, early media).
        let ringing = trying + log_normal_ms(rng, if inbound { 900.0 } else { 1_800.0 }, 0.5, 100, 15_000);
        let ring_time = log_normal_ms(rng, 6_000.0, 0.6, 800, 45_000);
        // A fifth of answered calls are short (voicemail checks, wrong numbers, IVR hang-ups), the rest conversations.
        let talk = if chance(rng, 0.2) {
            log_normal_ms(rng, 12_000.0, 0.5, 3_000, 60_000)
        } else {
            log_normal_ms(rng, 150_000.0, 0.9, 10_000, 45 * 60_000)
        };
        let ack_timeout = !inbound && chance(rng, 0.01);
        let caller_hangs_up = chance(rng, 0.5);
        let (progress_code, progress_reason) = if inbound { (180, "Ringing") } else { (183, "Session Progress") };

        let mut msgs: Vec<(i64, String, &'static str)> = Vec::new();
        msgs.push((at, d.request("INVITE", 1, &invite_headers, Some(&offer)), "INVITE"));
        if retransmit {
            // UDP: the INVITE again, same branch and CSeq, before the 100 arrives.
            msgs.push((at + 500, d.request("INVITE", 1, &invite_headers, Some(&offer)), "INVITE"));
        }
        let trying_at = at + trying + if retransmit { 520 } else { 0 };
        msgs.push((trying_at, d.response(100, "Trying", 1, "INVITE", None, &[], None), "100"));
        let rings = matches!(outcome, Outcome::Answered | Outcome::Cancelled | Outcome::Refused(480 | 486));
        let ringing_at = trying_at.max(at + ringing);
        if rings && !matches!(outcome, Outcome::Refused(486)) {
            msgs.push((
                ringing_at,
                d.response(progress_code, progress_reason, 1, "INVITE", Some(&to_tag), &[], None),
                if inbound { "180" } else { "183" },
            ));
        }
        let ack = |at: i64, tag: &str, msgs: &mut Vec<(i64, String, &'static str)>, d: &Dialog| {
            let mut d2 = d.clone();
            d2.to = format!("{};tag={tag}", d.to);
            msgs.push((at, d2.request("ACK", 1, &[], None), "ACK"));
        };
        match outcome {
            Outcome::Answered => {
                let ok_at = ringing_at + ring_time;
                let contact = vec![("Contact".to_owned(), format!("<sip:{callee}@{answer_ip}:5060>"))];
                msgs.push((ok_at, d.response(200, "OK", 1, "INVITE", Some(&to_tag), &contact, Some(&answer)), "200"));
                let mut dialog = d.clone();
                dialog.to = format!("{};tag={to_tag}", d.to);
                let bye_at = if ack_timeout {
                    // No ACK came: Voice Connector gives up on the call after 32 s and says why.
                    ok_at + 32_000
                } else {
                    // The ACK of a 2xx is a transaction of its own: a new branch.
                    let mut a = dialog.clone();
                    a.via = format!("SIP/2.0/UDP {uac_ip}:5060;branch=z9hG4bK{}", random::token(rng, 12));
                    msgs.push((ok_at + between(rng, 20, 90), a.request("ACK", 1, &[], None), "ACK"));
                    ok_at + talk
                };
                // Voice Connector's side says why it hangs up (Q.850, as carriers do); a PBX's BYE says nothing.
                let vc_hangs_up = inbound == caller_hangs_up;
                let reason = if ack_timeout {
                    vec![("Reason".to_owned(), "SIP;cause=200;text=\"ACK timeout\"".to_owned())]
                } else if vc_hangs_up {
                    let temporary = if conditions.sip_refused > 0.0 { 30 } else { 3 };
                    let (cause, text) = weighted(
                        rng,
                        &[
                            ((16, "Normal call clearing"), 90),
                            ((31, "Normal, unspecified"), 7),
                            ((41, "Temporary failure"), temporary),
                        ],
                    );
                    vec![("Reason".to_owned(), format!("Q.850;cause={cause};text=\"{text}\""))]
                } else {
                    Vec::new()
                };
                let bye_branch = format!("z9hG4bK{}", random::token(rng, 12));
                let mut bye = dialog.clone();
                if !caller_hangs_up || ack_timeout {
                    // The callee's side hangs up: the dialog seen from the other end.
                    bye.from = dialog.to.clone();
                    bye.to = dialog.from.clone();
                    bye.via = format!("SIP/2.0/UDP {answer_ip}:5060;branch={bye_branch}");
                } else {
                    bye.via = format!("SIP/2.0/UDP {uac_ip}:5060;branch={bye_branch}");
                }
                msgs.push((bye_at, bye.request("BYE", 2, &reason, None), "BYE"));
                msgs.push((bye_at + between(rng, 15, 80), bye.response(200, "OK", 2, "BYE", None, &[], None), "200"));
            }
            Outcome::Cancelled => {
                let cancel_at = ringing_at + log_normal_ms(rng, 5_000.0, 0.6, 500, 30_000);
                msgs.push((cancel_at, d.request("CANCEL", 1, &[], None), "CANCEL"));
                let ok_at = cancel_at + between(rng, 10, 40);
                msgs.push((ok_at, d.response(200, "OK", 1, "CANCEL", Some(&to_tag), &[], None), "200"));
                let terminated = ok_at + between(rng, 5, 30);
                msgs.push((
                    terminated,
                    d.response(487, "Request Terminated", 1, "INVITE", Some(&to_tag), &[], None),
                    "487",
                ));
                ack(terminated + between(rng, 5, 30), &to_tag, &mut msgs, &d);
            }
            Outcome::Refused(code) => {
                let final_at = match code {
                    480 => ringing_at + log_normal_ms(rng, 25_000.0, 0.3, 5_000, 60_000),
                    486 => trying_at + log_normal_ms(rng, 1_200.0, 0.5, 50, 10_000),
                    _ => trying_at + log_normal_ms(rng, 300.0, 0.7, 10, 10_000),
                };
                let extra = if code == 503 {
                    vec![("Retry-After".to_owned(), between(rng, 5, 30).to_string())]
                } else {
                    Vec::new()
                };
                msgs.push((
                    final_at,
                    d.response(code, reason_phrase(code), 1, "INVITE", Some(&to_tag), &extra, None),
                    status_kind(code),
                ));
                ack(final_at + between(rng, 5, 30), &to_tag, &mut msgs, &d);
            }
        }
        for (t, text, kind) in msgs {
            self.push(t, connector, &call_id, text, kind);
        }
        outcome
    }
}

/// A fictional North American number (555-01xx is reserved for fiction).
fn phone(rng: &mut StdRng) -> String {
    format!("+1{}555{:04}", between(rng, 201, 989), between(rng, 100, 199))
}

fn sdp(rng: &mut StdRng, ip: &str) -> String {
    let session = between(rng, 1_000_000, 9_999_999);
    let port = between(rng, 5_000, 32_000) & !1;
    format!(
        "v=0\r\no=- {session} {session} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Error",
    }
}

/// The summary's name for a response: its status code.
fn status_kind(code: u16) -> &'static str {
    match code {
        403 => "403",
        404 => "404",
        480 => "480",
        486 => "486",
        500 => "500",
        503 => "503",
        603 => "603",
        _ => "other",
    }
}

/// The headers every message of a transaction shares.
#[derive(Debug, Clone)]
struct Dialog {
    request_uri: String,
    via: String,
    from: String,
    to: String,
    call_id: String,
}

impl Dialog {
    fn request(&self, method: &str, cseq: u32, extra: &[(String, String)], body: Option<&str>) -> String {
        let mut m = format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.request_uri, self.via, self.from, self.to, self.call_id
        );
        finish(&mut m, extra, body);
        m
    }

    #[allow(clippy::too_many_arguments)]
    fn response(
        &self,
        code: u16,
        reason: &str,
        cseq: u32,
        method: &str,
        to_tag: Option<&str>,
        extra: &[(String, String)],
        body: Option<&str>,
    ) -> String {
        let to = match to_tag {
            Some(tag) if !self.to.contains(";tag=") => format!("{};tag={tag}", self.to),
            _ => self.to.clone(),
        };
        let mut m = format!(
            "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.via, self.from, self.call_id
        );
        finish(&mut m, extra, body);
        m
    }
}

fn finish(m: &mut String, extra: &[(String, String)], body: Option<&str>) {
    for (k, v) in extra {
        m.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => m.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
}
