//! Service tests of the aggregator's processors with in-memory sinks and a fake clock: windows published when the
//! watermark passes them, log lines per shard stream, checkpoints only after publication, retries after failures,
//! late values, a flush that publishes everything, refusals dead-lettered without holding back the rest, publishes
//! that survive an aborted shard task, and backpressure.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord, Record};
use chimewatch_sinks::{Datum, DatumValue, Outcome, SinkError};
use chimewatch_stream::consumer::Consumed;
use chimewatch_stream::{OutRecord, ProduceError, Producer};

use super::*;

const T0: i64 = 1_763_712_000_000;

thread_local! {
    static NOW: Cell<i64> = const { Cell::new(T0) };
}

fn now() -> chimewatch_model::UnixMillis {
    chimewatch_model::UnixMillis(NOW.with(Cell::get))
}

fn set_now(t: i64) {
    NOW.with(|n| n.set(t));
}

/// A sink that keeps what it gets, fails while `failures` is above zero, refuses datums of the metric named in
/// `refuse`, and holds each publish until `gate` lets it through when `gated` is set.
#[derive(Debug, Default)]
struct Sink {
    datums: Mutex<Vec<Datum>>,
    logs: Mutex<Vec<(String, String, LogEvent)>>,
    failures: AtomicUsize,
    refuse: Mutex<Option<&'static str>>,
    gated: std::sync::atomic::AtomicBool,
    gate: tokio::sync::Notify,
}

/// A dead-letter destination that keeps the letters.
#[derive(Debug, Default)]
struct Letters(Mutex<Vec<serde_json::Value>>);

#[async_trait]
impl Producer for Letters {
    async fn put(&self, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        self.0.lock().unwrap().extend(records.iter().map(|r| serde_json::from_slice(&r.data).unwrap()));
        Ok(())
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn close(&self) {}
}

impl Sink {
    fn fail(&self) -> Result<(), SinkError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(SinkError::Transient { operation: "PutMetricData", message: "throttled".into() });
        }
        Ok(())
    }

    /// Sum of a count metric's fleet-wide datums, or the sample count of a distribution's.
    fn total(&self, metric: &str) -> f64 {
        self.datums
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.name == metric && d.dimensions.is_empty())
            .map(|d| match &d.value {
                DatumValue::Single(v) => *v,
                DatumValue::Distribution { counts, .. } => counts.iter().sum(),
            })
            .sum()
    }
}

#[async_trait]
impl MetricSink for Sink {
    async fn publish(&self, _namespace: &str, datums: &[Datum]) -> Outcome {
        if self.gated.load(Ordering::SeqCst) {
            self.gate.notified().await;
        }
        if let Err(e) = self.fail() {
            return Outcome::failed(datums.len(), e);
        }
        let refuse = *self.refuse.lock().unwrap();
        let mut outcome = Outcome::default();
        for (i, d) in datums.iter().enumerate() {
            if Some(d.name.as_str()) == refuse {
                outcome.rejected.push((i, format!("InvalidParameterValue: {} is refused", d.name)));
            } else {
                self.datums.lock().unwrap().push(d.clone());
            }
        }
        outcome
    }
}

#[async_trait]
impl LogSink for Sink {
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Outcome {
        if let Err(e) = self.fail() {
            return Outcome::failed(events.len(), e);
        }
        self.logs.lock().unwrap().extend(events.iter().map(|e| (group.to_owned(), stream.to_owned(), e.clone())));
        Outcome::default()
    }
}

fn record(name: &str, t: i64, extra: serde_json::Value) -> Record {
    let mut attributes =
        serde_json::json!({ "meetingId": "m", "attendeeId": "a", "sdkName": "amazon-chime-sdk-js", "timestampMs": t });
    attributes.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    Record::MeetingEvent(MeetingEventRecord {
        v: 1,
        received_at_ms: t,
        ingest: Ingest::Batch,
        event: MeetingEvent { name: name.into(), attributes: attributes.as_object().unwrap().clone() },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    })
}

/// The records as the consumer hands them over: written to the stream's bytes and read back.
fn batch(shard: &str, seq: u64, records: Vec<Record>) -> Batch<IndexedRecord> {
    let records: Vec<Consumed<IndexedRecord>> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| Consumed {
            position: Position::parse(&(seq + i as u64).to_string(), 0).unwrap(),
            log_event: 0,
            partition_key: "m/a".into(),
            arrival: chimewatch_model::UnixMillis(T0),
            record: IndexedRecord::decode(&record.encode()).unwrap(),
        })
        .collect();
    let end = records.last().map(|r| r.position.clone());
    Batch { shard_id: shard.into(), records, end, millis_behind_latest: Some(0) }
}

