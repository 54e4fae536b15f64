//! The metric catalogue: which metrics a meeting event feeds, with units and dimensions.
//!
//! Distributions (`Values`/`Counts`, any percentile in CloudWatch):
//! - `meetingStartDurationMs` from `meetingStartSucceeded` with a positive duration, by `sdkName` exactly as the blog
//!   sample publishes it, plus the configured dimension sets;
//! - `signalingOpenDurationMs`, `iceGatheringDurationMs` (start succeeded), `attendeePresenceDurationMs`,
//!   `meetingDurationMs` and `poorConnectionCount` (session end), and `reconnectCount` per attendee session: the
//!   `meetingReconnected` entries of the ending event's history, or, when the history is missing or was cut, the
//!   `meetingReconnected` events counted for the session.
//!
//! Counts per window: every lifecycle and failure event under its own name (`meetingStartRequested`,
//! `meetingStartFailed`, `meetingFailed`, `meetingReconnected`, `audioInputFailed`, ...), fleet-wide and by
//! `sdkName`; failures also by `meetingStatus` or by error name (`NotAllowedError`).
//!
//! Causes: `meetingJoinFailureCause` (from `meetingStartFailed`) and `meetingDropCause` (from `meetingFailed`) count
//! by `cause`, and by `sdkName` and `cause`, with the rules of [`crate::cause`] that `chimewatch explain` uses. A
//! device error seen earlier in the session (`audioInputFailed` with `NotAllowedError`) is remembered for it.

use std::borrow::Cow;
use std::collections::HashMap;

use chimewatch_model::EventFields;
use chimewatch_model::event::keys;

use crate::cause::{self, Cause, Ending, Signs};

pub use crate::unit::Unit;

/// Dimension value for an attribute the event lacks.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FactValue {
    /// One value of a distribution.
    Sample(u64),
    /// One occurrence, summed per window.
    Occurrence,
    /// An amount added to the window's count (a gauge's level, summed across workers by CloudWatch).
    Amount(u64),
    /// One value of a mean (a ratio's 0 or 100, a call's duration), published as the window's mean weighted by
    /// how many values made it, so CloudWatch's `Average` across workers and late windows is exact.
    Mean(f64),
}

/// A dimension's name and value, borrowed where they can be (from the event, the configuration or the code).
pub type Dimension<'a> = (Cow<'a, str>, Cow<'a, str>);

/// One contribution of one event to one metric series.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact<'a> {
    pub metric: &'static str,
    pub unit: Unit,
    pub dimensions: Vec<Dimension<'a>>,
    pub value: FactValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueConfig {
    /// Dimension sets every distribution is published under (beyond `[sdkName]` for the start duration); the
    /// empty set is fleet-wide. Each set is a billed CloudWatch metric per distinct value combination.
    pub dimension_sets: Vec<Vec<String>>,
    /// A session's counted reconnects are forgotten when it has sent nothing for this long (event time).
    pub session_ttl_ms: i64,
    /// Most sessions counted at once; the least recently seen go first.
    pub max_sessions: usize,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self {
            dimension_sets: vec![vec![], vec!["sdkName".into()]],
            session_ttl_ms: 6 * 3600 * 1000,
            max_sessions: 1_000_000,
        }
    }
}

/// Lifecycle and health events counted per window.
const COUNTED: &[&str] = &[
    "meetingStartRequested",
    "meetingStartSucceeded",
    "meetingStartFailed",
    "meetingEnded",
    "meetingFailed",
    "meetingReconnected",
    "attendeePresenceReceived",
    "audioInputFailed",
    "videoInputFailed",
    "deviceLabelTriggerFailed",
    "signalingDropped",
    "receivingAudioDropped",
    "sendingAudioFailed",
    "sendingAudioRecovered",
];

/// What the catalogue remembers of a session until it ends.
#[derive(Debug, Clone, Copy, Default)]
struct Session {
    reconnects: u64,
    /// Health events (`signalingDropped`, ...) sent as events of their own.
    health: u32,
    seen_ms: i64,
    /// The latest device error the cause table knows (`NotAllowedError`), for the cause of a later failure: the
    /// failure's own event does not carry it.
    device_error: Option<&'static str>,
}

/// The catalogue, with the little state reconnect counting and causes need.
#[derive(Debug, Clone)]
pub struct Catalogue {
    config: CatalogueConfig,
    /// Per (meetingId, attendeeId).
    sessions: HashMap<(String, String), Session>,
}

