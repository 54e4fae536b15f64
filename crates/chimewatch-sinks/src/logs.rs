//! The log sink port (CloudWatch Logs in AWS, the embedded store under `up`) and the batch planning PutLogEvents
//! needs: events sorted by time, at most 10,000 events and 1,048,576 bytes (message bytes + 26 per event) per
//! batch, and a batch spanning at most 24 hours.

use std::sync::Arc;

use async_trait::async_trait;
use chimewatch_model::UnixMillis;

use crate::metrics::Outcome;

pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_BATCH_BYTES: usize = 1_048_576;
pub const EVENT_OVERHEAD_BYTES: usize = 26;
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub timestamp: UnixMillis,
    /// Shared, not copied: an event is kept for a retry while a sink takes it, and a line is about a kilobyte.
    pub message: Arc<str>,
}

/// How far back and ahead of now PutLogEvents takes an event (a group's retention may refuse older ones).
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

#[async_trait]
pub trait LogSink: Send + Sync + std::fmt::Debug {
    /// Writes the events to `stream` of `group` (both created when missing); what the outcome does not list as
    /// rejected or unsent is durable.
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Outcome;
}

/// Why PutLogEvents would refuse the event, if it would: a message larger than a batch may hold, or (given `now`)
/// a timestamp more than 14 days old or 2 hours ahead (Amazon CloudWatch Logs API Reference, PutLogEvents).
pub fn check_event(e: &LogEvent, now: Option<UnixMillis>) -> Result<(), String> {
    if e.message.is_empty() {
        return Err("the message is empty".into());
    }
    if e.message.len() + EVENT_OVERHEAD_BYTES > MAX_BATCH_BYTES {
        return Err(format!("the message has {} bytes, more than a batch of {MAX_BATCH_BYTES} holds", e.message.len()));
    }
    if let Some(now) = now {
        let t = e.timestamp.as_i64();
        if t < now.as_i64() - MAX_AGE_MS || t > now.as_i64() + MAX_AHEAD_MS {
            return Err(format!("timestamp {t} is outside 14 days back and 2 hours ahead of now ({now})"));
        }
    }
    Ok(())
}

/// Sorts the events at `indices` by time and splits them into batches PutLogEvents accepts.
pub fn plan_batches(events: &[LogEvent], indices: impl IntoIterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = indices.into_iter().collect();
    order.sort_by_key(|&i| events[i].timestamp);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for i in order {
        let e = &events[i];
        let size = e.message.len() + EVENT_OVERHEAD_BYTES;
        let full = current.len() == MAX_BATCH_EVENTS
            || bytes + size > MAX_BATCH_BYTES
            || current
                .first()
                .is_some_and(|&first| e.timestamp.as_i64() - events[first].timestamp.as_i64() > MAX_BATCH_SPAN_MS);
        if full && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(i);
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
        LogEvent { timestamp: UnixMillis(t), message: "x".repeat(len).into() }
    }

    /// The batches as events, for the checks.
    fn planned(events: &[LogEvent]) -> Vec<Vec<&LogEvent>> {
        plan_batches(events, 0..events.len()).into_iter().map(|b| b.into_iter().map(|i| &events[i]).collect()).collect()
    }

    #[test]
    fn batches_are_sorted_and_within_count_bytes_and_span() {
        let events: Vec<LogEvent> = (0..25_000).rev().map(|i| event(i, 10)).collect();
        let batches = planned(&events);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [10_000, 10_000, 5_000]);
        assert!(batches.iter().flatten().map(|e| e.timestamp.as_i64()).collect::<Vec<_>>().is_sorted());

        let big_events: Vec<LogEvent> = (0..40).map(|i| event(i, 100_000)).collect();
        let big = planned(&big_events);
        assert!(big.iter().all(|b| b.iter().map(|e| e.message.len() + 26).sum::<usize>() <= MAX_BATCH_BYTES));
        assert_eq!(big.len(), 4);

        let spread_events = vec![event(0, 1), event(MAX_BATCH_SPAN_MS, 1), event(MAX_BATCH_SPAN_MS + 1, 1)];
        assert_eq!(planned(&spread_events).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn events_putlogevents_would_refuse_are_named_with_the_reason() {
        let now = Some(UnixMillis(MAX_AGE_MS * 2));
        assert_eq!(check_event(&event(MAX_AGE_MS * 2, 10), now), Ok(()));
        assert!(check_event(&event(MAX_AGE_MS * 2, 0), now).unwrap_err().contains("empty"));
        assert!(check_event(&event(MAX_AGE_MS * 2, MAX_BATCH_BYTES), now).unwrap_err().contains("bytes"));
        assert!(check_event(&event(MAX_AGE_MS - 1, 10), now).unwrap_err().contains("14 days"));
        assert!(check_event(&event(MAX_AGE_MS * 2 + MAX_AHEAD_MS + 1, 10), now).unwrap_err().contains("2 hours"));
        assert_eq!(check_event(&event(0, 10), None), Ok(()), "no clock, no range");
    }

    proptest! {
        #[test]
        fn planning_keeps_every_event_once_in_time_order_within_limits(
            events in prop::collection::vec((0i64..200_000_000, 0usize..60_000), 0..300),
        ) {
            let input: Vec<LogEvent> = events.iter().map(|(t, n)| event(*t, *n)).collect();
            let batches = planned(&input);
            let flat: Vec<&LogEvent> = batches.iter().flatten().copied().collect();
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
