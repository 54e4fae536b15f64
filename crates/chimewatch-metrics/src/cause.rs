//! Why a session failed, dropped or ended: one rule table over the meeting status names of the three SDKs and the
//! device error names browsers and devices report, shared by `chimewatch explain` and the aggregator's
//! `meetingDropCause` / `meetingJoinFailureCause` counts, so the dashboards and the explanations never disagree.
//!
//! Status names are matched after normalization (iOS `audioCallAtCapacity` is `AudioCallAtCapacity` by then) and
//! without regard to case, so a raw iOS name matches too. The README's "Why did it fail?" prints [`RULES`].

use serde::Serialize;

/// A likely cause, as a CloudWatch dimension value (`cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// The attendee left, or the app stopped the session with `OK`.
    Left,
    /// The same attendee joined from another device or tab; this one was let go. Not a failure.
    JoinedFromAnotherDevice,
    /// The meeting was ended (by the host or `DeleteMeeting`).
    MeetingEnded,
    /// The attendee was removed (`DeleteAttendee`) or moved out of a primary meeting.
    Removed,
    /// The meeting or a video source was at capacity.
    AtCapacity,
    /// The join token or request was refused.
    AuthenticationRejected,
    /// The TURN service refused the session's credentials.
    TurnCredentialsRefused,
    /// The browser or OS denied microphone or camera access.
    DevicePermissionDenied,
    /// A microphone, camera or speaker was missing, busy or not responding.
    DeviceUnavailable,
    /// The connection to the media or signalling service failed or became too poor.
    Network,
    /// The Chime service answered with a server-side error.
    ServerError,
    /// The client SDK failed on its own (a task failed, SDP it could not use).
    ClientError,
    /// Nothing in the table matched.
    Unknown,
}

impl Cause {
    pub const ALL: [Cause; 13] = [
        Cause::Left,
        Cause::JoinedFromAnotherDevice,
        Cause::MeetingEnded,
        Cause::Removed,
        Cause::AtCapacity,
        Cause::AuthenticationRejected,
        Cause::TurnCredentialsRefused,
        Cause::DevicePermissionDenied,
        Cause::DeviceUnavailable,
        Cause::Network,
        Cause::ServerError,
        Cause::ClientError,
        Cause::Unknown,
    ];

    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        self.rule().name
    }

    /// The rule of this cause in [`RULES`].
    pub fn rule(self) -> &'static Rule {
        RULES.iter().find(|r| r.cause == self).unwrap_or(&RULES[RULES.len() - 1])
    }

    /// Whether the session ended as the attendee or the meeting intended (not a failure of anything).
    pub fn is_expected(self) -> bool {
        matches!(self, Cause::Left | Cause::JoinedFromAnotherDevice | Cause::MeetingEnded | Cause::Removed)
    }
}

/// One row of the table: a cause, the statuses and error names that point at it, and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub cause: Cause,
    pub name: &'static str,
    /// Meeting status names (JS and Android PascalCase; iOS lowerCamel matches without regard to case).
    pub statuses: &'static [&'static str],
    /// Device error names (the text before `:` of `audioInputErrorMessage` and the like, or words in it).
    pub errors: &'static [&'static str],
    pub meaning: &'static str,
    pub next: &'static str,
}

