//! Who the simulated attendees are: SDKs, versions, browsers, devices and operating systems, in proportions like a
//! real fleet's, and the status names, error messages and casing each SDK really uses.

use rand::rngs::StdRng;

use super::random::{between, chance, weighted};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sdk {
    Js,
    Android,
    Ios,
}

impl Sdk {
    pub fn name(self) -> &'static str {
        match self {
            Self::Js => "amazon-chime-sdk-js",
            Self::Android => "amazon-chime-sdk-android",
            Self::Ios => "amazon-chime-sdk-ios",
        }
    }

    /// A status name as this SDK spells it: iOS in lowerCamel case, JS and Android in PascalCase.
    pub fn status(self, pascal: &'static str) -> String {
        if self != Self::Ios {
            return pascal.to_owned();
        }
        match pascal {
            "OK" => "ok".to_owned(),
            // iOS names Android's NetworkBecamePoor this way.
            "NetworkBecamePoor" => "networkBecomePoor".to_owned(),
            _ => {
                let mut chars = pascal.chars();
                chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
            }
        }
    }
}

/// How the app hands its events to chimewatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// The SDK's own event ingestion, pointed at the gateway (no event code in the app).
    Native,
    /// The blog sample's way: the app's observer collects `{name, attributes}` and posts them when the meeting stops.
    Blog,
}

/// A browser, as the JS SDK reports it (ua-parser names; Chromium versions are the reduced `N.0.0.0`).
#[derive(Debug, Clone)]
pub struct Browser {
    pub name: &'static str,
    pub version: String,
    pub engine: &'static str,
    pub engine_major: String,
}

/// An Android or iOS device.
#[derive(Debug, Clone)]
pub struct Device {
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub media_sdk_version: &'static str,
}

/// One person's client: the same person always shows up with the same one.
#[derive(Debug, Clone)]
pub struct Profile {
    pub sdk: Sdk,
    pub sdk_version: &'static str,
    pub upload: Upload,
    pub os_name: &'static str,
    pub os_version: String,
    /// The JS SDK's `deviceName` ("Unavailable" when the browser does not say), or "manufacturer model" on mobile.
    pub device_name: String,
    pub browser: Option<Browser>,
    pub device: Option<Device>,
    /// Whether the person turns the camera on.
    pub video: bool,
}

/// Share of each SDK among attendees.
const SDKS: &[(Sdk, u32)] = &[(Sdk::Js, 70), (Sdk::Android, 15), (Sdk::Ios, 15)];

/// (browser, os, os version, device name, engine, engine major, weight); versions picked per person below.
#[derive(Clone, Copy)]
struct Desktop {
    browser: &'static str,
    os: &'static str,
    os_versions: &'static [&'static str],
    device: &'static str,
    engine: &'static str,
}

const BROWSERS: &[(Desktop, u32)] = &[
    (Desktop { browser: "Chrome", os: "Windows", os_versions: &["10"], device: "Unavailable", engine: "Blink" }, 30),
    (
        Desktop {
            browser: "Chrome",
            os: "Mac OS",
            os_versions: &["10.15.7"],
            device: "Apple Macintosh",
            engine: "Blink",
        },
        16,
    ),
    (Desktop { browser: "Edge", os: "Windows", os_versions: &["10"], device: "Unavailable", engine: "Blink" }, 14),
    (Desktop { browser: "Firefox", os: "Windows", os_versions: &["10"], device: "Unavailable", engine: "Gecko" }, 5),
    (
        Desktop {
            browser: "Firefox",
            os: "Mac OS",
            os_versions: &["10.15"],
            device: "Apple Macintosh",
            engine: "Gecko",
        },
        2,
    ),
    (
        Desktop {
            browser: "Safari",
            os: "Mac OS",
            os_versions: &["10.15.7"],
            device: "Apple Macintosh",
            engine: "WebKit",
        },
        10,
    ),
    (
        Desktop {
            browser: "Mobile Safari",
            os: "iOS",
            os_versions: &["26.1", "18.6.2", "18.5", "17.7"],
            device: "Apple iPhone",
            engine: "WebKit",
        },
        8,
    ),
    // Chrome on Android reports the reduced user agent: Android 10, device "K".
    (Desktop { browser: "Chrome", os: "Android", os_versions: &["10"], device: "K", engine: "Blink" }, 6),
    (
        Desktop {
            browser: "Chrome",
            os: "Linux",
            os_versions: &["Unavailable"],
            device: "Unavailable",
            engine: "Blink",
        },
        3,
    ),
];

