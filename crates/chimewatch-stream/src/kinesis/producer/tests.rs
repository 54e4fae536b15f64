//! Adapter tests of the producer against mocked Kinesis responses: partial failures, throttling, fatal errors,
//! ordering across retries, aggregation and request limits.

use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::operation::list_shards::ListShardsOutput;
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsInput, PutRecordsOutput};
use aws_sdk_kinesis::types::error::{ProvisionedThroughputExceededException, ResourceNotFoundException};
use aws_sdk_kinesis::types::{HashKeyRange, PutRecordsResultEntry, SequenceNumberRange, Shard};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use chimewatch_model::kpl;

use super::*;

fn one_shard() -> Rule {
    mock!(Client::list_shards).then_output(|| {
        ListShardsOutput::builder()
            .shards(
                Shard::builder()
                    .shard_id("shardId-000000000000")
                    .hash_key_range(
                        HashKeyRange::builder()
                            .starting_hash_key("0")
                            .ending_hash_key(u128::MAX.to_string())
                            .build()
                            .unwrap(),
                    )
                    .sequence_number_range(
                        SequenceNumberRange::builder().starting_sequence_number("1").build().unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

fn ok_entry() -> PutRecordsResultEntry {
    PutRecordsResultEntry::builder().shard_id("shardId-000000000000").sequence_number("1").build()
}

fn throttled_entry() -> PutRecordsResultEntry {
    PutRecordsResultEntry::builder()
        .error_code("ProvisionedThroughputExceededException")
        .error_message("Rate exceeded for shard")
        .build()
}

type Captured = Arc<Mutex<Vec<Vec<(String, Vec<u8>)>>>>;
type Response = MockResponse<PutRecordsOutput, PutRecordsError>;

/// A PutRecords rule that captures each request and answers `respond(call index, entries in the request)`.
fn put_rule(captured: &Captured, respond: impl Fn(usize, usize) -> Response + Send + Sync + 'static) -> Rule {
    let captured = captured.clone();
    mock!(Client::put_records).then_compute_response(move |req: &PutRecordsInput| {
        let entries: Vec<_> = req
            .records()
            .iter()
            .map(|r| (r.partition_key().unwrap_or_default().to_owned(), r.data().as_ref().to_vec()))
            .collect();
        let n = entries.len();
        let call = {
            let mut c = captured.lock().unwrap();
            c.push(entries);
            c.len() - 1
        };
        respond(call, n)
    })
}

fn results(entries: Vec<PutRecordsResultEntry>) -> Response {
    let failed = entries.iter().filter(|e| e.error_code().is_some()).count() as i32;
    MockResponse::Output(
        PutRecordsOutput::builder().set_records(Some(entries)).failed_record_count(failed).build().unwrap(),
    )
}

fn all_ok(n: usize) -> Response {
    results((0..n).map(|_| ok_entry()).collect())
}

fn config(aggregation: bool) -> KinesisProducerConfig {
    KinesisProducerConfig {
        linger: Duration::from_millis(5),
        aggregation,
        put_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..KinesisProducerConfig::new("events")
    }
}

fn rec(key: &str, data: &str) -> OutRecord {
    OutRecord { partition_key: key.into(), data: data.as_bytes().to_vec() }
}

fn user_records(request: &[(String, Vec<u8>)]) -> Vec<String> {
    request
        .iter()
        .flat_map(|(pk, data)| kpl::deaggregate(data, pk).unwrap())
        .map(|u| String::from_utf8(u.data).unwrap())
        .collect()
}

#[tokio::test]
async fn only_failed_entries_are_retried_and_order_per_key_holds() {
    let captured = Captured::default();
    let put = put_rule(&captured, |call, n| {
        if call > 0 {
            return all_ok(n);
        }
        results(std::iter::once(throttled_entry()).chain((1..n).map(|_| ok_entry())).collect())
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &put]);
    let telemetry = ProducerTelemetry::default();
    let producer = KinesisProducer::start(client, config(false), telemetry.clone()).await.unwrap();
    producer.put(vec![rec("a", "a1"), rec("b", "b1"), rec("a", "a2"), rec("b", "b2")]).await.unwrap();
    let requests = captured.lock().unwrap().clone();
    // The first request carries each key's first record; a1 is throttled there.
    assert_eq!(user_records(&requests[0]), ["a1", "b1"]);
    // One entry per key per request, and each key's records leave in order, a1 again before a2.
    let mut sent: Vec<String> = Vec::new();
    for r in &requests {
        let keys: Vec<&String> = r.iter().map(|(pk, _)| pk).collect();
        assert!(keys.iter().collect::<std::collections::HashSet<_>>().len() == keys.len(), "{keys:?}");
        sent.extend(user_records(r));
    }
    let of = |key: char| sent.iter().filter(|r| r.starts_with(key)).cloned().collect::<Vec<_>>();
    assert_eq!(of('a'), ["a1", "a1", "a2"]);
    assert_eq!(of('b'), ["b1", "b2"]);
    assert_eq!((telemetry.throttles.get(), telemetry.retries.get(), telemetry.records.get()), (1, 1, 4));
    assert_eq!(telemetry.calls_timed(), telemetry.requests.get(), "every call's duration is recorded");
    producer.close().await;
}

/// Two shards split at the middle of the hash key space.
fn two_shards(half: u128) -> Rule {
    mock!(Client::list_shards).then_compute_output(move |_| {
        let shards = vec![
            shard("shardId-000000000001", 0, half, None),
            shard("shardId-000000000002", half + 1, u128::MAX, None),
        ];
        ListShardsOutput::builder().set_shards(Some(shards)).build()
    })
}

#[tokio::test]
async fn a_throttled_shard_holds_back_only_its_own_records() {
    let half = u128::MAX / 2;
    let lower = (0..).map(|i| format!("key-{i}")).find(|k| HashKey::of(k).0 <= half).unwrap();
    let upper = (0..).map(|i| format!("key-{i}")).find(|k| HashKey::of(k).0 > half).unwrap();
    // The lower shard throttles its first five entries; the upper one takes everything at once.
    let throttles = Arc::new(Mutex::new(0));
    let seen = throttles.clone();
    let put = mock!(Client::put_records).then_compute_response(move |req: &PutRecordsInput| {
        let entries = req
            .records()
            .iter()
            .map(|r| {
                let lower_shard = HashKey::of(r.partition_key().unwrap_or_default()).0 <= half;
                let mut n = seen.lock().unwrap();
                if lower_shard && *n < 5 {
                    *n += 1;
                    return throttled_entry();
                }
                let shard = if lower_shard { "shardId-000000000001" } else { "shardId-000000000002" };
                PutRecordsResultEntry::builder().shard_id(shard).sequence_number("1").build()
            })
            .collect();
        results(entries)
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&two_shards(half), &put]);
    let config = KinesisProducerConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        put_timeout: Duration::from_secs(10),
        ..config(true)
    };
    let producer = Arc::new(KinesisProducer::start(client, config, ProducerTelemetry::default()).await.unwrap());
    let slow = tokio::spawn({
        let producer = producer.clone();
        let lower = lower.clone();
        async move {
            producer.put(vec![rec(&lower, "l1")]).await.unwrap();
            Instant::now()
        }
    });
    // While the lower shard backs off, the upper shard's records come and go, one put after another.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    for i in 0..5 {
        producer.put(vec![rec(&upper, &format!("u{i}"))]).await.unwrap();
    }
    let fast_done = Instant::now();
    let slow_done = slow.await.unwrap();
    assert_eq!(*throttles.lock().unwrap(), 5, "the lower shard's entry was throttled five times");
    assert!(fast_done < slow_done, "the upper shard's five puts finished before the throttled one");
    assert!(
        fast_done - started < Duration::from_millis(150),
        "five puts on a healthy shard took {:?}: they waited for the throttled shard",
        fast_done - started
    );
    producer.close().await;
}

#[tokio::test]
async fn records_for_one_shard_are_aggregated() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    let records: Vec<_> = (0..50).map(|i| rec(&format!("k{}", i % 3), &format!("r{i}"))).collect();
    producer.put(records).await.unwrap();
    let requests = captured.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].len(), 1, "one aggregate for the one shard");
    assert!(kpl::is_aggregated(&requests[0][0].1));
    assert_eq!(user_records(&requests[0]), (0..50).map(|i| format!("r{i}")).collect::<Vec<_>>());
    producer.close().await;
}