/// The table, in the order rules are tried for a status; device errors are tried only when the status says
/// nothing more specific (see [`classify`]).
pub const RULES: &[Rule] = &[
    Rule {
        cause: Cause::Left,
        name: "left",
        statuses: &["OK", "Left"],
        errors: &[],
        meaning: "the attendee left, or the app stopped the session",
        next: "nothing: this is how a session should end",
    },
    Rule {
        cause: Cause::JoinedFromAnotherDevice,
        name: "joinedFromAnotherDevice",
        statuses: &["AudioJoinedFromAnotherDevice"],
        errors: &[],
        meaning: "the same attendee joined from another device or tab, which took over",
        next: "nothing, unless the user did not mean to: then check that the app does not join twice",
    },
    Rule {
        cause: Cause::MeetingEnded,
        name: "meetingEnded",
        statuses: &["MeetingEnded", "AudioCallEnded"],
        errors: &[],
        meaning: "the meeting was ended (by the host, or DeleteMeeting)",
        next: "check who ended the meeting (CloudTrail DeleteMeeting) if it was not expected",
    },
    Rule {
        cause: Cause::Removed,
        name: "removed",
        statuses: &[
            "AudioAttendeeRemoved",
            "AudioVideoWasRemovedFromPrimaryMeeting",
            "AudioVideoDisconnectedWhilePromoted",
        ],
        errors: &[],
        meaning: "the attendee was removed (DeleteAttendee) or demoted from a primary meeting",
        next: "check who removed the attendee (CloudTrail DeleteAttendee) if it was not expected",
    },
    Rule {
        cause: Cause::AtCapacity,
        name: "atCapacity",
        statuses: &[
            "AudioCallAtCapacity",
            "VideoCallAtSourceCapacity",
            "VideoAtCapacityViewOnly",
            "VideoCallSwitchToViewOnly",
        ],
        errors: &[],
        meaning: "the meeting was full, or its video senders were at their limit",
        next: "split the meeting, or use media replication / view-only attendees for large audiences",
    },
    Rule {
        cause: Cause::AuthenticationRejected,
        name: "authenticationRejected",
        statuses: &["AudioAuthenticationRejected", "SignalingBadRequest"],
        errors: &[],
        meaning: "the join token was refused: expired, for another meeting, or the attendee was deleted",
        next: "create the attendee again and join with its new token; check the app does not reuse old tokens",
    },
    Rule {
        cause: Cause::TurnCredentialsRefused,
        name: "turnCredentialsRefused",
        statuses: &["TURNCredentialsForbidden"],
        errors: &[],
        meaning: "the TURN control service refused the session's credentials",
        next: "join again with a fresh attendee token; if it repeats, the meeting may have ended",
    },
    Rule {
        cause: Cause::DevicePermissionDenied,
        name: "devicePermissionDenied",
        statuses: &[],
        errors: &["NotAllowedError", "PermissionDeniedError", "SecurityError", "permission"],
        meaning: "the browser or OS denied microphone or camera access",
        next: "ask the user to allow the microphone and camera for this site (or app) and join again",
    },
    Rule {
        cause: Cause::DeviceUnavailable,
        name: "deviceUnavailable",
        statuses: &["AudioInputDeviceNotResponding", "AudioOutputDeviceNotResponding"],
        errors: &[
            "NotReadableError",
            "TrackStartError",
            "NotFoundError",
            "DevicesNotFoundError",
            "OverconstrainedError",
            "AbortError",
            "not responding",
            "busy",
        ],
        meaning: "a microphone, camera or speaker was missing, busy in another app, or not responding",
        next: "close other apps using the device, pick another device, or reconnect it",
    },
    Rule {
        cause: Cause::Network,
        name: "network",
        statuses: &[
            "SignalingChannelClosedUnexpectedly",
            "SignalingRequestFailed",
            "ConnectionHealthReconnect",
            "NetworkBecamePoor",
            "AudioDisconnected",
            "AudioDisconnectAudio",
            "ICEGatheringTimeoutWorkaround",
        ],
        errors: &[],
        meaning: "the signalling or media connection failed or became too poor (ICE, WebSocket, packet loss)",
        next: "check the attendee's network: firewalls must allow UDP 3478 and TCP 443 to the media region; \
               VPNs and congested Wi-Fi show as rising poor connection counts",
    },
    Rule {
        cause: Cause::ServerError,
        name: "serverError",
        statuses: &[
            "AudioInternalServerError",
            "AudioServiceUnavailable",
            "AudioServerHungup",
            "SignalingInternalServerError",
            "RealtimeApiFailed",
            "VideoServiceFailed",
            "VideoServiceUnavailable",
        ],
        errors: &[],
        meaning: "the Chime media or signalling service answered with an error",
        next: "retry the join; if many attendees see it at once, check the AWS Health Dashboard and open a case \
               with the meeting and attendee ids",
    },
    Rule {
        cause: Cause::ClientError,
        name: "clientError",
        statuses: &["TaskFailed", "IncompatibleSDP", "EncodedTransformManagerFailed", "NoAttendeePresent"],
        errors: &[],
        meaning: "the client SDK failed on its own (a join task failed, media it could not negotiate)",
        next: "read meetingErrorMessage; update the SDK and browser, and check the app's use of the SDK",
    },
    Rule {
        cause: Cause::Unknown,
        name: "unknown",
        statuses: &["Unknown"],
        errors: &[],
        meaning: "no rule matched the status or the errors",
        next: "read the timeline and meetingErrorMessage; a status this table lacks may be new in the SDK",
    },
];

