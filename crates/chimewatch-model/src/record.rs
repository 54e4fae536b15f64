//! The record format on the stream: versioned, self-describing JSON, one record per event or SIP message.
//!
//! `{"kind": "meetingEvent" | "sipMessage", "v": 1, "receivedAtMs": ..., ...}`. JSON keeps `stream dump` and any
//! third-party consumer readable without a schema; `kind` tells the two record types apart, and `v` lets a reader
//! refuse records newer than it understands instead of misreading them. A reader also meets KPL aggregates and gzip
//! CloudWatch Logs envelopes on the same stream; both are told apart by their first bytes (`{` here).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{EventError, MeetingEvent, NormalizedEvent, RejectKind, Truncation};
use crate::sip::SipLogRecord;

/// The record version this build writes and the newest it reads.
pub const RECORD_VERSION: u32 = 1;

/// How the records this build writes begin (serde writes an internally tagged enum's tag first).
pub(crate) const MEETING_EVENT_PREFIX: &[u8] = br#"{"kind":"meetingEvent","#;
const SIP_MESSAGE_PREFIX: &[u8] = br#"{"kind":"sipMessage","#;

/// How an event reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ingest {
    /// A JSON array of `{name, attributes}` (the blog sample's upload, `/meetingevents` or `/v1/meeting-events`).
    Batch,
    /// The Chime SDKs' own event ingestion protocol (`/v1/client-events`).
    SdkIngestion,
    /// A SIP message log record posted to `/v1/sip-messages`.
    SipPost,
    /// A CloudWatch Logs subscription envelope read from the stream.
    LogSubscription,
}

impl Ingest {
    pub const ALL: [Self; 4] = [Self::Batch, Self::SdkIngestion, Self::SipPost, Self::LogSubscription];

    /// The name the record format gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::SdkIngestion => "sdkIngestion",
            Self::SipPost => "sipPost",
            Self::LogSubscription => "logSubscription",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    MeetingEvent(MeetingEventRecord),
    SipMessage(SipMessageRecord),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingEventRecord {
    pub v: u32,
    pub received_at_ms: i64,
    pub ingest: Ingest,
    pub event: MeetingEvent,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub original: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Truncation::is_empty")]
    pub truncation: Truncation,
    /// How the SDK delivered the event (ingestion protocol only): its payload id and re-send expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// Delivery details of an event sent with the SDKs' ingestion protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Present on events re-sent from the device's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SipMessageRecord {
    pub v: u32,
    pub received_at_ms: i64,
    pub ingest: Ingest,
    pub record: SipLogRecord,
}

/// Why bytes on the stream are not a record this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a chimewatch record: it does not start with '{{' (first byte 0x{first:02x})")]
    NotARecord { first: u8 },
    #[error("record version {found} is newer than this build reads ({RECORD_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("malformed chimewatch record: {0}")]
    Malformed(String),
}

impl Record {
    pub fn meeting_event(n: NormalizedEvent, ingest: Ingest, received_at_ms: i64) -> Self {
        Self::MeetingEvent(MeetingEventRecord {
            v: RECORD_VERSION,
            received_at_ms,
            ingest,
            event: n.event,
            original: n.original,
            truncation: n.truncation,
            delivery: None,
        })
    }

    /// A record of an event sent with the SDKs' ingestion protocol, keeping its delivery details.
    pub fn client_event(e: crate::ingestion::ClientEvent, received_at_ms: i64) -> Self {
        let delivery = (e.id.is_some() || e.ttl.is_some()).then_some(Delivery { id: e.id, ttl: e.ttl });
        match Self::meeting_event(e.normalized, Ingest::SdkIngestion, received_at_ms) {
            Self::MeetingEvent(r) => Self::MeetingEvent(MeetingEventRecord { delivery, ..r }),
            other => other,
        }
    }

    pub fn sip_message(record: SipLogRecord, ingest: Ingest, received_at_ms: i64) -> Self {
        Self::SipMessage(SipMessageRecord { v: RECORD_VERSION, received_at_ms, ingest, record })
    }

