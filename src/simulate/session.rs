//! One attendee session: its plan (what will happen and when, drawn when its meeting is created), its state as it
//! plays, and its events rendered as its SDK and upload style really send them.
//!
//! Shapes follow the fixtures captured from the real JS SDK and the Android and iOS sources: JS blog events carry the
//! common attributes and the SDK's live `meetingHistory` array (so an upload at meeting end has the whole session in
//! every event); Android adds `appState` and battery attributes and a `{meetingHistoryEventName, timestamp}` history
//! snapshot; iOS turns every value into a string, spells statuses in lowerCamel case, names device errors `*Error`,
//! and writes its history as one string. The native ingestion protocol carries only event-specific attributes.

use base64::Engine;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

use super::profile::{self, Profile, Sdk, Upload};
use super::random::{self, between, chance, log_normal_ms};
use super::scenario::Scenario;

/// Something that happens in a session (an SDK event, or a change only the SDK's state or history sees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    AudioInputSelected,
    AudioInputUnselected,
    VideoInputSelected,
    VideoInputUnselected,
    AudioInputFailed,
    VideoInputFailed,
    StartRequested,
    StartSucceeded,
    StartFailed { status: &'static str },
    AttendeePresenceReceived,
    SignalingDropped,
    Reconnected { status: &'static str, duration_ms: i64, signaling_ms: i64 },
    ReceivingAudioDropped,
    SendingAudioFailed,
    SendingAudioRecovered,
    Ended { status: &'static str },
    Failed { status: &'static str },
}

impl Ev {
    pub fn name(self) -> &'static str {
        match self {
            Self::AudioInputSelected => "audioInputSelected",
            Self::AudioInputUnselected => "audioInputUnselected",
            Self::VideoInputSelected => "videoInputSelected",
            Self::VideoInputUnselected => "videoInputUnselected",
            Self::AudioInputFailed => "audioInputFailed",
            Self::VideoInputFailed => "videoInputFailed",
            Self::StartRequested => "meetingStartRequested",
            Self::StartSucceeded => "meetingStartSucceeded",
            Self::StartFailed { .. } => "meetingStartFailed",
            Self::AttendeePresenceReceived => "attendeePresenceReceived",
            Self::SignalingDropped => "signalingDropped",
            Self::Reconnected { .. } => "meetingReconnected",
            Self::ReceivingAudioDropped => "receivingAudioDropped",
            Self::SendingAudioFailed => "sendingAudioFailed",
            Self::SendingAudioRecovered => "sendingAudioRecovered",
            Self::Ended { .. } => "meetingEnded",
            Self::Failed { .. } => "meetingFailed",
        }
    }

    /// Whether the SDK hands this to observers (and its uploader) as an event; otherwise it shows in the history
    /// (device selections on mobile) or only in counters (poor connections on mobile).
    pub fn is_event(self, sdk: Sdk) -> bool {
        // What both mobile SDKs hand over; iOS also its audio input failures.
        let mobile = matches!(
            self,
            Self::StartRequested
                | Self::StartSucceeded
                | Self::StartFailed { .. }
                | Self::Reconnected { .. }
                | Self::Ended { .. }
                | Self::Failed { .. }
                | Self::VideoInputFailed
        );
        match sdk {
            Sdk::Js => true,
            Sdk::Android => mobile,
            Sdk::Ios => mobile || self == Self::AudioInputFailed,
        }
    }

    fn in_history(self, sdk: Sdk) -> bool {
        self.is_event(sdk) || matches!(self, Self::AudioInputSelected | Self::VideoInputSelected)
    }

    /// Events the JS SDK's reporter sends at once, one request each; the others wait for its 5-second flush.
    fn js_important(self) -> bool {
        matches!(
            self,
            Self::Ended { .. }
                | Self::Failed { .. }
                | Self::StartFailed { .. }
                | Self::AudioInputFailed
                | Self::VideoInputFailed
                | Self::StartSucceeded
        )
    }
}

/// What a session does at a moment of its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The customer's backend created the attendee and registers its JoinToken with the gateway.
    Register,
    Occur(Ev),
    /// The native uploader's periodic flush.
    Flush,
    /// The client stops: the blog app posts what it collected, the JS SDK flushes by beacon, mobile SDKs flush.
    Stop,
}

/// A session's event as it happened: enough to render it later in any shape.
#[derive(Debug, Clone, Copy)]
pub struct Occurred {
    pub ev: Ev,
    pub at: i64,
    pub stamp: i64,
    retry: u32,
    poor: u32,
    signaling_ms: Option<i64>,
    history_len: usize,
}

/// A request the fleet wants made, with what the driver needs to send it and count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub endpoint: Endpoint,
    pub credential: Credential,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// One name per element of the body: the event name, the SIP method or status code, or `attendee`.
    pub kinds: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `POST /v1/meeting-events`: the blog sample's `{name, attributes}` arrays.
    MeetingEvents,
    /// `POST /v1/client-events`: the SDKs' own ingestion protocol.
    ClientEvents,
    /// `POST /v1/client-events?beacon=1`: the JS SDK's page-end flush.
    Beacon,
    /// `POST /v1/sip-messages`: Voice Connector SIP message log records.
    SipMessages,
    /// `POST /v1/admin/attendees`: JoinToken registrations by the customer's backend.
    Attendees,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Self::MeetingEvents => "/v1/meeting-events",
            Self::ClientEvents => "/v1/client-events",
            Self::Beacon => "/v1/client-events?beacon=1",
            Self::SipMessages => "/v1/sip-messages",
            Self::Attendees => "/v1/admin/attendees",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::MeetingEvents => "meeting_events",
            Self::ClientEvents => "client_events",
            Self::Beacon => "client_events_beacon",
            Self::SipMessages => "sip_messages",
            Self::Attendees => "admin_attendees",
        }
    }
}

