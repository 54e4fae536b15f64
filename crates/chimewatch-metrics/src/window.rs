//! Tumbling event-time windows and the watermark that closes them.
//!
//! The watermark is the minimum over active sources (the shards a worker holds) of the newest event time seen,
//! minus the allowed out-of-orderness: every source has moved past it, so a window ending before it is complete.
//! A source that delivered nothing for the idle timeout (by the caller's `now`) stops holding the watermark back;
//! when every source is idle, [`Watermark::all_idle`] says so and the caller may close every window: nothing is
//! arriving that could still belong to them.

use std::collections::HashMap;

/// The start of the window of `size_ms` holding `t_ms` (windows are aligned to the epoch, as CloudWatch periods are).
pub fn window_start(t_ms: i64, size_ms: i64) -> i64 {
    t_ms.div_euclid(size_ms.max(1)) * size_ms.max(1)
}

#[derive(Debug, Clone)]
pub struct Watermark {
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    /// Per source: the newest event time, and when (by `now`) it last delivered an event.
    sources: HashMap<String, (i64, i64)>,
}

impl Watermark {
    pub fn new(out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self { out_of_orderness_ms, idle_timeout_ms, sources: HashMap::new() }
    }

    /// Records an event of `source` at event time `event_ms`, delivered at `now_ms`.
    pub fn observe(&mut self, source: &str, event_ms: i64, now_ms: i64) {
        match self.sources.get_mut(source) {
            Some((newest, seen)) => {
                *newest = (*newest).max(event_ms);
                *seen = now_ms;
            }
            None => {
                self.sources.insert(source.to_owned(), (event_ms, now_ms));
            }
        }
    }

    /// A source that is gone (its lease moved): it no longer holds the watermark back.
    pub fn forget(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// Event time up to which every window is complete; `None` when no source is active (none yet, or all idle).
    pub fn at(&self, now_ms: i64) -> Option<i64> {
        let oldest_active = self
            .sources
            .values()
            .filter(|(_, seen)| now_ms - seen < self.idle_timeout_ms)
            .map(|(newest, _)| *newest)
            .min()?;
        Some(oldest_active - self.out_of_orderness_ms)
    }

    /// Every source has been idle for the idle timeout.
    pub fn all_idle(&self, now_ms: i64) -> bool {
        !self.sources.is_empty() && self.sources.values().all(|(_, seen)| now_ms - seen >= self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch_and_hold_their_start() {
        assert_eq!(window_start(1_763_712_059_999, 60_000), 1_763_712_000_000);
        assert_eq!(window_start(1_763_712_060_000, 60_000), 1_763_712_060_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
        assert_eq!(window_start(1_500, 1_000), 1_000);
    }

    #[test]
    fn the_slowest_active_source_holds_the_watermark() {
        let mut w = Watermark::new(5_000, 30_000);
        assert_eq!(w.at(0), None);
        w.observe("a", 100_000, 0);
        w.observe("b", 70_000, 0);
        assert_eq!(w.at(1_000), Some(65_000));
        w.observe("b", 95_000, 2_000);
        assert_eq!(w.at(2_000), Some(90_000));
        // Event time never goes back for a source.
        w.observe("a", 50_000, 3_000);
        assert_eq!(w.at(3_000), Some(90_000));
    }

    #[test]
    fn an_idle_source_stops_holding_the_watermark_back() {
        let mut w = Watermark::new(0, 30_000);
        w.observe("busy", 200_000, 0);
        w.observe("idle", 100_000, 0);
        w.observe("busy", 260_000, 29_000);
        assert_eq!(w.at(29_000), Some(100_000));
        assert_eq!(w.at(30_000), Some(260_000), "idle for 30 s: ignored");
        w.observe("idle", 110_000, 31_000);
        assert_eq!(w.at(31_000), Some(110_000), "back, and holding again");
        w.forget("idle");
        assert_eq!(w.at(31_000), Some(260_000));
        assert!(!w.all_idle(31_000));
        // All idle: no watermark, and the caller may close everything.
        assert_eq!(w.at(100_000), None);
        assert!(w.all_idle(100_000));
        assert!(!Watermark::new(0, 1).all_idle(100), "no source yet is not idle");
    }

    proptest! {
        #[test]
        fn every_event_lands_in_exactly_one_window_that_contains_it(t in -10_000_000_000i64..10_000_000_000, size in 1i64..3_600_000) {
            let start = window_start(t, size);
            prop_assert!(start <= t && t < start + size);
            prop_assert_eq!(start.rem_euclid(size), 0);
        }

        #[test]
        fn the_watermark_never_passes_an_active_sources_newest_event(
            events in prop::collection::vec((0usize..4, 0i64..1_000_000), 1..100),
        ) {
            let mut w = Watermark::new(1_000, 1_000_000);
            let mut newest = [i64::MIN; 4];
            for (now, (source, t)) in events.iter().enumerate() {
                w.observe(&source.to_string(), *t, now as i64);
                newest[*source] = newest[*source].max(*t);
                let lowest = newest.iter().filter(|n| **n != i64::MIN).min().unwrap();
                prop_assert_eq!(w.at(now as i64), Some(lowest - 1_000));
            }
        }
    }
}
