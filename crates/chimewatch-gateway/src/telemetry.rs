//! The gateway's self-metrics, named once: requests by route and status, events accepted and rejected by reason.

use chimewatch_model::event::RejectKind;
use chimewatch_sinks::{Sample, SampleKind, Unit as CwUnit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

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

#[derive(Debug, Clone, Default)]
pub struct GatewayTelemetry {
    pub requests: Family<RequestLabels, Counter>,
    pub request_bytes: Counter,
    pub accepted: Family<KindLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    /// Events dropped as already delivered (SDK retries and beacon re-sends).
    pub duplicates: Counter,
    /// Page-end beacon posts (`?beacon=1`).
    pub beacons: Counter,
}

impl GatewayTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gateway");
        r.register("requests", "HTTP requests by route and status", self.requests.clone());
        r.register_with_unit(
            "request_body",
            "Request body bytes read (after inflation)",
            Unit::Bytes,
            self.request_bytes.clone(),
        );
        r.register("accepted", "Events and SIP records made durable", self.accepted.clone());
        r.register("rejected", "Events and SIP records rejected, by reason", self.rejected.clone());
        r.register("duplicates", "Events dropped as already delivered", self.duplicates.clone());
        r.register("beacons", "Page-end beacon posts", self.beacons.clone());
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests.get_or_create(&RequestLabels { route, status }).inc();
    }

    /// The figures published to CloudWatch (`ChimeWatch/Pipeline`), totalled over the closed label sets.
    pub fn samples(&self) -> Vec<Sample> {
        let accepted = KINDS.iter().map(|&kind| self.accepted.get_or_create(&KindLabels { kind }).get()).sum();
        let rejected = KINDS
            .iter()
            .flat_map(|&kind| RejectKind::ALL.iter().map(move |r| RejectLabels { kind, reason: r.as_str() }))
            .map(|l| self.rejected.get_or_create(&l).get())
            .sum();
        let responses = |pick: fn(u16) -> bool| -> u64 {
            ROUTES
                .iter()
                .flat_map(|&route| {
                    STATUSES.iter().filter(|s| pick(**s)).map(move |&status| RequestLabels { route, status })
                })
                .map(|l| self.requests.get_or_create(&l).get())
                .sum()
        };
        let counter = |name, unit, n| Sample { name, unit, kind: SampleKind::Counter(n) };
        vec![
            counter("EventsAccepted", CwUnit::Count, accepted),
            counter("EventsRejected", CwUnit::Count, rejected),
            counter("RequestBodyBytes", CwUnit::Bytes, self.request_bytes.get()),
            counter("Requests", CwUnit::Count, responses(|_| true)),
            counter("ThrottledResponses", CwUnit::Count, responses(|s| s == 429)),
            counter("ServerErrors", CwUnit::Count, responses(|s| s >= 500)),
            counter("DuplicatesDropped", CwUnit::Count, self.duplicates.get()),
        ]
    }
}

/// The closed label sets: what `ingest` records (route and kind names) and every status it can answer.
pub const ROUTES: [&str; 4] = ["meeting_events", "sip_messages", "client_events", "admin_attendees"];
pub const KINDS: [&str; 2] = ["meeting_event", "sip_message"];
pub const STATUSES: [u16; 9] = [200, 400, 401, 403, 413, 415, 429, 500, 503];
