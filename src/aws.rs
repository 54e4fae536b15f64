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
    /// Answers that throttled: 429, S3's 503 SlowDown, or an error code that says so (Kinesis and DynamoDB throttle
    /// with 400 ProvisionedThroughputExceededException, CloudWatch with 400 Throttling).
    pub throttled: Labeled<ServiceLabel, Counter>,
    set: MetricSet,
}

impl Default for AwsTelemetry {
    fn default() -> Self {
        let set = MetricSet::new("aws");
        Self {
            retries: set.counter_family("retries", "AWS call attempts the SDK retried, by service", &RETRIES),
            throttled: set.counter_family("throttled", "AWS answers that throttled, by service", &THROTTLED),
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
        if context.response().is_some_and(is_throttle) {
            self.telemetry.throttled.get(&ServiceLabel { service: self.service }).inc();
        }
        Ok(())
    }
}

/// The error codes with which AWS services throttle (as the SDKs' retry classifiers list them).
const THROTTLE_CODES: [&str; 10] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
];

/// Whether an answer throttled: by status, or by its error code, wherever the protocol puts it (the
/// `x-amzn-errortype` or `x-amzn-query-error` header, a JSON body's `__type`, an XML body's `<Code>`).
fn is_throttle(response: &aws_smithy_runtime_api::http::Response) -> bool {
    let status = response.status().as_u16();
    if status == 429 {
        return true;
    }
    if status < 400 {
        return false;
    }
    let headers = response.headers();
    let from_headers = headers.get("x-amzn-errortype").or_else(|| headers.get("x-amzn-query-error"));
    let body = response.body().bytes().unwrap_or_default();
    let from_body = || -> Option<String> {
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
            return json.get("__type")?.as_str().map(str::to_owned);
        }
        let text = std::str::from_utf8(body).ok()?;
        let start = text.find("<Code>")? + "<Code>".len();
        Some(text[start..].split('<').next()?.to_owned())
    };
    let code = from_headers.map(str::to_owned).or_else(from_body).unwrap_or_default();
    // "com.amazon.coral.availability#ThrottlingException", "Throttling;Sender", "SlowDown:http://..."
    let code = code.rsplit('#').next().unwrap_or_default().split([';', ':']).next().unwrap_or_default();
    THROTTLE_CODES.contains(&code)
}

/// Loads the AWS SDK configuration from the standard environment (region, credentials, `AWS_ENDPOINT_URL*`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::is_throttle;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        let mut response = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body.to_owned()));
        for (k, v) in headers {
            response.headers_mut().insert(k.to_string(), v.to_string());
        }
        response
    }

    #[test]
    fn throttles_are_told_apart_from_other_errors_in_every_protocol() {
        let kinesis = r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#;
        assert!(is_throttle(&answer(400, &[], kinesis)));
        let dynamodb = r#"{"__type":"com.amazon.coral.availability#ThrottlingException"}"#;
        assert!(is_throttle(&answer(400, &[], dynamodb)));
        assert!(is_throttle(&answer(400, &[("x-amzn-query-error", "Throttling;Sender")], "\u{a0}")));
        assert!(is_throttle(&answer(503, &[], "<Error><Code>SlowDown</Code><Message>Reduce</Message></Error>")));
        assert!(is_throttle(&answer(429, &[], "")));
        assert!(is_throttle(&answer(400, &[("x-amzn-errortype", "ThrottlingException:http://internal")], "")));

        assert!(!is_throttle(&answer(400, &[], r#"{"__type":"InvalidParameterValueException"}"#)));
        assert!(!is_throttle(&answer(500, &[], r#"{"__type":"InternalFailure"}"#)));
        assert!(!is_throttle(&answer(503, &[], "<Error><Code>ServiceUnavailable</Code></Error>")));
        assert!(!is_throttle(&answer(200, &[], r#"{"__type":"ThrottlingException"}"#)));
    }
}
