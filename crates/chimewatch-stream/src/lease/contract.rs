//! The behaviour every [`LeaseStore`] must have, as one check run against each store (memory in unit tests,
//! DynamoDB on moto in the end-to-end tests), so that the planner can rely on it whatever the backend. Compiled
//! only for tests and with the `testing` feature: a violation panics, as a failed assertion does.
#![allow(clippy::unwrap_used)]

use super::{Checkpoint, Lease, LeaseError, LeaseStore};

/// A new, unowned lease.
pub fn lease(id: &str, parents: &[&str]) -> Lease {
    Lease {
        shard_id: id.into(),
        owner: None,
        counter: 0,
        checkpoint: Checkpoint::TrimHorizon,
        parents: parents.iter().map(|p| (*p).into()).collect(),
    }
}

/// Runs the contract on an empty store; panics with the first violation. Shard ids are prefixed with `prefix` so
/// several runs can share a table.
pub async fn check(store: &dyn LeaseStore, prefix: &str) {
    let id = |s: &str| format!("{prefix}{s}");
    let (a, b) = (id("shard-a"), id("shard-b"));
    assert!(store.create_if_absent(lease(&a, &[])).await.unwrap(), "creates a missing lease");
    assert!(store.create_if_absent(lease(&b, &[&a])).await.unwrap());
    assert!(!store.create_if_absent(lease(&a, &[])).await.unwrap(), "keeps an existing lease");

    let listed: Vec<Lease> =
        store.list().await.unwrap().into_iter().filter(|l| l.shard_id.starts_with(prefix)).collect();
    assert_eq!(listed, vec![lease(&a, &[]), lease(&b, &[&a])], "lists leases with their parents");

    let taken = store.take(&a, 0, "w1").await.unwrap();
    assert_eq!((taken.owner.as_deref(), taken.counter), (Some("w1"), 1), "take sets the owner and bumps the counter");
    assert_eq!(store.get(&a).await.unwrap(), Some(taken.clone()), "get reads one lease as it stands");
    assert_eq!(store.get(&id("shard-none")).await.unwrap(), None, "get of a missing lease");
    assert!(
        matches!(store.take(&a, 0, "w2").await, Err(LeaseError::Conflict { .. })),
        "take is conditional on the counter"
    );

    let renewed = store.renew(&a, "w1", 1).await.unwrap();
    assert_eq!(renewed.counter, 2, "renew bumps the counter");
    assert!(
        matches!(store.renew(&a, "w1", 1).await, Err(LeaseError::Conflict { .. })),
        "renew is conditional on the counter"
    );
    assert!(
        matches!(store.renew(&a, "w2", 2).await, Err(LeaseError::Conflict { .. })),
        "renew is conditional on the owner"
    );

    let at = Checkpoint::At {
        sequence: crate::SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap(),
        sub_sequence: 3,
    };
    store.checkpoint(&a, "w1", 2, at.clone()).await.unwrap();
    // w2 takes the lease; w1, unaware, is fenced.
    let stolen = store.take(&a, 2, "w2").await.unwrap();
    assert_eq!(
        (stolen.owner.as_deref(), stolen.counter, &stolen.checkpoint),
        (Some("w2"), 3, &at),
        "a take keeps the checkpoint"
    );
    assert!(
        matches!(store.checkpoint(&a, "w1", 2, Checkpoint::ShardEnd).await, Err(LeaseError::Conflict { .. })),
        "the old owner is fenced"
    );
    store.checkpoint(&a, "w2", 3, Checkpoint::ShardEnd).await.unwrap();
    let end = store.list().await.unwrap().into_iter().find(|l| l.shard_id == a).unwrap();
    assert_eq!((end.checkpoint, end.owner.as_deref(), end.counter), (Checkpoint::ShardEnd, Some("w2"), 3));

    // A release frees the lease for anyone, keeping the checkpoint; only the owner at the counter can release.
    store.take(&b, 0, "w1").await.unwrap();
    store.checkpoint(&b, "w1", 1, at.clone()).await.unwrap();
    assert!(
        matches!(store.release(&b, "w2", 1).await, Err(LeaseError::Conflict { .. })),
        "release is conditional on the owner"
    );
    store.release(&b, "w1", 1).await.unwrap();
    let freed = store.list().await.unwrap().into_iter().find(|l| l.shard_id == b).unwrap();
    assert_eq!((freed.owner, freed.counter, freed.checkpoint), (None, 2, at), "release clears the owner only");
    assert!(
        matches!(store.renew(&b, "w1", 2).await, Err(LeaseError::Conflict { .. })),
        "a released lease cannot be renewed"
    );
}
