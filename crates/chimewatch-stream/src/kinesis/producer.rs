//! A KPL-compatible producer: packs the records bound for one shard into KPL aggregates, puts them with PutRecords,
//! and retries only the entries that failed, until each put is durable.
//!
//! Ordering: each request carries at most one entry per ordering group (the shard when aggregating, else the
//! partition key), and a group's next entry is sent only after its previous one succeeded. A failed entry is
//! therefore retried before anything after it, so one attendee's events keep their order - unlike a plain PutRecords
//! retry loop, where a later entry can land before a throttled earlier one.
//!
//! Throughput: several PutRecords calls are in flight at once, each with the heads of the groups that may send, so a
//! throttled or slow shard holds back only its own group. A call leaves once one of its entries has lingered its
//! time or a full request's worth is ready; while a group waits for its call, its next aggregate keeps filling.

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
use tokio::task::{JoinHandle, JoinSet};
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
    /// PutRecords calls in flight at once (each carries at most one entry per shard).
    pub max_requests_in_flight: usize,
}

impl KinesisProducerConfig {
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            // Shorter than the KPL's 100 ms: a client waits for durability, and under load a shard's aggregate keeps
            // filling while its previous one is in flight (BENCHMARKS.md, "Ingest into Kinesis").
            linger: Duration::from_millis(20),
            aggregation: true,
            max_aggregate_bytes: 50 << 10,
            max_in_flight_bytes: 64 << 20,
            put_timeout: Duration::from_secs(10),
            shard_refresh: Duration::from_secs(60),
            shard_bytes_per_sec: 1.5 * f64::from(1u32 << 20),
            shard_records_per_sec: 1500.0,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_requests_in_flight: 8,
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
            generation: 0,
            shards: HashMap::new(),
            groups: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 0,
            requests: JoinSet::new(),
            carried: HashMap::new(),
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
    jobs: Vec<u64>,
    /// How many times its records were re-put after landing on a shard that did not cover them.
    reroutes: u32,
    /// When it should leave at the latest (its linger); a request goes out once one of its entries is due.
    due: Instant,
    /// When its earliest job gives up.
    deadline: Instant,
}

/// Re-puts of one record after landing on the wrong shard before its put fails: more means the shard map keeps
/// changing under the producer, and the client had better retry later.
const MAX_REROUTES: u32 = 3;

impl Entry {
    fn cost(&self) -> usize {
        self.partition_key.len() + self.data.as_ref().len()
    }
}

/// A job's records, spread over entries: it is acknowledged when the last of them is durable (or has failed).
struct JobState {
    ack: oneshot::Sender<Result<(), ProduceError>>,
    outstanding: usize,
    failure: Option<ProduceError>,
    _permit: Permit,
}

/// One ordering group (a shard when aggregating, else a partition key): entries leave one at a time, in order.
struct Group {
    queue: VecDeque<Entry>,
    /// The aggregate being filled; it closes when full, or when its linger ended and the group has nothing ahead.
    open: Option<OpenAggregate>,
    /// An entry of this group is in a request that has not answered yet.
    busy: bool,
    /// The shard map generation the group was made with (aggregating: its shard belongs to that map).
    generation: u64,
}

impl Group {
    fn new(generation: u64) -> Self {
        Self { queue: VecDeque::new(), open: None, busy: false, generation }
    }

    fn is_idle(&self) -> bool {
        !self.busy && self.queue.is_empty() && self.open.is_none()
    }
}

/// Per shard: the send-rate budget, and the backoff after the shard throttled or the request failed.
#[derive(Debug)]
struct ShardState {
    bytes: f64,
    records: f64,
    at: Instant,
    attempts: u32,
    not_before: Instant,
    last_error: String,
}

/// How a PutRecords call ended: answered, refused, or cut short by the put timeout.
type Outcome = Result<
    Result<aws_sdk_kinesis::operation::put_records::PutRecordsOutput, KinesisError>,
    tokio::time::error::Elapsed,
>;

