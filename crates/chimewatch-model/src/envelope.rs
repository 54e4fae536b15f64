//! Decoding what a consumer meets on the stream, whatever put it there: chimewatch records (from the gateway, maybe
//! in KPL aggregates) and CloudWatch Logs subscription envelopes (gzip JSON) carrying Voice Connector SIP logs.
//!
//! One Kinesis record yields many items; each is a [`Record`] or the reason it cannot be one, so that a consumer
//! dead-letters exactly what is bad and processes the rest. Inflation is bounded (a gzip bomb is an error).

use std::io::Read;

use serde::Deserialize;

use crate::indexed::FromStream;
use crate::json::parse_strict;
use crate::kpl;
use crate::record::{Ingest, Record};
use crate::sip::SipLogRecord;

/// The first bytes of a gzip stream, which is how CloudWatch Logs delivers envelopes to Kinesis.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest inflated envelope: CloudWatch Logs delivers at most 1 MB of log events per record.
pub const MAX_INFLATED_BYTES: usize = 8 << 20;

/// One item of a Kinesis record: where in the record it was, and what it decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Position among the KPL aggregate's user records (0 for a plain record).
    pub sub_sequence: u64,
    /// Position within a CloudWatch Logs envelope's `logEvents` (0 otherwise).
    pub log_event: usize,
    pub decoded: Result<Record, String>,
}

/// What a CloudWatch Logs subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsEnvelope {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub log_group: String,
    #[serde(default)]
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    #[serde(default)]
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

/// Inflates and parses a gzip CloudWatch Logs envelope.
pub fn decode_logs_envelope(gz: &[u8]) -> Result<LogsEnvelope, String> {
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .take(MAX_INFLATED_BYTES as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| format!("CloudWatch Logs envelope is not valid gzip: {e}"))?;
    if inflated.len() > MAX_INFLATED_BYTES {
        return Err(format!("CloudWatch Logs envelope inflates past {MAX_INFLATED_BYTES} bytes"));
    }
    serde_json::from_slice(&inflated).map_err(|e| format!("CloudWatch Logs envelope is not the expected JSON: {e}"))
}

/// Decodes one Kinesis record's data into its items. `arrival_ms` is when the stream accepted it.
pub fn decode_kinesis_record(data: &[u8], partition_key: &str, arrival_ms: i64) -> Vec<Item> {
    let users = match kpl::deaggregate(data, partition_key) {
        Ok(users) => users,
        Err(e) => return vec![Item { sub_sequence: 0, log_event: 0, decoded: Err(e.to_string()) }],
    };
    users
        .into_iter()
        .enumerate()
        .flat_map(|(sub, user)| {
            decode_user_record(&user.data, arrival_ms).into_iter().map(move |(log_event, decoded)| Item {
                sub_sequence: sub as u64,
                log_event,
                decoded,
            })
        })
        .collect()
}

/// Decodes one user record (already de-aggregated): a chimewatch record, or a CloudWatch Logs envelope's records,
/// each with its position among the envelope's log events.
/// `R` is what each is decoded into: the whole [`Record`], or what a reader needs of it.
pub fn decode_user_record<R: FromStream>(data: &[u8], arrival_ms: i64) -> Vec<(usize, Result<R, String>)> {
    if !data.starts_with(&GZIP_MAGIC) {
        return vec![(0, R::decode(data).map_err(|e| e.to_string()))];
    }
    match decode_logs_envelope(data) {
        Ok(envelope) => {
            envelope_records(&envelope, arrival_ms).into_iter().map(|r| r.map(R::from_record)).enumerate().collect()
        }
        Err(e) => vec![(0, Err(e))],
    }
}

