//! The gateway's self-metrics, each declared once: requests by route and status, events accepted and rejected by
//! reason, body bytes, duplicates, beacons; on `/metrics` and in `ChimeWatch/Pipeline` (`Service=gateway`).

use chimewatch_telemetry::{Labeled, MetricSet, Sample, Total, Unit, cw};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

static REQUESTS: [Total<RequestLabels>; 4] = [
    (cw("Requests", Unit::Count), |_| true),
    (cw("ClientErrors", Unit::Count), |l| (400..500).contains(&l.status)),
    (cw("ThrottledResponses", Unit::Count), |l| l.status == 429),
    (cw("ServerErrors", Unit::Count), |l| l.status >= 500),
];
static ACCEPTED: [Total<KindLabels>; 1] = [(cw("EventsAccepted", Unit::Count), |_| true)];
static REJECTED: [Total<RejectLabels>; 1] = [(cw("EventsRejected", Unit::Count), |_| true)];

#[derive(Debug, Clone)]
pub struct GatewayTelemetry {
    pub requests: Labeled<RequestLabels, Counter>,
    pub request_bytes: Counter,
    pub accepted: Labeled<KindLabels, Counter>,
    pub rejected: Labeled<RejectLabels, Counter>,
    /// Events dropped as already delivered (SDK retries and beacon re-sends).
    pub duplicates: Counter,
    /// Page-end beacon posts (`?beacon=1`).
    pub beacons: Counter,
    /// Requests answered 503 at once because `max_concurrent_requests` were in progress.
    pub at_capacity: Counter,
    set: MetricSet,
}

impl Default for GatewayTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("gateway");
        Self {
            requests: set.counter_family("requests", "HTTP requests by route and status", &REQUESTS),
            request_bytes: set.counter(
                "request_body_bytes",
                "Request body bytes read (after inflation)",
                cw("RequestBodyBytes", Unit::Bytes),
            ),
            accepted: set.counter_family("accepted", "Events and SIP records made durable", &ACCEPTED),
            rejected: set.counter_family("rejected", "Events and SIP records rejected, by reason", &REJECTED),
            duplicates: set.counter(
                "duplicates",
                "Events dropped as already delivered",
                cw("DuplicatesDropped", Unit::Count),
            ),
            beacons: set.counter("beacons", "Page-end beacon posts", cw("BeaconRequests", Unit::Count)),
            at_capacity: set.counter(
                "at_capacity",
                "Requests refused with 503 because the gateway was at capacity",
                cw("AtCapacityResponses", Unit::Count),
            ),
            set,
        }
    }
}

impl GatewayTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests.get(&RequestLabels { route, status }).inc();
    }

    /// The figures reported to CloudWatch (`ChimeWatch/Pipeline`).
    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }
}
