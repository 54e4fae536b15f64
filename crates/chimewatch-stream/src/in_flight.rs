//! A byte budget for records accepted but not yet durable: past it, producers refuse work instead of buffering.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use crate::ports::ProduceError;

#[derive(Debug, Clone)]
pub struct InFlight {
    used: Arc<AtomicU64>,
    limit: u64,
    retry_after: Duration,
    gauge: Gauge,
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Permit {
    used: Arc<AtomicU64>,
    bytes: u64,
    gauge: Gauge,
}

impl InFlight {
    pub fn new(limit: u64, retry_after: Duration, gauge: Gauge) -> Self {
        Self { used: Arc::new(AtomicU64::new(0)), limit, retry_after, gauge }
    }

    /// Takes `bytes` from the budget, or says the stream is at capacity. A request larger than the whole budget is
    /// admitted alone when nothing else is waiting, so it can never be refused forever.
    pub fn acquire(&self, bytes: u64) -> Result<Permit, ProduceError> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            if current > 0 && current.saturating_add(bytes) > self.limit {
                return Err(ProduceError::Overloaded {
                    in_flight_bytes: current,
                    limit_bytes: self.limit,
                    retry_after: self.retry_after,
                });
            }
            match self.used.compare_exchange_weak(current, current + bytes, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.gauge.set(i64::try_from(current + bytes).unwrap_or(i64::MAX));
        Ok(Permit { used: self.used.clone(), bytes, gauge: self.gauge.clone() })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn has_room(&self) -> bool {
        self.used() < self.limit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let before = self.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.gauge.set(i64::try_from(before - self.bytes).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_enforced_and_released() {
        let f = InFlight::new(100, Duration::from_secs(1), Gauge::default());
        let a = f.acquire(60).unwrap();
        assert!(matches!(f.acquire(50), Err(ProduceError::Overloaded { in_flight_bytes: 60, .. })));
        let b = f.acquire(40).unwrap();
        assert_eq!(f.used(), 100);
        drop((a, b));
        assert_eq!(f.used(), 0);
        // Larger than the budget, but alone: admitted.
        let big = f.acquire(1000).unwrap();
        assert!(f.acquire(1).is_err());
        drop(big);
    }
}
