//! Explanations of one attendee and of one meeting from their normalized events: a timeline merged from the events
//! and the SDKs' own `meetingHistory`, the outcome, and a verdict (the likely cause from [`crate::cause`], the
//! evidence lines that support it, and what to do next). Pure functions of the events; `chimewatch explain` and the
//! console render them.

use std::collections::{BTreeMap, BTreeSet};

use chimewatch_model::MeetingEvent;
use serde::Serialize;
use serde_json::Value;

use crate::cause::{self, Cause, DEVICE_ERROR_ATTRIBUTES as DEVICE_ERRORS, Ending, HEALTH_EVENTS as HEALTH, Signs};

/// How a step of the timeline reads: red for failures, amber for trouble, green for the happy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Tone {
    Good,
    Trouble,
    Failure,
    Neutral,
}

/// How an event of this name reads, by its name alone.
pub fn tone(name: &str) -> Tone {
    let n = name.to_ascii_lowercase();
    if n.contains("failed") || n.contains("dropped") {
        Tone::Failure
    } else if n.contains("reconnect") || n.contains("poor") {
        Tone::Trouble
    } else if n.contains("succeeded") || n.contains("started") || n.contains("ended") || n.contains("presence") {
        Tone::Good
    } else {
        Tone::Neutral
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub at_ms: i64,
    pub name: String,
    /// What the event says, in a few words (`in 1,312 ms`, `meetingStatus=Left`).
    pub detail: String,
    /// Known only from an event's `meetingHistory` (the event itself did not reach chimewatch).
    pub from_history: bool,
    pub tone: Tone,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub ending: Ending,
    pub requested_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub meeting_start_duration_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub meeting_duration_ms: Option<i64>,
    pub reconnects: usize,
    pub poor_connection_count: u64,
    /// Earlier endings of the same attendee (it failed, then joined again).
    pub earlier_endings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub cause: Cause,
    /// The session failed (it did not end as the attendee or the meeting meant it to).
    pub failure: bool,
    pub headline: String,
    pub meaning: &'static str,
    pub evidence: Vec<String>,
    pub next: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttendeeExplanation {
    pub attendee_id: String,
    pub meeting_id: String,
    pub external_user_id: Option<String>,
    /// `amazon-chime-sdk-js 3.32.0`.
    pub sdk: String,
    /// `Chrome 142 on Mac OS 10.15.7`, or the device.
    pub platform: String,
    pub timeline: Vec<Step>,
    pub outcome: Outcome,
    pub verdict: Verdict,
}

fn text(e: &MeetingEvent, key: &str) -> Option<String> {
    match e.attributes.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn ms(e: &MeetingEvent, key: &str) -> Option<i64> {
    e.num_attr(key).filter(|v| v.is_finite() && *v >= 0.0).map(|v| v.round() as i64)
}

/// `1,312 ms`, `4.2 s`, `12 min 5 s`, `1 h 3 min`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

fn detail(e: &MeetingEvent) -> String {
    let mut parts = Vec::new();
    if let Some(v) = ms(e, "meetingStartDurationMs").filter(|v| *v > 0) {
        parts.push(format!("in {}", duration(v)));
    }
    if let Some(v) = ms(e, "signalingOpenDurationMs").filter(|v| *v > 0) {
        parts.push(format!("signalling opened in {}", duration(v)));
    }
    if let Some(v) = ms(e, "iceGatheringDurationMs").filter(|v| *v > 0) {
        parts.push(format!("ICE gathered in {}", duration(v)));
    }
    if let Some(s) = text(e, "meetingStatus") {
        parts.push(format!("meetingStatus={s}"));
    }
    for key in ["meetingErrorMessage"].iter().chain(DEVICE_ERRORS) {
        if let Some(s) = text(e, key) {
            parts.push(s);
        }
    }
    if let Some(v) = ms(e, "meetingDurationMs").filter(|v| *v > 0) {
        parts.push(format!("after {}", duration(v)));
    }
    if let Some(v) = ms(e, "poorConnectionCount").filter(|v| *v > 0) {
        parts.push(format!("poorConnectionCount={v}"));
    }
    if let Some(v) = ms(e, "retryCount").filter(|v| *v > 0) {
        parts.push(format!("retryCount={v}"));
    }
    parts.join(", ")
}

fn history(e: &MeetingEvent) -> impl Iterator<Item = (String, i64)> + '_ {
    e.attributes
        .get("meetingHistory")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| Some((item.get("name")?.as_str()?.to_owned(), item.get("timestampMs")?.as_i64()?)))
}

/// Explains one attendee's events (any order, any SDK). `None` when there are none.
pub fn attendee(events: &[MeetingEvent]) -> Option<AttendeeExplanation> {
    let mut events: Vec<&MeetingEvent> = events.iter().filter(|e| e.timestamp_ms().is_some()).collect();
    events.sort_by_key(|e| e.timestamp_ms());
    let last = *events.last()?;
    let at = |e: &MeetingEvent| e.timestamp_ms().unwrap_or_default();

    // The timeline: every event, and every history entry no event stands for.
    let seen: BTreeSet<(String, i64)> = events.iter().map(|e| (e.name.clone(), at(e))).collect();
    let mut from_history: BTreeSet<(i64, String)> = BTreeSet::new();
    for e in &events {
        for (name, t) in history(e) {
            if !seen.contains(&(name.clone(), t)) {
                from_history.insert((t, name));
            }
        }
    }
    let mut timeline: Vec<Step> = events
        .iter()
        .map(|e| Step {
            at_ms: at(e),
            name: e.name.clone(),
            detail: detail(e),
            from_history: false,
            tone: tone(&e.name),
        })
        .chain(from_history.into_iter().map(|(at_ms, name)| Step {
            at_ms,
            tone: tone(&name),
            name,
            detail: String::new(),
            from_history: true,
        }))
        .collect();
    timeline.sort_by_key(|s| (s.at_ms, s.from_history));

    let named = |names: &'static [&'static str]| {
        events.iter().copied().filter(move |e: &&MeetingEvent| names.contains(&e.name.as_str()))
    };
    let endings: Vec<&MeetingEvent> = named(&["meetingStartFailed", "meetingFailed", "meetingEnded"]).collect();
    let last_start = named(&["meetingStartSucceeded"]).next_back();
    let ending_event = endings.last().copied().filter(|end| last_start.is_none_or(|s| at(s) <= at(end)));
    let ending = match ending_event.map(|e| e.name.as_str()) {
        Some("meetingStartFailed") => Ending::JoinFailed,
        Some("meetingFailed") => Ending::Dropped,
        Some(_) => Ending::Ended,
        None => Ending::Open,
    };

    // The signs of this session only: after the attendee's previous ending (a failed try before a rejoin), up to this
    // ending.
    let previous_end = match ending_event {
        Some(end) => endings.iter().rev().map(|e| at(e)).find(|t| *t < at(end)),
        None => endings.last().map(|e| at(e)),
    };
    let in_session = |t: i64| previous_end.is_none_or(|p| t > p) && ending_event.is_none_or(|e| t <= at(e));
    let device_errors: Vec<(i64, String, String)> = events
        .iter()
        .filter(|e| in_session(at(e)))
        .flat_map(|e| DEVICE_ERRORS.iter().filter_map(move |k| text(e, k).map(|m| (at(e), e.name.clone(), m))))
        .collect();
    let reconnect_events: Vec<&MeetingEvent> = named(&["meetingReconnected"]).filter(|e| in_session(at(e))).collect();
    let reconnects = timeline
        .iter()
        .filter(|s| s.name == "meetingReconnected" && in_session(s.at_ms))
        .count()
        .max(reconnect_events.len());
    let health: Vec<&Step> =
        timeline.iter().filter(|s| HEALTH.contains(&s.name.as_str()) && in_session(s.at_ms)).collect();
    let poor =
        events.iter().filter(|e| in_session(at(e))).filter_map(|e| ms(e, "poorConnectionCount")).max().unwrap_or(0)
            as u64;
    let signs = Signs {
        status: ending_event.and_then(|e| text(e, "meetingStatus")),
        error_message: ending_event.and_then(|e| text(e, "meetingErrorMessage")),
        device_errors: device_errors.iter().map(|(_, _, m)| m.clone()).collect(),
        reconnects,
        reconnect_statuses: reconnect_events.iter().filter_map(|e| text(e, "meetingStatus")).collect(),
        health_events: health.len(),
        poor_connection_count: poor,
    };
    let cause = cause::classify(ending, &signs);

    let requested = named(&["meetingStartRequested"])
        .next_back()
        .map(at)
        .or_else(|| timeline.iter().filter(|s| s.name == "meetingStartRequested").map(|s| s.at_ms).next_back());
    let outcome = Outcome {
        ending,
        requested_at_ms: requested,
        started_at_ms: last_start.map(at),
        meeting_start_duration_ms: last_start.and_then(|e| ms(e, "meetingStartDurationMs")).filter(|v| *v > 0),
        ended_at_ms: ending_event.map(at),
        meeting_duration_ms: ending_event.and_then(|e| ms(e, "meetingDurationMs")).filter(|v| *v > 0),
        reconnects,
        poor_connection_count: poor,
        earlier_endings: endings.len().saturating_sub(usize::from(ending_event.is_some())),
    };

    // Evidence, the lines that support the cause first.
    let clock = |t: i64| crate::explain::clock(t);
    let mut status_lines = Vec::new();
    if let Some(e) = ending_event {
        let mut line = format!("{} at {}", e.name, clock(at(e)));
        if let Some(s) = &signs.status {
            line.push_str(&format!(" with meetingStatus {s}"));
        }
        if let Some(m) = &signs.error_message {
            line.push_str(&format!(": {m}"));
        }
        status_lines.push(line);
    }
    let device_lines: Vec<String> =
        device_errors.iter().map(|(t, name, m)| format!("{name} at {}: {m}", clock(*t))).collect();
    let mut network_lines = Vec::new();
    if outcome.reconnects > 0 {
        let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &signs.reconnect_statuses {
            *by_status.entry(s.as_str()).or_default() += 1;
        }
        let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} x{n}")).collect();
        let why = if statuses.is_empty() { String::new() } else { format!(" ({})", statuses.join(", ")) };
        network_lines.push(format!("reconnected {} time(s){why}", outcome.reconnects));
    }
    if !health.is_empty() {
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &health {
            *by_name.entry(s.name.as_str()).or_default() += 1;
        }
        let first = health.first().map_or(0, |s| s.at_ms);
        let names: Vec<String> = by_name.iter().map(|(n, c)| format!("{n} x{c}")).collect();
        network_lines.push(format!("{} from {}", names.join(", "), clock(first)));
    }
    if poor > 0 {
        network_lines.push(format!("poor connection count rose to {poor}"));
    }
    let rule = cause.rule();
    let mut evidence = match cause {
        Cause::DevicePermissionDenied | Cause::DeviceUnavailable => {
            [device_lines, status_lines, network_lines].concat()
        }
        Cause::Network => [status_lines, network_lines, device_lines].concat(),
        _ => [status_lines, device_lines, network_lines].concat(),
    };
    if let Some(v) = outcome.meeting_start_duration_ms {
        evidence.push(format!("started in {}", duration(v)));
    }
    if outcome.earlier_endings > 0 {
        evidence.push(format!("{} earlier ending(s) before this session", outcome.earlier_endings));
    }

    let failure = matches!(ending, Ending::JoinFailed | Ending::Dropped) && !cause.is_expected();
    let what = match (ending, outcome.meeting_duration_ms) {
        (Ending::JoinFailed, _) => "Failed to join".to_owned(),
        (Ending::Dropped, Some(d)) => format!("Dropped after {}", duration(d)),
        (Ending::Dropped, None) => "Dropped".to_owned(),
        (Ending::Ended, Some(d)) => format!("Ended after {}", duration(d)),
        (Ending::Ended, None) => "Ended".to_owned(),
        (Ending::Open, _) if last_start.is_some() => "Still in the meeting (or left without a final event)".to_owned(),
        (Ending::Open, _) => "No start or end seen".to_owned(),
    };
    let headline = if failure || !matches!(ending, Ending::Ended) || cause != Cause::Left {
        format!("{what}: {} ({})", rule.name, rule.meaning)
    } else {
        format!("{what}: the attendee left")
    };

    let platform = {
        let browser = [text(last, "browserName"), text(last, "browserMajorVersion")].into_iter().flatten();
        let os = [text(last, "osName"), text(last, "osVersion")].into_iter().flatten();
        let browser: Vec<String> = browser.collect();
        let os: Vec<String> = os.collect();
        match (browser.is_empty(), os.is_empty()) {
            (false, false) => format!("{} on {}", browser.join(" "), os.join(" ")),
            (true, false) => {
                let device = text(last, "deviceName").or_else(|| text(last, "deviceModel"));
                [device.unwrap_or_default(), os.join(" ")].join(" ").trim().to_owned()
            }
            _ => browser.join(" "),
        }
    };
    Some(AttendeeExplanation {
        attendee_id: last.attendee_id().unwrap_or_default().to_owned(),
        meeting_id: last.meeting_id().unwrap_or_default().to_owned(),
        external_user_id: text(last, "externalUserId"),
        sdk: [text(last, "sdkName"), text(last, "sdkVersion")].into_iter().flatten().collect::<Vec<_>>().join(" "),
        platform,
        timeline,
        outcome,
        verdict: Verdict { cause, failure, headline, meaning: rule.meaning, evidence, next: rule.next },
    })
}

