//! Tests of the windowed aggregator: windows closed by the watermark, late events, limits, the cardinality guard,
//! and a property test that every accepted event is published in exactly one closed window.

use std::hash::BuildHasher;

use proptest::prelude::*;

use super::*;

const MIN: i64 = 60_000;
const T0: i64 = 1_763_712_000_000;

fn count(metric: &'static str, dims: &[(&str, &str)]) -> Fact<'static> {
    Fact {
        metric,
        unit: Unit::Count,
        dimensions: dims.iter().map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned().into())).collect(),
        value: FactValue::Occurrence,
    }
}

fn sample(v: u64) -> Fact<'static> {
    Fact { metric: "meetingStartDurationMs", unit: Unit::Milliseconds, dimensions: vec![], value: FactValue::Sample(v) }
}

fn config() -> AggregatorConfig {
    AggregatorConfig { out_of_orderness_ms: 5_000, idle_timeout_ms: 30_000, ..AggregatorConfig::default() }
}

fn total(windows: &[ClosedWindow], metric: &str) -> u64 {
    windows
        .iter()
        .flat_map(|w| &w.series)
        .filter(|s| s.metric == metric)
        .map(|s| match &s.value {
            SeriesValue::Count(n) => *n,
            SeriesValue::Distribution(d) => d.count(),
            SeriesValue::Mean { count, .. } => *count,
        })
        .sum()
}

#[test]
fn means_keep_their_sum_and_count_and_ignore_what_is_not_finite() {
    let mut a = Aggregator::new(AggregatorConfig::default());
    let mean = |v| Fact { metric: "ASR", unit: Unit::Percent, dimensions: vec![], value: FactValue::Mean(v) };
    let now = 1_763_712_000_000;
    a.add("s", now, vec![mean(100.0), mean(0.0), mean(100.0), mean(f64::NAN)], now);
    let closed = a.close_all();
    assert_eq!(closed[0].series[0].value, SeriesValue::Mean { sum: 200.0, count: 3 });
}

#[test]
fn a_window_closes_once_every_shard_passed_its_end_plus_the_out_of_orderness() {
    let mut a = Aggregator::new(config());
    let now = T0 + 120_000;
    a.add("s1", T0 + 1_000, vec![sample(900)], now);
    a.add("s2", T0 + 2_000, vec![sample(1_100)], now);
    a.add("s1", T0 + MIN + 10_000, vec![sample(700)], now);
    assert!(a.close(now).is_empty(), "s2 has not passed the first window yet");
    a.add("s2", T0 + MIN + 4_000, vec![count("meetingStartRequested", &[])], now);
    assert!(a.close(now).is_empty(), "within the out-of-orderness of s2");
    a.add("s2", T0 + MIN + 6_000, vec![count("meetingStartRequested", &[])], now);
    let closed = a.close(now);
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].start_ms, closed[0].late), (T0, false));
    let SeriesValue::Distribution(d) = &closed[0].series[0].value else { panic!() };
    assert_eq!((d.count(), d.min(), d.max()), (2, Some(900), Some(1_100)));
    assert!(a.close(now).is_empty(), "a window comes out once");
    assert_eq!(a.open_windows(), 1);
}

#[test]
fn late_events_go_to_a_late_window_for_the_same_minute() {
    let mut a = Aggregator::new(config());
    let now = T0 + 300_000;
    a.add("s1", T0 + 1_000, vec![sample(10)], now);
    a.add("s1", T0 + 2 * MIN + 10_000, vec![sample(20)], now);
    let first = a.close(now);
    assert_eq!(first.iter().map(|w| w.start_ms).collect::<Vec<_>>(), [T0]);
    let placed = a.add("s1", T0 + 30_000, vec![sample(30)], now);
    assert_eq!(a.counters().late_events, 1);
    let late = a.close(now);
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].start_ms, late[0].late, Placement::Window(late[0].id)), (T0, true, placed));
    assert_ne!(late[0].id, first[0].id);
    assert_eq!(total(&late, "meetingStartDurationMs"), 1);
}

