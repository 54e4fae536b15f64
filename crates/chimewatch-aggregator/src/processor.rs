//! The shard processors and the state one worker's processors share: the catalogue and windows, the outbox of
//! closed windows, the log events waiting to be written, and per shard the batches not yet durable.
//!
//! A batch is durable once every window its events went into was published and every log event it produced was
//! written; a shard's checkpoint is the end of its last durable batch. A failed publish puts the windows and log
//! events back and retries with backoff: nothing is dropped, and the checkpoint waits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chimewatch_metrics::aggregate::{Counters, Placement};
use chimewatch_metrics::{Aggregator, Catalogue, ClosedWindow, voice};
use chimewatch_model::{Clock, Record, UnixMillis};
use chimewatch_sinks::{LogEvent, LogSink, MetricSink};
use chimewatch_sip::{CallTracker, Message};
use chimewatch_stream::consumer::{Batch, Position, ProcessError, ProcessorFactory, ShardProcessor};

use crate::config::AggregatorServiceConfig;
use crate::publish::{datums, log_line};
use crate::telemetry::AggregatorTelemetry;

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

struct State {
    catalogue: Catalogue,
    windows: Aggregator,
    counted: Counters,
    /// Voice Connector calls from SIP message logs, in their own windows.
    tracker: CallTracker,
    voice: Aggregator,
    voice_counted: Counters,
    outbox: Vec<(Family, ClosedWindow)>,
    /// Windows handed out by the aggregator and not yet published.
    unpublished: HashSet<u64>,
    /// Log events waiting, each with its (log group, shard).
    logs: VecDeque<(LogKey, LogEvent)>,
    logs_appended: u64,
    /// Every log event up to this sequence number was written.
    logs_written: u64,
    last_log_write_ms: i64,
    pending: HashMap<String, VecDeque<PendingBatch>>,
    failures: u32,
    retry_at_ms: i64,
    last_prune_ms: i64,
}

impl Aggregation {
    pub fn new(
        config: AggregatorServiceConfig,
        worker_id: impl Into<String>,
        metrics: Arc<dyn MetricSink>,
        logs: Option<Arc<dyn LogSink>>,
        telemetry: AggregatorTelemetry,
    ) -> Self {
        Self::with_clock(config, worker_id, metrics, logs, telemetry, chimewatch_stream::system_clock)
    }