/// The rule a status name points at, if any (without regard to case, so iOS lowerCamel names match).
pub fn by_status(status: &str) -> Option<&'static Rule> {
    let status = status.trim();
    RULES.iter().find(|r| r.statuses.iter().any(|s| s.eq_ignore_ascii_case(status)))
}

/// The device rule an error message points at: its name (`NotAllowedError: ...`) or a word in it.
pub fn by_error(message: &str) -> Option<&'static Rule> {
    let error = error_name(message)?;
    RULES.iter().find(|r| r.errors.contains(&error))
}

/// The table's name for the device error a message reports (`NotAllowedError`), if the table knows one.
pub fn error_name(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    RULES.iter().flat_map(|r| r.errors).copied().find(|e| lower.contains(&e.to_ascii_lowercase()))
}

/// Events (or history entries) that say the connection had trouble.
pub const HEALTH_EVENTS: &[&str] = &[
    "signalingDropped",
    "receivingAudioDropped",
    "sendingAudioFailed",
    "videoClientSignalingDropped",
    "contentShareSignalingDropped",
];

/// Attributes holding a device error message (iOS `*Error` keys are `*ErrorMessage` after normalization).
pub const DEVICE_ERROR_ATTRIBUTES: &[&str] =
    &["audioInputErrorMessage", "videoInputErrorMessage", "deviceLabelTriggerErrorMessage"];

/// How a session stopped, as far as its events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// `meetingStartFailed`: it never started.
    JoinFailed,
    /// `meetingFailed`: it started, then stopped with a failure status.
    Dropped,
    /// `meetingEnded`: it stopped without a failure status.
    Ended,
    /// No ending event (yet): still in the meeting, or the client vanished before it could say.
    Open,
}

/// What the classifier looks at: the ending's status and error, and the trouble seen along the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signs {
    pub status: Option<String>,
    pub error_message: Option<String>,
    /// Device error messages seen in the session (`audioInputFailed`, `videoInputFailed`, ...).
    pub device_errors: Vec<String>,
    /// Reconnections, however they are known (events or history).
    pub reconnects: usize,
    /// The statuses that triggered the reconnections whose events arrived.
    pub reconnect_statuses: Vec<String>,
    /// `signalingDropped`, `receivingAudioDropped`, `sendingAudioFailed` and the like.
    pub health_events: usize,
    pub poor_connection_count: u64,
}

/// The likely cause of how a session stopped, or of the trouble it had when it ended as intended or is still open.
pub fn classify(ending: Ending, signs: &Signs) -> Cause {
    let status_rule = signs.status.as_deref().and_then(by_status);
    // In the meeting's own message only a device error NAME counts (`NotAllowedError: ...`): words such as "busy"
    // or "permission", and an `AbortError` of a request, describe servers and the network as often as devices.
    let error_rule = signs.error_message.as_deref().and_then(|m| {
        let name = m.split(':').next().unwrap_or_default().trim();
        let named = |e: &&str| e.ends_with("Error") && *e != "AbortError" && e.eq_ignore_ascii_case(name);
        RULES.iter().find(|r| r.errors.iter().any(named))
    });
    let device_rule = || signs.device_errors.iter().rev().find_map(|m| by_error(m));
    let network_signs = signs.health_events > 0 || signs.poor_connection_count > 0 || signs.reconnects > 0;
    match ending {
        Ending::JoinFailed | Ending::Dropped => {
            let generic = status_rule.is_none_or(|r| matches!(r.cause, Cause::ClientError | Cause::Unknown));
            let specific = if generic { error_rule.or_else(device_rule) } else { None };
            match (specific, status_rule) {
                (Some(rule), _) | (None, Some(rule)) => {
                    // A task that failed after the connection kept failing is the network, not the SDK.
                    if rule.cause == Cause::ClientError && ending == Ending::Dropped && network_signs {
                        Cause::Network
                    } else {
                        rule.cause
                    }
                }
                (None, None) if network_signs => Cause::Network,
                (None, None) => Cause::Unknown,
            }
        }
        Ending::Ended | Ending::Open => {
            // It ended as intended (or has not ended): the cause is the trouble along the way, if any.
            if let Some(rule) = device_rule() {
                rule.cause
            } else if signs.reconnects > 0 || signs.health_events > 0 {
                signs.reconnect_statuses.iter().rev().find_map(|s| by_status(s)).map_or(Cause::Network, |r| r.cause)
            } else if let Some(rule) = status_rule {
                rule.cause
            } else if ending == Ending::Ended {
                Cause::Left
            } else {
                Cause::Unknown
            }
        }
    }
}