fn start(duration: u64, t: i64) -> Record {
    record("meetingStartSucceeded", t, serde_json::json!({ "meetingStartDurationMs": duration }))
}

fn config() -> AggregatorServiceConfig {
    AggregatorServiceConfig {
        windows: chimewatch_metrics::AggregatorConfig { out_of_orderness_ms: 5_000, ..Default::default() },
        log_flush_interval: std::time::Duration::ZERO,
        retry_base: std::time::Duration::from_millis(100),
        ..AggregatorServiceConfig::default()
    }
}

fn setup_with(
    sink: &Arc<Sink>,
    config: AggregatorServiceConfig,
    letters: &Arc<Letters>,
) -> (Aggregation, AggregatorTelemetry) {
    set_now(T0 + 30_000);
    let telemetry = AggregatorTelemetry::default();
    let sinks = Sinks {
        metrics: sink.clone(),
        logs: Some(sink.clone()),
        dead_letters: chimewatch_stream::consumer::DeadLetters::to(letters.clone()),
    };
    let agg = Aggregation::with_clock(config, "w1", sinks, telemetry.clone(), now);
    (agg, telemetry)
}

fn setup(sink: &Arc<Sink>) -> (Aggregation, AggregatorTelemetry) {
    setup_with(sink, config(), &Arc::default())
}

fn pos(seq: u64) -> Option<Position> {
    Some(Position::parse(&seq.to_string(), 0).unwrap())
}

#[tokio::test]
async fn windows_are_published_when_the_watermark_passes_and_only_then_checkpointed() {
    let sink = Arc::new(Sink::default());
    let (agg, telemetry) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    let mut s2 = agg.create("s2", chimewatch_stream::consumer::Fence::held("s2", "w1"));
    assert_eq!(s1.process(batch("s1", 1, vec![start(900, T0 + 1_000), start(1_100, T0 + 2_000)])).await, Ok(None));
    assert_eq!(s2.process(batch("s2", 1, vec![start(700, T0 + 3_000)])).await, Ok(None), "the window is open");
    assert_eq!(sink.logs.lock().unwrap().len(), 3, "log events are written at once");
    // s1 moves past the first minute; s2 still holds it open.
    assert_eq!(s1.process(batch("s1", 3, vec![start(500, T0 + 70_000)])).await, Ok(None));
    assert_eq!(sink.total("meetingStartDurationMs"), 0.0);
    assert_eq!(s2.process(batch("s2", 2, vec![start(600, T0 + 66_000)])).await, Ok(pos(1)));
    assert_eq!(sink.total("meetingStartDurationMs"), 3.0, "the first minute, all three starts");
    assert_eq!(sink.total("meetingStartSucceeded"), 3.0);
    // s1 learns on its next call that its first batch is durable.
    assert_eq!(s1.process(batch("s1", 4, vec![])).await, Ok(pos(2)));
    let datum = sink
        .datums
        .lock()
        .unwrap()
        .iter()
        .find(|d| {
            d.name == "meetingStartDurationMs"
                && d.dimensions == [("sdkName".to_owned(), "amazon-chime-sdk-js".to_owned())]
        })
        .cloned()
        .unwrap();
    assert_eq!(datum.timestamp.as_i64(), T0);
    // Bucket midpoints: within 0.4 % of each value (exact below 256).
    assert_eq!(datum.value, DatumValue::Distribution { values: vec![702.0, 902.0, 1_100.0], counts: vec![1.0; 3] });
    let streams: HashSet<String> = sink.logs.lock().unwrap().iter().map(|(_, s, _)| s.clone()).collect();
    assert_eq!(streams, HashSet::from(["s1/w1".to_owned(), "s2/w1".to_owned()]));
    let (group, _, first) = sink.logs.lock().unwrap()[0].clone();
    assert_eq!(group, "/chimewatch/meeting-events");
    let line: serde_json::Value = serde_json::from_str(&first.message).unwrap();
    assert_eq!(
        (line["name"].as_str(), line["attributes"]["meetingStartDurationMs"].as_u64()),
        (Some("meetingStartSucceeded"), Some(900))
    );
    assert_eq!(first.timestamp.as_i64(), T0 + 1_000);
    assert_eq!(telemetry.windows_published.get(), 1);
}

