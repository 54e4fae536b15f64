//! Drops events delivered more than once within a window: the Chime SDKs retry byte-identical requests and re-send
//! failed batches in page-end beacons, so one event can arrive several times.
//!
//! Keys are remembered only once their events are durable: a request that fails is retried by the client, and its
//! retry must not be mistaken for a duplicate. Two copies racing in flight at the same moment can both be stored;
//! the window is per gateway instance. Memory is bounded by the window and by `max_keys` (oldest forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug)]
pub struct Deduplicator {
    window_ms: i64,
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    expiry: HashMap<u128, i64>,
    order: VecDeque<(i64, u128)>,
}

impl State {
    fn purge(&mut self, now_ms: i64, max_keys: usize) {
        while let Some(&(expires, key)) = self.order.front() {
            if expires > now_ms && self.order.len() <= max_keys {
                break;
            }
            self.order.pop_front();
            // A key remembered again later has a later expiry: only forget it when this entry is its latest.
            if self.expiry.get(&key) == Some(&expires) {
                self.expiry.remove(&key);
            }
        }
    }
}

impl Deduplicator {
    pub fn new(window_ms: i64, max_keys: usize) -> Self {
        Self { window_ms, max_keys, state: Mutex::default() }
    }

    /// Which keys were already delivered within the window (or repeat an earlier key of the same list).
    pub fn duplicates(&self, keys: &[u128], now_ms: i64) -> Vec<bool> {
        let Ok(mut state) = self.state.lock() else { return vec![false; keys.len()] };
        state.purge(now_ms, self.max_keys);
        let mut in_batch = std::collections::HashSet::with_capacity(keys.len());
        keys.iter().map(|k| state.expiry.contains_key(k) || !in_batch.insert(*k)).collect()
    }

    /// Remembers keys whose events are now durable.
    pub fn remember(&self, keys: &[u128], now_ms: i64) {
        let Ok(mut state) = self.state.lock() else { return };
        let expires = now_ms + self.window_ms;
        for &k in keys {
            state.expiry.insert(k, expires);
            state.order.push_back((expires, k));
        }
        state.purge(now_ms, self.max_keys);
    }

    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.expiry.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_duplicates_within_the_window_only() {
        let d = Deduplicator::new(1000, 100);
        assert_eq!(d.duplicates(&[1, 2, 1], 0), [false, false, true], "a repeat within one request");
        d.remember(&[1, 2], 0);
        assert_eq!(d.duplicates(&[1, 2, 3], 999), [true, true, false]);
        assert_eq!(d.duplicates(&[1, 2], 1000), [false, false], "the window has passed");
        assert!(d.is_empty());
    }

    #[test]
    fn unremembered_keys_are_not_duplicates() {
        // A put that failed never remembers its keys, so the client's retry goes through.
        let d = Deduplicator::new(1000, 100);
        assert_eq!(d.duplicates(&[7], 0), [false]);
        assert_eq!(d.duplicates(&[7], 1), [false]);
    }

    #[test]
    fn memory_is_bounded() {
        let d = Deduplicator::new(1_000_000, 3);
        d.remember(&[1, 2, 3, 4, 5], 0);
        assert_eq!(d.len(), 3);
        assert_eq!(d.duplicates(&[1, 5], 1), [false, true], "the oldest keys were forgotten");
    }

    #[test]
    fn re_remembering_extends_a_key() {
        let d = Deduplicator::new(100, 10);
        d.remember(&[9], 0);
        d.remember(&[9], 50);
        assert_eq!(d.duplicates(&[9], 120), [true], "still within the second window");
    }
}
