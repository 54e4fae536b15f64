//! One declaration, two forms: what `/metrics` shows and what CloudWatch gets come from the same metric.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use super::*;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
    status: u16,
}

fn exposition(set: &MetricSet) -> String {
    let mut registry = Registry::with_prefix("chimewatch");
    set.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn find<'a>(samples: &'a [Sample], name: &str) -> &'a SampleKind {
    &samples.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no sample {name} in {samples:?}")).kind
}

#[test]
fn a_counter_and_a_gauge_show_on_both_sides() {
    let set = MetricSet::new("svc");
    let events = set.counter("events", "Events seen", cw("SvcEvents", Unit::Count));
    let open = set.gauge("open_windows", "Windows open", cw("SvcOpenWindows", Unit::Count));
    events.inc_by(3);
    open.set(2);
    let text = exposition(&set);
    assert!(text.contains("chimewatch_svc_events_total 3"), "{text}");
    assert!(text.contains("chimewatch_svc_open_windows 2"), "{text}");
    let samples = set.samples();
    assert_eq!(samples.len(), 2);
    assert_eq!(find(&samples, "SvcEvents"), &SampleKind::Counter(3));
    assert_eq!(find(&samples, "SvcOpenWindows"), &SampleKind::Gauge(2.0));
}

#[test]
fn a_counter_family_reports_the_totals_it_declares() {
    static TOTALS: [Total<Route>; 2] =
        [(cw("Requests", Unit::Count), |_| true), (cw("ServerErrors", Unit::Count), |r| r.status >= 500)];
    let set = MetricSet::new("gateway");
    let requests = set.counter_family("requests", "Requests by route and status", &TOTALS);
    requests.get(&Route { route: "a", status: 200 }).inc_by(5);
    requests.get(&Route { route: "b", status: 503 }).inc_by(2);
    requests.get(&Route { route: "a", status: 500 }).inc();
    let text = exposition(&set);
    assert!(text.contains(r#"chimewatch_gateway_requests_total{route="b",status="503"} 2"#), "{text}");
    let samples = set.samples();
    assert_eq!(find(&samples, "Requests"), &SampleKind::Counter(8));
    assert_eq!(find(&samples, "ServerErrors"), &SampleKind::Counter(3));
}

#[test]
fn a_gauge_family_reports_its_maximum_and_forgets_removed_sets() {
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Shard {
        shard: String,
    }
    let set = MetricSet::new("consumer");
    let lag = set.gauge_family("lag", "Lag per shard", cw("MaxLag", Unit::Milliseconds));
    let a = Shard { shard: "a".into() };
    lag.get(&a).set(900);
    lag.get(&Shard { shard: "b".into() }).set(40);
    assert_eq!(find(&set.samples(), "MaxLag"), &SampleKind::Gauge(900.0));
    lag.remove(&a);
    assert_eq!(find(&set.samples(), "MaxLag"), &SampleKind::Gauge(40.0));
    assert!(!exposition(&set).contains(r#"shard="a""#));
}

#[test]
fn a_latency_is_a_histogram_in_seconds_and_a_distribution_in_milliseconds() {
    let set = MetricSet::new("stream");
    let latency = set.latency("put_latency", "Time to durability", "StreamPutLatency");
    latency.observe(std::time::Duration::from_millis(12));
    latency.observe(std::time::Duration::from_millis(30));
    let text = exposition(&set);
    assert!(text.contains("chimewatch_stream_put_latency_seconds_count 2"), "{text}");
    let SampleKind::Distribution(d) = find(&set.samples(), "StreamPutLatency").clone() else { panic!() };
    assert_eq!((d.count(), d.min(), d.max()), (2, Some(12), Some(30)));
    // Taken by the report: the next one starts empty, while the histogram keeps counting.
    let SampleKind::Distribution(d) = find(&set.samples(), "StreamPutLatency").clone() else { panic!() };
    assert_eq!(d.count(), 0);
}