/// The events of the attendee (meeting and attendee id) whose event is newest, and how many other attendees the
/// events hold: an external user id names one person, who may have joined many meetings.
pub fn latest_attendee(events: &[MeetingEvent]) -> (Vec<MeetingEvent>, usize) {
    let key = |e: &MeetingEvent| (e.meeting_id().map(str::to_owned), e.attendee_id().map(str::to_owned));
    let Some(newest) = events.iter().max_by_key(|e| e.timestamp_ms()).map(key) else { return (Vec::new(), 0) };
    let others: BTreeSet<_> = events.iter().map(key).filter(|k| *k != newest).collect();
    (events.iter().filter(|e| key(e) == newest).cloned().collect(), others.len())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingExplanation {
    pub meeting_id: String,
    pub attendees: Vec<AttendeeExplanation>,
    /// What the failed attendees had in common, and what that points at.
    pub findings: Vec<String>,
}

/// Failures this close together point at something they share.
const CLUSTER_MS: i64 = 30_000;

/// Explains a meeting from its events: each attendee, then what the failures had in common.
pub fn meeting(events: &[MeetingEvent]) -> Option<MeetingExplanation> {
    let mut by_attendee: BTreeMap<String, Vec<MeetingEvent>> = BTreeMap::new();
    for e in events {
        by_attendee.entry(e.attendee_id().unwrap_or("unknown").to_owned()).or_default().push(e.clone());
    }
    let mut attendees: Vec<AttendeeExplanation> = by_attendee.values().filter_map(|e| attendee(e)).collect();
    attendees
        .sort_by_key(|a| (a.outcome.requested_at_ms.or(a.timeline.first().map(|s| s.at_ms)), a.attendee_id.clone()));
    let meeting_id = attendees.first()?.meeting_id.clone();

    let failed: Vec<&AttendeeExplanation> = attendees.iter().filter(|a| a.verdict.failure).collect();
    let mut findings = Vec::new();
    let ends: Vec<i64> = failed.iter().filter_map(|a| a.outcome.ended_at_ms).collect();
    let spread = ends.iter().max().zip(ends.iter().min()).map(|(a, b)| a.saturating_sub(*b));
    match failed.len() {
        0 => findings.push(format!("No attendee failed ({} attendee(s)).", attendees.len())),
        1 if attendees.len() > 1 => findings.push(format!(
            "Only {} failed ({}) while {} other(s) did not: this points at that client (its device, network or \
             app), not at the meeting.",
            failed[0].attendee_id,
            failed[0].verdict.cause.as_str(),
            attendees.len() - 1
        )),
        1 => findings.push(format!("The only attendee failed ({}).", failed[0].verdict.cause.as_str())),
        n => match spread {
            Some(s) if s <= CLUSTER_MS => findings.push(format!(
                "{n} attendees failed within {} of each other: this points at the meeting or the service side \
                 (or a network they share), not at one client.",
                duration(s)
            )),
            _ => findings.push(format!(
                "{n} attendees failed at different times: read each verdict, the causes are likely unrelated."
            )),
        },
    }
    if failed.len() >= 2 {
        let causes: BTreeSet<&str> = failed.iter().map(|a| a.verdict.cause.as_str()).collect();
        if causes.len() == 1 {
            findings.push(format!("All failed with the same cause: {}.", causes.iter().next().unwrap_or(&"")));
        }
        type Field = fn(&AttendeeExplanation) -> String;
        let fields: [(&str, Field); 2] = [("SDK", |a| a.sdk.clone()), ("platform", |a| a.platform.clone())];
        for (label, value) in fields {
            let values: BTreeSet<String> = failed.iter().copied().map(value).collect();
            let others: BTreeSet<String> = attendees.iter().filter(|a| !a.verdict.failure).map(value).collect();
            // Only a contrast with attendees who stayed says anything about the SDK or platform.
            let shared = |v: &&String| values.len() == 1 && !v.is_empty() && !others.is_empty() && !others.contains(*v);
            if let Some(v) = values.iter().next().filter(shared) {
                findings.push(format!("Every failed attendee ran the {label} {v}, and no attendee who stayed did."));
            }
        }
    }
    Some(MeetingExplanation { meeting_id, attendees, findings })
}

/// `HH:MM:SS.mmm` UTC.
pub fn clock(ms: i64) -> String {
    let day = ms.rem_euclid(86_400_000);
    format!("{:02}:{:02}:{:02}.{:03}", day / 3_600_000, day / 60_000 % 60, day / 1000 % 60, day % 1000)
}

#[cfg(test)]
mod tests;