    /// The same, with the processing-time clock given (tests run it on a fake clock).
    pub fn with_clock(
        config: AggregatorServiceConfig,
        worker_id: impl Into<String>,
        metrics: Arc<dyn MetricSink>,
        logs: Option<Arc<dyn LogSink>>,
        telemetry: AggregatorTelemetry,
        clock: Clock,
    ) -> Self {
        let state = State {
            catalogue: Catalogue::new(config.catalogue.clone()),
            windows: Aggregator::new(config.windows.clone()),
            counted: Counters::default(),
            tracker: CallTracker::new(config.sip_policy.clone()),
            voice: Aggregator::new(config.windows.clone()),
            voice_counted: Counters::default(),
            outbox: Vec::new(),
            unpublished: HashSet::new(),
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
                telemetry,
                clock,
                state: Mutex::new(state),
                publishing: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl ProcessorFactory for Aggregation {
    fn create(&self, shard_id: &str) -> Box<dyn ShardProcessor> {
        Box::new(ShardAggregation { shard: shard_id.to_owned(), shared: self.shared.clone() })
    }
}

struct ShardAggregation {
    shard: String,
    shared: Arc<Shared>,
}

#[async_trait]
impl ShardProcessor for ShardAggregation {
    async fn process(&mut self, batch: Batch) -> Result<Option<Position>, ProcessError> {
        let now = (self.shared.clock)().as_i64();
        self.shared.ingest(&self.shard, batch, now)?;
        // A failed publish is retried on a later call; the checkpoint waits meanwhile.
        let _ = self.shared.publish(now, false).await;
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
            s.outbox.extend(closed.into_iter().map(|w| (Family::Meetings, w)));
            let closed = s.voice.close_all();
            s.outbox.extend(closed.into_iter().map(|w| (Family::Voice, w)));
        }
        self.shared.publish(now, true).await.map_err(ProcessError)?;
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

    fn ingest(&self, shard: &str, batch: Batch, now: i64) -> Result<(), ProcessError> {
        let mut guard = self.lock()?;
        let s = &mut *guard;
        let mut touched: Vec<u64> = Vec::new();
        let mut newest = i64::MIN;
        let mut newest_sip = i64::MIN;
        for consumed in batch.records {
            let e = match consumed.record {
                Record::MeetingEvent(e) => e,
                Record::SipMessage(sip) => {
                    self.telemetry.sip_records.inc();
                    let r = &sip.record;
                    if let (Some(_), Some(group)) = (&self.logs, &self.config.sip_log_group) {
                        // The record as Voice Connector logs it, at its capture time.
                        let message = serde_json::to_string(r).unwrap_or_default();
                        s.logs_appended += 1;
                        s.logs.push_back((
                            (group.clone(), shard.to_owned()),
                            LogEvent { timestamp: UnixMillis(r.event_timestamp), message },
                        ));
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
            let event_ms = e.event.timestamp_ms().unwrap_or(e.received_at_ms);
            newest = newest.max(event_ms);
            let history_complete = e.truncation.history_entries_dropped == 0
                && !e.truncation.attributes_dropped.iter().any(|a| a == "meetingHistory");
            let facts = s.catalogue.facts(&e.event, history_complete);
            let placed = s.windows.add(shard, event_ms, facts, now);
            s.track(placed, &mut touched);
            self.telemetry.events.inc();
            if let (Some(_), Some(group)) = (&self.logs, &self.config.log_group) {
                s.logs_appended += 1;
                s.logs.push_back(((group.clone(), shard.to_owned()), log_line(&e.event, event_ms)));
            }
        }
        if newest_sip > i64::MIN {
            // Time moves for the calls: failures past their failover time are decided, timeouts end calls.
            let facts: Vec<(i64, Vec<chimewatch_metrics::Fact>)> =
                s.tracker.advance(newest_sip).iter().map(|o| (o.at_ms, voice::facts(o))).collect();
            for (at, f) in facts {
                let placed = s.voice.add(shard, at, f, now);
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
        let closed = s.windows.close(now);
        s.outbox.extend(closed.into_iter().map(|w| (Family::Meetings, w)));
        let closed = s.voice.close(now);
        s.outbox.extend(closed.into_iter().map(|w| (Family::Voice, w)));
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
        self.telemetry.open_windows.set((s.windows.open_windows() + s.voice.open_windows() + s.outbox.len()) as i64);
        self.telemetry.pending_log_events.set(s.logs.len() as i64);
    }

    /// Publishes closed windows, and the waiting log events when due (or `force`d); on failure puts them back.
    async fn publish(&self, now: i64, force: bool) -> Result<(), String> {
        let _turn = self.publishing.lock().await;
        let (windows, logs, log_seq) = {
            let mut s = self.lock().map_err(|e| e.0)?;
            if !force && now < s.retry_at_ms {
                return Ok(());
            }
            let windows = std::mem::take(&mut s.outbox);
            let due = force
                || s.logs.len() >= self.config.log_flush_events
                || now - s.last_log_write_ms >= self.config.log_flush_interval.as_millis() as i64;
            let logs: Vec<(LogKey, LogEvent)> = if due { s.logs.drain(..).collect() } else { Vec::new() };
            (windows, logs, s.logs_appended)
        };
        // Each namespace's windows go in one publish; a family that fails goes back to the outbox alone, so what was
        // published is not published again.
        let mut unpublished: Vec<(Family, ClosedWindow)> = Vec::new();
        let mut error = None;
        let (meetings, calls): (Vec<_>, Vec<_>) = windows.into_iter().partition(|(f, _)| *f == Family::Meetings);
        for (family, namespace, these) in
            [(Family::Meetings, &self.config.namespace, meetings), (Family::Voice, &self.config.voice_namespace, calls)]
        {
            let these: Vec<ClosedWindow> = these.into_iter().map(|(_, w)| w).collect();
            if these.is_empty() {
                continue;
            }
            if error.is_some() {
                unpublished.extend(these.into_iter().map(|w| (family, w)));
                continue;
            }
            let datums = datums(&these, self.config.windows.window_ms);
            let count = datums.len() as u64;
            match self.metrics.publish(namespace, datums).await {
                Ok(()) => {
                    let mut s = self.lock().map_err(|e| e.0)?;
                    for w in &these {
                        s.unpublished.remove(&w.id);
                    }
                    self.telemetry.windows_published.inc_by(these.len() as u64);
                    self.telemetry.datums_published.inc_by(count);
                }
                Err(e) => {
                    error = Some(format!("publishing metrics to {namespace}: {e}"));
                    unpublished.extend(these.into_iter().map(|w| (family, w)));
                }
            }
        }
        if let Some(e) = error {
            let mut s = self.lock().map_err(|e| e.0)?;
            let later = std::mem::replace(&mut s.outbox, unpublished);
            s.outbox.extend(later);
            // The log events taken with them go back ahead of anything newer, in their order.
            let newer: Vec<(LogKey, LogEvent)> = s.logs.drain(..).collect();
            s.logs.extend(logs);
            s.logs.extend(newer);
            self.failed(&mut s, now, &e);
            return Err(e);
        }
        if let (Some(sink), false) = (&self.logs, logs.is_empty()) {
            let mut by_stream: Vec<(LogKey, Vec<LogEvent>)> = Vec::new();
            for (key, event) in logs {
                match by_stream.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, events)) => events.push(event),
                    None => by_stream.push((key, vec![event])),
                }
            }
            let mut unwritten: Vec<(LogKey, LogEvent)> = Vec::new();
            let mut error = None;
            for (key, events) in by_stream {
                if error.is_some() {
                    unwritten.extend(events.into_iter().map(|e| (key.clone(), e)));
                    continue;
                }
                let stream = format!("{}/{}", key.1, self.worker_id);
                let n = events.len() as u64;
                match sink.put(&key.0, &stream, events.clone()).await {
                    Ok(()) => {
                        self.telemetry.log_events_written.inc_by(n);
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        unwritten.extend(events.into_iter().map(|e| (key.clone(), e)));
                    }
                }
            }
            let mut s = self.lock().map_err(|e| e.0)?;
            if let Some(e) = error {
                // Back in front of what arrived since, in their order.
                let newer: Vec<(LogKey, LogEvent)> = s.logs.drain(..).collect();
                s.logs.extend(unwritten);
                s.logs.extend(newer);
                self.failed(&mut s, now, &format!("writing log events: {e}"));
                return Err(e);
            }
            s.logs_written = log_seq;
            s.last_log_write_ms = now;
        } else if self.logs.is_none() {
            let mut s = self.lock().map_err(|e| e.0)?;
            s.logs_written = log_seq;
        }
        let mut s = self.lock().map_err(|e| e.0)?;
        s.failures = 0;
        s.retry_at_ms = i64::MIN;
        self.gauges(&s);
        Ok(())
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

#[cfg(test)]
mod tests;
