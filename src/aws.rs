//! The binary's AWS side: the SDK configuration from the standard environment, and an interceptor on every AWS
//! client that counts the attempts the SDK retried and the answers that throttled, per service, so that retries the
//! SDK absorbs still show on `/metrics` and in `ChimeWatch/Pipeline`.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use chimewatch_telemetry::{Labeled, MetricSet, Sample, Total, Unit, cw};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: &'static str,
}

static RETRIES: [Total<ServiceLabel>; 1] = [(cw("AwsRetries", Unit::Count), |_| true)];
static THROTTLED: [Total<ServiceLabel>; 1] = [(cw("AwsThrottled", Unit::Count), |_| true)];

/// The AWS calls' self-metrics, declared once.
#[derive(Debug, Clone)]
pub struct AwsTelemetry {
    /// Attempts the SDK made after the first of a call (after a throttle, a 5xx, a timeout or a reset).
    pub retries: Labeled<ServiceLabel, Counter>,
    /// Answers that throttled (429, 503).
    pub throttled: Labeled<ServiceLabel, Counter>,
    set: MetricSet,
}

impl Default for AwsTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("aws");
        Self {
            retries: set.counter_family("retries", "AWS call attempts the SDK retried, by service", &RETRIES),
            throttled: set.counter_family("throttled", "AWS answers that throttled (429, 503), by service", &THROTTLED),
            set,
        }
    }
}

impl AwsTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        self.set.register(registry);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.set.samples()
    }

    /// The interceptor that counts the calls of one service.
    pub fn counting(&self, service: &'static str) -> Vec<SharedInterceptor> {
        vec![SharedInterceptor::new(CountAttempts { service, telemetry: self.clone() })]
    }
}

#[derive(Debug)]
struct CountAttempts {
    service: &'static str,
    telemetry: AwsTelemetry,
}

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "chimewatch-count-attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<RequestAttempts>().is_some_and(|a| a.attempts() > 1) {
            self.telemetry.retries.get(&ServiceLabel { service: self.service }).inc();
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().is_some_and(|r| matches!(r.status().as_u16(), 429 | 503)) {
            self.telemetry.throttled.get(&ServiceLabel { service: self.service }).inc();
        }
        Ok(())
    }
}

/// Loads the AWS SDK configuration from the standard environment (region, credentials, `AWS_ENDPOINT_URL*`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}
