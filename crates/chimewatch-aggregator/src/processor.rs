//! The shard processors and the state one worker's processors share: the catalogue and windows, the outbox of
//! closed windows, the log events waiting to be written, and per shard the batches not yet durable.
//!
//! A batch is durable once every window its events went into was published and every log event it produced was
//! written; a shard's checkpoint is the end of its last durable batch.
//!
//! What a sink refuses for its content (a datum or log event CloudWatch would not take) is dead-lettered with the
//! reason and counted, and counts as settled: it never holds back the rest. What a sink could not send (throttling,
//! an outage) goes back to the front of the queue and is retried with backoff: nothing is dropped, and the checkpoint
//! waits. Past a bound of datums or log events waiting, a shard stops reading (backpressure) until they drain.
//!
//! A publish runs in a task of its own, so that aborting a shard's task (its lease moved) cannot cut a publish in
//! half and lose what it had taken.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chimewatch_metrics::aggregate::{Counters, Placement};
use chimewatch_metrics::{Aggregator, Catalogue, ClosedWindow, voice};
use chimewatch_model::{Clock, EventFields, IndexedRecord, UnixMillis};
use chimewatch_sinks::{Datum, LogEvent, LogSink, MetricSink, Outcome};
use chimewatch_sip::{CallTracker, Message};
use chimewatch_stream::consumer::{
    Batch, DeadData, DeadLetters, Fence, Position, ProcessError, ProcessorFactory, Refused, ShardProcessor,
};

use crate::config::AggregatorServiceConfig;
use crate::publish::{datums, log_line};
use crate::telemetry::AggregatorTelemetry;

/// Where the aggregator's results go: metrics, logs (`None` writes none), and what those refuse.
#[derive(Debug, Clone)]
pub struct Sinks {
    pub metrics: Arc<dyn MetricSink>,
    pub logs: Option<Arc<dyn LogSink>>,
    pub dead_letters: DeadLetters,
}

/// The aggregator as a processor factory for the consumer runtime.
#[derive(Debug, Clone)]
pub struct Aggregation {
    shared: Arc<Shared>,
}

struct Shared {
    config: AggregatorServiceConfig,
    worker_id: String,
    metrics: Arc<dyn MetricSink>,
    logs: Option<Arc<dyn LogSink>>,
    dead_letters: DeadLetters,
    telemetry: AggregatorTelemetry,
    clock: Clock,
    state: Mutex<State>,
    /// One publish at a time, so windows and log events go out in the order they closed.
    publishing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregation").field("worker_id", &self.worker_id).field("config", &self.config).finish()
    }
}

/// Where a log event goes: its log group, and the shard it came from (streams are per shard and worker).
type LogKey = (String, String);

struct PendingBatch {
    end: Position,
    windows: Vec<u64>,
    /// The last log event this batch produced.
    log_seq: u64,
}

/// Which namespace a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Meetings,
    Voice,
}

/// A datum of a closed window, waiting to be published.
struct Outgoing {
    family: Family,
    window: u64,
    datum: Datum,
}

/// A log event waiting to be written, numbered in the order it was produced.
struct Pending {
    key: LogKey,
    seq: u64,
    event: LogEvent,
    /// When (processing time) the aggregator produced it.
    queued_ms: i64,
}

/// A closed window with datums not yet settled.
struct Unsettled {
    datums: usize,
    /// When (processing time) the watermark passed its end.
    closed_ms: i64,
}

struct State {
    catalogue: Catalogue,
    windows: Aggregator,
    counted: Counters,
    /// Voice Connector calls from SIP message logs, in their own windows.
    tracker: CallTracker,
    voice: Aggregator,
    voice_counted: Counters,
    /// Datums of closed windows not yet published, oldest first.
    outbox: VecDeque<Outgoing>,
    /// Windows handed out by the aggregator and not yet published: open, or with datums in the outbox.
    unpublished: HashSet<u64>,
    /// Per closed window, its datums not yet settled.
    remaining: HashMap<u64, Unsettled>,
    /// Log events waiting, in order.
    logs: VecDeque<Pending>,
    logs_appended: u64,
    /// Every log event up to this number was written (or refused and dead-lettered).
    logs_written: u64,
    last_log_write_ms: i64,
    pending: HashMap<String, VecDeque<PendingBatch>>,
    failures: u32,
    retry_at_ms: i64,
    last_prune_ms: i64,
}