#[tokio::test]
async fn a_failed_publish_is_retried_and_the_checkpoint_waits_for_it() {
    let sink = Arc::new(Sink::default());
    let (agg, telemetry) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    sink.failures.store(3, Ordering::SeqCst);
    assert_eq!(s1.process(batch("s1", 1, vec![start(900, T0 + 1_000)])).await, Ok(None));
    assert_eq!(s1.process(batch("s1", 2, vec![start(800, T0 + 80_000)])).await, Ok(None));
    assert!(telemetry.publish_failures.get() >= 1);
    // Backing off: calls before the retry time publish nothing.
    let mut durable = None;
    for i in 0..20 {
        set_now(now().as_i64() + 100 * i);
        if let Some(p) = s1.process(batch("s1", 10 + i as u64, vec![])).await.unwrap() {
            durable = Some(p);
        }
    }
    assert_eq!(sink.failures.load(Ordering::SeqCst), 0, "every failure was retried");
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0, "the first window, published once");
    assert_eq!(sink.logs.lock().unwrap().len(), 2, "both log events written, once");
    assert_eq!(durable, pos(1), "durable through the first minute's batch, once published");
}

#[tokio::test]
async fn a_flush_publishes_every_open_window_and_checkpoints_everything() {
    let sink = Arc::new(Sink::default());
    let (agg, _) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    s1.process(batch(
        "s1",
        1,
        vec![start(900, T0 + 1_000), record("meetingStartRequested", T0 + 61_000, serde_json::json!({}))],
    ))
    .await
    .unwrap();
    assert_eq!(s1.flush().await, Ok(pos(2)));
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0);
    assert_eq!(sink.total("meetingStartRequested"), 1.0);
}

#[tokio::test]
async fn late_events_add_values_to_their_minute() {
    let sink = Arc::new(Sink::default());
    let (agg, telemetry) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    s1.process(batch("s1", 1, vec![start(900, T0 + 1_000), start(100, T0 + 80_000)])).await.unwrap();
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0);
    // Published at once; not yet durable, since the first batch also fed the second minute, still open.
    assert_eq!(s1.process(batch("s1", 3, vec![start(950, T0 + 2_000)])).await, Ok(None));
    assert_eq!(telemetry.late_events.get(), 1);
    let late: Vec<Datum> = sink
        .datums
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.name == "meetingStartDurationMs" && d.timestamp.as_i64() == T0 && d.dimensions.is_empty())
        .cloned()
        .collect();
    assert_eq!(late.len(), 2, "a second datum for the same minute: {late:?}");
    assert_eq!(s1.flush().await, Ok(pos(3)));
}

#[tokio::test]
async fn sip_records_pass_by_and_still_move_the_checkpoint() {
    let sink = Arc::new(Sink::default());
    let (agg, telemetry) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    let sip = chimewatch_model::SipLogRecord::from_value(serde_json::json!({
        "voice_connector_id": "vc", "aws_region": "us-east-1", "event_timestamp": T0, "call_id": "c1",
        "sip_message": "OPTIONS sip:a SIP/2.0\r\n\r\n"
    }))
    .unwrap();
    let record = Record::sip_message(sip, Ingest::SipPost, T0);
    assert_eq!(s1.process(batch("s1", 1, vec![record])).await, Ok(pos(1)));
    assert_eq!(telemetry.sip_records.get(), 1);
}

#[tokio::test]
async fn a_refused_datum_is_dead_lettered_and_counted_and_holds_nothing_back() {
    let sink = Arc::new(Sink::default());
    let letters = Arc::new(Letters::default());
    let (agg, telemetry) = setup_with(&sink, config(), &letters);
    *sink.refuse.lock().unwrap() = Some("meetingStartSucceeded");
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    s1.process(batch("s1", 1, vec![start(900, T0 + 1_000)])).await.unwrap();
    assert_eq!(s1.flush().await, Ok(pos(1)), "the checkpoint passes what was refused");
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0, "the rest was published");
    assert_eq!(sink.total("meetingStartSucceeded"), 0.0);
    let letters = letters.0.lock().unwrap().clone();
    assert_eq!(letters.len() as u64, telemetry.datums_rejected.get());
    assert_eq!(letters.len(), 2, "the fleet-wide and the per-SDK count: {letters:?}");
    assert_eq!(letters[0]["kind"], "metricDatum");
    assert_eq!(letters[0]["destination"], "AmazonChimeSDKMeetingEvents");
    assert!(letters[0]["reason"].as_str().unwrap().contains("InvalidParameterValue"), "{letters:?}");
    assert_eq!(telemetry.publish_failures.get(), 0, "a refusal is not a failure to retry");
}