/// The credentials a request carries, as a real deployment hands them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// None in the headers: a beacon, whose JoinToken is in its body.
    None,
    /// The customer's backend: the API key.
    ApiKey,
    /// The SDK's ingestion: `Authorization: Bearer <JoinToken>`.
    JoinToken(String),
    /// A blog-style app: an attendee token its backend minted (or, without a token secret, the API key).
    Attendee { meeting_id: String, attendee_id: String, external_user_id: String },
}

/// The meeting a session belongs to.
#[derive(Debug, Clone)]
pub struct MeetingInfo {
    pub meeting_id: String,
    pub external_meeting_id: String,
    pub size: usize,
}

/// One attendee's session.
#[derive(Debug)]
pub struct Session {
    meeting_id: String,
    external_meeting_id: String,
    pub attendee_id: String,
    pub user: String,
    pub profile: Profile,
    pub join_token: String,
    rng: StdRng,
    // The plan.
    requested_at: i64,
    succeeded_at: Option<i64>,
    start_ms: i64,
    ice_ms: i64,
    presence_at: Option<i64>,
    tiles: u32,
    tiles_from: i64,
    /// When the person switches to another app, leaving the meeting in the background (mobile).
    background_from: i64,
    audio_error: (&'static str, &'static str),
    video_error: (&'static str, &'static str, &'static str),
    battery: (&'static str, f64),
    low_power: bool,
    network: &'static str,
    // The state as it plays.
    retry: u32,
    poor: u32,
    signaling_ms: Option<i64>,
    history: Vec<(&'static str, i64)>,
    /// Blog uploads: every event so far. Native uploads: the events not yet flushed.
    pending: Vec<Occurred>,
}

/// A planned session: the session and its actions at their times (fleet milliseconds).
#[derive(Debug)]
pub struct Planned {
    pub session: Session,
    pub actions: Vec<(i64, Action)>,
}

/// Attendees per meeting: mostly small meetings, a few large ones.
const SIZES: &[(usize, u32)] = &[(1, 6), (2, 28), (3, 18), (4, 14), (5, 9), (6, 7), (8, 7), (10, 5), (15, 4), (25, 2)];

const MEETING_NAMES: &[&str] =
    &["standup", "sales-sync", "all-hands", "1on1", "design-review", "support-call", "interview", "sprint-planning"];

/// The interval of the native uploaders' periodic flush.
pub const FLUSH_MS: i64 = 5_000;

/// Plans a meeting that starts at `start` (fleet ms): its attendees' sessions, whole.
pub fn plan_meeting(rng: &mut StdRng, scenario: Scenario, seed: u64, users: u64, start: i64) -> Vec<Planned> {
    let meeting = MeetingInfo {
        meeting_id: random::uuid(rng),
        external_meeting_id: format!("{}-{}", MEETING_NAMES[between(rng, 0, 7) as usize], between(rng, 1, 999)),
        size: random::weighted(rng, SIZES),
    };
    // Meetings here last minutes, not the half hour of real ones, so that a run of a few minutes shows whole
    // sessions from join to end.
    let length = log_normal_ms(rng, 150_000.0, 0.7, 20_000, 40 * 60_000);
    let end = start + length;
    let host_ends = chance(rng, 0.7);
    let mut planned = Vec::with_capacity(meeting.size);
    for i in 0..meeting.size {
        let join = start
            + if i == 0 {
                between(rng, 0, 3_000)
            } else if chance(rng, 0.8) {
                log_normal_ms(rng, 8_000.0, 0.9, 300, length / 2)
            } else {
                between(rng, 0, length * 4 / 5)
            };
        let early = chance(rng, 0.15);
        let leave = if early {
            between(rng, join + (end - join) / 4, end)
        } else {
            end + if host_ends { between(rng, 0, 800) } else { between(rng, 0, 5_000) }
        };
        let user = between(rng, 0, users as i64 - 1) as u64;
        let mut person = random::stream(seed, 0x0005_EED0_0000 + user);
        let profile = Profile::draw(&mut person);
        let session_seed: u64 = rand::RngExt::random(rng);
        planned.push(plan_session(
            rng,
            scenario,
            &meeting,
            profile,
            format!("user-{user:05}@example.com"),
            random::stream(session_seed, 1),
            join,
            leave,
            host_ends && !early,
        ));
    }
    planned
}

#[allow(clippy::too_many_arguments)]
fn plan_session(
    rng: &mut StdRng,
    scenario: Scenario,
    meeting: &MeetingInfo,
    profile: Profile,
    user: String,
    mut own: StdRng,
    join: i64,
    leave: i64,
    ended_by_host: bool,
) -> Planned {
    let sdk = profile.sdk;
    let attendee_id = random::uuid(rng);
    // Chime's JoinTokens are base64url of "<attendeeId>:<secret>".
    let join_token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{attendee_id}:{}", random::uuid(&mut own)).as_bytes());
    let at_join = scenario.conditions(join);
    let mut actions = Vec::new();
    let audio_failed = chance(rng, if sdk == Sdk::Js { 0.03 } else { 0.012 });
    let video_failed = profile.video && chance(rng, 0.04);
    let audio_at = join - between(rng, 150, 900);
    if profile.upload == Upload::Native {
        // The backend creates the attendee (and its JoinToken) before the client has a session to report from.
        actions.push((audio_at - between(rng, 200, 1_500), Action::Register));
    }
    actions.push((audio_at, Action::Occur(if audio_failed { Ev::AudioInputFailed } else { Ev::AudioInputSelected })));
    if profile.video {
        let video = if video_failed { Ev::VideoInputFailed } else { Ev::VideoInputSelected };
        actions.push((audio_at + between(rng, 20, 400), Action::Occur(video)));
    }
    actions.push((join, Action::Occur(Ev::StartRequested)));

    let median_start = match sdk {
        Sdk::Js => 1_250.0,
        Sdk::Android => 1_900.0,
        Sdk::Ios => 1_650.0,
    } * at_join.start_slowdown;
    let start_ms = log_normal_ms(rng, median_start, 0.45, 250, 60_000);
    let ice_ms = log_normal_ms(rng, 280.0, 0.6, 20, start_ms.max(21) - 1);
    let signaling_ms = log_normal_ms(rng, 300.0 * at_join.start_slowdown, 0.5, 15, start_ms.max(16) - 1);
    let audio_error = profile::audio_error(rng);
    let video_error = profile::video_error(rng);
    let mut session = Session {
        meeting_id: meeting.meeting_id.clone(),
        external_meeting_id: meeting.external_meeting_id.clone(),
        attendee_id,
        user,
        join_token,
        requested_at: join,
        succeeded_at: None,
        start_ms,
        ice_ms,
        presence_at: None,
        tiles: 0,
        tiles_from: i64::MAX,
        background_from: i64::MAX,
        audio_error,
        video_error,
        battery: profile::battery(rng),
        low_power: chance(rng, 0.15),
        network: if chance(rng, 0.7) { "Wifi" } else { "Cellular" },
        retry: 0,
        poor: 0,
        signaling_ms: None,
        history: Vec::new(),
        pending: Vec::new(),
        rng: own,
        profile,
    };

    let stop;
    if chance(rng, at_join.join_failure) {
        let status = profile::join_failure(rng, sdk, at_join.outage);
        let after = if status == "MeetingEnded" || status == "AudioCallEnded" {
            log_normal_ms(rng, 300.0, 0.4, 50, 5_000)
        } else {
            log_normal_ms(rng, 2_500.0 * at_join.start_slowdown, 0.8, 100, 30_000)
        };
        // A signaling connection opened before most failures; the JS SDK then reports how long that took.
        session.signaling_ms = chance(rng, 0.6).then_some(signaling_ms.min(after));
        stop = join + after;
        actions.push((stop, Action::Occur(Ev::StartFailed { status })));
    } else {
        let succeeded = join + start_ms;
        session.succeeded_at = Some(succeeded);
        session.signaling_ms = Some(signaling_ms);
        actions.push((succeeded, Action::Occur(Ev::StartSucceeded)));
        let presence = succeeded + between(rng, 60, 450);
        if sdk == Sdk::Js {
            session.presence_at = Some(presence);
            actions.push((presence, Action::Occur(Ev::AttendeePresenceReceived)));
        }
        let others_on_video = (0..meeting.size.saturating_sub(1)).filter(|_| chance(rng, 0.45)).count() as u32;
        session.tiles = others_on_video.min(16) + u32::from(session.profile.video && !video_failed);
        session.tiles_from = succeeded + between(rng, 500, 8_000);

        let leave = leave.max(succeeded + 1_000);
        if sdk != Sdk::Js && chance(rng, 0.2) {
            session.background_from = between(rng, succeeded, leave);
        }
        let peak = scenario.peak();
        // The first drop, if any, by thinning a Poisson process at the scenario's peak rate.
        let mut end = (leave, None);
        let mut t = succeeded as f64;
        let peak_drops = peak.drops_per_minute / 60_000.0;
        loop {
            t += random::exponential_ms(rng, peak_drops);
            if t >= leave as f64 {
                break;
            }
            let c = scenario.conditions(t as i64);
            if chance(rng, c.drops_per_minute / peak.drops_per_minute) {
                end = (t as i64, Some(profile::drop_status(rng, sdk, c.outage, c.network)));
                break;
            }
        }
        let (last, dropped) = end;
        // Reconnections, each in full before the session's end.
        let mut t = succeeded as f64;
        let peak_reconnects = peak.reconnects_per_minute / 60_000.0;
        loop {
            t += random::exponential_ms(rng, peak_reconnects);
            let c = scenario.conditions(t as i64);
            let duration_ms = log_normal_ms(rng, 2_200.0, 0.6, 300, 20_000);
            if t as i64 + duration_ms >= last {
                break;
            }
            if chance(rng, c.reconnects_per_minute / peak.reconnects_per_minute) {
                let status = profile::reconnect_status(rng, sdk, c.outage, c.network);
                if sdk == Sdk::Js && status == "SignalingChannelClosedUnexpectedly" {
                    actions.push((t as i64, Action::Occur(Ev::SignalingDropped)));
                }
                let signaling_ms = log_normal_ms(rng, 320.0, 0.5, 15, 10_000);
                actions.push((
                    t as i64 + duration_ms,
                    Action::Occur(Ev::Reconnected { status, duration_ms, signaling_ms }),
                ));
                t += duration_ms as f64;
            }
        }
        // Poor-connection episodes (the JS SDK reports them as receivingAudioDropped).
        let mut t = succeeded as f64;
        let peak_poor = peak.poor_per_minute / 60_000.0;
        loop {
            t += random::exponential_ms(rng, peak_poor);
            if t as i64 >= last {
                break;
            }
            if chance(rng, scenario.conditions(t as i64).poor_per_minute / peak.poor_per_minute) {
                actions.push((t as i64, Action::Occur(Ev::ReceivingAudioDropped)));
            }
        }
        if sdk == Sdk::Js && chance(rng, 0.02) {
            let at = between(rng, succeeded, last);
            let recovered = at + between(rng, 2_000, 10_000);
            actions.push((at, Action::Occur(Ev::SendingAudioFailed)));
            if recovered < last {
                actions.push((recovered, Action::Occur(Ev::SendingAudioRecovered)));
            }
        }
        let ev = match dropped {
            Some(status) => Ev::Failed { status },
            None => Ev::Ended {
                status: match (sdk, ended_by_host) {
                    (Sdk::Js, true) => "MeetingEnded",
                    (Sdk::Js, false) => "Left",
                    (_, true) => "AudioCallEnded",
                    (_, false) => "OK",
                },
            },
        };
        actions.push((last, Action::Occur(ev)));
        stop = last;
    }
    if sdk == Sdk::Js && !audio_failed {
        actions.push((stop + between(rng, 20, 150), Action::Occur(Ev::AudioInputUnselected)));
    }
    if sdk == Sdk::Js && session.profile.video && !video_failed {
        actions.push((stop + between(rng, 20, 150), Action::Occur(Ev::VideoInputUnselected)));
    }
    actions.push((stop + 250, Action::Stop));
    if session.profile.upload == Upload::Native {
        actions.push((join + FLUSH_MS, Action::Flush));
    }
    actions.sort_by_key(|(at, _)| *at);
    Planned { session, actions }
}

impl Session {
    pub fn sdk(&self) -> Sdk {
        self.profile.sdk
    }

    /// The registration the customer's backend posts when it creates the attendee.
    pub fn registration(&self) -> Value {
        json!({
            "meetingId": self.meeting_id,
            "attendeeId": self.attendee_id,
            "joinToken": self.join_token,
            "externalUserId": self.user,
        })
    }

    pub fn credential(&self) -> Credential {
        match self.profile.upload {
            Upload::Native => Credential::JoinToken(self.join_token.clone()),
            Upload::Blog => Credential::Attendee {
                meeting_id: self.meeting_id.clone(),
                attendee_id: self.attendee_id.clone(),
                external_user_id: self.user.clone(),
            },
        }
    }

    /// Plays one event at `at` (fleet ms), stamped `stamp` (wall ms); returns it when the SDK reports it.
    pub fn occur(&mut self, ev: Ev, at: i64, stamp: i64) -> Option<Occurred> {
        match ev {
            Ev::Reconnected { signaling_ms, .. } => {
                self.retry += 1;
                self.signaling_ms = Some(signaling_ms);
            }
            Ev::ReceivingAudioDropped => self.poor += 1,
            _ => {}
        }
        let sdk = self.sdk();
        if ev.in_history(sdk) {
            self.history.push((ev.name(), stamp));
        }
        ev.is_event(sdk).then_some(Occurred {
            ev,
            at,
            stamp,
            retry: self.retry,
            poor: self.poor,
            signaling_ms: self.signaling_ms,
            history_len: self.history.len(),
        })
    }

    /// Whether the native JS uploader sends this event at once rather than at its next flush.
    pub fn sends_at_once(&self, ev: Ev) -> bool {
        self.sdk() == Sdk::Js && ev.js_important()
    }

    /// Whether the native uploader can send it at all: the JS SDK drops events with a boolean attribute
    /// (`signalingDropped` carries `signalingCloseWasClean`).
    pub fn native_sends(&self, ev: Ev) -> bool {
        !(self.sdk() == Sdk::Js && ev == Ev::SignalingDropped)
    }

    pub fn hold(&mut self, o: Occurred) {
        self.pending.push(o);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes up to `n` pending events, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<Occurred> {
        let n = n.min(self.pending.len());
        self.pending.drain(..n).collect()
    }

    fn tiles_at(&self, at: i64) -> u32 {
        if at >= self.tiles_from { self.tiles } else { 0 }
    }

    /// The event-specific attributes, typed (numbers, booleans), with this SDK's names and status casing.
    fn attributes(&self, o: &Occurred) -> Map<String, Value> {
        let mut a = Map::new();
        let sdk = self.sdk();
        let status = |s: &'static str| Value::String(sdk.status(s));
        if sdk == Sdk::Js {
            let state = |a: &mut Map<String, Value>| {
                let started = self.succeeded_at.unwrap_or(o.at);
                a.insert("meetingDurationMs".into(), json!((o.at - started).max(0)));
                if let Some(s) = o.signaling_ms {
                    a.insert("signalingOpenDurationMs".into(), json!(s));
                }
                a.insert("iceGatheringDurationMs".into(), json!(self.ice_ms));
                if let Some(p) = self.presence_at.filter(|p| o.at >= *p) {
                    a.insert("attendeePresenceDurationMs".into(), json!(p - self.requested_at));
                }
                a.insert("meetingStartDurationMs".into(), json!(self.start_ms));
                a.insert("maxVideoTileCount".into(), json!(self.tiles_at(o.at)));
                a.insert("poorConnectionCount".into(), json!(o.poor));
                a.insert("retryCount".into(), json!(o.retry));
            };
            match o.ev {
                Ev::StartSucceeded => {
                    a.insert("signalingOpenDurationMs".into(), json!(o.signaling_ms.unwrap_or_default()));
                    a.insert("iceGatheringDurationMs".into(), json!(self.ice_ms));
                    a.insert("meetingStartDurationMs".into(), json!(self.start_ms));
                    a.insert("maxVideoTileCount".into(), json!(0));
                    a.insert("poorConnectionCount".into(), json!(0));
                    a.insert("retryCount".into(), json!(0));
                }
                Ev::StartFailed { status: s } => {
                    if let Some(ms) = o.signaling_ms {
                        a.insert("signalingOpenDurationMs".into(), json!(ms));
                    }
                    a.insert("maxVideoTileCount".into(), json!(0));
                    a.insert("poorConnectionCount".into(), json!(0));
                    a.insert("retryCount".into(), json!(0));
                    a.insert("meetingStatus".into(), status(s));
                    a.insert("meetingErrorMessage".into(), json!(profile::js_error_message(s)));
                }
                Ev::AttendeePresenceReceived => {
                    a.insert("attendeePresenceDurationMs".into(), json!(o.at - self.requested_at));
                    a.insert("retryCount".into(), json!(o.retry));
                }
                Ev::AudioInputFailed => {
                    a.insert("audioInputErrorMessage".into(), json!(self.audio_error.0));
                }
                Ev::VideoInputFailed => {
                    a.insert("videoInputErrorMessage".into(), json!(self.video_error.0));
                }
                Ev::SignalingDropped => {
                    state(&mut a);
                    a.insert("signalingCloseCode".into(), json!(1006));
                    a.insert("signalingCloseReason".into(), json!(""));
                    a.insert("signalingCloseWasClean".into(), json!(false));
                }
                Ev::Reconnected { status: s, .. } | Ev::Ended { status: s } => {
                    state(&mut a);
                    a.insert("meetingStatus".into(), status(s));
                }
                Ev::Failed { status: s } => {
                    state(&mut a);
                    a.insert("meetingStatus".into(), status(s));
                    a.insert("meetingErrorMessage".into(), json!(profile::js_error_message(s)));
                }
                Ev::ReceivingAudioDropped | Ev::SendingAudioFailed | Ev::SendingAudioRecovered => state(&mut a),
                Ev::AudioInputSelected
                | Ev::AudioInputUnselected
                | Ev::VideoInputSelected
                | Ev::VideoInputUnselected
                | Ev::StartRequested => {}
            }
            return a;
        }
        // Android and iOS: the device's state on every event.
        let minutes = (o.at - self.requested_at).max(0) as f64 / 60_000.0;
        let (battery_state, level) = self.battery;
        let level = if battery_state == "Discharging" { (level - 0.004 * minutes).max(0.01) } else { level };
        let app_state = if o.at >= self.background_from { "Background" } else { "Active" };
        a.insert("appState".into(), json!(app_state));
        a.insert("batteryState".into(), json!(battery_state));
        a.insert("batteryLevel".into(), json!((level * 100.0).round() / 100.0));
        if sdk == Sdk::Ios {
            a.insert("lowPowerModeEnabled".into(), json!(self.low_power));
            a.insert("networkConnectionType".into(), json!(self.network));
        }
        let lifecycle = |a: &mut Map<String, Value>| {
            let (duration, start) = match self.succeeded_at {
                Some(s) => ((o.at - s).max(0), self.start_ms),
                // Android and iOS report 0 for a meeting that never started.
                None => (0, 0),
            };
            a.insert("maxVideoTileCount".into(), json!(self.tiles_at(o.at)));
            a.insert("retryCount".into(), json!(o.retry));
            a.insert("poorConnectionCount".into(), json!(o.poor));
            a.insert("meetingDurationMs".into(), json!(duration));
            a.insert("meetingStartDurationMs".into(), json!(start));
        };
        match o.ev {
            Ev::StartSucceeded => lifecycle(&mut a),
            Ev::Reconnected { status: s, duration_ms, .. } => {
                lifecycle(&mut a);
                a.insert("meetingReconnectDurationMs".into(), json!(duration_ms));
                a.insert("meetingStatus".into(), status(s));
            }
            Ev::StartFailed { status: s } | Ev::Ended { status: s } | Ev::Failed { status: s } => {
                lifecycle(&mut a);
                a.insert("meetingStatus".into(), status(s));
                a.insert("meetingErrorMessage".into(), status(s));
            }
            Ev::VideoInputFailed if sdk == Sdk::Ios => {
                a.insert("videoInputError".into(), json!(self.video_error.2));
            }
            Ev::VideoInputFailed => {
                a.insert("videoInputErrorMessage".into(), json!(self.video_error.1));
            }
            Ev::AudioInputFailed => {
                a.insert("audioInputError".into(), json!(self.audio_error.1));
            }
            _ => {}
        }
        a
    }

    /// The event as a blog-style app posts it: `{name, attributes}` with the common attributes and the history.
    pub fn blog_event(&self, o: &Occurred) -> Value {
        let p = &self.profile;
        let mut a = Map::new();
        let specific = self.attributes(o);
        match p.sdk {
            Sdk::Js => {
                let b = p.browser.as_ref();
                let version = b.map_or("", |b| b.version.as_str());
                a.insert("attendeeId".into(), json!(self.attendee_id));
                a.insert("browserMajorVersion".into(), json!(version.split('.').next().unwrap_or_default()));
                a.insert("browserName".into(), json!(b.map_or("", |b| b.name)));
                a.insert("browserVersion".into(), json!(version));
                a.insert("deviceName".into(), json!(p.device_name));
                a.insert("externalMeetingId".into(), json!(self.external_meeting_id));
                a.insert("externalUserId".into(), json!(self.user));
                // The SDK hands observers its live history array: at upload time it holds the whole session.
                let history: Vec<Value> =
                    self.history.iter().map(|(name, ts)| json!({"name": name, "timestampMs": ts})).collect();
                a.insert("meetingHistory".into(), Value::Array(history));
                a.insert("meetingId".into(), json!(self.meeting_id));
                a.insert("osName".into(), json!(p.os_name));
                a.insert("osVersion".into(), json!(p.os_version));
                a.insert("sdkVersion".into(), json!(p.sdk_version));
                a.insert("sdkName".into(), json!(p.sdk.name()));
                a.insert("timestampMs".into(), json!(o.stamp));
                a.extend(specific);
            }
            Sdk::Android | Sdk::Ios => {
                a.insert("timestampMs".into(), json!(o.stamp));
                a.extend(specific);
                self.mobile_metadata(&mut a);
                a.insert("externalUserId".into(), json!(self.user));
                a.insert("externalMeetingId".into(), json!(self.external_meeting_id));
                // The app asks for the history when the event comes: a snapshot that grows event by event.
                let history = &self.history[..o.history_len.min(self.history.len())];
                let history = if p.sdk == Sdk::Android {
                    Value::Array(
                        history
                            .iter()
                            .map(|(name, ts)| json!({"meetingHistoryEventName": name, "timestamp": ts}))
                            .collect(),
                    )
                } else {
                    let items: Vec<String> = history.iter().map(|(name, ts)| format!("{name}: {ts}")).collect();
                    Value::String(format!("[{}]", items.join(", ")))
                };
                a.insert("meetingHistory".into(), history);
                if p.sdk == Sdk::Ios {
                    // The iOS guide's upload turns every value into a string.
                    for v in a.values_mut() {
                        *v = match std::mem::take(v) {
                            Value::String(s) => Value::String(s),
                            other => Value::String(other.to_string()),
                        };
                    }
                }
            }
        }
        json!({"name": o.ev.name(), "attributes": a})
    }

    fn mobile_metadata(&self, a: &mut Map<String, Value>) {
        let p = &self.profile;
        let d = p.device.as_ref();
        a.insert("deviceName".into(), json!(p.device_name));
        a.insert("deviceManufacturer".into(), json!(d.map_or("", |d| d.manufacturer)));
        a.insert("deviceModel".into(), json!(d.map_or("", |d| d.model)));
        a.insert("mediaSdkVersion".into(), json!(d.map_or("", |d| d.media_sdk_version)));
        a.insert("osName".into(), json!(p.os_name));
        a.insert("osVersion".into(), json!(p.os_version));
        a.insert("sdkName".into(), json!(p.sdk.name()));
        a.insert("sdkVersion".into(), json!(p.sdk_version));
        a.insert("meetingId".into(), json!(self.meeting_id));
        a.insert("attendeeId".into(), json!(self.attendee_id));
    }

    /// The body of a native ingestion request holding `events`; with `beacon`, the JoinToken goes in the body.
    pub fn ingestion_body(&mut self, events: &[Occurred], beacon: bool) -> Value {
        let p = &self.profile;
        let mut metadata = Map::new();
        let groups: Vec<Value> = if p.sdk == Sdk::Js {
            let b = p.browser.as_ref();
            metadata.insert("browserName".into(), json!(b.map_or("", |b| b.name)));
            metadata.insert("browserVersion".into(), json!(b.map_or("", |b| b.version.as_str())));
            metadata.insert("deviceName".into(), json!(p.device_name));
            metadata.insert("osName".into(), json!(p.os_name));
            metadata.insert("osVersion".into(), json!(p.os_version));
            metadata.insert("sdkVersion".into(), json!(p.sdk_version));
            metadata.insert("sdkName".into(), json!(p.sdk.name()));
            metadata.insert("engineName".into(), json!(b.map_or("", |b| b.engine)));
            metadata.insert("engineMajorVersion".into(), json!(b.map_or("", |b| b.engine_major.as_str())));
            metadata.insert("meetingId".into(), json!(self.meeting_id));
            metadata.insert("attendeeId".into(), json!(self.attendee_id));
            // The JS SDK groups its payloads two by two.
            events
                .chunks(2)
                .map(|chunk| {
                    let payloads: Vec<Value> = chunk.iter().map(|o| self.payload(o, None)).collect();
                    json!({"type": "Meet", "v": 1, "payloads": payloads})
                })
                .collect()
        } else {
            self.mobile_metadata(&mut metadata);
            let upper = p.sdk == Sdk::Ios;
            let mut payloads = Vec::with_capacity(events.len());
            for o in events {
                // Android and iOS give each payload an id (iOS prints UUIDs in upper case).
                let id = random::uuid(&mut self.rng);
                payloads.push(self.payload(o, Some(if upper { id.to_uppercase() } else { id })));
            }
            vec![json!({
                "type": "Meet",
                "v": 1,
                "metadata": {"meetingId": self.meeting_id, "attendeeId": self.attendee_id},
                "payloads": payloads,
            })]
        };
        let mut body = json!({"metadata": metadata, "events": groups});
        if beacon {
            body["authorization"] = json!(self.join_token);
        }
        body
    }

    fn payload(&self, o: &Occurred, id: Option<String>) -> Value {
        let mut p = Map::new();
        p.insert("name".into(), json!(o.ev.name()));
        p.insert("ts".into(), json!(o.stamp));
        if let Some(id) = id {
            p.insert("id".into(), json!(id));
        }
        p.extend(self.attributes(o));
        Value::Object(p)
    }
}
