//! The CloudWatch adapter of the metric sink: PutMetricData within 1,000 datums and 1 MB per request, 150 values per
//! datum, and 30 dimensions. Request bodies are gzip-compressed by the SDK (PutMetricData supports request
//! compression). Only this module and [`crate::cloudwatch_admin`] (dashboards and alarms) name `aws_sdk_cloudwatch` types.
//!
//! Nothing CloudWatch would refuse is sent: each datum is checked against PutMetricData's rules first
//! ([`check_datum`]). Should CloudWatch still refuse a request for its content (a 400 such as `InvalidParameterValue`),
//! the request is split in halves until the datums it refuses are found; those are reported as rejected and the rest
//! are published, so one bad datum never holds back the others. Throttling and server errors leave the datums not yet
//! taken for the caller to retry.

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_types::DateTime;

use chimewatch_model::Clock;

use crate::metrics::{Datum, DatumValue, MetricSink, Outcome, SinkError, Unit, check_datum, check_namespace};

pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
pub const MAX_VALUES_PER_DATUM: usize = 150;
pub const MAX_DIMENSIONS: usize = 30;
/// Budget per request below the 1 MB limit, leaving room for the protocol's framing.
const MAX_REQUEST_BYTES: usize = 900_000;

#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: Client,
    /// Timestamps are checked against this clock's now.
    clock: Clock,
}

/// A CloudWatch client from the AWS SDK configuration, with `interceptors` on every call.
pub fn client(sdk: &aws_types::SdkConfig, interceptors: &[SharedInterceptor]) -> Client {
    let mut builder = aws_sdk_cloudwatch::config::Builder::from(sdk);
    for i in interceptors {
        builder.push_interceptor(i.clone());
    }
    Client::from_conf(builder.build())
}

impl CloudWatchSink {
    pub fn new(client: Client, clock: Clock) -> Self {
        Self { client, clock }
    }

    async fn send(
        &self,
        namespace: &str,
        datums: &[Datum],
        request: &[usize],
    ) -> Result<(), SdkError<PutError, HttpResponse>> {
        let data: Vec<MetricDatum> = request.iter().map(|&i| to_sdk(datums[i].clone())).collect();
        self.client.put_metric_data().namespace(namespace).set_metric_data(Some(data)).send().await.map(|_| ())
    }
}

type PutError = aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
type HttpResponse = aws_sdk_cloudwatch::config::http::HttpResponse;

/// Whether CloudWatch refused the request for what it holds, so that no retry of the same datums can succeed.
fn refused_for_content(e: &SdkError<PutError, HttpResponse>) -> Option<String> {
    let SdkError::ServiceError(s) = e else { return None };
    let status = s.raw().status().as_u16();
    let code = s.err().code().unwrap_or_default();
    // Only the errors PutMetricData documents for a request's content (and 413 for its size): anything else, an
    // expired credential say, is not the datums' fault and must not get them dead-lettered.
    let content =
        matches!(code, "InvalidParameterValue" | "InvalidParameterCombination" | "MissingParameter") || status == 413;
    content.then(|| format!("{code}: {}", s.err().message().unwrap_or_default()))
}

