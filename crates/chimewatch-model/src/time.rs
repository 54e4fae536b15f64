//! Time as data: milliseconds since the Unix epoch, the type times cross crate boundaries in (event times, arrival
//! times, clocks), so that a count of milliseconds is never confused with a duration or another unit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

/// Where the services read the time from: the system clock in production, a fixed or stepped one in tests.
pub type Clock = fn() -> UnixMillis;

impl UnixMillis {
    pub const fn as_i64(self) -> i64 {
        self.0
    }

    /// The time `d` later, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The time `d` earlier, saturating at the start of time.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl std::fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_durations_are_never_negative() {
        let t = UnixMillis(1_000);
        assert_eq!(t.saturating_add(Duration::from_secs(2)), UnixMillis(3_000));
        assert_eq!(UnixMillis(i64::MAX).saturating_add(Duration::from_secs(1)), UnixMillis(i64::MAX));
        assert_eq!(UnixMillis(i64::MIN + 5).saturating_sub(Duration::from_secs(1)), UnixMillis(i64::MIN));
        assert_eq!(UnixMillis(5_000).since(t), Duration::from_secs(4));
        assert_eq!(t.since(UnixMillis(5_000)), Duration::ZERO);
    }
}