#[tokio::test]
async fn a_publish_cut_off_by_an_aborted_shard_task_still_completes() {
    let sink = Arc::new(Sink::default());
    let (agg, _) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    s1.process(batch("s1", 1, vec![start(900, T0 + 1_000)])).await.unwrap();
    sink.gated.store(true, Ordering::SeqCst);
    // The lease moves while the shard's task waits on CloudWatch: the task is aborted mid-publish.
    let task = tokio::spawn(async move { s1.process(batch("s1", 2, vec![start(800, T0 + 80_000)])).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!task.is_finished(), "the publish is held at the gate");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    sink.gated.store(false, Ordering::SeqCst);
    sink.gate.notify_waiters();
    for _ in 0..200 {
        if sink.total("meetingStartDurationMs") > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0, "the window the aborted task was publishing was published");
    // Nothing was lost to the abort: the next processor of the shard flushes the rest.
    agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1")).flush().await.unwrap();
    assert_eq!(sink.total("meetingStartDurationMs"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn past_its_bounds_a_shard_stops_reading_until_the_sink_takes_what_waits() {
    let sink = Arc::new(Sink::default());
    let config = AggregatorServiceConfig { max_pending_log_events: 3, ..config() };
    let (agg, telemetry) = setup_with(&sink, config, &Arc::default());
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    sink.failures.store(6, Ordering::SeqCst);
    let events: Vec<Record> = (0..5).map(|i| start(900, T0 + 1_000 + i)).collect();
    // The call returns only once the sink took the log events: the shard read nothing more meanwhile.
    s1.process(batch("s1", 1, events)).await.unwrap();
    assert_eq!(sink.failures.load(Ordering::SeqCst), 0);
    assert_eq!(sink.logs.lock().unwrap().len(), 5);
    assert_eq!(telemetry.backpressure_waits.get(), 1);
    assert!(telemetry.publish_failures.get() >= 1);
}

/// The distribution of milliseconds a latency metric recorded since the last report (of `samples`).
fn latency_ms(samples: &[chimewatch_telemetry::Sample], name: &str) -> chimewatch_metrics::Distribution {
    let sample = samples.iter().find(|s| s.name == name).unwrap().clone();
    match sample.kind {
        chimewatch_telemetry::SampleKind::Distribution(d) => d,
        other => panic!("{name} is not a distribution: {other:?}"),
    }
}

#[tokio::test]
async fn the_time_from_a_close_or_an_arrival_to_the_sinks_acceptance_is_measured() {
    let sink = Arc::new(Sink::default());
    let (agg, telemetry) = setup(&sink);
    let mut s1 = agg.create("s1", chimewatch_stream::consumer::Fence::held("s1", "w1"));
    // The log write fails; the event is written 1.5 s after it arrived.
    sink.failures.store(1, Ordering::SeqCst);
    s1.process(batch("s1", 1, vec![start(900, T0 + 1_000)])).await.unwrap();
    set_now(T0 + 31_500);
    // Its window closes now and is published at once.
    s1.process(batch("s1", 2, vec![start(800, T0 + 80_000)])).await.unwrap();
    assert_eq!(sink.total("meetingStartDurationMs"), 1.0);
    // The next window closes, its publish fails, and it is published 2.25 s after it closed.
    sink.failures.store(1, Ordering::SeqCst);
    set_now(T0 + 40_000);
    s1.process(batch("s1", 3, vec![start(700, T0 + 150_000)])).await.unwrap();
    set_now(T0 + 42_250);
    s1.process(batch("s1", 4, vec![])).await.unwrap();
    assert_eq!(sink.total("meetingStartDurationMs"), 2.0);
    // A report takes what was recorded since the last one.
    let samples = telemetry.samples();
    let windows = latency_ms(&samples, "AggregatorWindowVisibleLatency");
    assert_eq!((windows.count(), windows.min(), windows.max()), (2, Some(0), Some(2_250)));
    let logs = latency_ms(&samples, "AggregatorLogVisibleLatency");
    assert_eq!((logs.count(), logs.max()), (2, Some(1_500)), "two writes, the first 1.5 s after its event arrived");
}