const JS_VERSIONS: &[(&str, u32)] = &[("3.32.0", 45), ("3.31.0", 25), ("3.30.0", 15), ("3.29.0", 10), ("3.28.0", 5)];
const ANDROID_VERSIONS: &[((&str, &str), u32)] =
    &[(("0.25.0", "0.24.1"), 55), (("0.24.0", "0.23.2"), 30), (("0.23.1", "0.22.0"), 15)];
const IOS_VERSIONS: &[((&str, &str), u32)] =
    &[(("0.27.1", "0.24.0"), 55), (("0.26.2", "0.23.2"), 30), (("0.25.1", "0.22.0"), 15)];

const ANDROID_DEVICES: &[((&str, &str), u32)] = &[
    (("samsung", "SM-S928B"), 14),
    (("samsung", "SM-S921B"), 12),
    (("samsung", "SM-A546B"), 12),
    (("samsung", "SM-G991B"), 8),
    (("Google", "Pixel 8"), 12),
    (("Google", "Pixel 9 Pro"), 8),
    (("motorola", "moto g54 5G"), 8),
    (("OnePlus", "CPH2581"), 6),
    (("Xiaomi", "23129RAA4G"), 6),
];
const ANDROID_OS: &[(&str, u32)] = &[("15", 35), ("14", 35), ("13", 20), ("12", 10)];
const IOS_DEVICES: &[(&str, u32)] = &[
    ("iPhone17,1", 14),
    ("iPhone17,3", 12),
    ("iPhone16,2", 16),
    ("iPhone15,3", 14),
    ("iPhone14,7", 14),
    ("iPad14,3", 6),
];
const IOS_OS: &[(&str, u32)] = &[("26.1", 40), ("18.6.2", 35), ("18.5", 15), ("17.7", 10)];

impl Profile {
    /// The client of one person, drawn from that person's own generator.
    pub fn draw(rng: &mut StdRng) -> Self {
        let sdk = weighted(rng, SDKS);
        let video = chance(rng, 0.45);
        match sdk {
            Sdk::Js => {
                let d = weighted(rng, BROWSERS);
                let major = match d.browser {
                    "Chrome" => between(rng, 140, 142).to_string(),
                    "Edge" => between(rng, 140, 142).to_string(),
                    "Firefox" => between(rng, 143, 145).to_string(),
                    _ => ["26", "18"][between(rng, 0, 1) as usize].to_owned(),
                };
                let version = match d.engine {
                    "Blink" => format!("{major}.0.0.0"),
                    "Gecko" => format!("{major}.0"),
                    _ if major == "26" => "26.1".to_owned(),
                    _ => "18.6".to_owned(),
                };
                let engine_major = match d.engine {
                    "WebKit" => "605".to_owned(),
                    _ => major,
                };
                let os_version = if d.os == "iOS" {
                    // Mobile Safari's version follows the system's.
                    if version.starts_with("26") { "26.1" } else { "18.6.2" }.to_owned()
                } else {
                    d.os_versions[between(rng, 0, d.os_versions.len() as i64 - 1) as usize].to_owned()
                };
                Self {
                    sdk,
                    sdk_version: weighted(rng, JS_VERSIONS),
                    upload: if chance(rng, 0.65) { Upload::Native } else { Upload::Blog },
                    os_name: d.os,
                    os_version,
                    device_name: d.device.to_owned(),
                    browser: Some(Browser { name: d.browser, version, engine: d.engine, engine_major }),
                    device: None,
                    video,
                }
            }
            Sdk::Android => {
                let (sdk_version, media_sdk_version) = weighted(rng, ANDROID_VERSIONS);
                let (manufacturer, model) = weighted(rng, ANDROID_DEVICES);
                Self {
                    sdk,
                    sdk_version,
                    upload: if chance(rng, 0.5) { Upload::Native } else { Upload::Blog },
                    os_name: "Android",
                    os_version: weighted(rng, ANDROID_OS).to_owned(),
                    device_name: format!("{manufacturer} {model}"),
                    browser: None,
                    device: Some(Device { manufacturer, model, media_sdk_version }),
                    video,
                }
            }
            Sdk::Ios => {
                let (sdk_version, media_sdk_version) = weighted(rng, IOS_VERSIONS);
                let model = weighted(rng, IOS_DEVICES);
                Self {
                    sdk,
                    sdk_version,
                    upload: if chance(rng, 0.5) { Upload::Native } else { Upload::Blog },
                    os_name: "iOS",
                    os_version: weighted(rng, IOS_OS).to_owned(),
                    device_name: format!("Apple {model}"),
                    browser: None,
                    device: Some(Device { manufacturer: "Apple", model, media_sdk_version }),
                    video,
                }
            }
        }
    }
}