/// A PutRecords call that ended: the entries it carried (with their groups), and how.
struct Sent {
    entries: Vec<(String, Entry)>,
    outcome: Outcome,
}

struct Worker {
    client: Client,
    config: KinesisProducerConfig,
    map: ShardMap,
    map_age: Instant,
    /// Bumped at each change of the shard map.
    generation: u64,
    shards: HashMap<String, ShardState>,
    groups: HashMap<String, Group>,
    jobs: HashMap<u64, JobState>,
    next_job: u64,
    requests: JoinSet<Outcome>,
    /// The entries of each call in flight, by its task: they stay here, so that none is lost with a failed task.
    carried: HashMap<tokio::task::Id, Vec<(String, Entry)>>,
    telemetry: ProducerTelemetry,
}

/// What woke the worker.
enum Event {
    Job(Option<Job>),
    Answered(Result<(tokio::task::Id, Outcome), tokio::task::JoinError>),
    Tick,
}

/// Jobs taken in at once between two passes over the groups.
const MAX_JOBS_PER_PASS: usize = 256;

/// Longest the worker sleeps with nothing due, so that a periodic shard-map refresh still happens.
const IDLE_TICK: Duration = Duration::from_secs(1);

impl Worker {
    /// Takes jobs, fills each group's queue, and keeps up to `max_requests_in_flight` PutRecords calls going, each
    /// with at most one entry per group: a slow or throttled shard holds back only its own group.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut closing = false;
        loop {
            let now = Instant::now();
            self.close_aggregates(now, closing);
            self.expire(now);
            while self.requests.len() < self.config.max_requests_in_flight && self.dispatch(now, closing) {}
            if closing && self.requests.is_empty() && self.groups.values().all(Group::is_idle) {
                return;
            }
            let wake = self.next_wake(now);
            let event = tokio::select! {
                job = rx.recv(), if !closing => Event::Job(job),
                Some(done) = self.requests.join_next_with_id(), if !self.requests.is_empty() => Event::Answered(done),
                () = tokio::time::sleep_until(wake) => Event::Tick,
            };
            match event {
                Event::Job(Some(job)) => {
                    self.accept(job);
                    // Take what else is waiting before the next pass over the groups.
                    for _ in 0..MAX_JOBS_PER_PASS {
                        let Ok(job) = rx.try_recv() else { break };
                        self.accept(job);
                    }
                }
                // Closed: send what is left, then stop.
                Event::Job(None) => closing = true,
                Event::Answered(Ok((task, outcome))) => {
                    let entries = self.carried.remove(&task).unwrap_or_default();
                    self.settle(Sent { entries, outcome }).await;
                }
                Event::Answered(Err(e)) => {
                    // Its entries are tried again, like those of a call that failed.
                    tracing::error!(error = %e, "A PutRecords call ended without an answer.");
                    let entries = self.carried.remove(&e.id()).unwrap_or_default();
                    let outcome = Ok(Err(KinesisError::Transient {
                        operation: "PutRecords",
                        message: e.to_string(),
                        throttled: false,
                    }));
                    self.settle(Sent { entries, outcome }).await;
                }
                Event::Tick => {}
            }
            if self.map_age.elapsed() >= self.config.shard_refresh {
                self.refresh_map().await;
            }
        }
    }

    /// A job's records into their groups: appended to the group's open aggregate, or queued one entry each.
    fn accept(&mut self, job: Job) {
        let id = self.next_job;
        self.next_job += 1;
        let now = Instant::now();
        let deadline = now + self.config.put_timeout;
        let mut outstanding = 0;
        for record in job.records {
            let shard = self.map.shard_for(HashKey::of(&record.partition_key)).map(str::to_owned);
            let key =
                if self.config.aggregation { shard.clone().unwrap_or_default() } else { record.partition_key.clone() };
            let generation = self.generation;
            let group = self.groups.entry(key).or_insert_with(|| Group::new(generation));
            // Not aggregating, each record is a Kinesis record. Aggregating, a record too large to wrap in an
            // aggregate (its framing and digest would pass Kinesis' 1 MiB) goes as a plain Kinesis record too, after
            // what the group already holds.
            let plain = !self.config.aggregation
                || Aggregator::new().size_with(&record.partition_key, record.data.len()) + record.partition_key.len()
                    > MAX_RECORD_BYTES;
            if plain {
                if let Some(o) = group.open.take() {
                    group.queue.push_back(o.close(self.config.linger));
                }
                group.queue.push_back(Entry {
                    partition_key: record.partition_key,
                    data: Blob::new(record.data),
                    shard,
                    user_records: 1,
                    jobs: vec![id],
                    reroutes: 0,
                    due: now + self.config.linger,
                    deadline,
                });
                outstanding += 1;
                continue;
            }
            let full = group.open.as_ref().is_some_and(|o| {
                !o.agg.is_empty()
                    && o.agg.size_with(&record.partition_key, record.data.len()) > self.config.max_aggregate_bytes
            });
            if full && let Some(o) = group.open.take() {
                group.queue.push_back(o.close(self.config.linger));
            }
            let o = group.open.get_or_insert_with(|| OpenAggregate::new(shard, now, deadline));
            o.agg.push(&record.partition_key, record.data);
            if o.jobs.last() != Some(&id) {
                o.jobs.push(id);
                outstanding += 1;
            }
        }
        self.jobs.insert(id, JobState { ack: job.ack, outstanding, failure: None, _permit: job._permit });
    }

    /// Closes the aggregates whose linger ended and whose group has nothing ahead of them (a busy group keeps filling
    /// its aggregate, so that it leaves fuller); all of them when closing.
    fn close_aggregates(&mut self, now: Instant, closing: bool) {
        let linger = self.config.linger;
        for group in self.groups.values_mut() {
            let ripe = group.open.as_ref().is_some_and(|o| closing || (o.since + linger <= now && !group.busy));
            if ripe
                && group.queue.is_empty()
                && let Some(o) = group.open.take()
            {
                group.queue.push_back(o.close(linger));
            }
        }
    }

    /// Fails the groups whose head outlived its put timeout, with everything behind it (sending those later
    /// entries would put them before the failed one, which its client is about to retry).
    fn expire(&mut self, now: Instant) {
        let mut failed: Vec<(Vec<u64>, ProduceError)> = Vec::new();
        for group in self.groups.values_mut() {
            let expired = match (group.busy, group.queue.front(), &group.open) {
                (true, _, _) => false,
                (false, Some(head), _) => head.deadline <= now,
                (false, None, Some(o)) => o.deadline <= now,
                (false, None, None) => false,
            };
            if !expired {
                continue;
            }
            let shard = group.queue.front().and_then(|h| h.shard.clone()).unwrap_or_default();
            let last = self.shards.get(&shard).map(|s| s.last_error.clone()).unwrap_or_default();
            let reason = format!("records not accepted within {:?}; last error: {last}", self.config.put_timeout);
            let error = ProduceError::Unavailable { reason, retry_after: Duration::from_secs(5) };
            for entry in group.queue.drain(..) {
                failed.push((entry.jobs, error.clone()));
            }
            if let Some(o) = group.open.take() {
                failed.push((o.jobs, error.clone()));
            }
        }
        for (jobs, error) in failed {
            self.finish_entry(&jobs, Some(&error));
        }
    }

    /// Sends one PutRecords call if one is due: the head of every group that may send (not busy, its shard neither
    /// backing off nor over its rate, and not waiting for the groups of an older shard map), once one head is due or
    /// a full request's worth is ready. Returns whether it sent.
    fn dispatch(&mut self, now: Instant, closing: bool) -> bool {
        // After a reshard, the groups of the old map go first: a key's old entries must land before its new ones.
        let oldest = self.oldest_generation();
        let eligible = |g: &Group| !g.busy && oldest.is_none_or(|o| g.generation == o);
        let backing_off = |shards: &HashMap<String, ShardState>, shard: &Option<String>| {
            shards.get(shard.as_deref().unwrap_or_default()).is_some_and(|s| s.not_before > now)
        };
        // A head waiting out its shard's backoff does not make a call leave (nor cut the others' lingering short).
        let leaving = closing
            || self.groups.values().any(|g| {
                eligible(g) && g.queue.front().is_some_and(|h| h.due <= now && !backing_off(&self.shards, &h.shard))
            });
        if leaving {
            // A call leaves now: the aggregates still lingering ride along rather than wait for calls of their own.
            for g in self.groups.values_mut().filter(|g| eligible(g) && g.queue.is_empty()) {
                if let Some(o) = g.open.take() {
                    g.queue.push_back(o.finish(now));
                }
            }
        }
        let shards = &self.shards;
        let mut ready: Vec<(&String, Instant, usize, Option<String>)> = self
            .groups
            .iter()
            .filter(|(_, g)| eligible(g))
            .filter_map(|(k, g)| g.queue.front().map(|h| (k, h.due, h.cost(), h.shard.clone())))
            .filter(|(_, _, _, shard)| !backing_off(shards, shard))
            .collect();
        if ready.is_empty() {
            return false;
        }
        let total: usize = ready.iter().map(|r| r.2).sum();
        let due = closing || ready.iter().any(|r| r.1 <= now);
        if !due && ready.len() < MAX_REQUEST_ENTRIES && total < MAX_REQUEST_BYTES {
            return false;
        }
        // Oldest first, so that no group waits behind others for ever (then by key, so that runs repeat).
        ready.sort_by(|x, y| x.1.cmp(&y.1).then_with(|| x.0.cmp(y.0)));
        let (bytes_rate, records_rate) = (self.config.shard_bytes_per_sec, self.config.shard_records_per_sec);
        let mut chosen: Vec<String> = Vec::new();
        let mut bytes = 0;
        for (key, _, cost, shard) in ready {
            if chosen.len() == MAX_REQUEST_ENTRIES || bytes + cost > MAX_REQUEST_BYTES {
                break;
            }
            let state = self
                .shards
                .entry(shard.unwrap_or_default())
                .or_insert_with(|| ShardState::new(bytes_rate, records_rate, now));
            state.refill(bytes_rate, records_rate, now);
            // An entry larger than a second's budget is let through on a full bucket, or it would wait forever.
            if state.bytes < (cost as f64).min(bytes_rate) || state.records < 1.0 {
                continue;
            }
            state.bytes -= cost as f64;
            state.records -= 1.0;
            bytes += cost;
            chosen.push(key.clone());
        }
        if chosen.is_empty() {
            return false;
        }
        let mut entries = Vec::with_capacity(chosen.len());
        for key in chosen {
            let Some(group) = self.groups.get_mut(&key) else { continue };
            let Some(entry) = group.queue.pop_front() else { continue };
            group.busy = true;
            entries.push((key, entry));
        }
        let request: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .filter_map(|(_, e)| {
                PutRecordsRequestEntry::builder().partition_key(&e.partition_key).data(e.data.clone()).build().ok()
            })
            .collect();
        self.telemetry.requests.inc();
        // The SDK retries a throttled request itself, with backoff: bound the call by the latest put timeout among its
        // entries, so that clients hear back in time and one nearly expired entry does not cut the others' call
        // short. A call cut short may still have stored its records; the client's retry stores them again (at least
        // once).
        let left = entries.iter().map(|(_, e)| e.deadline).max().unwrap_or(now).saturating_duration_since(now);
        let send = self.client.put_records().stream_name(&self.config.stream).set_records(Some(request)).send();
        let stream = self.config.stream.clone();
        let call_latency = self.telemetry.call_latency.clone();
        let task = self.requests.spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(left, send).await;
            call_latency.observe(started.elapsed());
            outcome.map(|r| r.map_err(|e| classify("PutRecords", &stream, &e)))
        });
        self.carried.insert(task.id(), entries);
        true
    }

    /// When something may next be due: a linger, a deadline, a backoff, a rate budget.
    /// A busy group wakes the worker when its call answers; the others when their head may leave.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + IDLE_TICK;
        let oldest = self.oldest_generation();
        // With every call slot taken, nothing can leave before a call answers, which wakes the worker anyway.
        let slots_full = self.requests.len() >= self.config.max_requests_in_flight;
        for group in self.groups.values().filter(|g| !g.busy) {
            match (group.queue.front(), &group.open) {
                (None, Some(o)) => wake = wake.min(o.since + self.config.linger).min(o.deadline),
                (Some(head), _) => {
                    wake = wake.min(head.deadline);
                    // Groups of a newer shard map wait for the older ones, whose calls wake the worker.
                    if slots_full || oldest.is_some_and(|o| group.generation != o) {
                        continue;
                    }
                    let mut at = head.due;
                    if let Some(s) = self.shards.get(head.shard.as_deref().unwrap_or_default()) {
                        let need_bytes = ((head.cost() as f64).min(self.config.shard_bytes_per_sec) - s.bytes).max(0.0)
                            / self.config.shard_bytes_per_sec;
                        let need_records = (1.0 - s.records).max(0.0) / self.config.shard_records_per_sec;
                        at = at.max(s.not_before).max(s.at + Duration::from_secs_f64(need_bytes.max(need_records)));
                    }
                    wake = wake.min(at);
                }
                (None, None) => {}
            }
        }
        wake.max(now + Duration::from_millis(1))
    }

    /// Aggregating, the shard map generation whose groups may send (the oldest with work); `None`: any.
    fn oldest_generation(&self) -> Option<u64> {
        match self.config.aggregation {
            true => self.groups.values().filter(|g| !g.is_idle()).map(|g| g.generation).min(),
            false => None,
        }
    }

    /// A call answered (or timed out): successes are done, failures go back to the front of their groups with
    /// their shard backing off, and records that landed on a shard that does not cover them are put again.
    async fn settle(&mut self, sent: Sent) {
        let now = Instant::now();
        let mut misrouted: Vec<(String, Entry, String)> = Vec::new();
        let mut refresh = false;
        match sent.outcome {
            Ok(Ok(out)) => {
                let results = out.records();
                for (i, (key, entry)) in sent.entries.into_iter().enumerate() {
                    let result = results.get(i);
                    let error = match result {
                        Some(r) => r
                            .error_code()
                            .map(|code| (code.to_owned(), r.error_message().unwrap_or_default().to_owned())),
                        None => Some((
                            "MissingResult".to_owned(),
                            "PutRecords answered fewer results than entries".to_owned(),
                        )),
                    };
                    if let Some((code, message)) = error {
                        if entry_is_throttle(&code) {
                            self.telemetry.throttles.inc();
                        }
                        self.retry(key, entry, format!("{code}: {message}"), now);
                        continue;
                    }
                    self.telemetry.records.inc_by(entry.user_records as u64);
                    self.telemetry.entries.inc();
                    self.telemetry.bytes.inc_by(entry.cost() as u64);
                    if let Some(state) = self.shards.get_mut(entry.shard.as_deref().unwrap_or_default()) {
                        state.attempts = 0;
                    }
                    let landed = result.and_then(|r| r.shard_id());
                    match landed {
                        Some(landed) if entry.shard.as_deref().is_some_and(|s| s != landed) => {
                            refresh = true;
                            if self.config.aggregation {
                                misrouted.push((key, entry, landed.to_owned()));
                                continue;
                            }
                        }
                        _ => {}
                    }
                    if let Some(group) = self.groups.get_mut(&key) {
                        group.busy = false;
                    }
                    self.finish_entry(&entry.jobs, None);
                }
            }
            Ok(Err(KinesisError::Transient { message, throttled, .. })) => {
                for (key, entry) in sent.entries {
                    if throttled {
                        self.telemetry.throttles.inc();
                    }
                    self.retry(key, entry, message.clone(), now);
                }
            }
            Ok(Err(fatal)) => {
                tracing::error!(error = %fatal, "Kinesis refused records; the puts waiting on them fail.");
                let error =
                    ProduceError::Unavailable { reason: fatal.to_string(), retry_after: Duration::from_secs(30) };
                for (key, entry) in sent.entries {
                    self.fail_group(&key, entry, &error);
                }
            }
            Err(_elapsed) => {
                let message =
                    format!("PutRecords did not answer within the put timeout ({:?})", self.config.put_timeout);
                for (key, entry) in sent.entries {
                    self.retry(key, entry, message.clone(), now);
                }
            }
        }
        if refresh {
            self.refresh_map().await;
        }
        for (key, entry, landed) in misrouted {
            if entry.reroutes < MAX_REROUTES {
                self.reroute(&key, entry, &landed);
                continue;
            }
            let reason = format!("records kept landing on shards that do not cover them ({landed})");
            let error = ProduceError::Unavailable { reason, retry_after: Duration::from_secs(5) };
            self.fail_group(&key, entry, &error);
        }
        self.groups.retain(|_, g| !g.is_idle());
    }

    /// An entry to send again: first in its group, after its shard's backoff.
    fn retry(&mut self, key: String, entry: Entry, error: String, now: Instant) {
        self.telemetry.retries.inc();
        let (bytes_rate, records_rate) = (self.config.shard_bytes_per_sec, self.config.shard_records_per_sec);
        let shard = entry.shard.clone().unwrap_or_default();
        let attempts = self.shards.get(&shard).map_or(0, |s| s.attempts) + 1;
        let wait = self.backoff(attempts);
        let state = self.shards.entry(shard).or_insert_with(|| ShardState::new(bytes_rate, records_rate, now));
        state.attempts = attempts;
        state.not_before = state.not_before.max(now + wait);
        state.last_error = error;
        let generation = self.generation;
        let group = self.groups.entry(key).or_insert_with(|| Group::new(generation));
        group.busy = false;
        group.queue.push_front(entry);
    }

    /// Fails an entry and everything queued behind it in its group (they must not land before its retry).
    fn fail_group(&mut self, key: &str, entry: Entry, error: &ProduceError) {
        let mut failed = vec![entry.jobs];
        if let Some(group) = self.groups.get_mut(key) {
            group.busy = false;
            failed.extend(group.queue.drain(..).map(|e| e.jobs));
            failed.extend(group.open.take().map(|o| o.jobs));
        }
        for jobs in failed {
            self.finish_entry(&jobs, Some(error));
        }
    }

    /// One entry of these jobs is done (durable, or failed with `error`); a job whose entries are all done hears back.
    fn finish_entry(&mut self, jobs: &[u64], error: Option<&ProduceError>) {
        for id in jobs {
            let Some(job) = self.jobs.get_mut(id) else { continue };
            if let Some(e) = error {
                job.failure.get_or_insert_with(|| e.clone());
            }
            job.outstanding = job.outstanding.saturating_sub(1);
            if job.outstanding == 0
                && let Some(job) = self.jobs.remove(id)
            {
                let _ = job.ack.send(job.failure.map_or(Ok(()), Err));
            }
        }
    }

    /// An aggregate built with a stale shard map landed on a shard that does not cover all its keys (a reshard):
    /// consumers keep only the user records the shard covers (as the KCL does), so the others are put again, and
    /// the rest of the group is re-aggregated with the new map. They go first in the group, so each key keeps its
    /// order: the KPL's "wrong shard" retry.
    fn reroute(&mut self, key: &str, entry: Entry, landed: &str) {
        let now = Instant::now();
        let reroutes = entry.reroutes + 1;
        let mut deadline = entry.deadline;
        let mut records: Vec<OutRecord> = Vec::new();
        // Each (entry, job) pair drained here is replaced by the new entries' pairs below.
        let mut drained: Vec<Vec<u64>> = vec![entry.jobs.clone()];
        let mut jobs = entry.jobs;
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
        let Some(group) = self.groups.get_mut(key) else { return };
        group.busy = false;
        let later: Vec<Entry> = group.queue.drain(..).chain(group.open.take().map(|o| o.finish(now))).collect();
        for later in later {
            deadline = deadline.min(later.deadline);
            jobs.extend(later.jobs.iter().copied());
            drained.push(later.jobs);
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
        let mut rebuilt: Vec<Entry> = Vec::new();
        for r in records {
            let shard = self.map.shard_for(HashKey::of(&r.partition_key)).map(str::to_owned);
            let k = shard.clone().unwrap_or_default();
            let i = match open.iter().position(|(s, _)| *s == k) {
                Some(i) => i,
                None => {
                    let mut o = OpenAggregate::new(shard, now, deadline);
                    o.jobs.clone_from(&jobs);
                    open.push((k, o));
                    open.len() - 1
                }
            };
            let o = &mut open[i].1;
            if !o.agg.is_empty() && o.agg.size_with(&r.partition_key, r.data.len()) > self.config.max_aggregate_bytes {
                let mut next = OpenAggregate::new(o.shard.clone(), now, deadline);
                next.jobs.clone_from(&jobs);
                let full = std::mem::replace(o, next);
                rebuilt.push(Entry { reroutes, ..full.finish(now) });
            }
            open[i].1.agg.push(&r.partition_key, r.data);
        }
        rebuilt.extend(open.into_iter().map(|(_, o)| Entry { reroutes, ..o.finish(now) }));
        // The new entries' pairs first, so that no job reaches zero in between.
        for e in &rebuilt {
            for id in &e.jobs {
                if let Some(job) = self.jobs.get_mut(id) {
                    job.outstanding += 1;
                }
            }
        }
        if let Some(group) = self.groups.get_mut(key) {
            group.queue.extend(rebuilt);
        }
        for jobs in drained {
            self.finish_entry(&jobs, None);
        }
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
                    self.generation += 1;
                    // Only the groups of shards that closed must drain first; those of shards still open carry on.
                    for (key, group) in &mut self.groups {
                        if map.is_open(key) {
                            group.generation = self.generation;
                        }
                    }
                }
                self.map = map;
                self.map_age = Instant::now();
            }
            Err(e) => {
                self.map_age = Instant::now();
                tracing::warn!(error = %e, "Could not refresh the shard map; keeping the previous one.");
            }
        }
    }
}

