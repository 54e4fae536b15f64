//! The lease loop of one worker: discover shards and create their leases, renew / take / steal as the planner says,
//! run one task per held shard, stop a task the moment its lease is lost, and release leases on shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chimewatch_model::{Clock, FromStream, Record};
use tokio::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::shard::{Exit, HeldLease, ShardTask};
use super::telemetry::ConsumerTelemetry;
use super::{ConsumeError, DeadLetters, ProcessorFactory, ShardInfo, ShardSource};
use crate::lease::{Action, Checkpoint, Lease, LeaseError, LeaseStore, Observations, PlanConfig, plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Unique among the workers sharing the lease table (host, process and a random suffix by default).
    pub worker_id: String,
    /// A lease not renewed for this long is taken over by another worker (the KCL default: 10 s).
    pub failover: Duration,
    /// How often leases are renewed and the planner runs; well under the failover time.
    pub round_interval: Duration,
    /// How often ListShards runs to find new shards (after a reshard) and closed ones.
    pub discovery_interval: Duration,
    /// Most leases taken or stolen per round, so that workers converge without thrashing.
    pub max_takes_per_round: usize,
    /// Longest a graceful shutdown waits for a shard's processor to flush before giving its lease up regardless.
    pub shutdown_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            failover: Duration::from_secs(10),
            round_interval: Duration::from_secs(3),
            discovery_interval: Duration::from_secs(10),
            max_takes_per_round: 1,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// Checks the settings; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.worker_id.is_empty() {
            return Err("consumer.worker_id must not be empty".into());
        }
        if self.failover < Duration::from_secs(3) {
            return Err("consumer.failover_secs must be at least 3 (leases are renewed every third of it)".into());
        }
        Ok(())
    }

    /// A worker id unique to this process: host name, process id and a random suffix.
    pub fn default_worker_id() -> String {
        let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
        format!("{host}-{}-{:08x}", std::process::id(), rand::random::<u32>())
    }
}

/// A shard task, aborted when dropped: if the worker's future is dropped (its process is going down), no shard
/// task outlives it to process records for a lease nobody renews.
struct ShardHandle(JoinHandle<Result<Exit, ConsumeError>>);

impl Drop for ShardHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running shard task and the lease it holds.
struct Running {
    lease: Arc<HeldLease>,
    task: ShardHandle,
    stop: CancellationToken,
    last_renewed: Instant,
}

#[derive(Debug)]
pub struct Worker<R: Send + 'static = Record> {
    config: WorkerConfig,
    source: Arc<dyn ShardSource>,
    store: Arc<dyn LeaseStore>,
    factory: Arc<dyn ProcessorFactory<R>>,
    dead_letters: DeadLetters,
    telemetry: ConsumerTelemetry,
    clock: Clock,
}

impl<R: FromStream> Worker<R> {
    pub fn new(
        config: WorkerConfig,
        source: Arc<dyn ShardSource>,
        store: Arc<dyn LeaseStore>,
        factory: Arc<dyn ProcessorFactory<R>>,
        dead_letters: DeadLetters,
        telemetry: ConsumerTelemetry,
    ) -> Self {
        Self { config, source, store, factory, dead_letters, telemetry, clock: crate::system_clock }
    }