#[tokio::test]
async fn aggregates_respect_their_size_limit() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    let producer = KinesisProducer::start(
        client,
        KinesisProducerConfig { max_aggregate_bytes: 1000, ..config(true) },
        ProducerTelemetry::default(),
    )
    .await
    .unwrap();
    let records: Vec<_> = (0..100).map(|i| rec("k", &format!("{i:0>50}"))).collect();
    producer.put(records).await.unwrap();
    let requests = captured.lock().unwrap().clone();
    assert!(requests.iter().flatten().all(|(_, data)| data.len() <= 1000));
    let all: Vec<String> = requests.iter().flat_map(|r| user_records(r)).collect();
    assert_eq!(all, (0..100).map(|i| format!("{i:0>50}")).collect::<Vec<_>>(), "all records, in order");
    producer.close().await;
}

#[tokio::test]
async fn whole_request_throttling_is_retried() {
    let captured = Captured::default();
    let put = put_rule(&captured, |call, n| match call {
        0 | 1 => MockResponse::Error(PutRecordsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder().message("slow down").build(),
        )),
        _ => all_ok(n),
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &put]);
    let telemetry = ProducerTelemetry::default();
    let producer = KinesisProducer::start(client, config(true), telemetry.clone()).await.unwrap();
    producer.put(vec![rec("k", "v")]).await.unwrap();
    assert!(telemetry.throttles.get() >= 1, "throttles counted");
    let requests = captured.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| user_records(r) == ["v"]));
    producer.close().await;
}