/// Why joins fail when nothing is wrong with the service (PascalCase; see [`Sdk::status`] for iOS).
pub fn join_failure(rng: &mut StdRng, sdk: Sdk, outage: bool) -> &'static str {
    match (sdk, outage) {
        (Sdk::Js, false) => weighted(
            rng,
            &[
                ("MeetingEnded", 30),
                ("TaskFailed", 20),
                ("SignalingRequestFailed", 15),
                ("AudioCallAtCapacity", 10),
                ("SignalingBadRequest", 10),
                ("AudioAuthenticationRejected", 10),
                ("RealtimeApiFailed", 5),
            ],
        ),
        (Sdk::Js, true) => weighted(
            rng,
            &[
                ("SignalingInternalServerError", 35),
                ("AudioServiceUnavailable", 25),
                ("AudioInternalServerError", 20),
                ("SignalingRequestFailed", 15),
                ("MeetingEnded", 5),
            ],
        ),
        (_, false) => weighted(
            rng,
            &[
                ("AudioCallEnded", 35),
                ("AudioCallAtCapacity", 15),
                ("AudioAuthenticationRejected", 15),
                ("AudioServiceUnavailable", 15),
                ("AudioDisconnected", 20),
            ],
        ),
        (_, true) => weighted(
            rng,
            &[
                ("AudioServiceUnavailable", 40),
                ("AudioInternalServerError", 35),
                ("AudioDisconnected", 20),
                ("AudioCallEnded", 5),
            ],
        ),
    }
}

/// Why a joined attendee is dropped (meetingFailed).
pub fn drop_status(rng: &mut StdRng, sdk: Sdk, outage: bool, network: bool) -> &'static str {
    match (sdk, outage, network) {
        (Sdk::Js, true, _) => weighted(
            rng,
            &[
                ("AudioServiceUnavailable", 35),
                ("SignalingInternalServerError", 30),
                ("AudioInternalServerError", 25),
                ("TaskFailed", 10),
            ],
        ),
        (Sdk::Js, false, true) => weighted(
            rng,
            &[("ConnectionHealthReconnect", 45), ("AudioDisconnected", 35), ("SignalingRequestFailed", 20)],
        ),
        (Sdk::Js, false, false) => weighted(
            rng,
            &[
                ("TaskFailed", 25),
                ("AudioDisconnected", 20),
                ("ConnectionHealthReconnect", 20),
                ("SignalingRequestFailed", 15),
                ("AudioJoinedFromAnotherDevice", 10),
                ("ICEGatheringTimeoutWorkaround", 5),
                ("RealtimeApiFailed", 5),
            ],
        ),
        (_, true, _) => weighted(
            rng,
            &[("AudioServiceUnavailable", 40), ("AudioInternalServerError", 35), ("AudioServerHungup", 25)],
        ),
        (_, false, true) => {
            weighted(rng, &[("AudioDisconnected", 45), ("ConnectionHealthReconnect", 30), ("NetworkBecamePoor", 25)])
        }
        (_, false, false) => weighted(
            rng,
            &[
                ("AudioDisconnected", 35),
                ("AudioServerHungup", 25),
                ("AudioJoinedFromAnotherDevice", 20),
                ("AudioInternalServerError", 20),
            ],
        ),
    }
}

