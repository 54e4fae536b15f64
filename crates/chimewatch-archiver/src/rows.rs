//! The rows of the archive's tables: typed columns for what analysts filter and group by, and the full attributes
//! as JSON so nothing is lost. Where a record was read (shard, sequence number, sub-sequence) is kept too: with it
//! a row is unique, and a file's key is derived from its rows' range.

use chimewatch_model::{EventFields, IndexedEventRecord, SipMessageRecord};
use chimewatch_sip::Message;
use serde::{Deserialize, Serialize};

use crate::layout::{Partition, Table};

/// Where a record was read from the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub shard_id: String,
    pub sequence_number: String,
    pub sub_sequence_number: u64,
    /// The index within a CloudWatch Logs envelope's `logEvents` (0 otherwise): with the above, unique per row.
    pub log_event_index: u64,
}

/// A row of `meeting_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingEventRow {
    pub event_time_ms: i64,
    pub received_at_ms: i64,
    pub event_name: String,
    pub meeting_id: Option<String>,
    pub attendee_id: Option<String>,
    pub external_meeting_id: Option<String>,
    pub external_user_id: Option<String>,
    pub sdk_name: Option<String>,
    pub sdk_version: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub browser_name: Option<String>,
    pub browser_major_version: Option<String>,
    pub device_name: Option<String>,
    pub meeting_status: Option<String>,
    pub meeting_error_message: Option<String>,
    pub audio_input_error_message: Option<String>,
    pub video_input_error_message: Option<String>,
    pub meeting_start_duration_ms: Option<i64>,
    pub meeting_duration_ms: Option<i64>,
    pub signaling_open_duration_ms: Option<i64>,
    pub ice_gathering_duration_ms: Option<i64>,
    pub attendee_presence_duration_ms: Option<i64>,
    pub poor_connection_count: Option<i64>,
    pub retry_count: Option<i64>,
    /// `batch`, `sdkIngestion`, ...: how the gateway received it.
    pub ingest: String,
    /// Every attribute, as normalized (JSON object).
    pub attributes_json: String,
    /// Values normalization changed, as the client sent them (JSON object; empty when none).
    pub original_json: String,
    pub source: Source,
}

/// A row of `sip_messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SipMessageRow {
    pub event_time_ms: i64,
    pub received_at_ms: i64,
    pub voice_connector_id: String,
    pub region: String,
    pub call_id: String,
    /// The request's method, or `None` for a response.
    pub sip_method: Option<String>,
    /// The response's status code, or `None` for a request.
    pub sip_status: Option<u16>,
    /// The CSeq's method (what a response answers).
    pub cseq_method: Option<String>,
    pub sip_call_id: Option<String>,
    /// The message as captured.
    pub sip_message: String,
    pub ingest: String,
    pub source: Source,
}

/// A row of either table, as the archiver buffers it. (Rows are built one at a time and spooled at once, so the
/// variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Row {
    Meeting(MeetingEventRow),
    Sip(SipMessageRow),
}

impl Row {
    pub fn table(&self) -> Table {
        match self {
            Self::Meeting(_) => Table::MeetingEvents,
            Self::Sip(_) => Table::SipMessages,
        }
    }

    pub fn event_time_ms(&self) -> i64 {
        match self {
            Self::Meeting(r) => r.event_time_ms,
            Self::Sip(r) => r.event_time_ms,
        }
    }

    pub fn partition(&self) -> Partition {
        Partition::of(self.event_time_ms())
    }
}

/// A string, number or boolean attribute as text.
fn text(event: &impl EventFields, key: &str) -> Option<String> {
    event.scalar_text(key).map(std::borrow::Cow::into_owned)
}

fn whole(event: &impl EventFields, key: &str) -> Option<i64> {
    event.number(key).filter(|v| v.is_finite()).map(|v| v.round() as i64)
}

impl MeetingEventRow {
    pub fn new(r: &IndexedEventRecord, source: Source) -> Self {
        let a = &r.event;
        Self {
            event_time_ms: a.event_time_ms().unwrap_or(r.received_at_ms),
            received_at_ms: r.received_at_ms,
            event_name: a.event_name().to_owned(),
            meeting_id: text(a, "meetingId"),
            attendee_id: text(a, "attendeeId"),
            external_meeting_id: text(a, "externalMeetingId"),
            external_user_id: text(a, "externalUserId"),
            sdk_name: text(a, "sdkName"),
            sdk_version: text(a, "sdkVersion"),
            os_name: text(a, "osName"),
            os_version: text(a, "osVersion"),
            browser_name: text(a, "browserName"),
            browser_major_version: text(a, "browserMajorVersion"),
            device_name: text(a, "deviceName"),
            meeting_status: text(a, "meetingStatus"),
            meeting_error_message: text(a, "meetingErrorMessage"),
            audio_input_error_message: text(a, "audioInputErrorMessage"),
            video_input_error_message: text(a, "videoInputErrorMessage"),
            meeting_start_duration_ms: whole(a, "meetingStartDurationMs"),
            meeting_duration_ms: whole(a, "meetingDurationMs"),
            signaling_open_duration_ms: whole(a, "signalingOpenDurationMs"),
            ice_gathering_duration_ms: whole(a, "iceGatheringDurationMs"),
            attendee_presence_duration_ms: whole(a, "attendeePresenceDurationMs"),
            poor_connection_count: whole(a, "poorConnectionCount"),
            retry_count: whole(a, "retryCount"),
            ingest: r.ingest.as_str().to_owned(),
            // The JSON text of the record itself: nothing is written again.
            attributes_json: a.attributes_json().to_owned(),
            original_json: r.original.as_deref().unwrap_or("{}").to_owned(),
            source,
        }
    }
}