/// A string, number or boolean attribute as a dimension value; [`UNKNOWN`] when missing, empty or nested.
fn attr<'a>(event: &'a impl EventFields, key: &str) -> Cow<'a, str> {
    match event.scalar_text(key) {
        Some(s) if !s.is_empty() => s,
        _ => Cow::Borrowed(UNKNOWN),
    }
}

/// A positive whole duration or count attribute.
fn positive(event: &impl EventFields, key: &str) -> Option<u64> {
    event.number(key).filter(|v| *v > 0.0 && v.is_finite()).map(|v| v.round() as u64)
}

/// The cause of a failure from its own event (status, error, history, poor connection count) and what the
/// session showed before it.
fn cause_of(event: &impl EventFields, ending: Ending, session: &Session, history: &[Cow<'_, str>]) -> Cause {
    let reconnects_in_history = history.iter().filter(|n| **n == "meetingReconnected").count();
    let signs = Signs {
        status: event.text(keys::MEETING_STATUS).map(Cow::into_owned),
        error_message: event.text("meetingErrorMessage").map(Cow::into_owned),
        device_errors: session.device_error.map(str::to_owned).into_iter().collect(),
        reconnects: reconnects_in_history.max(usize::try_from(session.reconnects).unwrap_or(usize::MAX)),
        reconnect_statuses: Vec::new(),
        health_events: history.iter().filter(|n| cause::HEALTH_EVENTS.contains(&n.as_ref())).count()
            + session.health as usize,
        poor_connection_count: event.number("poorConnectionCount").map_or(0, |v| v.max(0.0) as u64),
    };
    cause::classify(ending, &signs)
}

/// `NotAllowedError: Permission denied` -> `NotAllowedError`.
fn error_name(message: &str) -> String {
    let name = message.split(':').next().unwrap_or_default().trim();
    if name.is_empty() { UNKNOWN.to_owned() } else { crate::dimension::first_chars(name, 64).to_owned() }
}

/// `sdkName`, the dimension every count and the blog's start duration go by.
fn sdk_dimension(event: &impl EventFields) -> Dimension<'_> {
    (Cow::Borrowed(keys::SDK_NAME), attr(event, keys::SDK_NAME))
}

fn dims<'a>(event: &'a impl EventFields, set: &'a [String]) -> Vec<Dimension<'a>> {
    set.iter().map(|k| (Cow::Borrowed(k.as_str()), attr(event, k))).collect()
}

/// One value of a distribution under each configured dimension set.
fn distribution<'a>(
    config: &'a CatalogueConfig,
    event: &'a impl EventFields,
    metric: &'static str,
    value: u64,
    out: &mut Vec<Fact<'a>>,
) {
    let (unit, value) =
        (if metric.ends_with("Ms") { Unit::Milliseconds } else { Unit::Count }, FactValue::Sample(value));
    let sets = &config.dimension_sets;
    // What the blog sample publishes, so its dashboard keeps working.
    if metric == "meetingStartDurationMs" && !sets.iter().any(|s| s.len() == 1 && s[0] == keys::SDK_NAME) {
        let dimensions = vec![sdk_dimension(event)];
        out.push(Fact { metric, unit, dimensions, value });
    }
    for set in sets {
        out.push(Fact { metric, unit, dimensions: dims(event, set), value });
    }
}

/// One occurrence, fleet-wide and by SDK, and by the reason too when it has one.
fn count<'a>(
    event: &'a impl EventFields,
    metric: &'static str,
    reason: Option<(&'static str, Cow<'a, str>)>,
    out: &mut Vec<Fact<'a>>,
) {
    let mut push = |dimensions| out.push(Fact { metric, unit: Unit::Count, dimensions, value: FactValue::Occurrence });
    let sdk = sdk_dimension(event);
    push(Vec::new());
    push(vec![sdk.clone()]);
    if let Some((key, value)) = reason {
        let reason = (Cow::Borrowed(key), value);
        push(vec![reason.clone()]);
        push(vec![sdk, reason]);
    }
}

/// A cause count, by cause and by SDK and cause.
fn count_cause<'a>(event: &'a impl EventFields, metric: &'static str, cause: Cause, out: &mut Vec<Fact<'a>>) {
    let cause = (Cow::Borrowed("cause"), Cow::Borrowed(cause.as_str()));
    let sdk = sdk_dimension(event);
    for dimensions in [vec![cause.clone()], vec![sdk, cause]] {
        out.push(Fact { metric, unit: Unit::Count, dimensions, value: FactValue::Occurrence });
    }
}

