//! Partition keys and the 128-bit hash keys Kinesis derives from them to pick a shard.
//!
//! One attendee's events of one meeting share a key, so they stay in order on one shard; so do one call's SIP
//! messages. The embedded log uses the same hash space, split evenly, so both backends route alike.

use md5::{Digest, Md5};

use crate::record::Record;

/// Kinesis accepts partition keys of at most 256 characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// A position in the 128-bit hash key space: the MD5 of a partition key, read big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashKey(pub u128);

impl HashKey {
    pub fn of(partition_key: &str) -> Self {
        Self(u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into()))
    }

    /// The shard among `shards` equal slices of the hash space, as `CreateStream` lays out a new stream.
    pub fn even_slice(self, shards: u32) -> u32 {
        if shards <= 1 {
            return 0;
        }
        let shards = u128::from(shards);
        let width = u128::MAX / shards + 1;
        // The last slice absorbs the rounding remainder.
        u32::try_from((self.0 / width).min(shards - 1)).unwrap_or(0)
    }
}

/// The partition key of a record: meeting and attendee for events, connector and call for SIP messages.
pub fn partition_key_for(record: &Record) -> String {
    match record {
        Record::MeetingEvent(r) => {
            partition_key(r.event.meeting_id().unwrap_or(""), r.event.attendee_id().unwrap_or(""))
        }
        Record::SipMessage(r) => partition_key(&r.record.voice_connector_id, &r.record.call_id),
    }
}

/// `"{first}/{second}"`, or its digest when that is too long for Kinesis.
pub fn partition_key(first: &str, second: &str) -> String {
    let key = format!("{first}/{second}");
    if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
        key
    } else {
        // Too long for Kinesis: its digest keeps it stable and unique enough.
        hex_digest(&key)
    }
}

fn hex_digest(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_hash_key_matches_kinesis() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(HashKey::of("a").0, 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn even_slices_cover_the_space() {
        assert_eq!(HashKey(0).even_slice(4), 0);
        assert_eq!(HashKey(u128::MAX).even_slice(4), 3);
        assert_eq!(HashKey(u128::MAX / 4).even_slice(4), 0);
        assert_eq!(HashKey(u128::MAX / 4 + 1).even_slice(4), 1);
        assert_eq!(HashKey(u128::MAX).even_slice(1), 0);
        assert_eq!(HashKey(u128::MAX).even_slice(3), 2);
    }

    proptest! {
        #[test]
        fn slices_are_in_range_and_monotonic(a in any::<u128>(), b in any::<u128>(), n in 1u32..1000) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(HashKey(hi).even_slice(n) < n);
            prop_assert!(HashKey(lo).even_slice(n) <= HashKey(hi).even_slice(n));
        }
    }
}