/// Splits the datums at `indices` into requests within the datum-count and byte limits (estimated generously).
pub fn plan_requests(datums: &[Datum], indices: impl IntoIterator<Item = usize>) -> Vec<Vec<usize>> {
    let mut requests = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for i in indices {
        let size = estimated_size(&datums[i]);
        if !current.is_empty() && (current.len() == MAX_DATUMS_PER_REQUEST || bytes + size > MAX_REQUEST_BYTES) {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(i);
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

fn estimated_size(d: &Datum) -> usize {
    let values = match &d.value {
        DatumValue::Single(_) => 1,
        DatumValue::Distribution { values, .. } => values.len() * 2,
    };
    64 + d.name.len() + d.dimensions.iter().map(|(k, v)| 16 + k.len() + v.len()).sum::<usize>() + values * 24
}

fn unit(u: Unit) -> StandardUnit {
    match u {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Bytes => StandardUnit::Bytes,
        Unit::Percent => StandardUnit::Percent,
        Unit::None => StandardUnit::None,
    }
}

fn to_sdk(d: Datum) -> MetricDatum {
    let mut b = MetricDatum::builder()
        .metric_name(d.name)
        .unit(unit(d.unit))
        .timestamp(DateTime::from_millis(d.timestamp.as_i64()))
        .storage_resolution(if d.high_resolution { 1 } else { 60 })
        .set_dimensions(Some(
            d.dimensions
                .into_iter()
                .take(MAX_DIMENSIONS)
                .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                .collect(),
        ));
    b = match d.value {
        DatumValue::Single(v) => b.value(v),
        DatumValue::Distribution { values, counts } => b.set_values(Some(values)).set_counts(Some(counts)),
    };
    b.build()
}

#[async_trait]
impl MetricSink for CloudWatchSink {
    async fn publish(&self, namespace: &str, datums: &[Datum]) -> Outcome {
        if let Err(reason) = check_namespace(namespace) {
            return Outcome {
                rejected: (0..datums.len()).map(|i| (i, reason.clone())).collect(),
                ..Outcome::default()
            };
        }
        let now = (self.clock)();
        let mut outcome = Outcome::default();
        let mut valid = Vec::with_capacity(datums.len());
        for (i, d) in datums.iter().enumerate() {
            match check_datum(d, Some(now)) {
                Ok(()) => valid.push(i),
                Err(reason) => outcome.rejected.push((i, reason)),
            }
        }
        // Requests to send, last first; a request refused for its content comes back as its two halves.
        let mut todo: Vec<Vec<usize>> = plan_requests(datums, valid);
        todo.reverse();
        while let Some(request) = todo.pop() {
            match self.send(namespace, datums, &request).await {
                Ok(()) => {}
                Err(e) => match refused_for_content(&e) {
                    Some(reason) if request.len() == 1 => outcome.rejected.push((request[0], reason)),
                    Some(_) => {
                        let (first, second) = request.split_at(request.len() / 2);
                        todo.push(second.to_vec());
                        todo.push(first.to_vec());
                    }
                    None => {
                        outcome.unsent.extend(request);
                        outcome.unsent.extend(todo.drain(..).rev().flatten());
                        outcome.error = Some(classify(e));
                    }
                },
            }
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        outcome
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> SinkError {
    let message = DisplayErrorContext(&e).to_string();
    let transient = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            // The SDK reports CloudWatch's InternalServiceFault as InternalServiceError.
            code.contains("Throttl") || code == "InternalServiceError" || code == "ServiceUnavailable"
        }
        _ => true,
    };
    if transient {
        SinkError::Transient { operation: "PutMetricData", message }
    } else {
        SinkError::Fatal { operation: "PutMetricData", message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::put_metric_data::{PutMetricDataInput, PutMetricDataOutput};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use chimewatch_model::UnixMillis;
    use std::sync::{Arc, Mutex};

    fn datum(i: usize) -> Datum {
        Datum {
            name: format!("M{i}"),
            unit: Unit::Count,
            value: DatumValue::Single(i as f64),
            dimensions: vec![("Service".into(), "gateway".into())],
            timestamp: UnixMillis(1_763_712_000_000),
            high_resolution: false,
        }
    }

    fn now() -> UnixMillis {
        UnixMillis(1_763_712_000_000)
    }

    #[test]
    fn requests_hold_at_most_1000_datums_and_1mb() {
        let all: Vec<Datum> = (0..2500).map(datum).collect();
        let plan = plan_requests(&all, 0..all.len());
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        let big: Vec<Datum> = (0..200)
            .map(|i| Datum {
                value: DatumValue::Distribution { values: vec![1.0; 150], counts: vec![1.0; 150] },
                ..datum(i)
            })
            .collect();
        let plan = plan_requests(&big, 0..big.len());
        assert!(plan.len() > 1);
        assert!(plan.iter().all(|r| r.iter().map(|&i| estimated_size(&big[i])).sum::<usize>() <= MAX_REQUEST_BYTES));
        assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), 200);
    }

    #[tokio::test]
    async fn datums_reach_put_metric_data_with_namespace_and_dimensions() {
        let seen: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
        let captured = seen.clone();
        let rule = mock!(Client::put_metric_data).then_compute_output(move |req: &PutMetricDataInput| {
            let first = &req.metric_data()[0];
            assert_eq!(first.dimensions()[0].name(), Some("Service"));
            assert_eq!(first.unit(), Some(&StandardUnit::Count));
            captured.lock().unwrap().push((req.namespace().unwrap_or_default().to_owned(), req.metric_data().len()));
            PutMetricDataOutput::builder().build()
        });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let datums: Vec<Datum> = (0..1200).map(datum).collect();
        let outcome = CloudWatchSink::new(client, now).publish("ChimeWatch/Pipeline", &datums).await;
        assert_eq!(outcome, Outcome::default());
        assert_eq!(
            *seen.lock().unwrap(),
            [("ChimeWatch/Pipeline".to_owned(), 1000), ("ChimeWatch/Pipeline".to_owned(), 200)]
        );
    }

    #[tokio::test]
    async fn what_cloudwatch_would_refuse_is_rejected_before_sending_and_the_rest_published() {
        let sent: Arc<Mutex<Vec<String>>> = Arc::default();
        let captured = sent.clone();
        let rule = mock!(Client::put_metric_data).then_compute_output(move |req: &PutMetricDataInput| {
            captured
                .lock()
                .unwrap()
                .extend(req.metric_data().iter().map(|d| d.metric_name().unwrap_or_default().to_owned()));
            PutMetricDataOutput::builder().build()
        });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let mut datums: Vec<Datum> = (0..4).map(datum).collect();
        datums[1].dimensions[0].1 = "   ".into();
        datums[2].value = DatumValue::Distribution { values: vec![1.0; 151], counts: vec![1.0; 151] };
        let outcome = CloudWatchSink::new(client, now).publish("N", &datums).await;
        assert_eq!(outcome.rejected.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
        assert!(outcome.rejected[0].1.contains("whitespace"), "{:?}", outcome.rejected);
        assert!(outcome.is_settled() && outcome.error.is_none());
        assert_eq!(*sent.lock().unwrap(), ["M0", "M3"]);
    }

    #[tokio::test]
    async fn a_request_refused_for_one_datum_is_split_until_that_datum_is_found() {
        use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
        use aws_sdk_cloudwatch::types::error::InvalidParameterValueException;
        let sent: Arc<Mutex<Vec<String>>> = Arc::default();
        let captured = sent.clone();
        let refuse = mock!(Client::put_metric_data)
            .match_requests(|req| req.metric_data().iter().any(|d| d.metric_name() == Some("M5")))
            .then_error(|| {
                // As the SDK builds it from CloudWatch's answer: the code comes from the x-amzn-query-error header.
                let meta = aws_sdk_cloudwatch::error::ErrorMetadata::builder()
                    .code("InvalidParameterValue")
                    .message("M5 is not what CloudWatch takes")
                    .build();
                PutMetricDataError::InvalidParameterValueException(
                    InvalidParameterValueException::builder()
                        .message("M5 is not what CloudWatch takes")
                        .meta(meta)
                        .build(),
                )
            });
        let take = mock!(Client::put_metric_data).then_compute_output(move |req: &PutMetricDataInput| {
            captured
                .lock()
                .unwrap()
                .extend(req.metric_data().iter().map(|d| d.metric_name().unwrap_or_default().to_owned()));
            PutMetricDataOutput::builder().build()
        });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&refuse, &take]);
        let datums: Vec<Datum> = (0..8).map(datum).collect();
        let outcome = CloudWatchSink::new(client, now).publish("N", &datums).await;
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].0, 5);
        assert!(outcome.rejected[0].1.contains("InvalidParameterValue"), "{:?}", outcome.rejected);
        assert!(outcome.is_settled());
        let mut published = sent.lock().unwrap().clone();
        published.sort();
        assert_eq!(published, ["M0", "M1", "M2", "M3", "M4", "M6", "M7"], "each once");
    }

    #[tokio::test]
    async fn throttling_leaves_what_was_not_taken_to_the_caller() {
        use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let rule = mock!(Client::put_metric_data)
            .match_requests(move |_| counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1)
            .then_error(|| {
                PutMetricDataError::generic(
                    aws_sdk_cloudwatch::error::ErrorMetadata::builder().code("Throttling").message("slow down").build(),
                )
            });
        let ok = mock!(Client::put_metric_data).then_output(|| PutMetricDataOutput::builder().build());
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule, &ok]);
        let datums: Vec<Datum> = (0..2500).map(datum).collect();
        let outcome = CloudWatchSink::new(client, now).publish("N", &datums).await;
        assert_eq!(outcome.unsent, (1000..2500).collect::<Vec<_>>(), "the first request went through");
        assert!(matches!(outcome.error, Some(SinkError::Transient { .. })), "{:?}", outcome.error);
    }
}