#[test]
fn events_cloudwatch_would_refuse_are_counted_and_left_out() {
    let mut a = Aggregator::new(config());
    let now = T0;
    assert_eq!(a.add("s1", now - 15 * 24 * 3600 * 1000, vec![sample(1)], now), Placement::TooOld);
    assert_eq!(a.add("s1", now + 3 * 3600 * 1000, vec![sample(1)], now), Placement::TooNew);
    assert!(matches!(a.add("s1", now - 13 * 24 * 3600 * 1000, vec![sample(1)], now), Placement::Window(_)));
    let c = a.counters();
    assert_eq!((c.too_old, c.too_new), (1, 1));
}

#[test]
fn when_every_shard_is_idle_every_window_closes() {
    let mut a = Aggregator::new(config());
    a.add("s1", T0 + 1_000, vec![sample(5)], T0);
    a.add("s2", T0 + MIN + 1_000, vec![sample(6)], T0);
    assert!(a.close(T0 + 29_000).is_empty());
    let closed = a.close(T0 + 30_000);
    assert_eq!(closed.iter().map(|w| w.start_ms).collect::<Vec<_>>(), [T0, T0 + MIN]);
    a.add("s1", T0 + MIN + 2_000, vec![sample(7)], T0 + 31_000);
    assert_eq!(a.counters().late_events, 1, "the window closed for idleness is published; more is late");
}

#[test]
fn the_cardinality_guard_folds_new_dimension_values_into_other() {
    let mut a = Aggregator::new(AggregatorConfig { max_series_per_metric: 2, ..config() });
    for os in ["Mac OS", "Windows", "Linux", "Android", "Linux", "Mac OS"] {
        a.add("s1", T0, vec![count("meetingStartRequested", &[("osName", os)])], T0);
    }
    let closed = a.close_all();
    let series: Vec<(String, u64)> = closed[0]
        .series
        .iter()
        .map(|s| (s.dimensions[0].1.clone(), if let SeriesValue::Count(n) = s.value { n } else { 0 }))
        .collect();
    assert_eq!(series, [("Mac OS".into(), 2), ("Other".into(), 3), ("Windows".into(), 1)]);
    assert_eq!(a.counters().folded, 3);
}

#[test]
fn the_cap_holds_over_a_rolling_day_not_per_window() {
    let mut a = Aggregator::new(AggregatorConfig { max_series_per_metric: 2, max_age_ms: i64::MAX / 4, ..config() });
    let status = |s: &str| vec![count("meetingFailed", &[("meetingStatus", s)])];
    let values = |closed: Vec<ClosedWindow>| -> Vec<String> {
        closed.iter().flat_map(|w| w.series.iter().map(|s| s.dimensions[0].1.clone())).collect()
    };
    // Rotating values, one per window: only the first two become series while they were seen within a day.
    for (i, s) in ["A", "B", "C", "D"].iter().enumerate() {
        let t = T0 + i as i64 * MIN;
        a.add("s1", t, status(s), t);
    }
    assert_eq!(values(a.close_all()), ["A", "B", "Other", "Other"]);
    // A day after A and B were last seen, their places are free again.
    let day = T0 + 24 * 3600 * 1000 + 5 * MIN;
    a.add("s1", day, status("C"), day);
    assert_eq!(values(a.close_all()), ["C"]);
}

#[test]
fn a_combination_seen_in_every_window_keeps_its_place_past_a_day() {
    let mut a = Aggregator::new(AggregatorConfig { max_series_per_metric: 1, max_age_ms: i64::MAX / 4, ..config() });
    let status = |s: &str| vec![count("meetingFailed", &[("meetingStatus", s)])];
    // `A` in a window each hour for 26 hours, twice in each (the second finds its series in the window).
    for hour in 0..26 {
        let t = T0 + hour * 60 * MIN;
        a.add("s1", t, status("A"), t);
        a.add("s1", t + 1, status("A"), t + 1);
        let closed = a.close_all();
        assert_eq!(closed[0].series[0].dimensions[0].1, "A", "hour {hour}");
        assert_eq!(closed[0].series[0].value, SeriesValue::Count(2));
    }
    // Its last sighting is recent, so the cap of one still leaves no place for `B`.
    let t = T0 + 26 * 60 * MIN;
    a.add("s1", t, status("B"), t);
    assert_eq!(a.close_all()[0].series[0].dimensions[0].1, "Other");
}