impl Aggregation {
    /// The aggregator of one worker: publishes to `metrics` and `logs`, and dead-letters what they refuse.
    pub fn new(
        config: AggregatorServiceConfig,
        worker_id: impl Into<String>,
        sinks: Sinks,
        telemetry: AggregatorTelemetry,
    ) -> Self {
        Self::with_clock(config, worker_id, sinks, telemetry, chimewatch_stream::system_clock)
    }

    /// The same, with the processing-time clock given (tests run it on a fake clock).
    pub fn with_clock(
        config: AggregatorServiceConfig,
        worker_id: impl Into<String>,
        sinks: Sinks,
        telemetry: AggregatorTelemetry,
        clock: Clock,
    ) -> Self {
        let Sinks { metrics, logs, dead_letters } = sinks;
        let state = State {
            catalogue: Catalogue::new(config.catalogue.clone()),
            windows: Aggregator::new(config.windows.clone()),
            counted: Counters::default(),
            tracker: CallTracker::new(config.sip_policy.clone()),
            voice: Aggregator::new(config.windows.clone()),
            voice_counted: Counters::default(),
            outbox: VecDeque::new(),
            unpublished: HashSet::new(),
            remaining: HashMap::new(),
            logs: VecDeque::new(),
            logs_appended: 0,
            logs_written: 0,
            last_log_write_ms: clock().as_i64(),
            pending: HashMap::new(),
            failures: 0,
            retry_at_ms: i64::MIN,
            last_prune_ms: i64::MIN,
        };
        let logs = if config.log_group.is_some() || config.sip_log_group.is_some() { logs } else { None };
        Self {
            shared: Arc::new(Shared {
                config,
                worker_id: worker_id.into(),
                metrics,
                logs,
                dead_letters,
                telemetry,
                clock,
                state: Mutex::new(state),
                publishing: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl ProcessorFactory<IndexedRecord> for Aggregation {
    /// The aggregator needs no fence: what it writes is fenced by the checkpoint (a lost lease cannot checkpoint).
    fn create(&self, shard_id: &str, _fence: Fence) -> Box<dyn ShardProcessor<IndexedRecord>> {
        Box::new(ShardAggregation { shard: shard_id.to_owned(), shared: self.shared.clone() })
    }
}

struct ShardAggregation {
    shard: String,
    shared: Arc<Shared>,
}

#[async_trait]
impl ShardProcessor<IndexedRecord> for ShardAggregation {
    async fn process(&mut self, batch: Batch<IndexedRecord>) -> Result<Option<Position>, ProcessError> {
        let now = (self.shared.clock)().as_i64();
        self.shared.ingest(&self.shard, batch, now)?;
        // A failed publish is retried on a later call; the checkpoint waits meanwhile.
        let _ = Shared::publish(&self.shared, now, false).await;
        // Backpressure: past the bounds, this shard reads nothing more until what waits has drained.
        let mut waited = false;
        while self.shared.over_bounds()? {
            if !std::mem::replace(&mut waited, true) {
                self.shared.telemetry.backpressure_waits.inc();
                tracing::warn!(shard = %self.shard, "The aggregator holds as much as it may; the shard stops reading until it is published.");
            }
            tokio::time::sleep(self.shared.backoff()?).await;
            let _ = Shared::publish(&self.shared, (self.shared.clock)().as_i64(), true).await;
        }
        self.shared.durable(&self.shard)
    }

    async fn flush(&mut self) -> Result<Option<Position>, ProcessError> {
        let now = (self.shared.clock)().as_i64();
        {
            let mut guard = self.shared.lock()?;
            let s = &mut *guard;
            let decided = s.tracker.flush_pending();
            for o in decided {
                s.voice.add(&self.shard, o.at_ms, voice::facts(&o), now);
            }
            let closed = s.windows.close_all();
            s.enqueue(Family::Meetings, closed, self.shared.config.windows.window_ms, now);
            let closed = s.voice.close_all();
            s.enqueue(Family::Voice, closed, self.shared.config.windows.window_ms, now);
        }
        Shared::publish(&self.shared, now, true).await.map_err(ProcessError)?;
        self.shared.durable(&self.shard)
    }
}

impl Drop for ShardAggregation {
    /// The shard is no longer this worker's (or it ended): it stops holding the watermark back, and its pending
    /// batches are forgotten - their windows are still published, the next owner redoes them from the checkpoint.
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.windows.forget_source(&self.shard);
            s.voice.forget_source(&self.shard);
            s.pending.remove(&self.shard);
        }
    }
}

impl State {
    /// What was not sent goes back in front of what arrived since, in its order.
    fn put_back(&mut self, unsent: Vec<Outgoing>, unwritten: Vec<Pending>) {
        let newer: Vec<Outgoing> = self.outbox.drain(..).collect();
        self.outbox.extend(unsent);
        self.outbox.extend(newer);
        let newer: Vec<Pending> = self.logs.drain(..).collect();
        self.logs.extend(unwritten);
        self.logs.extend(newer);
    }

    /// Queues the datums of closed windows; a window without any is published at once.
    fn enqueue(&mut self, family: Family, closed: Vec<ClosedWindow>, window_ms: i64, now: i64) {
        for w in closed {
            let datums = datums(std::slice::from_ref(&w), window_ms);
            if datums.is_empty() {
                self.unpublished.remove(&w.id);
                continue;
            }
            self.remaining.entry(w.id).or_insert(Unsettled { datums: 0, closed_ms: now }).datums += datums.len();
            self.outbox.extend(datums.into_iter().map(|datum| Outgoing { family, window: w.id, datum }));
        }
    }

    /// A datum of `window` was published or refused (and dead-lettered): once all were, the window was published,
    /// and this says when it closed.
    fn settle(&mut self, window: u64) -> Option<i64> {
        let left = self.remaining.get_mut(&window)?;
        left.datums = left.datums.saturating_sub(1);
        if left.datums > 0 {
            return None;
        }
        let closed_ms = left.closed_ms;
        self.remaining.remove(&window);
        self.unpublished.remove(&window);
        Some(closed_ms)
    }

    fn push_log(&mut self, key: LogKey, event: LogEvent, now: i64) {
        self.logs_appended += 1;
        self.logs.push_back(Pending { key, seq: self.logs_appended, event, queued_ms: now });
    }

    /// Remembers the window an event went into, for the batch (`touched`) and until it is published.
    fn track(&mut self, placed: Placement, touched: &mut Vec<u64>) {
        if let Placement::Window(id) = placed {
            self.unpublished.insert(id);
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, State>, ProcessError> {
        self.state.lock().map_err(|_| ProcessError("the aggregator's state lock is poisoned".into()))
    }

    fn ingest(&self, shard: &str, batch: Batch<IndexedRecord>, now: i64) -> Result<(), ProcessError> {
        let mut guard = self.lock()?;
        let s = &mut *guard;
        let mut touched: Vec<u64> = Vec::new();
        let mut newest = i64::MIN;
        let mut newest_sip = i64::MIN;
        for consumed in batch.records {
            let e = match consumed.record {
                IndexedRecord::MeetingEvent(e) => e,
                IndexedRecord::SipMessage(sip) => {
                    self.telemetry.sip_records.inc();
                    let r = &sip.record;
                    if let (Some(_), Some(group)) = (&self.logs, &self.config.sip_log_group) {
                        // The record as Voice Connector logs it, at its capture time.
                        let message = serde_json::to_string(r).unwrap_or_default();
                        let event = LogEvent { timestamp: UnixMillis(r.event_timestamp), message: message.into() };
                        s.push_log((group.clone(), shard.to_owned()), event, now);
                    }
                    match Message::parse(r.sip_message.as_bytes()) {
                        Ok(m) => {
                            newest_sip = newest_sip.max(r.event_timestamp);
                            for o in s.tracker.observe(
                                &r.voice_connector_id,
                                &r.aws_region,
                                &r.call_id,
                                r.event_timestamp,
                                &m,
                            ) {
                                let placed = s.voice.add(shard, o.at_ms, voice::facts(&o), now);
                                s.track(placed, &mut touched);
                            }
                        }
                        Err(err) => {
                            self.telemetry.sip_unparsable.inc();
                            tracing::debug!(call_id = %r.call_id, error = %err, "A SIP message log record does not parse.");
                        }
                    }
                    continue;
                }
            };
            let event_ms = e.event.event_time_ms().unwrap_or(e.received_at_ms);
            newest = newest.max(event_ms);
            let history_complete = e.truncation.history_entries_dropped == 0
                && !e.truncation.attributes_dropped.iter().any(|a| a == "meetingHistory");
            let facts = s.catalogue.facts(&e.event, history_complete);
            let placed = s.windows.add(shard, event_ms, facts, now);
            s.track(placed, &mut touched);
            self.telemetry.events.inc();
            if let (Some(_), Some(group)) = (&self.logs, &self.config.log_group) {
                s.push_log((group.clone(), shard.to_owned()), log_line(&e.event, event_ms), now);
            }
        }
        if newest_sip > i64::MIN {
            // Time moves for the calls: failures past their failover time are decided, timeouts end calls.
            for o in s.tracker.advance(newest_sip) {
                let placed = s.voice.add(shard, o.at_ms, voice::facts(&o), now);
                s.track(placed, &mut touched);
            }
            self.telemetry.calls_tracked.set(s.tracker.calls() as i64);
        }
        if let Some(end) = batch.end {
            let log_seq = s.logs_appended;
            s.pending.entry(shard.to_owned()).or_default().push_back(PendingBatch { end, windows: touched, log_seq });
        }
        // Sessions silent for the TTL are forgotten, checked once a minute of event time.
        if newest > s.last_prune_ms + 60_000 {
            s.catalogue.prune(newest);
            s.last_prune_ms = newest;
        }
        let window_ms = self.config.windows.window_ms;
        let closed = s.windows.close(now);
        s.enqueue(Family::Meetings, closed, window_ms, now);
        let closed = s.voice.close(now);
        s.enqueue(Family::Voice, closed, window_ms, now);
        let counters = s.windows.counters();
        self.telemetry.late_events.inc_by(counters.late_events - s.counted.late_events);
        self.telemetry
            .out_of_range
            .inc_by((counters.too_old + counters.too_new) - (s.counted.too_old + s.counted.too_new));
        self.telemetry.folded.inc_by(counters.folded - s.counted.folded);
        s.counted = counters;
        let voice_counters = s.voice.counters();
        self.telemetry.late_events.inc_by(voice_counters.late_events - s.voice_counted.late_events);
        self.telemetry.folded.inc_by(voice_counters.folded - s.voice_counted.folded);
        s.voice_counted = voice_counters;
        self.gauges(s);
        Ok(())
    }

    fn gauges(&self, s: &State) {
        self.telemetry.open_windows.set((s.windows.open_windows() + s.voice.open_windows() + s.remaining.len()) as i64);
        self.telemetry.pending_datums.set(s.outbox.len() as i64);
        self.telemetry.pending_log_events.set(s.logs.len() as i64);
    }

    /// Whether more waits to be published than the bounds allow.
    fn over_bounds(&self) -> Result<bool, ProcessError> {
        let s = self.lock()?;
        Ok(s.outbox.len() > self.config.max_pending_datums || s.logs.len() > self.config.max_pending_log_events)
    }

    /// How long to wait before the next try after the failures so far.
    fn backoff(&self) -> Result<std::time::Duration, ProcessError> {
        let failures = self.lock()?.failures;
        Ok(self.config.retry_base.saturating_mul(1 << failures.min(16)).min(self.config.retry_max))
    }

    /// Publishes the waiting datums, and the waiting log events when due (or `force`d). It runs as a task of its
    /// own: a caller that is aborted mid-publish leaves it to finish and to put back what it could not send.
    async fn publish(shared: &Arc<Self>, now: i64, force: bool) -> Result<(), String> {
        let shared = Arc::clone(shared);
        tokio::spawn(async move { shared.publish_now(now, force).await })
            .await
            .map_err(|e| format!("the publish task failed: {e}"))?
    }

    async fn publish_now(&self, now: i64, force: bool) -> Result<(), String> {
        let _turn = self.publishing.lock().await;
        let (datums, logs) = {
            let mut s = self.lock().map_err(|e| e.0)?;
            // Nothing to do: no request, and the retry clock untouched.
            if s.outbox.is_empty() && s.logs.is_empty() {
                return Ok(());
            }
            if !force && now < s.retry_at_ms {
                return Ok(());
            }
            let due = force
                || s.logs.len() >= self.config.log_flush_events
                || now - s.last_log_write_ms >= self.config.log_flush_interval.as_millis() as i64;
            let logs: Vec<Pending> = if due { s.logs.drain(..).collect() } else { Vec::new() };
            (s.outbox.drain(..).collect::<Vec<_>>(), logs)
        };
        let mut errors: Vec<String> = Vec::new();
        let mut refused: Vec<Refused> = Vec::new();
        let mut settled: Vec<u64> = Vec::new();
        let mut unsent: Vec<Outgoing> = Vec::new();
        let (meetings, calls): (Vec<Outgoing>, Vec<Outgoing>) =
            datums.into_iter().partition(|o| o.family == Family::Meetings);
        for (namespace, batch) in [(&self.config.namespace, meetings), (&self.config.voice_namespace, calls)] {
            if batch.is_empty() {
                continue;
            }
            let plain: Vec<Datum> = batch.iter().map(|o| o.datum.clone()).collect();
            let outcome = self.metrics.publish(namespace, &plain).await;
            let context = || format!("publishing metrics to {namespace}");
            let back = sent_back(outcome, batch.len(), context, &mut errors, &mut refused, |i, reason| Refused {
                kind: "metricDatum",
                destination: namespace.clone(),
                reason,
                item: DeadData::of(format!("{:?}", batch[i].datum).as_bytes()),
            });
            let published = back.iter().filter(|b| !**b).count() as u64;
            self.telemetry.datums_published.inc_by(published);
            for (o, back) in batch.into_iter().zip(back) {
                if back {
                    unsent.push(o);
                } else {
                    settled.push(o.window);
                }
            }
        }
        let mut unwritten: Vec<Pending> = Vec::new();
        let mut wrote_logs = false;
        if let (Some(sink), false) = (&self.logs, logs.is_empty()) {
            wrote_logs = true;
            let mut by_stream: Vec<(LogKey, Vec<Pending>)> = Vec::new();
            for p in logs {
                match by_stream.iter_mut().find(|(k, _)| *k == p.key) {
                    Some((_, events)) => events.push(p),
                    None => by_stream.push((p.key.clone(), vec![p])),
                }
            }
            for ((group, shard), pending) in by_stream {
                let stream = format!("{shard}/{}", self.worker_id);
                let events: Vec<LogEvent> = pending.iter().map(|p| p.event.clone()).collect();
                let outcome = sink.put(&group, &stream, &events).await;
                let context = || format!("writing log events to {group}");
                let back = sent_back(outcome, pending.len(), context, &mut errors, &mut refused, |i, reason| Refused {
                    kind: "logEvent",
                    destination: format!("{group}/{stream}"),
                    reason,
                    item: DeadData::of(
                        serde_json::json!({ "timestampMs": events[i].timestamp, "message": &*events[i].message })
                            .to_string()
                            .as_bytes(),
                    ),
                });
                self.telemetry.log_events_written.inc_by(back.iter().filter(|b| !**b).count() as u64);
                if let Some(oldest) = pending.iter().zip(&back).find(|(_, b)| !**b).map(|(p, _)| p.queued_ms) {
                    self.telemetry.log_visible.observe(elapsed_since(oldest, (self.clock)().as_i64()));
                }
                unwritten.extend(pending.into_iter().zip(back).filter(|(_, b)| *b).map(|(p, _)| p));
            }
        }
        // What was refused is dead-lettered before it counts as settled: until then it holds its window open.
        let (datums_refused, events_refused) = (
            refused.iter().filter(|r| r.kind == "metricDatum").count() as u64,
            refused.iter().filter(|r| r.kind == "logEvent").count() as u64,
        );
        if let Err(e) = self.dead_letters.refused(refused).await {
            // Nothing refused is settled; it is published (and refused) again on the next try.
            errors.push(format!("dead-lettering what the sinks refused: {e}"));
            let mut s = self.lock().map_err(|e| e.0)?;
            s.put_back(unsent, unwritten);
            let message = errors.join("; ");
            self.failed(&mut s, now, &message);
            return Err(message);
        }
        self.telemetry.datums_rejected.inc_by(datums_refused);
        self.telemetry.log_events_rejected.inc_by(events_refused);
        let mut s = self.lock().map_err(|e| e.0)?;
        let done_ms = (self.clock)().as_i64();
        let mut completed = 0;
        for closed_ms in settled.into_iter().filter_map(|w| s.settle(w)) {
            completed += 1;
            self.telemetry.window_visible.observe(elapsed_since(closed_ms, done_ms));
        }
        self.telemetry.windows_published.inc_by(completed);
        s.put_back(unsent, unwritten);
        if wrote_logs || self.logs.is_none() {
            s.logs_written = s.logs.front().map_or(s.logs_appended, |p| p.seq - 1);
            s.last_log_write_ms = now;
        }
        if errors.is_empty() {
            s.failures = 0;
            s.retry_at_ms = i64::MIN;
            self.gauges(&s);
            Ok(())
        } else {
            let message = errors.join("; ");
            self.failed(&mut s, now, &message);
            Err(message)
        }
    }

    fn failed(&self, s: &mut State, now: i64, what: &str) {
        self.telemetry.publish_failures.inc();
        s.failures += 1;
        let base = self.config.retry_base.as_millis() as i64;
        let wait = base.saturating_mul(1 << s.failures.min(16)).min(self.config.retry_max.as_millis() as i64);
        s.retry_at_ms = now + wait;
        tracing::warn!(
            error = what,
            retry_in_ms = wait,
            "The aggregator could not publish; it retries, nothing is dropped."
        );
        self.gauges(s);
    }

    /// The end of the shard's last batch whose windows were published and log events written.
    fn durable(&self, shard: &str) -> Result<Option<Position>, ProcessError> {
        let mut guard = self.lock()?;
        let s = &mut *guard;
        let Some(queue) = s.pending.get_mut(shard) else { return Ok(None) };
        let mut durable = None;
        while let Some(front) = queue.front() {
            let published = front.windows.iter().all(|w| !s.unpublished.contains(w));
            if !published || front.log_seq > s.logs_written {
                break;
            }
            durable = queue.pop_front().map(|b| b.end);
        }
        Ok(durable)
    }
}

/// The processing time from `since_ms` to `now_ms` (none if the clock stepped back).
fn elapsed_since(since_ms: i64, now_ms: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(now_ms.saturating_sub(since_ms)).unwrap_or(0))
}

/// A sink's outcome for `n` items: its error recorded in `errors`, each refused item made a dead letter by `refusal`,
/// and which items go back (were not sent).
fn sent_back(
    outcome: Outcome,
    n: usize,
    context: impl FnOnce() -> String,
    errors: &mut Vec<String>,
    refused: &mut Vec<Refused>,
    refusal: impl Fn(usize, String) -> Refused,
) -> Vec<bool> {
    if let Some(e) = &outcome.error {
        errors.push(format!("{}: {e}", context()));
    }
    let mut back = vec![false; n];
    outcome.unsent.iter().for_each(|&i| back[i] = true);
    refused.extend(outcome.rejected.into_iter().map(|(i, reason)| refusal(i, reason)));
    back
}

#[cfg(test)]
mod tests;
