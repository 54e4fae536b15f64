//! The log sink port (CloudWatch Logs in AWS, the embedded store under `up`) and the batch planning PutLogEvents
//! needs: events sorted by time, at most 10,000 events and 1,048,576 bytes (message bytes + 26 per event) per
//! batch, and a batch spanning at most 24 hours.

use async_trait::async_trait;
use chimewatch_model::UnixMillis;

use crate::metrics::SinkError;

pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD_BYTES: usize = 26;
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub timestamp: UnixMillis,
    pub message: String,
}

#[async_trait]
pub trait LogSink: Send + Sync + std::fmt::Debug {
    /// Writes the events to `stream` of `group` (both created when missing), durably when it returns Ok.
    async fn put(&self, group: &str, stream: &str, events: Vec<LogEvent>) -> Result<(), SinkError>;
}

/// Sorts the events by time and splits them into batches PutLogEvents accepts.
pub fn plan_batches(mut events: Vec<LogEvent>) -> Vec<Vec<LogEvent>> {
    events.sort_by_key(|e| e.timestamp);
    let mut batches = Vec::new();
    let mut current: Vec<LogEvent> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let size = e.message.len() + EVENT_OVERHEAD_BYTES;
        let full = current.len() == MAX_BATCH_EVENTS
            || bytes + size > MAX_BATCH_BYTES
            || current.first().is_some_and(|first| e.timestamp.as_i64() - first.timestamp.as_i64() > MAX_BATCH_SPAN_MS);
        if full && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(e);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(t: i64, len: usize) -> LogEvent {
        LogEvent { timestamp: UnixMillis(t), message: "x".repeat(len) }
    }

    #[test]
    fn batches_are_sorted_and_within_count_bytes_and_span() {
        let events: Vec<LogEvent> = (0..25_000).rev().map(|i| event(i, 10)).collect();
        let batches = plan_batches(events);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
        assert!(batches.iter().flatten().map(|e| e.timestamp.as_i64()).collect::<Vec<_>>().is_sorted());

        let big = plan_batches((0..40).map(|i| event(i, 100_000)).collect());
        assert!(big.iter().all(|b| b.iter().map(|e| e.message.len() + 26).sum::<usize>() <= MAX_BATCH_BYTES));
        assert_eq!(big.len(), 4);

        let spread = plan_batches(vec![event(0, 1), event(MAX_BATCH_SPAN_MS, 1), event(MAX_BATCH_SPAN_MS + 1, 1)]);
        assert_eq!(spread.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    }

    proptest! {
        #[test]
        fn planning_keeps_every_event_once_in_time_order_within_limits(
            events in prop::collection::vec((0i64..200_000_000, 0usize..60_000), 0..300),
        ) {
            let input: Vec<LogEvent> = events.iter().map(|(t, n)| event(*t, *n)).collect();
            let batches = plan_batches(input.clone());
            let flat: Vec<&LogEvent> = batches.iter().flatten().collect();
            prop_assert_eq!(flat.len(), input.len());
            prop_assert!(flat.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            for b in &batches {
                prop_assert!(!b.is_empty() && b.len() <= MAX_BATCH_EVENTS);
                prop_assert!(b.iter().map(|e| e.message.len() + 26).sum::<usize>() <= MAX_BATCH_BYTES);
                prop_assert!(b.last().unwrap().timestamp.as_i64() - b[0].timestamp.as_i64() <= MAX_BATCH_SPAN_MS);
            }
        }
    }
}
