//! Voice Connector SIP message log records: the five fields Voice Connector writes to
//! `/aws/ChimeVoiceConnectorSipMessages/<id>` (Amazon Chime SDK Administrator Guide), validated.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{EventError, RejectKind, describe};

/// One captured SIP message, as Voice Connector writes it to `/aws/ChimeVoiceConnectorSipMessages/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SipLogRecord {
    pub voice_connector_id: String,
    pub aws_region: String,
    /// Capture time, milliseconds since the epoch.
    pub event_timestamp: i64,
    pub call_id: String,
    pub sip_message: String,
    /// Fields beyond the documented five, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Most bytes of one SIP message; a captured message is a few kilobytes at most.
pub const MAX_SIP_MESSAGE_BYTES: usize = 64 * 1024;

/// Capture times from 2000-01-01 to 2100-01-01 (UTC): Voice Connector did not exist before, and a time past the end
/// is a corrupt record (it would overflow the call tracker's arithmetic and make archive partitions in far years).
pub const EVENT_TIMESTAMP_RANGE: std::ops::RangeInclusive<i64> = 946_684_800_000..=4_102_444_800_000;

impl SipLogRecord {
    /// Validates one record given as a JSON value, naming the first field that is wrong.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(mut m) = value else {
            return Err(EventError::new(
                "",
                RejectKind::Shape,
                format!("expected a SIP log record object, got {}", describe(&value)),
            ));
        };
        let mut string = |key: &str| -> Result<String, EventError> {
            match m.remove(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s),
                Some(Value::String(_)) => Err(EventError::new(key, RejectKind::OutOfRange, "must not be empty")),
                Some(other) => Err(EventError::new(
                    key,
                    RejectKind::WrongType,
                    format!("expected a string, got {}", describe(&other)),
                )),
                None => Err(EventError::new(key, RejectKind::Missing, "missing")),
            }
        };
        let voice_connector_id = string("voice_connector_id")?;
        let aws_region = string("aws_region")?;
        let call_id = string("call_id")?;
        let sip_message = string("sip_message")?;
        if sip_message.len() > MAX_SIP_MESSAGE_BYTES {
            return Err(EventError::new(
                "sip_message",
                RejectKind::TooLarge,
                format!("is {} bytes; at most {MAX_SIP_MESSAGE_BYTES}", sip_message.len()),
            ));
        }
        let event_timestamp = match m.remove("event_timestamp") {
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => s.parse().unwrap_or_default(),
            Some(other) => {
                return Err(EventError::new(
                    "event_timestamp",
                    RejectKind::WrongType,
                    format!("expected milliseconds since the epoch, got {}", describe(&other)),
                ));
            }
            None => {
                return Err(EventError::new("event_timestamp", RejectKind::Missing, "missing"));
            }
        };
        if !EVENT_TIMESTAMP_RANGE.contains(&event_timestamp) {
            return Err(EventError::new(
                "event_timestamp",
                RejectKind::OutOfRange,
                format!(
                    "{event_timestamp} is outside 2000-01-01 to 2100-01-01 ({} to {} ms since the epoch)",
                    EVENT_TIMESTAMP_RANGE.start(),
                    EVENT_TIMESTAMP_RANGE.end()
                ),
            ));
        }
        Ok(Self { voice_connector_id, aws_region, event_timestamp, call_id, sip_message, extra: m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fixture_records_validate() {
        let text = include_str!("../../../fixtures/sip/voice-connector-sip-messages.jsonl");
        let records: Vec<_> =
            text.lines().map(|l| SipLogRecord::from_value(serde_json::from_str(l).unwrap()).unwrap()).collect();
        assert_eq!(records.len(), 20);
        assert_eq!(records[0].call_id, "vc-call-0001");
        assert!(records[0].sip_message.starts_with("INVITE "));
    }

    #[test]
    fn errors_name_the_field() {
        let ok = json!({"voice_connector_id": "vc", "aws_region": "us-east-1", "event_timestamp": 1_763_712_000_000_i64, "call_id": "c", "sip_message": "OPTIONS"});
        let check = |patch: Value, expect: &str| {
            let mut v = ok.clone();
            v.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            assert_eq!(SipLogRecord::from_value(v).unwrap_err().to_string(), expect);
        };
        check(json!({"call_id": 5}), "call_id: expected a string, got the number 5");
        check(json!({"sip_message": ""}), "sip_message: must not be empty");
        check(
            json!({"event_timestamp": "soon"}),
            "event_timestamp: expected milliseconds since the epoch, got the string \"soon\"",
        );
        check(
            json!({"event_timestamp": i64::MAX}),
            "event_timestamp: 9223372036854775807 is outside 2000-01-01 to 2100-01-01 (946684800000 to 4102444800000 ms since the epoch)",
        );
        check(
            json!({"event_timestamp": -5}),
            "event_timestamp: -5 is outside 2000-01-01 to 2100-01-01 (946684800000 to 4102444800000 ms since the epoch)",
        );
        assert_eq!(
            SipLogRecord::from_value(json!([1])).unwrap_err().to_string(),
            "expected a SIP log record object, got an array of 1 items"
        );
        let mut extra = ok.clone();
        extra["x_new"] = json!(1);
        assert_eq!(SipLogRecord::from_value(extra).unwrap().extra["x_new"], 1);
    }
}