#[tokio::test]
async fn fatal_errors_fail_the_put() {
    let missing = mock!(Client::put_records).then_error(|| {
        PutRecordsError::ResourceNotFoundException(
            ResourceNotFoundException::builder().message("Stream events not found").build(),
        )
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::Sequential, [&one_shard(), &missing]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    let err = producer.put(vec![rec("k", "v")]).await.unwrap_err();
    assert!(matches!(&err, ProduceError::Unavailable { reason, .. } if reason.contains("not found")), "{err}");
    producer.close().await;
}

#[tokio::test]
async fn entries_that_never_succeed_time_out() {
    let captured = Captured::default();
    let always = put_rule(&captured, |_, n| results((0..n).map(|_| throttled_entry()).collect()));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &always]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    let err = producer.put(vec![rec("k", "v")]).await.unwrap_err();
    assert!(
        matches!(&err, ProduceError::Unavailable { reason, .. } if reason.contains("ProvisionedThroughputExceededException")),
        "{err}"
    );
    producer.close().await;
}

#[tokio::test]
async fn a_missing_stream_fails_at_start() {
    let missing = mock!(Client::list_shards).then_error(|| {
        aws_sdk_kinesis::operation::list_shards::ListShardsError::ResourceNotFoundException(
            ResourceNotFoundException::builder().message("Stream nope under account 123 not found.").build(),
        )
    });
    let client = mock_client!(aws_sdk_kinesis, [&missing]);
    let err = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap_err();
    assert!(matches!(err, KinesisError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn requests_stay_within_kinesis_limits() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    let producer = KinesisProducer::start(
        client,
        KinesisProducerConfig { shard_records_per_sec: 1e9, shard_bytes_per_sec: 1e12, ..config(false) },
        ProducerTelemetry::default(),
    )
    .await
    .unwrap();
    // 1,200 distinct keys: at most 500 entries and 5 MiB per request.
    let records: Vec<_> = (0..1200).map(|i| rec(&format!("k{i}"), &"x".repeat(6000))).collect();
    producer.put(records).await.unwrap();
    let requests = captured.lock().unwrap().clone();
    assert!(requests.len() >= 3);
    for r in &requests {
        assert!(r.len() <= 500);
        assert!(r.iter().map(|(pk, d)| pk.len() + d.len()).sum::<usize>() <= 5 << 20);
    }
    assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 1200);
    producer.close().await;
}

#[tokio::test(start_paused = true)]
async fn each_shard_is_held_to_its_rate() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    // 10 records a second on the one shard; 30 records, one per key, all bound for it.
    let config =
        KinesisProducerConfig { shard_records_per_sec: 10.0, put_timeout: Duration::from_secs(30), ..config(false) };
    let producer = KinesisProducer::start(client, config, ProducerTelemetry::default()).await.unwrap();
    let started = Instant::now();
    producer.put((0..30).map(|i| rec(&format!("k{i}"), "v")).collect()).await.unwrap();
    let elapsed = started.elapsed();
    // The bucket starts full (10), then refills at 10/s: the last of 30 records leaves after about 2 s.
    assert!(elapsed >= Duration::from_millis(1900), "30 records at 10/s took only {elapsed:?}");
    let requests = captured.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r.len() <= 10), "no request exceeds a second's budget");
    assert_eq!(requests.iter().map(Vec::len).sum::<usize>(), 30);
    producer.close().await;
}

