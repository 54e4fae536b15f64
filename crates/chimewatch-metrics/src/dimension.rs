//! The one rule for dimension values: whatever a client sent becomes a value CloudWatch accepts.
//!
//! CloudWatch takes dimension values of 1 to 1,024 ASCII characters, with at least one that is not whitespace, and no
//! control characters (Amazon CloudWatch API Reference, `Dimension`); a request with any other value is refused
//! whole with 400 `InvalidParameterValue`. Values come from clients (`sdkName`, `meetingStatus`, error names, SIP
//! `Reason` headers, Voice Connector ids), so every value goes through [`value`] before it names a series:
//! - surrounding whitespace is trimmed (`"Chrome "` and `"Chrome"` are one series);
//! - printable ASCII stays as it is, except `%`, which becomes `%25`; every other character (non-ASCII, control)
//!   becomes `%XX` per UTF-8 byte, so distinct values stay distinct (`café` is `caf%C3%A9`);
//! - an empty or blank value becomes [`UNKNOWN`](crate::catalogue::UNKNOWN), as a missing attribute does;
//! - a value longer than 1,024 characters is cut to 1,007 and ends in `~` and 16 hex digits of a hash of the whole,
//!   so two long values that share their start stay two series.
//!
//! [`check_value`] and [`check_name`] state the rule CloudWatch applies; the sinks use them to refuse what CloudWatch
//! would refuse before anything is sent.

use std::borrow::Cow;
use std::fmt::Write;

use crate::catalogue::UNKNOWN;

/// Longest dimension value CloudWatch accepts, in characters.
pub const MAX_VALUE_CHARS: usize = 1024;
/// Longest dimension name (and metric name) CloudWatch accepts, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Most dimensions on one datum.
pub const MAX_DIMENSIONS: usize = 30;

/// The first `n` characters of `s`, borrowed: how a long client string (an error name, a SIP `Reason`) is kept short
/// before it names a series.
pub fn first_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// `raw` as a dimension value CloudWatch accepts (see the module documentation).
pub fn value(raw: &str) -> Cow<'_, str> {
    let trimmed = raw.trim_ascii();
    if trimmed.is_empty() {
        return Cow::Borrowed(UNKNOWN);
    }
    // Every byte looked at, without an early exit: the loop vectorizes, and values are short and almost always plain.
    let plain = trimmed.bytes().fold(true, |plain, b| plain & (0x20..0x7f).contains(&b) & (b != b'%'));
    let escaped: Cow<'_, str> = if plain {
        Cow::Borrowed(trimmed)
    } else {
        let mut out = String::with_capacity(trimmed.len() + 8);
        for b in trimmed.bytes() {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        Cow::Owned(out)
    };
    if escaped.len() <= MAX_VALUE_CHARS {
        return escaped;
    }
    // All ASCII now, so any byte index is a character boundary; never cut an escape in two.
    let mut cut = MAX_VALUE_CHARS - 17;
    if let Some(p) = escaped[cut.saturating_sub(2)..cut].find('%') {
        cut = cut - 2 + p;
    }
    Cow::Owned(format!("{}~{:016x}", &escaped[..cut], fnv1a(trimmed.as_bytes())))
}

/// Why CloudWatch would refuse `v` as a dimension value, if it would.
pub fn check_value(v: &str) -> Result<(), String> {
    let chars = v.chars().count();
    if chars == 0 || chars > MAX_VALUE_CHARS {
        return Err(format!("must be 1 to {MAX_VALUE_CHARS} characters, has {chars}"));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!("must be ASCII without control characters, has {c:?}"));
    }
    if v.chars().all(|c| c.is_ascii_whitespace()) {
        return Err("must not be only whitespace".into());
    }
    Ok(())
}

/// Why CloudWatch would refuse `n` as a dimension or metric name, if it would.
pub fn check_name(n: &str) -> Result<(), String> {
    let chars = n.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters, has {chars}"));
    }
    if let Some(c) = n.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(format!("must be ASCII without control characters, has {c:?}"));
    }
    if n.starts_with(':') {
        return Err("must not start with ':'".into());
    }
    if n.chars().all(|c| c.is_ascii_whitespace()) {
        return Err("must not be only whitespace".into());
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable digest for the suffix of cut values (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(raw: &str, expect: &str) {
        assert_eq!(value(raw), expect, "value({raw:?})");
    }

    #[test]
    fn values_clients_send_become_values_cloudwatch_takes() {
        check("Chrome", "Chrome");
        check("  Chrome \t", "Chrome");
        check("café\u{7} ", "caf%C3%A9%07");
        check("   ", UNKNOWN);
        check("", UNKNOWN);
        check("100%", "100%25");
        check("a\nb", "a%0Ab");
        let long = value(&"x".repeat(2000)).into_owned();
        assert_eq!(long.len(), MAX_VALUE_CHARS);
        assert!(long.starts_with(&"x".repeat(1000)) && long.as_bytes()[1007] == b'~', "{long}");
        assert_ne!(value(&format!("{}a", "x".repeat(2000))), value(&format!("{}b", "x".repeat(2000))));
        // An escape is never cut in two.
        let escapes = value(&"é".repeat(400)).into_owned();
        assert!(
            check_value(&escapes).is_ok() && escapes.split('~').next().unwrap().len().is_multiple_of(3),
            "{escapes}"
        );
    }

    #[test]
    fn the_check_states_cloudwatchs_rule() {
        assert!(check_value("Chrome").is_ok());
        for bad in ["", "   ", "caf\u{e9}", "a\u{7}b", &"x".repeat(1025)] {
            assert!(check_value(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("sdkName").is_ok());
        assert!(check_name(":x").is_err() && check_name(&"n".repeat(256)).is_err() && check_name("").is_err());
    }

    proptest! {
        #[test]
        fn any_string_becomes_a_valid_value(raw in any::<String>()) {
            let v = value(&raw);
            prop_assert!(check_value(&v).is_ok(), "{:?} -> {:?}", raw, v);
        }

        #[test]
        fn distinct_trimmed_values_stay_distinct(a in "[ -~é\u{0}-\u{1f}]{1,40}", b in "[ -~é\u{0}-\u{1f}]{1,40}") {
            let (ta, tb) = (a.trim_matches(|c: char| c.is_ascii_whitespace()), b.trim_matches(|c: char| c.is_ascii_whitespace()));
            prop_assume!(ta != tb && !ta.is_empty() && !tb.is_empty() && ta != UNKNOWN && tb != UNKNOWN);
            prop_assert_ne!(value(&a), value(&b));
        }
    }
}
