//! An in-memory lease store with the conditional-write semantics of the DynamoDB one: for tests, and for the
//! embedded log, where one process holds every lease.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Checkpoint, Lease, LeaseError, LeaseStore};

#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl MemoryLeaseStore {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Lease>) -> Result<T, LeaseError>) -> Result<T, LeaseError> {
        let mut leases = self.leases.lock().map_err(|_| LeaseError::Store("lease table lock poisoned".into()))?;
        f(&mut leases)
    }

    /// Puts leases back as they were saved (the file store's reopen).
    pub(crate) fn restore(&self, leases: impl IntoIterator<Item = Lease>) {
        if let Ok(mut map) = self.leases.lock() {
            map.extend(leases.into_iter().map(|l| (l.shard_id.clone(), l)));
        }
    }

    pub(crate) fn snapshot(&self) -> Result<Vec<Lease>, LeaseError> {
        self.with(|l| Ok(l.values().cloned().collect()))
    }
}

fn conditional<'a>(
    leases: &'a mut BTreeMap<String, Lease>,
    shard_id: &str,
    expected: u64,
) -> Result<&'a mut Lease, LeaseError> {
    let lease = leases.get_mut(shard_id).ok_or_else(|| LeaseError::Missing(shard_id.to_owned()))?;
    if lease.counter != expected {
        return Err(LeaseError::Conflict { shard_id: shard_id.to_owned(), expected });
    }
    Ok(lease)
}

fn owned<'a>(
    leases: &'a mut BTreeMap<String, Lease>,
    shard_id: &str,
    owner: &str,
    expected: u64,
) -> Result<&'a mut Lease, LeaseError> {
    let lease = conditional(leases, shard_id, expected)?;
    if lease.owner.as_deref() != Some(owner) {
        return Err(LeaseError::Conflict { shard_id: shard_id.to_owned(), expected });
    }
    Ok(lease)
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        self.with(|l| Ok(l.values().cloned().collect()))
    }

    async fn create_if_absent(&self, lease: Lease) -> Result<bool, LeaseError> {
        self.with(|l| {
            if l.contains_key(&lease.shard_id) {
                return Ok(false);
            }
            l.insert(lease.shard_id.clone(), lease);
            Ok(true)
        })
    }

    async fn take(&self, shard_id: &str, expected: u64, owner: &str) -> Result<Lease, LeaseError> {
        self.with(|l| {
            let lease = conditional(l, shard_id, expected)?;
            lease.owner = Some(owner.to_owned());
            lease.counter += 1;
            Ok(lease.clone())
        })
    }

    async fn renew(&self, shard_id: &str, owner: &str, expected: u64) -> Result<Lease, LeaseError> {
        self.with(|l| {
            let lease = owned(l, shard_id, owner, expected)?;
            lease.counter += 1;
            Ok(lease.clone())
        })
    }

    async fn checkpoint(
        &self,
        shard_id: &str,
        owner: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError> {
        self.with(|l| {
            owned(l, shard_id, owner, expected)?.checkpoint = checkpoint;
            Ok(())
        })
    }

    async fn release(&self, shard_id: &str, owner: &str, expected: u64) -> Result<(), LeaseError> {
        self.with(|l| {
            let lease = owned(l, shard_id, owner, expected)?;
            lease.owner = None;
            lease.counter += 1;
            Ok(())
        })
    }
}
