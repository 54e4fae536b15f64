//! The Kinesis Producer Library aggregation format: many user records in one Kinesis record.
//!
//! `0xF3 0x89 0x9A 0xC2 || protobuf AggregatedRecord || MD5(protobuf)`. The KCL, Firehose and this crate
//! de-aggregate it; a record without the magic is a plain single user record.

use md5::{Digest, Md5};
use prost::Message;

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;
/// Bytes an aggregate adds around its records: the magic and the digest.
pub const OVERHEAD: usize = MAGIC.len() + DIGEST_LEN;

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<AggregatedEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AggregatedEntry {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// One user record, as put by a producer and seen by a consumer after de-aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

impl UserRecord {
    /// The hash key that picks the record's shard: the explicit one when set (and valid), else the partition key's.
    pub fn hash_key(&self) -> crate::HashKey {
        match self.explicit_hash_key.as_deref().and_then(|k| k.parse().ok()) {
            Some(k) => crate::HashKey(k),
            None => crate::HashKey::of(&self.partition_key),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("KPL aggregate is {len} bytes, shorter than its magic and digest")]
    TooShort { len: usize },
    #[error("KPL aggregate digest does not match its contents")]
    DigestMismatch,
    #[error("KPL aggregate protobuf is malformed: {0}")]
    Protobuf(String),
    #[error("KPL aggregate entry {index} names {field} index {value}, but the table has {len} entries")]
    BadIndex { index: usize, field: &'static str, value: u64, len: usize },
}

pub fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// De-aggregates one Kinesis record; a plain record comes back as itself under the record's partition key.
pub fn deaggregate(data: &[u8], partition_key: &str) -> Result<Vec<UserRecord>, KplError> {
    if !is_aggregated(data) {
        return Ok(vec![UserRecord {
            partition_key: partition_key.to_owned(),
            explicit_hash_key: None,
            data: data.to_vec(),
        }]);
    }
    if data.len() < OVERHEAD {
        return Err(KplError::TooShort { len: data.len() });
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - OVERHEAD);
    if Md5::digest(body).as_slice() != digest {
        return Err(KplError::DigestMismatch);
    }
    let agg = AggregatedRecord::decode(body).map_err(|e| KplError::Protobuf(e.to_string()))?;
    let AggregatedRecord { partition_key_table: keys, explicit_hash_key_table: hash_keys, records } = agg;
    records
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            let pk =
                usize::try_from(r.partition_key_index).ok().and_then(|i| keys.get(i)).ok_or(KplError::BadIndex {
                    index,
                    field: "partition key",
                    value: r.partition_key_index,
                    len: keys.len(),
                })?;
            let ehk =
                match r.explicit_hash_key_index {
                    None => None,
                    Some(i) => Some(usize::try_from(i).ok().and_then(|i| hash_keys.get(i)).cloned().ok_or(
                        KplError::BadIndex { index, field: "explicit hash key", value: i, len: hash_keys.len() },
                    )?),
                };
            Ok(UserRecord { partition_key: pk.clone(), explicit_hash_key: ehk, data: r.data })
        })
        .collect()
}

/// Builds one aggregate incrementally, knowing its exact encoded size at every step.
#[derive(Debug, Default, Clone)]
pub struct Aggregator {
    record: AggregatedRecord,
    encoded_len: usize,
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.record.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record.records.is_empty()
    }

    /// Size of the finished aggregate, magic and digest included.
    pub fn size(&self) -> usize {
        self.encoded_len + OVERHEAD
    }

    /// The size the aggregate would have with one more record.
    pub fn size_with(&self, partition_key: &str, data_len: usize) -> usize {
        self.size() + self.added_len(partition_key, data_len).0
    }

    fn added_len(&self, partition_key: &str, data_len: usize) -> (usize, Option<usize>) {
        use prost::encoding::encoded_len_varint as varint;
        let existing = self.record.partition_key_table.iter().position(|k| k == partition_key);
        let (index, key_len) = match existing {
            Some(i) => (i, 0),
            None => {
                let l = partition_key.len();
                (self.record.partition_key_table.len(), 1 + varint(l as u64) + l)
            }
        };
        let entry = 1 + varint(index as u64) + 1 + varint(data_len as u64) + data_len;
        (key_len + 1 + varint(entry as u64) + entry, existing)
    }

    pub fn push(&mut self, partition_key: &str, data: Vec<u8>) {
        let (added, existing) = self.added_len(partition_key, data.len());
        let index = existing.unwrap_or_else(|| {
            self.record.partition_key_table.push(partition_key.to_owned());
            self.record.partition_key_table.len() - 1
        });
        self.record.records.push(AggregatedEntry {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data,
            tags: Vec::new(),
        });
        self.encoded_len += added;
    }

    /// The partition key of the first record, which the aggregate is put under.
    pub fn first_partition_key(&self) -> Option<&str> {
        self.record.partition_key_table.first().map(String::as_str)
    }

    pub fn finish(self) -> Vec<u8> {
        let body = self.record.encode_to_vec();
        let mut out = Vec::with_capacity(body.len() + OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_records_pass_through() {
        let out = deaggregate(b"{\"x\":1}", "pk").unwrap();
        assert_eq!(
            out,
            vec![UserRecord { partition_key: "pk".into(), explicit_hash_key: None, data: b"{\"x\":1}".to_vec() }]
        );
    }

    #[test]
    fn corrupt_aggregates_are_errors() {
        let mut agg = Aggregator::new();
        agg.push("k", b"hello".to_vec());
        let mut bytes = agg.finish();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(deaggregate(&bytes, "k"), Err(KplError::DigestMismatch));
        assert_eq!(deaggregate(&MAGIC, "k"), Err(KplError::TooShort { len: 4 }));
        // A valid digest over an entry pointing past the key table.
        let body = AggregatedRecord {
            partition_key_table: vec![],
            explicit_hash_key_table: vec![],
            records: vec![AggregatedEntry {
                partition_key_index: 3,
                explicit_hash_key_index: None,
                data: vec![],
                tags: vec![],
            }],
        }
        .encode_to_vec();
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&body);
        bad.extend_from_slice(&Md5::digest(&body));
        assert_eq!(
            deaggregate(&bad, "k"),
            Err(KplError::BadIndex { index: 0, field: "partition key", value: 3, len: 0 })
        );
    }

    proptest! {
        #[test]
        fn aggregate_round_trips_and_sizes_are_exact(
            records in prop::collection::vec(("[a-c]{1,3}", prop::collection::vec(any::<u8>(), 0..300)), 1..40)
        ) {
            let mut agg = Aggregator::new();
            for (pk, data) in &records {
                let predicted = agg.size_with(pk, data.len());
                agg.push(pk, data.clone());
                prop_assert_eq!(agg.size(), predicted);
            }
            let size = agg.size();
            let bytes = agg.finish();
            prop_assert_eq!(bytes.len(), size);
            let out = deaggregate(&bytes, "ignored").unwrap();
            let expect: Vec<_> = records.into_iter().map(|(pk, data)| UserRecord { partition_key: pk, explicit_hash_key: None, data }).collect();
            prop_assert_eq!(out, expect);
        }

        #[test]
        fn deaggregate_is_total(tail in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = deaggregate(&bytes, "k");
        }
    }
}
