//! Where archived records go: Hive-style partitions by EVENT time (UTC), and deterministic object keys.
//!
//! A key names the table, the partition, the shard and the first and last sequence numbers of the records the file
//! holds: `meeting_events/dt=2026-11-21/hour=13/shardId-000000000001-<first>-<last>.parquet`. Writing the same
//! records again after a crash produces the same key, so an overwrite replaces rather than duplicates.

use chimewatch_model::time::civil_from_days;

/// A table of the archive, and its prefix under the archive's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    MeetingEvents,
    SipMessages,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Self::MeetingEvents => "meeting_events",
            Self::SipMessages => "sip_messages",
        }
    }
}

/// One hour of event time, the unit files are partitioned by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
}

impl Partition {
    /// The partition of an event time in milliseconds since the epoch (UTC).
    pub fn of(event_ms: i64) -> Self {
        let hours = event_ms.div_euclid(3_600_000);
        let (year, month, day) = civil_from_days(hours.div_euclid(24));
        // The casts hold for any i64 of milliseconds: its year fits an i32, a month, day and hour a u8.
        Self { year: year as i32, month: month as u8, day: day as u8, hour: hours.rem_euclid(24) as u8 }
    }

    /// `dt=YYYY-MM-DD/hour=HH`, as Athena partition projection and DuckDB's hive partitioning read it.
    pub fn path(&self) -> String {
        format!("dt={:04}-{:02}-{:02}/hour={:02}", self.year, self.month, self.day, self.hour)
    }
}

/// The file format of an archived object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    NdjsonGzip,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::NdjsonGzip => "ndjson.gz",
        }
    }
}

/// Where an archive starts in its bucket: `prefix` with one trailing slash, or empty for the bucket's root.
pub fn root(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() { String::new() } else { format!("{p}/") }
}

/// The key of the object holding `table`'s records of `partition` read from `shard` between sequence numbers
/// `first` and `last` (inclusive), under `prefix` (empty for the bucket's root).
pub fn object_key(
    prefix: &str,
    table: Table,
    partition: Partition,
    shard: &str,
    first: &str,
    last: &str,
    format: Format,
) -> String {
    format!("{}{}/{}/{shard}-{first}-{last}.{}", root(prefix), table.name(), partition.path(), format.extension())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn partitions_are_utc_hours_of_event_time() {
        assert_eq!(Partition::of(0).path(), "dt=1970-01-01/hour=00");
        assert_eq!(Partition::of(1_763_712_000_000).path(), "dt=2025-11-21/hour=08");
        assert_eq!(Partition::of(1_763_715_599_999).path(), "dt=2025-11-21/hour=08");
        assert_eq!(Partition::of(1_763_715_600_000).path(), "dt=2025-11-21/hour=09");
        assert_eq!(Partition::of(951_782_400_000).path(), "dt=2000-02-29/hour=00", "a leap day");
        assert_eq!(Partition::of(-1).path(), "dt=1969-12-31/hour=23");
    }

    #[test]
    fn keys_are_derived_from_the_shard_and_the_sequence_range() {
        let p = Partition::of(1_763_712_000_000);
        assert_eq!(
            object_key("/archive/", Table::MeetingEvents, p, "shardId-000000000001", "4968", "4971", Format::Parquet),
            "archive/meeting_events/dt=2025-11-21/hour=08/shardId-000000000001-4968-4971.parquet"
        );
        assert_eq!(
            object_key("", Table::SipMessages, p, "shard-0002", "0", "812", Format::NdjsonGzip),
            "sip_messages/dt=2025-11-21/hour=08/shard-0002-0-812.ndjson.gz"
        );
    }

    proptest! {
        #[test]
        fn every_instant_falls_in_the_hour_that_contains_it(ms in -62_000_000_000_000i64..253_000_000_000_000) {
            let p = Partition::of(ms);
            prop_assert!((1..=12).contains(&p.month) && (1..=31).contains(&p.day) && p.hour < 24);
            // The next hour's partition is never earlier, and an hour later is always a different partition.
            prop_assert!(Partition::of(ms + 3_600_000) > p);
            prop_assert_eq!(Partition::of(ms - ms.rem_euclid(3_600_000)), p);
        }
    }
}