/// The table as Markdown, for the README (a test keeps the README's copy the same).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| cause | statuses (iOS: the same in lowerCamel) | device errors | meaning | what to do |\n");
    out.push_str("|---|---|---|---|---|\n");
    let code = |items: &[&str]| items.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
    for r in RULES {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.name,
            code(r.statuses),
            code(r.errors),
            r.meaning,
            r.next
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signs(status: Option<&str>) -> Signs {
        Signs { status: status.map(str::to_owned), ..Signs::default() }
    }

    #[test]
    fn every_cause_has_one_rule_and_no_status_or_error_names_two() {
        for cause in Cause::ALL {
            assert_eq!(RULES.iter().filter(|r| r.cause == cause).count(), 1, "{cause:?}");
            assert_eq!(cause.rule().cause, cause);
        }
        let mut names: Vec<String> =
            RULES.iter().flat_map(|r| r.statuses.iter().chain(r.errors)).map(|s| s.to_ascii_lowercase()).collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "a status or error in two rules");
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../../README.md");
        let table = markdown_table();
        assert!(readme.contains(&table), "the README's cause table differs from the rules; it should read:\n{table}");
    }

    #[test]
    fn statuses_match_in_any_sdks_casing() {
        assert_eq!(by_status("audioCallAtCapacity").map(|r| r.cause), Some(Cause::AtCapacity));
        assert_eq!(by_status("TURNCredentialsForbidden").map(|r| r.cause), Some(Cause::TurnCredentialsRefused));
        assert_eq!(by_status("networkBecamePoor").map(|r| r.cause), Some(Cause::Network));
        assert_eq!(by_status("SomethingNew"), None);
    }

    #[test]
    fn a_generic_failure_status_gives_way_to_a_device_error() {
        let mut s = signs(Some("TaskFailed"));
        s.device_errors.push("NotAllowedError: Permission denied".into());
        assert_eq!(classify(Ending::JoinFailed, &s), Cause::DevicePermissionDenied);
        // A specific status wins over a device error.
        s.status = Some("AudioCallAtCapacity".into());
        assert_eq!(classify(Ending::JoinFailed, &s), Cause::AtCapacity);
    }

    #[test]
    fn words_in_the_meetings_own_message_are_not_device_errors() {
        for message in ["the server is busy", "AbortError: The operation was aborted", "permission check failed"] {
            let s =
                Signs { status: Some("TaskFailed".into()), error_message: Some(message.into()), ..Signs::default() };
            assert_eq!(classify(Ending::JoinFailed, &s), Cause::ClientError, "{message}");
        }
        let s = Signs {
            status: Some("TaskFailed".into()),
            error_message: Some("NotReadableError: Could not start audio source".into()),
            ..Signs::default()
        };
        assert_eq!(classify(Ending::JoinFailed, &s), Cause::DeviceUnavailable);
    }

    #[test]
    fn a_drop_after_poor_connections_is_the_network() {
        let s = Signs { status: Some("TaskFailed".into()), poor_connection_count: 4, ..Signs::default() };
        assert_eq!(classify(Ending::Dropped, &s), Cause::Network);
        assert_eq!(classify(Ending::Dropped, &signs(Some("TaskFailed"))), Cause::ClientError);
        assert_eq!(classify(Ending::Dropped, &signs(None)), Cause::Unknown);
    }

    #[test]
    fn a_normal_end_is_left_unless_there_was_trouble() {
        assert_eq!(classify(Ending::Ended, &signs(Some("Left"))), Cause::Left);
        assert_eq!(
            classify(Ending::Ended, &signs(Some("AudioJoinedFromAnotherDevice"))),
            Cause::JoinedFromAnotherDevice
        );
        let s = Signs {
            status: Some("Left".into()),
            reconnects: 1,
            reconnect_statuses: vec!["SignalingChannelClosedUnexpectedly".into()],
            ..Signs::default()
        };
        assert_eq!(classify(Ending::Ended, &s), Cause::Network);
        assert_eq!(classify(Ending::Open, &Signs::default()), Cause::Unknown);
    }
}