fn session_key(event: &impl EventFields) -> Option<(String, String)> {
    Some((event.text(keys::MEETING_ID)?.into_owned(), event.text(keys::ATTENDEE_ID)?.into_owned()))
}

/// The session's state, created at its first need, seen at this event's time.
fn session_mut<'s>(
    sessions: &'s mut HashMap<(String, String), Session>,
    event: &impl EventFields,
) -> Option<&'s mut Session> {
    let session = sessions.entry(session_key(event)?).or_insert(Session { seen_ms: i64::MIN, ..Session::default() });
    session.seen_ms = session.seen_ms.max(event.event_time_ms().unwrap_or(0));
    Some(session)
}

impl Catalogue {
    pub fn new(config: CatalogueConfig) -> Self {
        Self { config, sessions: HashMap::new() }
    }

    /// The facts of one event. `history_complete` says whether its `meetingHistory` is whole (not cut by the caps).
    /// Their dimensions borrow from the configuration and the event, and are copied only for a new series; so the
    /// catalogue stays borrowed until they are added to the windows.
    pub fn facts<'a>(&'a mut self, event: &'a impl EventFields, history_complete: bool) -> Vec<Fact<'a>> {
        let Catalogue { config, sessions } = self;
        let mut out = Vec::new();
        let name = event.event_name();
        if let Some(metric) = COUNTED.iter().find(|m| **m == name) {
            let reason = match name {
                "meetingStartFailed" | "meetingFailed" | "meetingReconnected" => {
                    Some(("meetingStatus", attr(event, "meetingStatus")))
                }
                "audioInputFailed" => Some(("errorName", error_name(&attr(event, "audioInputErrorMessage")).into())),
                "videoInputFailed" => Some(("errorName", error_name(&attr(event, "videoInputErrorMessage")).into())),
                _ => None,
            };
            count(event, metric, reason, &mut out);
        }
        match name {
            "meetingStartSucceeded" => {
                for metric in ["meetingStartDurationMs", "signalingOpenDurationMs", "iceGatheringDurationMs"] {
                    if let Some(v) = positive(event, metric) {
                        distribution(config, event, metric, v, &mut out);
                    }
                }
            }
            "attendeePresenceReceived" => {
                if let Some(v) = positive(event, "attendeePresenceDurationMs") {
                    distribution(config, event, "attendeePresenceDurationMs", v, &mut out);
                }
            }
            "meetingReconnected" => {
                if let Some(session) = session_mut(sessions, event) {
                    session.reconnects += 1;
                }
            }
            "audioInputFailed" | "videoInputFailed" | "deviceLabelTriggerFailed" => {
                let known = cause::DEVICE_ERROR_ATTRIBUTES.iter().find_map(|k| cause::error_name(&event.text(k)?));
                if let Some(error) = known
                    && let Some(session) = session_mut(sessions, event)
                {
                    session.device_error = Some(error);
                }
            }
            health if cause::HEALTH_EVENTS.contains(&health) => {
                if let Some(session) = session_mut(sessions, event) {
                    session.health = session.health.saturating_add(1);
                }
            }
            "meetingStartFailed" => {
                let session = session_key(event).and_then(|k| sessions.remove(&k)).unwrap_or_default();
                let history = event.entry_names(keys::MEETING_HISTORY).unwrap_or_default();
                let cause = cause_of(event, Ending::JoinFailed, &session, &history);
                count_cause(event, "meetingJoinFailureCause", cause, &mut out);
            }
            "meetingEnded" | "meetingFailed" => {
                if let Some(v) = positive(event, "meetingDurationMs") {
                    distribution(config, event, "meetingDurationMs", v, &mut out);
                }
                let poor = event.number("poorConnectionCount").map_or(0, |v| v.max(0.0) as u64);
                if event.has("poorConnectionCount") {
                    distribution(config, event, "poorConnectionCount", poor, &mut out);
                }
                let session = session_key(event).and_then(|k| sessions.remove(&k)).unwrap_or_default();
                // Read once, and only when something reads it: a cause, or reconnects from a whole history.
                let failed = name == "meetingFailed";
                let history = (failed || history_complete).then(|| event.entry_names(keys::MEETING_HISTORY)).flatten();
                if failed {
                    let cause = cause_of(event, Ending::Dropped, &session, history.as_deref().unwrap_or_default());
                    count_cause(event, "meetingDropCause", cause, &mut out);
                }
                let counted = session.reconnects;
                let from_history = history
                    .filter(|_| history_complete)
                    .map(|names| names.iter().filter(|n| *n == "meetingReconnected").count() as u64);
                distribution(config, event, "reconnectCount", from_history.unwrap_or(counted), &mut out);
            }
            _ => {}
        }
        out
    }

