//! Which open shard a hash key lands on, from ListShards; refreshed when the stream is resharded.

use std::collections::BTreeMap;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::Shard;
use chimewatch_model::HashKey;

use super::KinesisError;
use super::errors::classify;
use crate::SequenceNumber;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub shard_id: String,
    pub start: u128,
    pub end: u128,
    pub parents: Vec<String>,
    /// Set once the shard is closed by a split or merge.
    pub ending_sequence_number: Option<SequenceNumber>,
}

impl ShardRange {
    pub fn is_open(&self) -> bool {
        self.ending_sequence_number.is_none()
    }

    pub(crate) fn from_sdk(shard: &Shard) -> Option<Self> {
        let range = shard.hash_key_range()?;
        let mut parents: Vec<String> = shard.parent_shard_id().into_iter().map(str::to_owned).collect();
        parents.extend(shard.adjacent_parent_shard_id().map(str::to_owned));
        Some(Self {
            shard_id: shard.shard_id().to_owned(),
            start: range.starting_hash_key().parse().ok()?,
            end: range.ending_hash_key().parse().ok()?,
            parents,
            ending_sequence_number: shard
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .and_then(|e| SequenceNumber::parse(e).ok()),
        })
    }
}

/// The open shards of a stream, sorted by hash range; and the hash range of every shard, closed ones too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    open: Vec<ShardRange>,
    ranges: BTreeMap<String, (u128, u128)>,
}

impl ShardMap {
    pub fn new(shards: Vec<ShardRange>) -> Self {
        let ranges = shards.iter().map(|s| (s.shard_id.clone(), (s.start, s.end))).collect();
        let mut open: Vec<_> = shards.into_iter().filter(ShardRange::is_open).collect();
        open.sort_by_key(|s| s.start);
        Self { open, ranges }
    }

    /// Whether `shard` (open or closed) covers `key`; `None` for a shard the map does not know.
    pub fn covers(&self, shard: &str, key: HashKey) -> Option<bool> {
        self.ranges.get(shard).map(|(start, end)| (*start..=*end).contains(&key.0))
    }

    /// Whether `shard` is one of the open shards.
    pub fn is_open(&self, shard: &str) -> bool {
        self.open.iter().any(|s| s.shard_id == shard)
    }

    pub fn shard_for(&self, key: HashKey) -> Option<&str> {
        let i = self.open.partition_point(|s| s.start <= key.0);
        i.checked_sub(1).map(|i| &self.open[i]).filter(|s| key.0 <= s.end).map(|s| s.shard_id.as_str())
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Every shard of the stream, open and closed, following ListShards pagination.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardRange>, KinesisError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        // NextToken and StreamName are mutually exclusive in ListShards.
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(|e| classify("ListShards", stream, &e))?;
        out.extend(page.shards().iter().filter_map(ShardRange::from_sdk));
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(id: &str, start: u128, end: u128, closed: bool) -> ShardRange {
        ShardRange {
            shard_id: id.into(),
            start,
            end,
            parents: vec![],
            ending_sequence_number: closed.then(|| SequenceNumber::from(9)),
        }
    }

    #[test]
    fn keys_map_to_the_open_shard_covering_them() {
        let half = u128::MAX / 2;
        let map = ShardMap::new(vec![
            range("parent", 0, u128::MAX, true),
            range("b", half + 1, u128::MAX, false),
            range("a", 0, half, false),
        ]);
        assert_eq!(map.len(), 2);
        assert_eq!(map.shard_for(HashKey(0)), Some("a"));
        assert_eq!(map.shard_for(HashKey(half)), Some("a"));
        assert_eq!(map.shard_for(HashKey(half + 1)), Some("b"));
        assert_eq!(map.shard_for(HashKey(u128::MAX)), Some("b"));
        assert_eq!(ShardMap::default().shard_for(HashKey(5)), None);
        assert_eq!(map.covers("parent", HashKey(u128::MAX)), Some(true), "closed shards keep their range");
        assert_eq!(map.covers("a", HashKey(half + 1)), Some(false));
        assert_eq!(map.covers("gone", HashKey(0)), None);
    }
}