/// The SIP records of a DATA_MESSAGE; a CONTROL_MESSAGE (a connectivity check) carries none.
pub fn envelope_records(envelope: &LogsEnvelope, arrival_ms: i64) -> Vec<Result<Record, String>> {
    match envelope.message_type.as_str() {
        "CONTROL_MESSAGE" => Vec::new(),
        "DATA_MESSAGE" => envelope
            .log_events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                parse_strict(&event.message)
                    .map_err(|e| format!("logEvents[{i}] of {}: message is not JSON: {e}", envelope.log_group))
                    .and_then(|v| {
                        SipLogRecord::from_value(v)
                            .map_err(|e| format!("logEvents[{i}] of {}: {e}", envelope.log_group))
                    })
                    .map(|r| Record::sip_message(r, Ingest::LogSubscription, arrival_ms))
            })
            .collect(),
        other => vec![Err(format!("CloudWatch Logs envelope has an unknown messageType {other:?}"))],
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::kpl::Aggregator;

    /// A fixture's bytes, built into the test binary: the tests do no I/O either.
    macro_rules! fixture {
        ($rel:literal) => {
            include_bytes!(concat!("../../../fixtures/sip/", $rel))
        };
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_gzipped_data_message_yields_its_sip_records() {
        let items = decode_kinesis_record(&gzip(fixture!("cloudwatch-logs-subscription-envelope.json")), "pk", 7);
        assert!(!items.is_empty());
        let envelope: serde_json::Value =
            serde_json::from_slice(fixture!("cloudwatch-logs-subscription-envelope.json")).unwrap();
        assert_eq!(items.len(), envelope["logEvents"].as_array().unwrap().len());
        let Ok(Record::SipMessage(first)) = &items[0].decoded else { panic!("{:?}", items[0]) };
        assert_eq!(
            (first.record.call_id.as_str(), first.ingest, first.received_at_ms),
            ("vc-call-0001", Ingest::LogSubscription, 7)
        );
        assert!(items.iter().enumerate().all(|(i, it)| it.log_event == i && it.decoded.is_ok()));
    }

    #[test]
    fn a_control_message_yields_nothing() {
        assert!(decode_kinesis_record(&gzip(fixture!("cloudwatch-logs-control-message.json")), "pk", 0).is_empty());
    }

    #[test]
    fn bad_log_events_are_reasons_and_the_rest_decode() {
        let envelope = serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": "/aws/ChimeVoiceConnectorSipMessages/vc", "logEvents": [
            {"id": "1", "timestamp": 1, "message": "{\"voice_connector_id\":\"vc\",\"aws_region\":\"us-east-1\",\"event_timestamp\":1763712000000,\"call_id\":\"c\",\"sip_message\":\"BYE\"}"},
            {"id": "2", "timestamp": 1, "message": "not json"},
            {"id": "3", "timestamp": 1, "message": "{\"voice_connector_id\":\"vc\"}"},
        ]});
        let items = decode_kinesis_record(&gzip(envelope.to_string().as_bytes()), "pk", 0);
        assert!(items[0].decoded.is_ok());
        assert!(
            items[1]
                .decoded
                .as_ref()
                .unwrap_err()
                .starts_with("logEvents[1] of /aws/ChimeVoiceConnectorSipMessages/vc: message is not JSON")
        );
        assert_eq!(
            items[2].decoded.as_ref().unwrap_err(),
            "logEvents[2] of /aws/ChimeVoiceConnectorSipMessages/vc: aws_region: missing"
        );
    }

    #[test]
    fn broken_envelopes_and_records_are_reasons() {
        let check = |data: &[u8], expect: &str| {
            let items = decode_kinesis_record(data, "pk", 0);
            let err = items[0].decoded.as_ref().unwrap_err();
            assert!(err.contains(expect), "{err}");
        };
        check(&[0x1f, 0x8b, 0, 1, 2], "not valid gzip");
        check(&gzip(b"{\"nope\": 1}"), "not the expected JSON");
        check(&gzip(b"{\"messageType\": \"PING\"}"), "unknown messageType \"PING\"");
        check(b"\x00binary", "not a chimewatch record");
        // A gzip bomb stops at the bound.
        let bomb = gzip(&vec![b' '; MAX_INFLATED_BYTES + 10]);
        check(&bomb, "inflates past");
    }

    #[test]
    fn kpl_aggregates_mix_chimewatch_records_and_envelopes() {
        let sip = SipLogRecord::from_value(serde_json::json!({"voice_connector_id": "vc", "aws_region": "r", "event_timestamp": 1_763_712_000_005_i64, "call_id": "c", "sip_message": "ACK"})).unwrap();
        let record = Record::sip_message(sip, Ingest::SipPost, 1);
        let mut agg = Aggregator::new();
        agg.push("a", record.encode());
        agg.push("b", gzip(fixture!("cloudwatch-logs-control-message.json")));
        agg.push("c", b"garbage".to_vec());
        let items = decode_kinesis_record(&agg.finish(), "outer", 9);
        assert_eq!(items.len(), 2, "the control message yields nothing");
        assert_eq!((items[0].sub_sequence, items[0].decoded.as_ref().ok()), (0, Some(&record)));
        assert_eq!(items[1].sub_sequence, 2);
        assert!(items[1].decoded.is_err());
    }
}
