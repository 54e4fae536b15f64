//! Leases: which worker processes which shard, with the semantics of the Kinesis Client Library, in Rust.
//!
//! One lease per shard: its owner, a counter the owner bumps on every renewal, a checkpoint, and the parent shards.
//! Every write is conditional on the counter (and owner) the writer last saw, so a worker that lost its lease is
//! fenced: its renewals and checkpoints fail instead of overwriting the new owner's. No clocks are compared across
//! workers: a worker deems a lease expired when its counter has not moved for the failover time by the worker's own
//! clock, as the KCL does.
//!
//! [`plan`] is sans-IO: from the leases, what this worker observed and `now`, it decides what to renew, take and
//! steal. The I/O - a [`LeaseStore`] such as DynamoDB, and the loop that applies the plan - lives elsewhere.
//!
//! # Layout
//! - this file: the lease record, the store port and the planner;
//! - [`memory`]: an in-memory store with the same conditional semantics, for tests and the embedded log;
//! - [`dynamodb`]: the DynamoDB store (the KCL's lease table, created when missing);
//! - [`file`]: the memory store saved to a file, the embedded log's checkpoint store;
//! - `contract` (tests and the `testing` feature): the behaviour every store must have, checked against each.

#[cfg(any(test, feature = "testing"))]
pub mod contract;
pub mod dynamodb;
pub mod file;
pub mod memory;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::SequenceNumber;

/// How far a shard has been processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing processed yet: start at the oldest record.
    TrimHorizon,
    /// Processed up to and including this record (the sub-sequence numbers a KPL aggregate's user records).
    At { sequence: SequenceNumber, sub_sequence: u64 },
    /// The shard is closed and fully processed: its children may start.
    ShardEnd,
}

impl Checkpoint {
    /// The KCL's text form of the checkpoint (`TRIM_HORIZON`, `SHARD_END` or the sequence number), with the
    /// sub-sequence number kept beside it.
    pub fn to_text(&self) -> (String, u64) {
        match self {
            Checkpoint::TrimHorizon => ("TRIM_HORIZON".to_owned(), 0),
            Checkpoint::ShardEnd => ("SHARD_END".to_owned(), 0),
            Checkpoint::At { sequence, sub_sequence } => (sequence.to_string(), *sub_sequence),
        }
    }