    /// Forgets sessions silent since before `event_time_ms - ttl`, and the oldest beyond the cap.
    pub fn prune(&mut self, event_time_ms: i64) {
        let horizon = event_time_ms - self.config.session_ttl_ms;
        self.sessions.retain(|_, s| s.seen_ms >= horizon);
        if self.sessions.len() > self.config.max_sessions {
            let mut seen: Vec<i64> = self.sessions.values().map(|s| s.seen_ms).collect();
            seen.sort_unstable();
            let cut = seen[self.sessions.len() - self.config.max_sessions];
            self.sessions.retain(|_, s| s.seen_ms >= cut);
        }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use chimewatch_model::{IndexedEvent, MeetingEvent};

    use super::*;

    /// An event as the aggregator reads it from the stream (the model's tests hold both forms to the same answers).
    fn event(name: &str, attributes: Value) -> IndexedEvent {
        let mut a = json!({ "meetingId": "m1", "attendeeId": "a1", "sdkName": "amazon-chime-sdk-js", "osName": "Mac OS", "timestampMs": 1_000 });
        a.as_object_mut().unwrap().extend(attributes.as_object().unwrap().clone());
        IndexedEvent::of(&MeetingEvent { name: name.into(), attributes: a.as_object().unwrap().clone() })
    }

    fn summary(facts: &[Fact]) -> Vec<String> {
        facts
            .iter()
            .map(|f| {
                let dims: Vec<String> = f.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let value = match f.value {
                    FactValue::Sample(v) => format!("{v}"),
                    FactValue::Occurrence => "+1".into(),
                    FactValue::Amount(n) => format!("+{n}"),
                    FactValue::Mean(v) => format!("~{v}"),
                };
                format!("{} [{}] {value}", f.metric, dims.join(","))
            })
            .collect()
    }

    fn check(name: &str, attributes: Value, expect: &[&str]) {
        let mut c = Catalogue::new(CatalogueConfig::default());
        assert_eq!(summary(&c.facts(&event(name, attributes), true)), expect);
    }

    #[test]
    fn a_start_feeds_its_durations_by_sdk_name_and_fleet_wide() {
        check(
            "meetingStartSucceeded",
            json!({ "meetingStartDurationMs": 1234, "signalingOpenDurationMs": 200.4, "iceGatheringDurationMs": 0 }),
            &[
                "meetingStartSucceeded [] +1",
                "meetingStartSucceeded [sdkName=amazon-chime-sdk-js] +1",
                "meetingStartDurationMs [] 1234",
                "meetingStartDurationMs [sdkName=amazon-chime-sdk-js] 1234",
                "signalingOpenDurationMs [] 200",
                "signalingOpenDurationMs [sdkName=amazon-chime-sdk-js] 200",
            ],
        );
    }

    #[test]
    fn the_blogs_sdk_name_dimension_is_kept_whatever_the_configured_sets() {
        let mut c = Catalogue::new(CatalogueConfig {
            dimension_sets: vec![vec!["sdkName".into(), "osName".into()]],
            ..CatalogueConfig::default()
        });
        let succeeded = event("meetingStartSucceeded", json!({ "meetingStartDurationMs": 900 }));
        let facts = c.facts(&succeeded, true);
        assert_eq!(
            summary(&facts)[2..],
            [
                "meetingStartDurationMs [sdkName=amazon-chime-sdk-js] 900",
                "meetingStartDurationMs [sdkName=amazon-chime-sdk-js,osName=Mac OS] 900"
            ]
        );
    }

    #[test]
    fn failures_are_counted_by_status_and_error_name() {
        check(
            "meetingStartFailed",
            json!({ "meetingStatus": "AudioCallAtCapacity" }),
            &[
                "meetingStartFailed [] +1",
                "meetingStartFailed [sdkName=amazon-chime-sdk-js] +1",
                "meetingStartFailed [meetingStatus=AudioCallAtCapacity] +1",
                "meetingStartFailed [sdkName=amazon-chime-sdk-js,meetingStatus=AudioCallAtCapacity] +1",
                "meetingJoinFailureCause [cause=atCapacity] +1",
                "meetingJoinFailureCause [sdkName=amazon-chime-sdk-js,cause=atCapacity] +1",
            ],
        );
        check(
            "audioInputFailed",
            json!({ "audioInputErrorMessage": "NotAllowedError: Permission denied" }),
            &[
                "audioInputFailed [] +1",
                "audioInputFailed [sdkName=amazon-chime-sdk-js] +1",
                "audioInputFailed [errorName=NotAllowedError] +1",
                "audioInputFailed [sdkName=amazon-chime-sdk-js,errorName=NotAllowedError] +1",
            ],
        );
    }

    #[test]
    fn causes_come_from_the_failure_and_what_the_session_showed_before() {
        let mut c = Catalogue::new(CatalogueConfig { dimension_sets: vec![vec![]], ..CatalogueConfig::default() });
        let causes = |facts: Vec<Fact>| -> Vec<String> {
            summary(&facts).into_iter().filter(|f| f.contains("Cause [cause=")).collect()
        };
        // The permission error arrives in its own event; the join failure that follows is generic.
        c.facts(
            &event("audioInputFailed", json!({ "audioInputErrorMessage": "NotAllowedError: Permission denied" })),
            true,
        );
        let failed = event("meetingStartFailed", json!({ "meetingStatus": "TaskFailed" }));
        let failed = c.facts(&failed, true);
        assert_eq!(causes(failed), ["meetingJoinFailureCause [cause=devicePermissionDenied] +1"]);
        assert_eq!(c.sessions(), 0, "the session ended");
        // A drop whose history shows the connection failing.
        let history = json!({ "meetingStatus": "TaskFailed", "meetingHistory": [
            { "name": "signalingDropped", "timestampMs": 1 },
            { "name": "meetingFailed", "timestampMs": 2 },
        ] });
        assert_eq!(causes(c.facts(&event("meetingFailed", history), true)), ["meetingDropCause [cause=network] +1"]);
        // A normal end is not counted as a cause.
        assert!(causes(c.facts(&event("meetingEnded", json!({ "meetingStatus": "Left" })), true)).is_empty());
    }

    #[test]
    fn never_started_zero_durations_and_unknown_events_feed_nothing_beyond_their_count() {
        check(
            "meetingStartSucceeded",
            json!({ "meetingStartDurationMs": 0 }),
            &["meetingStartSucceeded [] +1", "meetingStartSucceeded [sdkName=amazon-chime-sdk-js] +1"],
        );
        check("someFutureEvent", json!({ "meetingStartDurationMs": 10 }), &[]);
    }

    #[test]
    fn reconnects_come_from_the_history_or_are_counted_per_session() {
        let history = json!({ "meetingDurationMs": 60_000, "poorConnectionCount": 2, "meetingHistory": [
            { "name": "meetingStartRequested", "timestampMs": 1 },
            { "name": "meetingReconnected", "timestampMs": 2 },
            { "name": "meetingReconnected", "timestampMs": 3 },
        ] });
        let mut c = Catalogue::new(CatalogueConfig { dimension_sets: vec![vec![]], ..CatalogueConfig::default() });
        let facts = summary(&c.facts(&event("meetingEnded", history.clone()), true));
        assert_eq!(facts[2..], ["meetingDurationMs [] 60000", "poorConnectionCount [] 2", "reconnectCount [] 2"]);

        // No history (or a cut one): the session's meetingReconnected events are counted instead.
        c.facts(&event("meetingReconnected", json!({ "meetingStatus": "ConnectionHealthReconnect" })), true);
        c.facts(&event("meetingReconnected", json!({ "meetingStatus": "ConnectionHealthReconnect" })), true);
        c.facts(&event("meetingReconnected", json!({ "meetingStatus": "ConnectionHealthReconnect" })), true);
        assert_eq!(c.sessions(), 1);
        let facts = summary(&c.facts(&event("meetingFailed", history), false));
        assert!(facts.contains(&"reconnectCount [] 3".to_owned()), "{facts:?}");
        assert_eq!(c.sessions(), 0, "the session ended");
    }

    #[test]
    fn silent_sessions_are_forgotten() {
        let mut c = Catalogue::new(CatalogueConfig { max_sessions: 2, ..CatalogueConfig::default() });
        for (attendee, t) in [("a", 1_000), ("b", 2_000), ("c", 3_000)] {
            c.facts(&event("meetingReconnected", json!({ "attendeeId": attendee, "timestampMs": t })), true);
        }
        c.prune(3_000);
        assert_eq!(c.sessions(), 2, "the least recently seen went beyond the cap");
        c.prune(3_000 + 6 * 3600 * 1000);
        assert_eq!(c.sessions(), 1);
    }
}
