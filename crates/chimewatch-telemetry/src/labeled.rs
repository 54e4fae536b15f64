//! Metric families whose label sets can be walked: prometheus-client's `Family` encodes its series but does not let
//! a caller iterate them, and the CloudWatch form of a family (a total, a maximum) needs to.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;

/// One metric per label set, registered on `/metrics` as a family.
#[derive(Debug)]
pub struct Labeled<L, M> {
    family: Family<L, M>,
    // Handles to the same metrics as `family`'s (they share their atomics), kept where they can be walked.
    seen: Arc<RwLock<HashMap<L, M>>>,
}

impl<L, M> Clone for Labeled<L, M> {
    fn clone(&self) -> Self {
        Self { family: self.family.clone(), seen: self.seen.clone() }
    }
}

impl<L: Clone + Eq + std::hash::Hash, M: Default> Default for Labeled<L, M> {
    fn default() -> Self {
        Self { family: Family::default(), seen: Arc::default() }
    }
}

impl<L, M> Labeled<L, M>
where
    L: EncodeLabelSet + Clone + Eq + Hash,
    M: Default + Clone,
{
    /// The metric of one label set, created at zero the first time.
    pub fn get(&self, labels: &L) -> M {
        if let Some(m) = self.seen.read().unwrap_or_else(PoisonError::into_inner).get(labels) {
            return m.clone();
        }
        let metric = self.family.get_or_create(labels).clone();
        self.seen.write().unwrap_or_else(PoisonError::into_inner).insert(labels.clone(), metric.clone());
        metric
    }

    /// Forgets a label set, so its last value does not linger (a shard this worker no longer holds).
    pub fn remove(&self, labels: &L) {
        self.family.remove(labels);
        self.seen.write().unwrap_or_else(PoisonError::into_inner).remove(labels);
    }

    /// Folds over every label set and its metric.
    pub fn fold<T>(&self, init: T, f: impl Fn(T, &L, &M) -> T) -> T {
        self.seen.read().unwrap_or_else(PoisonError::into_inner).iter().fold(init, |acc, (l, m)| f(acc, l, m))
    }

    pub(crate) fn family(&self) -> Family<L, M> {
        self.family.clone()
    }
}
