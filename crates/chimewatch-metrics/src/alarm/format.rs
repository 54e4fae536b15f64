//! How CloudWatch writes times and numbers in alarm reasons and notifications, without a date crate.
//!
//! - [`iso8601`]: `2026-01-12T17:00:00.000+0000`, the form of `StateChangeTime` and of the times in
//!   `StateReasonData`.
//! - [`short_time`]: `12/01/26 17:00:00` (day/month/year), the form of datapoint times in a state reason.
//! - [`java_double`]: `12.0`, `0.25`, `1.0E7`, the way CloudWatch (a Java service) prints a double.

use chimewatch_model::Civil;

/// `2026-01-12T17:00:00.000+0000`.
pub fn iso8601(ms: i64) -> String {
    let c = Civil::of(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}

/// `12/01/26 17:00:00`: day, month, two-digit year, as CloudWatch lists datapoints in a state reason.
pub fn short_time(ms: i64) -> String {
    let c = Civil::of(ms);
    format!("{:02}/{:02}/{:02} {:02}:{:02}:{:02}", c.day, c.month, c.year.rem_euclid(100), c.hour, c.minute, c.second)
}

/// `v` as Java's `Double.toString` writes it: a decimal with at least one fractional digit from 10⁻³ to 10⁷,
/// scientific notation (`1.0E7`) outside.
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        // Rust's shortest round-trip form; in this range it has no exponent and always a fractional part.
        return format!("{v:?}");
    }
    let s = format!("{v:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    if mantissa.contains('.') { format!("{mantissa}E{exponent}") } else { format!("{mantissa}.0E{exponent}") }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn times_are_written_as_cloudwatch_writes_them() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+0000");
        // 2026-01-12T17:00:00Z, a Monday.
        assert_eq!(iso8601(1_768_237_200_000), "2026-01-12T17:00:00.000+0000");
        assert_eq!(short_time(1_768_237_200_000), "12/01/26 17:00:00");
        // A leap day, with milliseconds.
        assert_eq!(iso8601(1_709_164_800_123 + 3_661_000), "2024-02-29T01:01:01.123+0000");
        assert_eq!(short_time(1_709_164_800_000), "29/02/24 00:00:00");
        // Before the epoch.
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999+0000");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000+0000");
    }

    #[test]
    fn doubles_are_written_as_java_writes_them() {
        for (v, s) in [
            (12.0, "12.0"),
            (0.0, "0.0"),
            (0.5, "0.5"),
            (1234.0, "1234.0"),
            (38.364239895660816, "38.364239895660816"),
            (-3.25, "-3.25"),
            (0.001, "0.001"),
            (9_999_999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (1.5e-4, "1.5E-4"),
            (-2.5e21, "-2.5E21"),
        ] {
            assert_eq!(java_double(v), s, "{v}");
        }
    }

    proptest! {
        #[test]
        fn the_calendar_agrees_with_day_arithmetic(ms in -4_000_000_000_000_i64..8_000_000_000_000) {
            // Consecutive days differ by one calendar day, and the fields stay in range.
            let c = Civil::of(ms);
            prop_assert!((1..=12).contains(&c.month) && (1..=31).contains(&c.day));
            let next = Civil::of(ms + 86_400_000);
            let same_month = next.month == c.month && next.year == c.year;
            prop_assert!(
                (same_month && next.day == c.day + 1) || (next.day == 1 && (next.month == c.month % 12 + 1)),
                "{} then {}", iso8601(ms), iso8601(ms + 86_400_000)
            );
            prop_assert_eq!(java_double(ms as f64).parse::<f64>().ok(), Some(ms as f64));
        }
    }
}