fn shard(id: &str, start: u128, end: u128, ending: Option<&str>) -> Shard {
    let mut range = SequenceNumberRange::builder().starting_sequence_number("1");
    if let Some(e) = ending {
        range = range.ending_sequence_number(e);
    }
    Shard::builder()
        .shard_id(id)
        .hash_key_range(
            HashKeyRange::builder()
                .starting_hash_key(start.to_string())
                .ending_hash_key(end.to_string())
                .build()
                .unwrap(),
        )
        .sequence_number_range(range.build().unwrap())
        .build()
        .unwrap()
}

type Routed = Arc<Mutex<Vec<Vec<(String, Vec<u8>, &'static str)>>>>;

/// PutRecords after a split at `half`: each entry lands on the child covering its partition key's hash, as Kinesis
/// routes; every request is captured with where its entries landed.
fn routed_by_key(half: u128) -> (Rule, Routed) {
    let requests = Routed::default();
    let captured = requests.clone();
    let put = mock!(Client::put_records).then_compute_response(move |req: &PutRecordsInput| {
        let mut landed = Vec::new();
        let entries = req
            .records()
            .iter()
            .map(|r| {
                let pk = r.partition_key().unwrap_or_default().to_owned();
                let shard = if HashKey::of(&pk).0 <= half { "shardId-000000000001" } else { "shardId-000000000002" };
                landed.push(PutRecordsResultEntry::builder().shard_id(shard).sequence_number("101").build());
                (pk, r.data().as_ref().to_vec(), shard)
            })
            .collect();
        captured.lock().unwrap().push(entries);
        results(landed)
    });
    (put, requests)
}

/// ListShards that shows one shard the first time, and from then on that shard closed by a split at `half` into two
/// children; with the number of listings so far.
fn split_after_first_listing(half: u128) -> (Rule, Arc<Mutex<usize>>) {
    let listings = Arc::new(Mutex::new(0));
    let seen = listings.clone();
    let list = mock!(Client::list_shards).then_compute_output(move |_| {
        let mut n = seen.lock().unwrap();
        *n += 1;
        let shards = if *n == 1 {
            vec![shard("shardId-000000000000", 0, u128::MAX, None)]
        } else {
            vec![
                shard("shardId-000000000000", 0, u128::MAX, Some("100")),
                shard("shardId-000000000001", 0, half, None),
                shard("shardId-000000000002", half + 1, u128::MAX, None),
            ]
        };
        ListShardsOutput::builder().set_shards(Some(shards)).build()
    });
    (list, listings)
}

#[tokio::test]
async fn a_reshard_is_noticed_and_the_shard_map_follows() {
    let half = u128::MAX / 2;
    let (list, listings) = split_after_first_listing(half);
    // Kinesis puts the records on a child, not on the shard the producer predicted.
    let (put, captured) = routed_by_key(half);
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&list, &put]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    producer.put(vec![rec("a", "1")]).await.unwrap();
    assert_eq!(*listings.lock().unwrap(), 2, "the mismatch triggered a new ListShards");
    // Keys on both halves now go into separate aggregates, one per child shard.
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    producer.put(keys.iter().map(|k| rec(k, "x")).collect()).await.unwrap();
    let last = captured.lock().unwrap().last().unwrap().clone();
    assert_eq!(last.len(), 2, "one aggregate per open child shard");
    assert_ne!(last[0].2, last[1].2);
    producer.close().await;
}

#[tokio::test]
async fn an_empty_put_is_durable_at_once() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    let (empty, full) = tokio::join!(producer.put(vec![]), producer.put(vec![rec("k", "v")]));
    assert_eq!((empty, full), (Ok(()), Ok(())));
    assert_eq!(captured.lock().unwrap().iter().map(Vec::len).sum::<usize>(), 1);
    producer.close().await;
}