#[test]
fn a_window_held_open_past_a_day_keeps_its_active_combinations_in_the_cap() {
    let mut a = Aggregator::new(AggregatorConfig { max_series_per_metric: 1, max_age_ms: i64::MAX / 4, ..config() });
    let status = |s: &str| vec![count("meetingFailed", &[("meetingStatus", s)])];
    // One window (nothing closes it) takes `A` every half hour of processing time for 26 hours.
    for half_hour in 0..52 {
        a.add("s1", T0, status("A"), T0 + half_hour * 30 * MIN);
    }
    // `A` was seen within the last day, so the cap of one leaves no place for `B`.
    a.add("s1", T0, status("B"), T0 + 26 * 60 * MIN);
    let closed = a.close_all();
    let series: Vec<(&str, &SeriesValue)> =
        closed[0].series.iter().map(|s| (s.dimensions[0].1.as_str(), &s.value)).collect();
    assert_eq!(series, [("A", &SeriesValue::Count(52)), ("Other", &SeriesValue::Count(1))]);
    assert_eq!(a.counters().folded, 1);
}

#[test]
fn dimension_values_are_made_valid_before_they_name_a_series() {
    let mut a = Aggregator::new(config());
    // Seven blanks become `unknown`, seven characters too: the value is replaced, not kept for its length.
    for sdk in ["café\u{7} ", "   ", "       ", &"s".repeat(2000)] {
        a.add("s1", T0, vec![count("meetingStartRequested", &[("sdkName", sdk)])], T0);
    }
    for s in &a.close_all()[0].series {
        assert!(crate::dimension::check_value(&s.dimensions[0].1).is_ok(), "{:?}", s.dimensions);
    }
}

#[test]
fn a_facts_borrowed_dimensions_find_the_series_their_owned_copy_made() {
    let borrowed = || Fact {
        metric: "m",
        unit: Unit::Count,
        dimensions: vec![("sdkName".into(), "js".into()), ("osName".into(), "Mac OS".into())],
        value: FactValue::Occurrence,
    };
    let mut a = Aggregator::new(config());
    for _ in 0..3 {
        a.add("s1", T0, vec![borrowed()], T0);
    }
    a.add("s1", T0, vec![count("m", &[("sdkName", "js"), ("osName", "Mac OS")])], T0);
    let closed = a.close_all();
    assert_eq!((closed[0].series.len(), total(&closed, "m")), (1, 4));
    // The lookup hashes as the stored key does, or hashbrown would find nothing.
    let state = foldhash::fast::RandomState::default();
    let dims = borrowed().dimensions;
    assert_eq!(state.hash_one(SeriesOf("m", Dims(&dims))), state.hash_one(("m", owned(&dims))));
    assert_eq!(state.hash_one(Dims(&dims)), state.hash_one(owned(&dims)));
}

proptest! {
    #[test]
    fn every_accepted_event_is_published_in_exactly_one_closed_window(
        events in prop::collection::vec((0usize..3, 0i64..600_000, 0i64..1_000), 1..200),
    ) {
        let mut a = Aggregator::new(config());
        let mut now = T0 + 600_000;
        let mut closed = Vec::new();
        let mut accepted = 0;
        for (source, offset, step) in events {
            now += step;
            if let Placement::Window(_) = a.add(&source.to_string(), T0 + offset, vec![count("meetingStartRequested", &[])], now) {
                accepted += 1;
            }
            closed.extend(a.close(now));
        }
        closed.extend(a.close_all());
        prop_assert_eq!(total(&closed, "meetingStartRequested"), accepted);
        let mut ids: Vec<u64> = closed.iter().map(|w| w.id).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), closed.len(), "each window id comes out once");
        prop_assert!(closed.iter().all(|w| w.start_ms.rem_euclid(MIN) == 0));
    }
}