impl SipMessageRow {
    pub fn new(r: &SipMessageRecord, source: Source) -> Self {
        let parsed = Message::parse(r.record.sip_message.as_bytes()).ok();
        Self {
            event_time_ms: r.record.event_timestamp,
            received_at_ms: r.received_at_ms,
            voice_connector_id: r.record.voice_connector_id.clone(),
            region: r.record.aws_region.clone(),
            call_id: r.record.call_id.clone(),
            sip_method: parsed.as_ref().and_then(|m| m.method().map(str::to_owned)),
            sip_status: parsed.as_ref().and_then(Message::status),
            cseq_method: parsed.as_ref().and_then(|m| m.cseq().map(|(_, method)| method.to_owned())),
            sip_call_id: parsed.as_ref().and_then(|m| m.call_id().map(str::to_owned)),
            sip_message: r.record.sip_message.clone(),
            ingest: r.ingest.as_str().to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use chimewatch_model::{Ingest, MeetingEvent, Record, SipLogRecord};
    use serde_json::{Value, json};

    use super::*;

    fn source() -> Source {
        Source {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "4968".into(),
            sub_sequence_number: 2,
            log_event_index: 0,
        }
    }

    #[test]
    fn a_meeting_event_becomes_typed_columns_and_keeps_every_attribute() {
        let attributes = json!({
            "meetingId": "m-1", "attendeeId": "a-1", "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0",
            "browserName": "firefox", "browserMajorVersion": 133, "timestampMs": 1_763_712_000_123i64,
            "meetingStatus": "AudioCallAtCapacity", "signalingOpenDurationMs": 210.6, "futureAttribute": [1, 2],
        });
        let record = Record::MeetingEvent(chimewatch_model::MeetingEventRecord {
            v: 1,
            received_at_ms: 1_763_712_001_000,
            ingest: Ingest::SdkIngestion,
            event: MeetingEvent {
                name: "meetingStartFailed".into(),
                attributes: attributes.as_object().unwrap().clone(),
            },
            original: json!({ "timestampMs": "1763712000123" }).as_object().unwrap().clone(),
            truncation: Default::default(),
            delivery: None,
        });
        // As the archiver reads it from the stream.
        let Ok(chimewatch_model::IndexedRecord::MeetingEvent(r)) =
            chimewatch_model::IndexedRecord::decode(&record.encode())
        else {
            panic!("the record does not decode")
        };
        let row = MeetingEventRow::new(&r, source());
        assert_eq!((row.event_time_ms, row.event_name.as_str()), (1_763_712_000_123, "meetingStartFailed"));
        assert_eq!(row.meeting_status.as_deref(), Some("AudioCallAtCapacity"));
        assert_eq!(row.browser_major_version.as_deref(), Some("133"), "numbers in text columns as text");
        assert_eq!(row.signaling_open_duration_ms, Some(211));
        assert_eq!((row.meeting_duration_ms, row.os_name.as_deref()), (None, None), "absent stays absent");
        assert_eq!(row.ingest, "sdkIngestion");
        let all: Value = serde_json::from_str(&row.attributes_json).unwrap();
        assert_eq!(all["futureAttribute"], json!([1, 2]), "unknown attributes are kept");
        assert_eq!(serde_json::from_str::<Value>(&row.original_json).unwrap()["timestampMs"], "1763712000123");
        assert_eq!(row.source, source());
    }

    #[test]
    fn a_sip_record_keeps_the_message_and_what_identifies_it() {
        let record = SipLogRecord::from_value(json!({
            "voice_connector_id": "vc1", "aws_region": "us-east-1", "event_timestamp": 1_763_712_000_000i64,
            "call_id": "vc-call-0002",
            "sip_message": "SIP/2.0 503 Service Unavailable\r\nCall-ID: x@y\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        }))
        .unwrap();
        let Record::SipMessage(r) = Record::sip_message(record, Ingest::LogSubscription, 1_763_712_000_500) else {
            unreachable!()
        };
        let row = SipMessageRow::new(&r, source());
        assert_eq!((row.sip_method, row.sip_status, row.cseq_method.as_deref()), (None, Some(503), Some("INVITE")));
        assert_eq!((row.sip_call_id.as_deref(), row.ingest.as_str()), (Some("x@y"), "logSubscription"));
        let garbled = SipLogRecord::from_value(json!({
            "voice_connector_id": "vc1", "aws_region": "us-east-1", "event_timestamp": 1_763_712_000_001_i64, "call_id": "c", "sip_message": "not sip",
        }))
        .unwrap();
        let Record::SipMessage(r) = Record::sip_message(garbled, Ingest::SipPost, 2) else { unreachable!() };
        let row = SipMessageRow::new(&r, source());
        assert_eq!(
            (row.sip_method, row.sip_status, row.sip_message.as_str()),
            (None, None, "not sip"),
            "kept as captured"
        );
    }
}
