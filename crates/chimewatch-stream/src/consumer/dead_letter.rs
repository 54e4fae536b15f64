//! Where records that cannot be decoded go: any [`Producer`] (a Kinesis stream in AWS, an embedded log under `up`),
//! as self-describing JSON with the reason, the position and the bytes. The put completes (durably) before the
//! shard's checkpoint may pass the record, so a dead letter is never lost; every one is counted.
//!
//! What a sink refused for its content (a metric datum, a log event) goes the same way, as a [`Refused`] letter.
//!
//! A dead letter always fits in one stream record: bytes beyond [`MAX_DEAD_DATA`] are cut, and the letter then says
//! how many there were and their SHA-256, so a letter can never be refused by the stream and wedge its shard.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::telemetry::ConsumerTelemetry;
use crate::ports::{OutRecord, Producer};

/// One record the consumer could not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub shard_id: String,
    pub sequence_number: crate::SequenceNumber,
    pub sub_sequence_number: u64,
    /// Index within a CloudWatch Logs envelope's `logEvents`, when the record was one.
    pub log_event: usize,
    pub partition_key: String,
    #[serde(rename = "arrival_ms")]
    pub arrival: chimewatch_model::UnixMillis,
    pub reason: String,
    /// The user record as read (after de-aggregation when that worked; for one log event of a CloudWatch Logs
    /// envelope, its message), base64, cut at [`MAX_DEAD_DATA`] bytes.
    #[serde(flatten)]
    pub data: DeadData,
}

/// Most bytes a dead letter carries: with base64 (4/3) and the letter's other fields it stays well inside the
/// 1 MiB a Kinesis record may hold.
pub const MAX_DEAD_DATA: usize = 512 * 1024;

/// The bytes of what was dead-lettered, cut to fit a stream record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadData {
    /// The bytes (up to [`MAX_DEAD_DATA`] of them), base64.
    pub data: String,
    /// Set when the bytes were cut: how many there were, and the SHA-256 of all of them (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
}

impl DeadData {
    pub fn of(bytes: &[u8]) -> Self {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        if bytes.len() <= MAX_DEAD_DATA {
            return Self { data: b64(bytes), data_bytes: None, data_sha256: None };
        }
        let digest: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        Self { data: b64(&bytes[..MAX_DEAD_DATA]), data_bytes: Some(bytes.len()), data_sha256: Some(digest) }
    }
}

/// Something a sink refused for its content, so no retry can deliver it: a metric datum CloudWatch would not take,
/// a log event CloudWatch Logs would not keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    /// What it was: `metricDatum`, `logEvent`.
    pub kind: &'static str,
    /// Where it was going: the namespace, or the log group and stream.
    pub destination: String,
    pub reason: String,
    /// The item as JSON text, cut as [`DeadData`] cuts bytes.
    #[serde(flatten)]
    pub item: DeadData,
}

#[derive(Debug, Clone)]
pub struct DeadLetters {
    destination: Option<Arc<dyn Producer>>,
}

impl DeadLetters {
    /// Dead letters go to `destination`, durably, before the consumer moves past them.
    pub fn to(destination: Arc<dyn Producer>) -> Self {
        Self { destination: Some(destination) }
    }

    /// No destination: each dead letter is logged at `warn` with its reason and position, and counted.
    pub fn log_only() -> Self {
        Self { destination: None }
    }

    /// Sends the dead letters; returns once they are durable (or logged).
    pub(crate) async fn send(&self, letters: Vec<DeadLetter>, telemetry: &ConsumerTelemetry) -> Result<(), String> {
        if letters.is_empty() {
            return Ok(());
        }
        for l in &letters {
            tracing::warn!(
                shard = %l.shard_id, sequence = %l.sequence_number, sub_sequence = l.sub_sequence_number,
                log_event = l.log_event, reason = %l.reason,
                "A record could not be decoded and was dead-lettered."
            );
        }
        let count = letters.len() as u64;
        if let Some(destination) = &self.destination {
            let records = letters
                .into_iter()
                .map(|l| {
                    let data = serde_json::to_vec(&l).map_err(|e| e.to_string())?;
                    // Same key, same order as the original; a stream needs a non-empty one.
                    let partition_key = if l.partition_key.is_empty() { l.shard_id } else { l.partition_key };
                    Ok(OutRecord { partition_key, data })
                })
                .collect::<Result<Vec<_>, String>>()?;
            destination.put(records).await.map_err(|e| e.to_string())?;
        }
        telemetry.dead_lettered.inc_by(count);
        Ok(())
    }

    /// Sends what a sink refused; returns once it is durable (or logged). The caller counts them.
    pub async fn refused(&self, letters: Vec<Refused>) -> Result<(), String> {
        if letters.is_empty() {
            return Ok(());
        }
        for l in &letters {
            tracing::warn!(kind = l.kind, destination = %l.destination, reason = %l.reason, "A sink refused an item for its content; it was dead-lettered.");
        }
        if let Some(destination) = &self.destination {
            let records = letters
                .into_iter()
                .map(|l| {
                    let data = serde_json::to_vec(&l).map_err(|e| e.to_string())?;
                    Ok(OutRecord { partition_key: l.destination, data })
                })
                .collect::<Result<Vec<_>, String>>()?;
            destination.put(records).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
