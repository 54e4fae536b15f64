//! Consumers' holds on the embedded log: per shard, the oldest position each registered consumer still needs.
//! Retention never deletes a segment holding records at or past the oldest of them; when the byte budget can only be
//! kept by deleting such records, the writer refuses puts instead.
//!
//! A consumer of the log resumes after a crash from its last *checkpoint*, not from what it last read, so its hold is
//! its checkpoint: [`HeldCheckpoints`] wraps the consumer's lease store and publishes every checkpoint it stores (and
//! every one it lists, which is how a restarted process learns them) as the consumer's hold.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::source::shard_number;
use crate::lease::{Checkpoint, Lease, LeaseError, LeaseStore};

/// Every hold on one log.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    holders: BTreeMap<u64, Holder>,
}

#[derive(Debug)]
struct Holder {
    consumer: String,
    /// Per shard, the oldest sequence number the consumer still needs.
    needed: Vec<u64>,
}

impl Holds {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a consumer that needs everything of every shard until it says otherwise.
    pub fn register(self: &Arc<Self>, consumer: &str, shards: u32) -> ConsumerHold {
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        table.holders.insert(id, Holder { consumer: consumer.to_owned(), needed: vec![0; shards as usize] });
        ConsumerHold { holds: self.clone(), id, consumer: consumer.to_owned() }
    }

    /// The oldest position any consumer needs in `shard`, and that consumer's name; `None` when nobody holds it.
    pub fn oldest_needed(&self, shard: u32) -> Option<(u64, String)> {
        self.table()
            .holders
            .values()
            .filter_map(|h| h.needed.get(shard as usize).map(|n| (*n, &h.consumer)))
            .min_by_key(|(n, _)| *n)
            .map(|(n, c)| (n, c.clone()))
    }
}

/// One consumer's hold on the log, from [`LocalLog::hold`](super::LocalLog::hold); dropping it lets retention
/// delete what only this consumer still needed.
#[derive(Debug)]
pub struct ConsumerHold {
    holds: Arc<Holds>,
    id: u64,
    consumer: String,
}

impl ConsumerHold {
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Publishes that the consumer needs `shard` only from `position` (a sequence number) on: it would resume there
    /// after a crash. Moving it back is allowed (it only keeps more).
    pub fn set(&self, shard: u32, position: u64) {
        if let Some(needed) =
            self.holds.table().holders.get_mut(&self.id).and_then(|h| h.needed.get_mut(shard as usize))
        {
            *needed = position;
        }
    }

    /// What the consumer needs of `shard`, from this sequence number on.
    pub fn needed_from(&self, shard: u32) -> Option<u64> {
        self.holds.table().holders.get(&self.id).and_then(|h| h.needed.get(shard as usize).copied())
    }

    /// Wraps the consumer's lease store so that every checkpoint it stores or lists becomes this hold.
    pub fn checkpoints<S: LeaseStore>(self, store: S) -> HeldCheckpoints<S> {
        HeldCheckpoints { hold: self, inner: store }
    }

    fn publish(&self, shard_id: &str, checkpoint: &Checkpoint) {
        let Some(shard) = shard_number(shard_id) else { return };
        match checkpoint {
            Checkpoint::TrimHorizon => self.set(shard, 0),
            // The consumer resumes at (not after) this record: an aggregate there may be only partly processed.
            Checkpoint::At { sequence, .. } => match sequence.as_str().parse() {
                Ok(position) => self.set(shard, position),
                Err(_) => tracing::warn!(
                    consumer = %self.consumer,
                    shard = shard_id,
                    %sequence,
                    "A checkpoint is not an embedded log offset; the consumer's hold on the shard stays where it was."
                ),
            },
            // Never on the embedded log (its shards do not end); a finished shard needs nothing more.
            Checkpoint::ShardEnd => self.set(shard, u64::MAX),
        }
    }
}

impl Drop for ConsumerHold {
    fn drop(&mut self) {
        self.holds.table().holders.remove(&self.id);
    }
}

/// A lease store that publishes the consumer's checkpoints as its [`ConsumerHold`] on the log.
#[derive(Debug)]
pub struct HeldCheckpoints<S> {
    hold: ConsumerHold,
    inner: S,
}

impl<S> HeldCheckpoints<S> {
    pub fn hold(&self) -> &ConsumerHold {
        &self.hold
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for HeldCheckpoints<S> {
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let leases = self.inner.list().await?;
        for lease in &leases {
            self.hold.publish(&lease.shard_id, &lease.checkpoint);
        }
        Ok(leases)
    }

    async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        self.inner.get(shard_id).await
    }

    async fn create_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        self.inner.create_if_absent(lease).await
    }

    async fn take(&self, shard_id: &str, expected: u64, owner: &str) -> Result<Lease, LeaseError> {
        self.inner.take(shard_id, expected, owner).await
    }

    async fn renew(&self, shard_id: &str, owner: &str, expected: u64) -> Result<Lease, LeaseError> {
        self.inner.renew(shard_id, owner, expected).await
    }

    async fn checkpoint(
        &self,
        shard_id: &str,
        owner: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        // Published only once stored: until then a crash would resume from the previous checkpoint.
        self.inner.checkpoint(shard_id, owner, expected, checkpoint.clone()).await?;
        self.hold.publish(shard_id, &checkpoint);
        Ok(())
    }

    async fn release(&self, shard_id: &str, owner: &str, expected: u64) -> Result<(), LeaseError> {
        self.inner.release(shard_id, owner, expected).await
    }
}

#[cfg(test)]
mod tests;