    /// Runs until `shutdown` resolves, then flushes and checkpoints every held shard and releases its lease.
    /// Errors of the stream or the lease table are logged and retried each round; they do not end the worker.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let started = Instant::now();
        let shards: Arc<RwLock<HashMap<String, ShardInfo>>> = Arc::default();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut seen = Observations::default();
        let mut next_discovery = Instant::now();
        let plan_config = PlanConfig {
            failover_ms: self.config.failover.as_millis() as i64,
            max_takes_per_round: self.config.max_takes_per_round,
        };
        tracing::info!(worker = %self.config.worker_id, "Consumer worker started.");
        loop {
            if Instant::now() >= next_discovery {
                if let Err(e) = self.discover(&shards).await {
                    tracing::warn!(error = %e, "Shard discovery failed; retrying next round.");
                }
                next_discovery = Instant::now() + self.config.discovery_interval;
            }
            self.reap(&mut running).await;
            match self.store.list().await {
                Ok(leases) => {
                    let now_ms = started.elapsed().as_millis() as i64;
                    seen.observe(&leases, now_ms);
                    self.drop_lost(&leases, &mut running);
                    let actions = plan(&self.config.worker_id, &leases, &seen, now_ms, plan_config);
                    for action in actions {
                        self.apply(action, &leases, &shards, &mut running).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Reading the lease table failed; retrying next round."),
            }
            // By the worker's own clock: a lease it could not renew for the failover time may be someone else's.
            let failover = self.config.failover;
            let expired: Vec<String> =
                running.iter().filter(|(_, r)| r.last_renewed.elapsed() >= failover).map(|(s, _)| s.clone()).collect();
            for shard_id in expired {
                self.lose(&shard_id, &mut running, "it could not be renewed within the failover time");
            }
            self.telemetry.leases_held.set(running.len() as i64);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.config.round_interval) => {}
            }
        }
        self.shut_down(running).await;
    }

    /// Lists the shards and creates a lease for each new one (children name their parents).
    async fn discover(&self, shards: &RwLock<HashMap<String, ShardInfo>>) -> Result<(), ConsumeError> {
        let listed = self.source.shards().await?;
        for s in &listed {
            let lease = Lease {
                shard_id: s.shard_id.clone(),
                owner: None,
                counter: 0,
                checkpoint: Checkpoint::TrimHorizon,
                parents: s.parents.clone(),
            };
            if self.store.create_if_absent(lease).await? {
                tracing::info!(shard = %s.shard_id, parents = ?s.parents, "New shard: created its lease.");
            }
        }
        if let Ok(mut map) = shards.write() {
            *map = listed.into_iter().map(|s| (s.shard_id.clone(), s)).collect();
        }
        Ok(())
    }

    /// Collects finished shard tasks: ended shards are done; failed ones restart from their checkpoint next round.
    async fn reap(&self, running: &mut HashMap<String, Running>) {
        let finished: Vec<String> =
            running.iter().filter(|(_, r)| r.task.0.is_finished()).map(|(s, _)| s.clone()).collect();
        for shard_id in finished {
            let Some(mut r) = running.remove(&shard_id) else { continue };
            self.telemetry.forget(&shard_id);
            match (&mut r.task.0).await {
                Ok(Ok(_)) => {}
                Ok(Err(ConsumeError::Lease(LeaseError::Conflict { .. }))) => {
                    self.telemetry.leases_lost.inc();
                    tracing::info!(shard = %shard_id, "Lease lost to another worker (checkpoint fenced).");
                }
                Ok(Err(e)) => {
                    self.telemetry.shard_restarts.inc();
                    tracing::warn!(shard = %shard_id, error = %e, "Shard stopped on an error; it restarts from its checkpoint next round.");
                }
                Err(e) => {
                    self.telemetry.shard_restarts.inc();
                    tracing::error!(shard = %shard_id, error = %e, "Shard task panicked; it restarts from its checkpoint next round.");
                }
            }
        }
    }

    /// Stops the tasks of leases the table says another worker owns now.
    fn drop_lost(&self, leases: &[Lease], running: &mut HashMap<String, Running>) {
        let me = self.config.worker_id.as_str();
        let lost: Vec<String> = running
            .keys()
            .filter(|s| leases.iter().find(|l| &l.shard_id == *s).is_none_or(|l| l.owner.as_deref() != Some(me)))
            .cloned()
            .collect();
        for shard_id in lost {
            self.lose(&shard_id, running, "another worker took it");
        }
    }

    /// Stops a shard at once, without flushing or checkpointing: its new owner starts from the last checkpoint.
    fn lose(&self, shard_id: &str, running: &mut HashMap<String, Running>, why: &str) {
        if let Some(r) = running.remove(shard_id) {
            drop(r.task);
            self.telemetry.leases_lost.inc();
            self.telemetry.forget(shard_id);
            tracing::info!(shard = %shard_id, reason = why, "Lease lost; stopped processing the shard.");
        }
    }

    async fn apply(
        &self,
        action: Action,
        leases: &[Lease],
        shards: &Arc<RwLock<HashMap<String, ShardInfo>>>,
        running: &mut HashMap<String, Running>,
    ) {
        let me = self.config.worker_id.as_str();
        match action {
            Action::Renew { shard_id, counter } => {
                if let Some(r) = running.get_mut(&shard_id) {
                    let mut held = r.lease.counter.lock().await;
                    match self.store.renew(&shard_id, me, *held).await {
                        Ok(lease) => {
                            *held = lease.counter;
                            drop(held);
                            r.last_renewed = Instant::now();
                        }
                        Err(LeaseError::Conflict { .. }) => {
                            drop(held);
                            self.lose(&shard_id, running, "its renewal was fenced");
                        }
                        Err(e) => {
                            tracing::warn!(shard = %shard_id, error = %e, "Renewing a lease failed; retrying next round.")
                        }
                    }
                } else {
                    // Ours in the table but not running: a task that failed, or a restart under the same id.
                    match self.store.renew(&shard_id, me, counter).await {
                        Ok(lease) => self.start(lease, shards, running),
                        Err(e) => tracing::debug!(shard = %shard_id, error = %e, "Could not resume a lease."),
                    }
                }
            }
            Action::Take { shard_id, counter } | Action::Steal { shard_id, counter, .. } => {
                match self.store.take(&shard_id, counter, me).await {
                    Ok(lease) => {
                        let from = leases.iter().find(|l| l.shard_id == shard_id).and_then(|l| l.owner.clone());
                        tracing::info!(shard = %shard_id, from = ?from, checkpoint = ?lease.checkpoint, "Took a lease.");
                        self.start(lease, shards, running);
                    }
                    // Another worker was quicker, or the owner renewed: nothing to do.
                    Err(LeaseError::Conflict { .. }) => {}
                    Err(e) => {
                        tracing::warn!(shard = %shard_id, error = %e, "Taking a lease failed; retrying next round.")
                    }
                }
            }
        }
    }

    fn start(
        &self,
        lease: Lease,
        shards: &Arc<RwLock<HashMap<String, ShardInfo>>>,
        running: &mut HashMap<String, Running>,
    ) {
        let held = Arc::new(HeldLease { counter: tokio::sync::Mutex::new(lease.counter) });
        let stop = CancellationToken::new();
        let task = ShardTask {
            shard_id: lease.shard_id.clone(),
            worker_id: self.config.worker_id.clone(),
            lease: held.clone(),
            store: self.store.clone(),
            source: self.source.clone(),
            shards: shards.clone(),
            processor: self.factory.create(
                &lease.shard_id,
                super::Fence::new(self.store.clone(), &lease.shard_id, &self.config.worker_id),
            ),
            dead_letters: self.dead_letters.clone(),
            telemetry: self.telemetry.clone(),
            stop: stop.clone(),
            clock: self.clock,
        };
        let handle = tokio::spawn(task.run(lease.checkpoint));
        running.insert(
            lease.shard_id,
            Running { lease: held, task: ShardHandle(handle), stop, last_renewed: Instant::now() },
        );
    }

    /// Asks every shard to flush and checkpoint, then releases its lease so others take over at once.
    async fn shut_down(&self, running: HashMap<String, Running>) {
        let me = self.config.worker_id.as_str();
        for r in running.values() {
            r.stop.cancel();
        }
        for (shard_id, mut r) in running {
            match tokio::time::timeout(self.config.shutdown_timeout, &mut r.task.0).await {
                Ok(Ok(Ok(Exit::Ended))) => continue,
                Ok(Ok(Ok(Exit::Stopped))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(shard = %shard_id, error = %e, "Shard did not flush cleanly on shutdown.")
                }
                Ok(Err(e)) => tracing::error!(shard = %shard_id, error = %e, "Shard task panicked on shutdown."),
                Err(_) => {
                    r.task.0.abort();
                    tracing::warn!(shard = %shard_id, "Shard did not flush within the shutdown timeout.");
                }
            }
            let counter = r.lease.counter.lock().await;
            if let Err(e) = self.store.release(&shard_id, me, *counter).await {
                tracing::warn!(shard = %shard_id, error = %e, "Could not release the lease; it expires after the failover time.");
            }
            self.telemetry.forget(&shard_id);
        }
        self.telemetry.leases_held.set(0);
        tracing::info!(worker = %me, "Consumer worker stopped.");
    }
}