/// The status that made an attendee reconnect.
pub fn reconnect_status(rng: &mut StdRng, sdk: Sdk, outage: bool, network: bool) -> &'static str {
    match (sdk, outage || network) {
        (Sdk::Js, false) => weighted(
            rng,
            &[
                ("ConnectionHealthReconnect", 40),
                ("SignalingChannelClosedUnexpectedly", 35),
                ("ICEGatheringTimeoutWorkaround", 15),
                ("SignalingInternalServerError", 5),
                ("AudioServiceUnavailable", 5),
            ],
        ),
        (Sdk::Js, true) if outage => weighted(
            rng,
            &[
                ("SignalingInternalServerError", 40),
                ("AudioServiceUnavailable", 30),
                ("SignalingChannelClosedUnexpectedly", 30),
            ],
        ),
        (Sdk::Js, true) => weighted(
            rng,
            &[
                ("ConnectionHealthReconnect", 50),
                ("SignalingChannelClosedUnexpectedly", 40),
                ("ICEGatheringTimeoutWorkaround", 10),
            ],
        ),
        (_, false) => weighted(
            rng,
            &[
                ("NetworkBecamePoor", 40),
                ("ConnectionHealthReconnect", 35),
                ("AudioServerHungup", 15),
                ("AudioInternalServerError", 10),
            ],
        ),
        (_, true) if outage => weighted(
            rng,
            &[("AudioServerHungup", 45), ("AudioInternalServerError", 35), ("ConnectionHealthReconnect", 20)],
        ),
        (_, true) => weighted(rng, &[("NetworkBecamePoor", 55), ("ConnectionHealthReconnect", 45)]),
    }
}

/// What the JS SDK puts in `meetingErrorMessage` for a failure status.
pub fn js_error_message(status: &str) -> &'static str {
    match status {
        "MeetingEnded" => "The meeting already ended.",
        "TaskFailed" => "ReceiveAudioInputTask failed: no ice candidates were gathered",
        "SignalingRequestFailed" => "The signaling connection was closed with code 1006 and reason: ",
        "SignalingBadRequest" => "The signaling request was rejected: 400 Bad Request",
        "SignalingInternalServerError" => {
            "The signaling connection was closed with code 4500 and reason: Internal Server Error"
        }
        "AudioCallAtCapacity" => "The meeting is at capacity.",
        "AudioAuthenticationRejected" => "The meeting rejected the attendee's credentials.",
        "AudioServiceUnavailable" => "The audio service is unavailable.",
        "AudioInternalServerError" => "The audio service encountered an internal server error.",
        "AudioDisconnected" => "The audio connection was lost.",
        "AudioJoinedFromAnotherDevice" => "The attendee joined from another device.",
        "ConnectionHealthReconnect" => "The connection health check failed: no audio packets received.",
        "ICEGatheringTimeoutWorkaround" => "ICE gathering timed out.",
        "RealtimeApiFailed" => "A realtime API callback threw an error.",
        _ => "The meeting failed.",
    }
}

/// `audioInputFailed` errors: (JS `audioInputErrorMessage`, iOS `audioInputError`).
pub fn audio_error(rng: &mut StdRng) -> (&'static str, &'static str) {
    weighted(
        rng,
        &[
            (("NotAllowedError: Permission denied", "audioPermissionDenied"), 60),
            (("NotReadableError: Could not start audio source", "audioDeviceUnavailable"), 20),
            (("NotFoundError: Requested device not found", "audioDeviceUnavailable"), 15),
            (("OverconstrainedError: Cannot satisfy constraints", "audioDeviceUnavailable"), 5),
        ],
    )
}

/// `videoInputFailed` errors: (JS message, Android `videoInputErrorMessage`, iOS `videoInputError`).
pub fn video_error(rng: &mut StdRng) -> (&'static str, &'static str, &'static str) {
    weighted(
        rng,
        &[
            (("NotReadableError: Could not start video source", "SystemFailure", "systemFailure"), 50),
            (("NotAllowedError: Permission denied", "PermissionError", "permissionError"), 35),
            (("NotFoundError: Requested device not found", "ConfigurationFailure", "configurationFailure"), 15),
        ],
    )
}

/// Whether the phone is charging, and how full its battery is (Android and iOS report both).
pub fn battery(rng: &mut StdRng) -> (&'static str, f64) {
    let state = weighted(rng, &[("Discharging", 60), ("Charging", 25), ("Full", 5), ("NotCharging", 10)]);
    let level = if state == "Full" { 1.0 } else { between(rng, 8, 99) as f64 / 100.0 };
    (state, level)
}
