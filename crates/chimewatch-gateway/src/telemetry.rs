//! The gateway's self-metrics, named once: requests by route and status, events accepted and rejected by reason.

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
    }

    pub fn request(&self, route: &'static str, status: u16) {
        self.requests.get_or_create(&RequestLabels { route, status }).inc();
    }
}