    /// Event time: when the client says the event happened, or when the SIP message was captured.
    pub fn event_time_ms(&self) -> Option<i64> {
        match self {
            Self::MeetingEvent(r) => r.event.timestamp_ms(),
            Self::SipMessage(r) => Some(r.record.event_timestamp),
        }
    }

    pub fn received_at_ms(&self) -> i64 {
        match self {
            Self::MeetingEvent(r) => r.received_at_ms,
            Self::SipMessage(r) => r.received_at_ms,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string and every number finite.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Encodes, rejecting a record larger than `max_bytes` (a Kinesis record holds at most 1 MiB).
    pub fn encode_bounded(&self, max_bytes: usize) -> Result<Vec<u8>, EventError> {
        let bytes = self.encode();
        if bytes.len() > max_bytes {
            return Err(EventError::new(
                "",
                RejectKind::TooLarge,
                format!(
                    "event is {} bytes once normalized and capped; a record holds at most {max_bytes}",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(b'{') => {}
            first => {
                return Err(DecodeError::NotARecord { first: first.copied().unwrap_or(0) });
            }
        }
        // The records this build writes start with their kind: those are read straight into their type. The general
        // way, for any other key order, has serde buffer the whole record before it can pick the variant.
        let parsed = if bytes.starts_with(MEETING_EVENT_PREFIX) {
            serde_json::from_slice::<MeetingEventRecord>(bytes).map(Self::MeetingEvent)
        } else if bytes.starts_with(SIP_MESSAGE_PREFIX) {
            serde_json::from_slice::<SipMessageRecord>(bytes).map(Self::SipMessage)
        } else {
            serde_json::from_slice::<Record>(bytes)
        };
        match parsed {
            Ok(record) => {
                let v = match &record {
                    Self::MeetingEvent(r) => r.v,
                    Self::SipMessage(r) => r.v,
                };
                if v > RECORD_VERSION {
                    return Err(DecodeError::UnsupportedVersion { found: v });
                }
                Ok(record)
            }
            Err(e) => {
                // A newer version may have changed the shape: report the version rather than the shape.
                #[derive(Deserialize)]
                struct Header {
                    v: u32,
                }
                match serde_json::from_slice::<Header>(bytes) {
                    Ok(h) if h.v > RECORD_VERSION => Err(DecodeError::UnsupportedVersion { found: h.v }),
                    _ => Err(DecodeError::Malformed(e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Limits, normalize};
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn ingest_names_are_the_record_formats() {
        for ingest in Ingest::ALL {
            assert_eq!(serde_json::to_value(ingest).unwrap(), ingest.as_str());
        }
    }

    fn sample() -> Record {
        let n = normalize(
            json!({"name": "meetingStartFailed", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": "1763712000000", "meetingStatus": "audioCallAtCapacity"}}),
            &Limits::default(),
            1_763_712_000_500,
        )
        .unwrap();
        Record::meeting_event(n, Ingest::Batch, 1_763_712_000_500)
    }

    #[test]
    fn encoding_is_readable_json() {
        let text = String::from_utf8(sample().encode()).unwrap();
        assert!(text.starts_with(r#"{"kind":"meetingEvent","v":1,"receivedAtMs":1763712000500,"ingest":"batch","event":{"name":"meetingStartFailed""#), "{text}");
        assert!(
            text.contains(r#""original":{"timestampMs":"1763712000000","meetingStatus":"audioCallAtCapacity"}"#),
            "{text}"
        );
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Record::decode(b"\x1f\x8b").unwrap_err(), DecodeError::NotARecord { first: 0x1f });
        assert_eq!(Record::decode(b"").unwrap_err(), DecodeError::NotARecord { first: 0 });
        assert_eq!(
            Record::decode(br#"{"kind":"hologram","v":7}"#).unwrap_err(),
            DecodeError::UnsupportedVersion { found: 7 }
        );
        let mut newer = serde_json::to_value(sample()).unwrap();
        newer["v"] = json!(2);
        assert_eq!(
            Record::decode(&serde_json::to_vec(&newer).unwrap()).unwrap_err(),
            DecodeError::UnsupportedVersion { found: 2 }
        );
        assert!(
            matches!(Record::decode(br#"{"kind":"meetingEvent","v":1}"#), Err(DecodeError::Malformed(m)) if m.contains("missing field"))
        );
    }

    #[test]
    fn numbers_survive_the_round_trip_exactly() {
        // Found by fuzzing: an integer beyond u64 is parsed as a float, and without serde_json's float_roundtrip
        // that float came back one ULP off after encoding and decoding.
        let body = r#"{"name": "x", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": 1763712000000,
            "meetingReconnectDurationMs": 11113111111100000000000000000000016349854643146152210, "v": 0.1}}"#;
        let n = normalize(crate::json::parse_strict(body).unwrap(), &Limits::default(), 1_763_712_000_500).unwrap();
        let record = Record::meeting_event(n, Ingest::Batch, 1);
        let Record::MeetingEvent(back) = Record::decode(&record.encode()).unwrap() else { panic!("kind changed") };
        assert_eq!(Record::MeetingEvent(back), record);
    }

    #[test]
    fn bounded_encoding() {
        let len = sample().encode().len();
        assert!(sample().encode_bounded(len).is_ok());
        let err = sample().encode_bounded(len - 1).unwrap_err();
        assert_eq!(err.kind, RejectKind::TooLarge);
    }

    fn arbitrary_record() -> impl Strategy<Value = Record> {
        let event = (
            "[a-zA-Z]{1,20}",
            prop::collection::btree_map(
                "[a-zA-Z]{1,8}",
                prop_oneof![
                    any::<i64>().prop_map(Value::from),
                    ".{0,16}".prop_map(Value::from),
                    any::<bool>().prop_map(Value::from)
                ],
                0..6,
            ),
            1_000_000_000_000_i64..2_000_000_000_000,
            "[0-9a-f-]{1,36}",
        )
            .prop_map(|(name, attrs, ts, id)| {
                let mut m: Map<String, Value> = attrs.into_iter().collect();
                m.insert("meetingId".into(), id.clone().into());
                m.insert("attendeeId".into(), id.into());
                m.insert("timestampMs".into(), ts.into());
                (name, m)
            });
        let meeting = (event, 0_i64..i64::MAX).prop_filter_map("valid events only", |((name, attrs), recv)| {
            crate::event::normalize_attributes(name, attrs, &Limits::default(), 2_000_000_000_000)
                .ok()
                .map(|n| Record::meeting_event(n, Ingest::Batch, recv))
        });
        let sip = (".{1,40}", "[a-z0-9-]{1,20}", 0_i64..i64::MAX).prop_map(|(msg, call, ts)| {
            Record::sip_message(
                SipLogRecord {
                    voice_connector_id: "vc".into(),
                    aws_region: "us-east-1".into(),
                    event_timestamp: ts,
                    call_id: call,
                    sip_message: msg,
                    extra: Map::new(),
                },
                Ingest::SipPost,
                ts,
            )
        });
        prop_oneof![meeting, sip]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(r in arbitrary_record()) {
            prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }

        /// The records written take the direct way, and any key order decodes to the same record.
        #[test]
        fn the_direct_way_and_the_general_way_agree(r in arbitrary_record()) {
            let bytes = r.encode();
            prop_assert!(bytes.starts_with(MEETING_EVENT_PREFIX) || bytes.starts_with(SIP_MESSAGE_PREFIX));
            let mut reordered: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
            let kind = reordered.shift_remove("kind").unwrap();
            reordered.insert("kind".into(), kind);
            let reordered = serde_json::to_vec(&reordered).unwrap();
            let general = !reordered.starts_with(MEETING_EVENT_PREFIX) && !reordered.starts_with(SIP_MESSAGE_PREFIX);
            prop_assert!(general, "the reordered record goes the general way");
            prop_assert_eq!(Record::decode(&reordered).unwrap(), r);
        }

        #[test]
        fn decode_is_total(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode(&bytes);
        }
    }
}
