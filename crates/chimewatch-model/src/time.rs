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

/// A UTC instant split into its calendar fields (proleptic Gregorian), from which each format the services write
/// (archive times, Logs Insights times, CloudWatch alarm times, the console's axes) is one `format!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Civil {
    /// The calendar fields of `ms` milliseconds since the epoch, for any instant before or after it.
    pub fn of(ms: i64) -> Self {
        let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
        // The casts hold: a count of milliseconds within one day fits in a u32.
        let in_day = ms.rem_euclid(86_400_000) as u32;
        Self {
            year,
            month,
            day,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1_000 % 60,
            millis: in_day % 1_000,
        }
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // The casts hold: a day is 1..=31 and a month 1..=12 by construction.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The inverse of [`civil_from_days`]: Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_convert_both_ways() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for days in [-800_000, -1, 0, 59, 19_782, 20_423, 3_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let c = Civil::of(1_709_164_800_123 + 3_661_000);
        assert_eq!((c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis), (2024, 2, 29, 1, 1, 1, 123));
        assert_eq!(Civil::of(-1).millis, 999);
    }

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