impl ShardState {
    fn new(bytes_rate: f64, records_rate: f64, now: Instant) -> Self {
        Self {
            bytes: bytes_rate,
            records: records_rate,
            at: now,
            attempts: 0,
            not_before: now,
            last_error: String::new(),
        }
    }

    fn refill(&mut self, bytes_rate: f64, records_rate: f64, now: Instant) {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.bytes = (self.bytes + elapsed * bytes_rate).min(bytes_rate);
        self.records = (self.records + elapsed * records_rate).min(records_rate);
        self.at = now;
    }
}

/// An aggregate being filled for one shard, with the jobs whose records it holds.
struct OpenAggregate {
    agg: Aggregator,
    jobs: Vec<u64>,
    shard: Option<String>,
    /// When its first record came.
    since: Instant,
    /// When its earliest job gives up.
    deadline: Instant,
}

impl OpenAggregate {
    fn new(shard: Option<String>, since: Instant, deadline: Instant) -> Self {
        Self { agg: Aggregator::new(), jobs: Vec::new(), shard, since, deadline }
    }

    /// The aggregate closed, to leave once its first record has lingered.
    fn close(self, linger: Duration) -> Entry {
        let due = self.since + linger;
        self.finish(due)
    }

    /// The closed aggregate as an entry to send by `due`.
    fn finish(self, due: Instant) -> Entry {
        let partition_key = self.agg.first_partition_key().unwrap_or_default().to_owned();
        let user_records = self.agg.len();
        Entry {
            partition_key,
            data: Blob::new(self.agg.finish()),
            shard: self.shard,
            user_records,
            jobs: self.jobs,
            reroutes: 0,
            due,
            deadline: self.deadline,
        }
    }
}

#[cfg(test)]
mod tests;
