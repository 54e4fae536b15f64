//! A KPL-compatible producer: batches records for a short linger, packs those bound for one shard into KPL
//! aggregates, puts them with PutRecords, and retries only the entries that failed, until each put is durable.
//!
//! Ordering: each request carries at most one entry per ordering group (the shard when aggregating, else the
//! partition key), and a group's next entry is sent only after its previous one succeeded. A failed entry is
//! therefore retried before anything after it, so one attendee's events keep their order - unlike a plain PutRecords
//! retry loop, where a later entry can land before a throttled earlier one.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use chimewatch_model::HashKey;
use chimewatch_model::kpl::{self, Aggregator};
use rand::RngExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::KinesisError;
use super::errors::{classify, entry_is_throttle};
use super::shard_map::{ShardMap, list_shards};
use crate::in_flight::{InFlight, Permit};
use crate::ports::{OutRecord, ProduceError, Producer};
use crate::telemetry::ProducerTelemetry;

/// PutRecords limits (Amazon Kinesis Data Streams API Reference, PutRecords: 500 entries, 5 MiB per request, 1 MiB per
/// record including its partition key).
const MAX_REQUEST_ENTRIES: usize = 500;
const MAX_REQUEST_BYTES: usize = 5 << 20;
const MAX_RECORD_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct KinesisProducerConfig {
    pub stream: String,
    /// Longest a record waits for others to share its request.
    pub linger: Duration,
    /// Pack records bound for one shard into KPL aggregates.
    pub aggregation: bool,
    /// Largest aggregate (the KPL default is 50 KiB).
    pub max_aggregate_bytes: usize,
    /// Bytes accepted but not yet durable before puts are refused with `Overloaded`.
    pub max_in_flight_bytes: u64,
    /// Longest a put keeps retrying before it is reported as failed: the client waits that long at most (plus the
    /// flush ahead of it), then is told to come back.
    pub put_timeout: Duration,
    /// How often the shard map is refreshed even when nothing suggests a reshard.
    pub shard_refresh: Duration,
    /// Per-shard send rate, bytes and records per second (150 % of the shard limits, as the KPL does).
    pub shard_bytes_per_sec: f64,
    pub shard_records_per_sec: f64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl KinesisProducerConfig {
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            linger: Duration::from_millis(100),
            aggregation: true,
            max_aggregate_bytes: 50 << 10,
            max_in_flight_bytes: 64 << 20,
            put_timeout: Duration::from_secs(10),
            shard_refresh: Duration::from_secs(60),
            shard_bytes_per_sec: 1.5 * f64::from(1u32 << 20),
            shard_records_per_sec: 1500.0,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

struct Job {
    records: Vec<OutRecord>,
    ack: oneshot::Sender<Result<(), ProduceError>>,
    _permit: Permit,
}

#[derive(Debug)]
pub struct KinesisProducer {
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    in_flight: InFlight,
    telemetry: ProducerTelemetry,
    closed: AtomicBool,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl KinesisProducer {
    /// Starts the producer; fails when the stream cannot be listed (missing, or no permission).
    pub async fn start(
        client: Client,
        config: KinesisProducerConfig,
        telemetry: ProducerTelemetry,
    ) -> Result<Self, KinesisError> {
        let map = ShardMap::new(list_shards(&client, &config.stream).await?);
        if map.is_empty() {
            return Err(KinesisError::Fatal {
                operation: "ListShards",
                message: format!("stream {} has no open shard", config.stream),
            });
        }
        tracing::info!(stream = %config.stream, shards = map.len(), aggregation = config.aggregation, "The Kinesis producer is ready.");
        let in_flight =
            InFlight::new(config.max_in_flight_bytes, Duration::from_secs(1), telemetry.in_flight_bytes.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            client,
            map,
            map_age: Instant::now(),
            buckets: HashMap::new(),
            telemetry: telemetry.clone(),
            config,
        };
        let task = tokio::spawn(worker.run(rx));
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            in_flight,
            telemetry,
            closed: AtomicBool::new(false),
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }
}

#[async_trait]
impl Producer for KinesisProducer {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProduceError::ShuttingDown);
        }
        if records.is_empty() {
            return Ok(());
        }
        if let Some(r) = records.iter().find(|r| r.cost() > MAX_RECORD_BYTES) {
            return Err(ProduceError::RecordTooLarge { size: r.cost(), limit: MAX_RECORD_BYTES });
        }
        let started = Instant::now();
        let bytes: usize = records.iter().map(OutRecord::cost).sum();
        let permit = self.in_flight.acquire(bytes as u64).inspect_err(|_| {
            self.telemetry.overloaded.inc();
        })?;
        let (ack, done) = oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|tx| tx.send(Job { records, ack, _permit: permit }).is_ok()));
        if sent != Some(true) {
            return Err(ProduceError::ShuttingDown);
        }
        let result = done.await.unwrap_or(Err(ProduceError::ShuttingDown));
        if result.is_ok() {
            self.telemetry.put_latency.observe(started.elapsed());
        }
        result
    }

    fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.in_flight.has_room()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// One Kinesis record to put: a KPL aggregate or a plain record, and the jobs whose records it carries.