    /// Reads what [`Checkpoint::to_text`] wrote.
    pub fn from_text(text: &str, sub_sequence: u64) -> Result<Self, LeaseError> {
        Ok(match text {
            "TRIM_HORIZON" => Checkpoint::TrimHorizon,
            "SHARD_END" => Checkpoint::ShardEnd,
            sequence => Checkpoint::At {
                sequence: SequenceNumber::parse(sequence).map_err(|e| LeaseError::Store(format!("checkpoint: {e}")))?,
                sub_sequence,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    pub owner: Option<String>,
    /// Bumped by every successful take or renewal; every write is conditional on it.
    pub counter: u64,
    pub checkpoint: Checkpoint,
    pub parents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The lease changed since it was read: another worker took it, or it was renewed by its owner.
    #[error("lease {shard_id} changed since it was read (expected counter {expected})")]
    Conflict { shard_id: String, expected: u64 },
    #[error("no lease for shard {0}")]
    Missing(String),
    #[error("lease store: {0}")]
    Store(String),
}

/// The lease table: DynamoDB in AWS, memory for tests and the embedded log.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    async fn list(&self) -> Result<Vec<Lease>, LeaseError>;
    /// One lease, read consistently (a processor asks whether its worker still owns the shard).
    async fn get(&self, shard_id: &str) -> Result<Option<Lease>, LeaseError> {
        Ok(self.list().await?.into_iter().find(|l| l.shard_id == shard_id))
    }
    /// Creates the lease unless one exists for the shard; returns whether it created it.
    async fn create_if_absent(&self, lease: Lease) -> Result<bool, LeaseError>;
    /// Sets the owner and bumps the counter, if the counter is still `expected`.
    async fn take(&self, shard_id: &str, expected: u64, owner: &str) -> Result<Lease, LeaseError>;
    /// Bumps the counter, if `owner` still owns the lease at counter `expected`.
    async fn renew(&self, shard_id: &str, owner: &str, expected: u64) -> Result<Lease, LeaseError>;
    /// Records progress, if `owner` still owns the lease at counter `expected` (the fence against a lost lease).
    async fn checkpoint(
        &self,
        shard_id: &str,
        owner: &str,
        expected: u64,
        checkpoint: Checkpoint,
    ) -> Result<(), LeaseError>;
    /// Gives the lease up (no owner, counter bumped) so another worker can take it at once, if `owner` still owns it
    /// at counter `expected`: a graceful shutdown hands shards over without waiting for the failover time.
    async fn release(&self, shard_id: &str, owner: &str, expected: u64) -> Result<(), LeaseError>;
}

/// What one worker remembers of the leases between rounds: when it last saw each counter move, by its own clock.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    seen: HashMap<String, (u64, i64)>,
}

impl Observations {
    /// Records the counters read at `now_ms`, returning the time each was last seen to change.
    pub fn observe(&mut self, leases: &[Lease], now_ms: i64) {
        for l in leases {
            match self.seen.get(&l.shard_id) {
                Some((counter, _)) if *counter == l.counter => {}
                _ => {
                    self.seen.insert(l.shard_id.clone(), (l.counter, now_ms));
                }
            }
        }
        self.seen.retain(|id, _| leases.iter().any(|l| &l.shard_id == id));
    }

    fn last_change(&self, shard_id: &str) -> Option<i64> {
        self.seen.get(shard_id).map(|(_, t)| *t)
    }
}

/// One decision of the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep a lease this worker holds.
    Renew { shard_id: String, counter: u64 },
    /// Take a lease nobody holds, or whose owner stopped renewing it.
    Take { shard_id: String, counter: u64 },
    /// Take a lease from a worker holding more than its share.
    Steal { shard_id: String, counter: u64, from: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanConfig {
    /// A lease whose counter has not moved for this long is expired (the KCL default is 10 s).
    pub failover_ms: i64,
    /// Most leases taken or stolen per round, so that workers converge without thrashing.
    pub max_takes_per_round: usize,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self { failover_ms: 10_000, max_takes_per_round: 1 }
    }
}

/// Whether a shard may be processed: a child waits until every parent it has a lease for reached its end.
/// (A parent without a lease is trimmed or was never seen: nothing of it remains to process first.)
pub fn is_eligible(lease: &Lease, by_shard: &HashMap<&str, &Lease>) -> bool {
    lease.checkpoint != Checkpoint::ShardEnd
        && lease
            .parents
            .iter()
            .all(|p| by_shard.get(p.as_str()).is_none_or(|parent| parent.checkpoint == Checkpoint::ShardEnd))
}

/// Decides this worker's renewals, takes and steals for one round.
pub fn plan(
    worker: &str,
    leases: &[Lease],
    observations: &Observations,
    now_ms: i64,
    config: PlanConfig,
) -> Vec<Action> {
    let by_shard: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let expired = |l: &Lease| {
        l.owner.is_none() || observations.last_change(&l.shard_id).is_some_and(|t| now_ms - t >= config.failover_ms)
    };
    let eligible: Vec<&Lease> = leases.iter().filter(|l| is_eligible(l, &by_shard)).collect();

    let mut actions: Vec<Action> = leases
        .iter()
        .filter(|l| l.owner.as_deref() == Some(worker) && l.checkpoint != Checkpoint::ShardEnd)
        .map(|l| Action::Renew { shard_id: l.shard_id.clone(), counter: l.counter })
        .collect();

    // Live workers: owners of unexpired leases, and this one.
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    load.insert(worker, 0);
    for l in eligible.iter().filter(|l| !expired(l)) {
        if let Some(owner) = l.owner.as_deref() {
            *load.entry(owner).or_default() += 1;
        }
    }
    let workers = load.len();
    let target = eligible.len().div_ceil(workers);
    let mine = load[worker];
    let mut wanted = target.saturating_sub(mine).min(config.max_takes_per_round);

    // First what nobody holds: unowned or expired leases, oldest shard ids first for determinism.
    for l in eligible.iter().filter(|l| l.owner.as_deref() != Some(worker) && expired(l)) {
        if wanted == 0 {
            break;
        }
        actions.push(Action::Take { shard_id: l.shard_id.clone(), counter: l.counter });
        wanted -= 1;
    }
    // Then balance: steal one lease from the most loaded worker when it holds at least two more than this one, so
    // that every steal narrows the gap (never just swaps it) and the workers converge without thrashing.
    // Not while another worker renewed none of its leases for half the failover time (owners renew every third of
    // it): it may be dying, and the workers, each judging expiry by its own clock, would otherwise steal from the
    // one that took the first of its leases; every steal re-processes what the loser had not checkpointed. A live
    // owner slow to renew many leases renewed some of them lately, and does not hold up balancing.
    let mut last_renewal: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for l in &eligible {
        if let Some(owner) = l.owner.as_deref().filter(|o| *o != worker) {
            let seen = last_renewal.entry(owner).or_insert(None);
            *seen = (*seen).max(observations.last_change(&l.shard_id));
        }
    }
    let failing_over = last_renewal.values().any(|t| t.is_some_and(|t| now_ms - t >= config.failover_ms / 2));
    if wanted > 0 && !failing_over {
        let busiest = load.iter().filter(|(w, _)| **w != worker).max_by_key(|(w, n)| (**n, std::cmp::Reverse(**w)));
        if let Some((&from, &n)) = busiest
            && n >= mine + 2
            && let Some(l) = eligible.iter().find(|l| l.owner.as_deref() == Some(from) && !expired(l))
        {
            actions.push(Action::Steal { shard_id: l.shard_id.clone(), counter: l.counter, from: from.to_owned() });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