#[tokio::test]
async fn records_of_an_aggregate_that_lands_on_a_split_child_not_covering_them_are_put_again() {
    let half = u128::MAX / 2;
    // The producer starts with the parent; by its first put the parent was split.
    let (list, _) = split_after_first_listing(half);
    let (put, requests) = routed_by_key(half);
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&list, &put]);
    let telemetry = ProducerTelemetry::default();
    let producer = KinesisProducer::start(client, config(true), telemetry.clone()).await.unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    producer.put(keys.iter().map(|k| rec(k, k)).collect()).await.unwrap();
    producer.close().await;

    // What consumers keep: the user records each child covers (the KCL's rule, and chimewatch's).
    let mut kept: Vec<String> = Vec::new();
    let mut outside = 0;
    for (pk, data, shard) in requests.lock().unwrap().iter().flatten() {
        for u in kpl::deaggregate(data, pk).unwrap() {
            let covered = (u.hash_key().0 <= half) == (*shard == "shardId-000000000001");
            if covered {
                kept.push(String::from_utf8(u.data).unwrap());
            } else {
                outside += 1;
            }
        }
    }
    kept.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(kept, want, "every record is kept exactly once, on the child that covers it");
    assert!(outside > 0, "the first aggregate held keys of both children");
    assert_eq!(telemetry.retries.get(), outside, "each record outside its landing shard was put again");
}

#[tokio::test]
async fn records_that_keep_landing_on_the_wrong_shard_fail_their_put_instead_of_looping() {
    let half = u128::MAX / 2;
    let list = mock!(Client::list_shards).then_compute_output(move |_| {
        let shards = vec![
            shard("shardId-000000000001", 0, half, None),
            shard("shardId-000000000002", half + 1, u128::MAX, None),
        ];
        ListShardsOutput::builder().set_shards(Some(shards)).build()
    });
    // A stream that claims everything landed on the lower child, whatever the key.
    let captured = Captured::default();
    let put = put_rule(&captured, |_, n| {
        results(
            (0..n)
                .map(|_| PutRecordsResultEntry::builder().shard_id("shardId-000000000001").sequence_number("7").build())
                .collect(),
        )
    });
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&list, &put]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    let upper = (0..).map(|i| format!("key-{i}")).find(|k| HashKey::of(k).0 > half).unwrap();
    let err = producer.put(vec![rec(&upper, "x")]).await.unwrap_err();
    assert!(err.to_string().contains("do not cover them"), "{err}");
    assert_eq!(
        captured.lock().unwrap().len(),
        1 + MAX_REROUTES as usize,
        "the first put and its re-puts, then no more"
    );
    producer.close().await;
}

#[tokio::test]
async fn a_record_too_large_for_an_aggregate_goes_alone_within_the_record_limit() {
    let captured = Captured::default();
    let ok = put_rule(&captured, |_, n| all_ok(n));
    let client = mock_client!(aws_sdk_kinesis, RuleMode::MatchAny, [&one_shard(), &ok]);
    let producer = KinesisProducer::start(client, config(true), ProducerTelemetry::default()).await.unwrap();
    // Just under Kinesis' 1 MiB with its key: wrapped in an aggregate, it would pass it.
    let big = "x".repeat(MAX_RECORD_BYTES - 1);
    producer.put(vec![rec("a", "before"), rec("k", &big), rec("a", "after")]).await.unwrap();
    let entries: Vec<(String, Vec<u8>)> = captured.lock().unwrap().iter().flatten().cloned().collect();
    assert!(entries.iter().all(|(pk, data)| pk.len() + data.len() <= MAX_RECORD_BYTES), "within the record limit");
    let plain: Vec<&(String, Vec<u8>)> = entries.iter().filter(|(_, d)| !kpl::is_aggregated(d)).collect();
    assert_eq!(plain.len(), 1, "the large record alone, as a plain record");
    assert_eq!(plain[0].1.len(), big.len());
    // In order with the records around it, on their shard.
    let all: Vec<String> =
        entries.iter().flat_map(|(pk, d)| kpl::deaggregate(d, pk).unwrap()).map(|u| u.data.len().to_string()).collect();
    assert_eq!(all, ["6".to_owned(), big.len().to_string(), "5".to_owned()]);
    producer.close().await;
}