struct Entry {
    partition_key: String,
    data: Blob,
    shard: Option<String>,
    user_records: usize,
    jobs: Vec<usize>,
    /// How many times its records were re-put after landing on a shard that did not cover them.
    reroutes: u32,
}

/// Re-puts of one record after landing on the wrong shard before its put fails: more means the shard map keeps
/// changing under the producer, and the client had better retry later.
const MAX_REROUTES: u32 = 3;

impl Entry {
    fn cost(&self) -> usize {
        self.partition_key.len() + self.data.as_ref().len()
    }
}

#[derive(Debug)]
struct TokenBucket {
    bytes: f64,
    records: f64,
    at: Instant,
}

struct Worker {
    client: Client,
    config: KinesisProducerConfig,
    map: ShardMap,
    map_age: Instant,
    buckets: HashMap<String, TokenBucket>,
    telemetry: ProducerTelemetry,
}

/// Buffered bytes that trigger a flush before the linger ends: a full request's worth.
const FLUSH_BYTES: usize = MAX_REQUEST_BYTES;

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut pending: Vec<Job> = Vec::new();
        let mut pending_bytes = 0;
        let mut deadline: Option<Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => tokio::select! {
                    job = rx.recv() => Some(job),
                    () = tokio::time::sleep_until(d) => None,
                },
                None => Some(rx.recv().await),
            };
            match next {
                Some(Some(job)) => {
                    pending_bytes += job.records.iter().map(OutRecord::cost).sum::<usize>();
                    pending.push(job);
                    deadline.get_or_insert_with(|| Instant::now() + self.config.linger);
                    if pending_bytes < FLUSH_BYTES {
                        continue;
                    }
                }
                // Closed: flush what is left, then stop.
                Some(None) => {
                    self.flush(std::mem::take(&mut pending)).await;
                    return;
                }
                None => {}
            }
            self.flush(std::mem::take(&mut pending)).await;
            pending_bytes = 0;
            deadline = None;
        }
    }

    async fn flush(&mut self, mut jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut groups = self.group(&mut jobs);
        let failures = self.send_all(&mut groups).await;
        for (i, job) in jobs.into_iter().enumerate() {
            let _ = job.ack.send(match failures.get(i) {
                Some(Some(e)) => Err(e.clone()),
                _ => Ok(()),
            });
        }
        if self.map_age.elapsed() >= self.config.shard_refresh {
            self.refresh_map().await;
        }
    }

    /// Turns jobs into per-group queues of entries, in arrival order. The records move into the entries; a job keeps
    /// only what its acknowledgement needs.
    fn group(&self, jobs: &mut [Job]) -> Vec<VecDeque<Entry>> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut groups: Vec<VecDeque<Entry>> = Vec::new();
        let mut open: Vec<Option<OpenAggregate>> = Vec::new();
        for (job_index, job) in jobs.iter_mut().enumerate() {
            for record in std::mem::take(&mut job.records) {
                let shard = self.map.shard_for(HashKey::of(&record.partition_key)).map(str::to_owned);
                let group_key = if self.config.aggregation {
                    shard.clone().unwrap_or_default()
                } else {
                    record.partition_key.clone()
                };
                let g = *index.entry(group_key).or_insert_with(|| {
                    groups.push(VecDeque::new());
                    open.push(None);
                    groups.len() - 1
                });
                if !self.config.aggregation {
                    groups[g].push_back(Entry {
                        partition_key: record.partition_key,
                        data: Blob::new(record.data),
                        shard,
                        user_records: 1,
                        jobs: vec![job_index],
                        reroutes: 0,
                    });
                    continue;
                }
                let fits = open[g].as_ref().is_none_or(|o| {
                    o.agg.is_empty()
                        || o.agg.size_with(&record.partition_key, record.data.len()) <= self.config.max_aggregate_bytes
                });
                if !fits && let Some(full) = open[g].take() {
                    groups[g].push_back(full.finish());
                }
                let o =
                    open[g].get_or_insert_with(|| OpenAggregate { agg: Aggregator::new(), jobs: Vec::new(), shard });
                o.agg.push(&record.partition_key, record.data);
                if o.jobs.last() != Some(&job_index) {
                    o.jobs.push(job_index);
                }
            }
        }
        for (g, slot) in open.into_iter().enumerate() {
            if let Some(o) = slot {
                groups[g].push_back(o.finish());
            }
        }
        groups
    }

    /// Sends every entry, in order per group; returns each job's failure, if any.
    async fn send_all(&mut self, groups: &mut [VecDeque<Entry>]) -> Vec<Option<ProduceError>> {
        let job_count = groups.iter().flatten().flat_map(|e| e.jobs.iter()).max().map_or(0, |m| m + 1);
        let mut failures: Vec<Option<ProduceError>> = vec![None; job_count];
        let give_up_at = Instant::now() + self.config.put_timeout;
        let mut attempt: u32 = 0;
        let mut last_error = String::new();
        let mut refresh = false;
        let mut misrouted: Vec<(usize, Entry, String)> = Vec::new();
        while groups.iter().any(|g| !g.is_empty()) {
            if Instant::now() >= give_up_at {
                let reason =
                    format!("records not accepted within {:?}; last error: {last_error}", self.config.put_timeout);
                fail_remaining(
                    groups,
                    &mut failures,
                    &ProduceError::Unavailable { reason, retry_after: Duration::from_secs(5) },
                );
                break;
            }
            let (chosen, wait) = self.choose_heads(groups);
            if chosen.is_empty() {
                tokio::time::sleep(wait).await;
                continue;
            }
            let entries: Vec<PutRecordsRequestEntry> = chosen
                .iter()
                .filter_map(|&g| {
                    let e = groups[g].front()?;
                    PutRecordsRequestEntry::builder().partition_key(&e.partition_key).data(e.data.clone()).build().ok()
                })
                .collect();
            self.telemetry.requests.inc();
            // The SDK retries a throttled request itself, with backoff: bound the whole call by what is left of the
            // put timeout, so that clients hear back in time. A call cut short may still have stored its records;
            // the client's retry stores them again (at least once).
            let left = give_up_at.saturating_duration_since(Instant::now());
            let send = self.client.put_records().stream_name(&self.config.stream).set_records(Some(entries)).send();
            let Ok(response) = tokio::time::timeout(left, send).await else {
                self.telemetry.retries.inc_by(chosen.len() as u64);
                last_error =
                    format!("PutRecords did not answer within the put timeout ({:?})", self.config.put_timeout);
                continue;
            };
            match response {
                Ok(out) => {
                    let mut failed = 0;
                    for (&g, result) in chosen.iter().zip(out.records()) {
                        if let Some(code) = result.error_code() {
                            failed += 1;
                            if entry_is_throttle(code) {
                                self.telemetry.throttles.inc();
                            }
                            last_error = format!("{code}: {}", result.error_message().unwrap_or_default());
                            continue;
                        }
                        if let Some(entry) = groups[g].pop_front() {
                            self.telemetry.records.inc_by(entry.user_records as u64);
                            self.telemetry.bytes.inc_by(entry.cost() as u64);
                            match result.shard_id() {
                                Some(landed) if entry.shard.as_deref().is_some_and(|s| s != landed) => {
                                    refresh = true;
                                    if self.config.aggregation {
                                        misrouted.push((g, entry, landed.to_owned()));
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    if !misrouted.is_empty() {
                        self.refresh_map().await;
                        refresh = false;
                        for (g, entry, landed) in misrouted.drain(..) {
                            if entry.reroutes < MAX_REROUTES {
                                self.reroute(&mut groups[g], entry, &landed);
                                continue;
                            }
                            let reason = format!("records kept landing on shards that do not cover them ({landed})");
                            let error = ProduceError::Unavailable { reason, retry_after: Duration::from_secs(5) };
                            for j in entry.jobs {
                                failures[j].get_or_insert_with(|| error.clone());
                            }
                        }
                    }
                    if failed == 0 {
                        attempt = 0;
                        continue;
                    }
                    self.telemetry.retries.inc_by(failed);
                }
                Err(e) => match classify("PutRecords", &self.config.stream, &e) {
                    KinesisError::Transient { message, throttled, .. } => {
                        if throttled {
                            self.telemetry.throttles.inc_by(chosen.len() as u64);
                        }
                        self.telemetry.retries.inc_by(chosen.len() as u64);
                        last_error = message;
                    }
                    fatal => {
                        tracing::error!(error = %fatal, "Kinesis refused records; the puts waiting on them fail.");
                        let error = ProduceError::Unavailable {
                            reason: fatal.to_string(),
                            retry_after: Duration::from_secs(30),
                        };
                        fail_remaining(groups, &mut failures, &error);
                        break;
                    }
                },
            }
            attempt += 1;
            tokio::time::sleep(self.backoff(attempt)).await;
        }
        if refresh {
            self.refresh_map().await;
        }
        failures
    }

    /// An aggregate built with a stale shard map landed on a shard that does not cover all its keys (a reshard):
    /// consumers keep only the user records the shard covers (as the KCL does), so the others are put again, and
    /// the rest of the group is re-aggregated with the new map. They go first in the group, so each key keeps its
    /// order: the KPL's "wrong shard" retry.
    fn reroute(&self, group: &mut VecDeque<Entry>, entry: Entry, landed: &str) {
        let mut records: Vec<OutRecord> = Vec::new();
        let mut jobs = entry.jobs;
        let reroutes = entry.reroutes + 1;
        match kpl::deaggregate(entry.data.as_ref(), &entry.partition_key) {
            Ok(users) => records.extend(
                users
                    .into_iter()
                    // A shard the map does not know is trusted to cover the record, so nothing is put twice.
                    .filter(|u| self.map.covers(landed, u.hash_key()) == Some(false))
                    .map(|u| OutRecord { partition_key: u.partition_key, data: u.data }),
            ),
            Err(e) => tracing::error!(error = %e, "An aggregate this producer built does not de-aggregate."),
        }
        let moved = records.len();
        for later in group.drain(..) {
            jobs.extend(later.jobs);
            match kpl::deaggregate(later.data.as_ref(), &later.partition_key) {
                Ok(users) => records
                    .extend(users.into_iter().map(|u| OutRecord { partition_key: u.partition_key, data: u.data })),
                Err(e) => tracing::error!(error = %e, "An aggregate this producer built does not de-aggregate."),
            }
        }
        if moved > 0 {
            self.telemetry.retries.inc_by(moved as u64);
            tracing::info!(
                landed,
                moved,
                "An aggregate landed on a shard split since it was built; its other records are put again."
            );
        }
        jobs.sort_unstable();
        jobs.dedup();
        let mut open: Vec<(String, OpenAggregate)> = Vec::new();
        for r in records {
            let shard = self.map.shard_for(HashKey::of(&r.partition_key)).map(str::to_owned);
            let key = shard.clone().unwrap_or_default();
            let i = match open.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    open.push((key, OpenAggregate { agg: Aggregator::new(), jobs: jobs.clone(), shard }));
                    open.len() - 1
                }
            };
            let o = &mut open[i].1;
            if !o.agg.is_empty() && o.agg.size_with(&r.partition_key, r.data.len()) > self.config.max_aggregate_bytes {
                let full = std::mem::replace(
                    o,
                    OpenAggregate { agg: Aggregator::new(), jobs: jobs.clone(), shard: o.shard.clone() },
                );
                group.push_back(Entry { reroutes, ..full.finish() });
            }
            open[i].1.agg.push(&r.partition_key, r.data);
        }
        group.extend(open.into_iter().map(|(_, o)| Entry { reroutes, ..o.finish() }));
    }

    /// The head entry of each group that fits this request and its shard's rate; otherwise how long to wait.
    fn choose_heads(&mut self, groups: &[VecDeque<Entry>]) -> (Vec<usize>, Duration) {
        let now = Instant::now();
        let (bytes_rate, records_rate) = (self.config.shard_bytes_per_sec, self.config.shard_records_per_sec);
        let mut chosen = Vec::new();
        let mut bytes = 0;
        let mut wait = Duration::from_millis(50);
        for (g, queue) in groups.iter().enumerate() {
            let Some(head) = queue.front() else { continue };
            if chosen.len() == MAX_REQUEST_ENTRIES || bytes + head.cost() > MAX_REQUEST_BYTES {
                break;
            }
            let bucket = self.buckets.entry(head.shard.clone().unwrap_or_default()).or_insert(TokenBucket {
                bytes: bytes_rate,
                records: records_rate,
                at: now,
            });
            let elapsed = now.duration_since(bucket.at).as_secs_f64();
            bucket.bytes = (bucket.bytes + elapsed * bytes_rate).min(bytes_rate);
            bucket.records = (bucket.records + elapsed * records_rate).min(records_rate);
            bucket.at = now;
            let cost = head.cost() as f64;
            // An entry larger than a second's budget is let through on a full bucket, or it would wait forever.
            let affordable = bucket.bytes >= cost.min(bytes_rate) && bucket.records >= 1.0;
            if !affordable {
                let need =
                    ((cost.min(bytes_rate) - bucket.bytes) / bytes_rate).max((1.0 - bucket.records) / records_rate);
                wait = wait.min(Duration::from_secs_f64(need.max(0.001)));
                continue;
            }
            bucket.bytes -= cost;
            bucket.records -= 1.0;
            bytes += head.cost();
            chosen.push(g);
        }
        (chosen, wait)
    }

    /// Full-jitter exponential backoff.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.config.backoff_max.min(self.config.backoff_base.saturating_mul(1 << attempt.min(16)));
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    async fn refresh_map(&mut self) {
        match list_shards(&self.client, &self.config.stream).await {
            Ok(shards) => {
                let map = ShardMap::new(shards);
                if map != self.map {
                    tracing::info!(
                        shards = map.len(),
                        "The stream was resharded; the producer follows the new shard map."
                    );
                }
                self.map = map;
                self.map_age = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "Could not refresh the shard map; keeping the previous one."),
        }
    }
}

/// An aggregate being filled for one shard, with the jobs whose records it holds.
struct OpenAggregate {
    agg: Aggregator,
    jobs: Vec<usize>,
    shard: Option<String>,
}

impl OpenAggregate {
    fn finish(self) -> Entry {
        let partition_key = self.agg.first_partition_key().unwrap_or_default().to_owned();
        let user_records = self.agg.len();
        Entry {
            partition_key,
            data: Blob::new(self.agg.finish()),
            shard: self.shard,
            user_records,
            jobs: self.jobs,
            reroutes: 0,
        }
    }
}

fn fail_remaining(groups: &mut [VecDeque<Entry>], failures: &mut [Option<ProduceError>], error: &ProduceError) {
    for entry in groups.iter_mut().flat_map(|g| g.drain(..)) {
        for j in entry.jobs {
            failures[j].get_or_insert_with(|| error.clone());
        }
    }
}

#[cfg(test)]
mod tests;
