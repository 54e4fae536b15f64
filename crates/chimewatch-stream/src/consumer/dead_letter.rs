//! Where records that cannot be decoded go: any [`Producer`] (a Kinesis stream in AWS, an embedded log under `up`),
//! as self-describing JSON with the reason, the position and the bytes. The put completes (durably) before the
//! shard's checkpoint may pass the record, so a dead letter is never lost; every one is counted.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

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
    /// The user record as read (after de-aggregation when that worked), base64.
    pub data: String,
}

/// The bytes as a dead letter carries them.
pub(crate) fn encode_data(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
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
}
