//! The CloudWatch adapter of the metric sink: PutMetricData within 1,000 datums and 1 MB per request, 150 values per
//! datum, and 30 dimensions. Request bodies are gzip-compressed by the SDK (PutMetricData supports request
//! compression). Only this module names `aws_sdk_cloudwatch` types.

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;

use crate::metrics::{Datum, DatumValue, MetricSink, SinkError, Unit};

pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
pub const MAX_VALUES_PER_DATUM: usize = 150;
pub const MAX_DIMENSIONS: usize = 30;
/// Budget per request below the 1 MB limit, leaving room for the protocol's framing.
const MAX_REQUEST_BYTES: usize = 900_000;

#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: Client,
}

/// A CloudWatch client from the AWS SDK configuration.
pub fn client(sdk: &aws_types::SdkConfig) -> Client {
    Client::new(sdk)
}

impl CloudWatchSink {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// Splits datums into requests within the datum-count and byte limits (estimated generously).
pub fn plan_requests(datums: Vec<Datum>) -> Vec<Vec<Datum>> {
    let mut requests = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for d in datums {
        let size = estimated_size(&d);
        if !current.is_empty() && (current.len() == MAX_DATUMS_PER_REQUEST || bytes + size > MAX_REQUEST_BYTES) {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(d);
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
    async fn publish(&self, namespace: &str, datums: Vec<Datum>) -> Result<(), SinkError> {
        if let Some(d) = datums.iter().find(
            |d| matches!(&d.value, DatumValue::Distribution { values, .. } if values.len() > MAX_VALUES_PER_DATUM),
        ) {
            return Err(SinkError::Fatal {
                operation: "PutMetricData",
                message: format!(
                    "datum {} has more than {MAX_VALUES_PER_DATUM} values; split it before publishing",
                    d.name
                ),
            });
        }
        for request in plan_requests(datums) {
            let data: Vec<MetricDatum> = request.into_iter().map(to_sdk).collect();
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> SinkError {
    let message = DisplayErrorContext(&e).to_string();
    let transient = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            code.contains("Throttl") || code == "InternalServiceFault" || code == "ServiceUnavailable"
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

    #[test]
    fn requests_hold_at_most_1000_datums_and_1mb() {
        let plan = plan_requests((0..2500).map(datum).collect());
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        let big: Vec<Datum> = (0..200)
            .map(|i| Datum {
                value: DatumValue::Distribution { values: vec![1.0; 150], counts: vec![1.0; 150] },
                ..datum(i)
            })
            .collect();
        let plan = plan_requests(big);
        assert!(plan.len() > 1);
        assert!(plan.iter().all(|r| r.iter().map(estimated_size).sum::<usize>() <= MAX_REQUEST_BYTES));
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
        CloudWatchSink::new(client).publish("ChimeWatch/Pipeline", (0..1200).map(datum).collect()).await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            [("ChimeWatch/Pipeline".to_owned(), 1000), ("ChimeWatch/Pipeline".to_owned(), 200)]
        );
    }

    #[tokio::test]
    async fn oversized_distributions_are_refused_not_truncated() {
        let client = mock_client!(aws_sdk_cloudwatch, []);
        let d =
            Datum { value: DatumValue::Distribution { values: vec![1.0; 151], counts: vec![1.0; 151] }, ..datum(0) };
        let err = CloudWatchSink::new(client).publish("N", vec![d]).await.unwrap_err();
        assert!(matches!(err, SinkError::Fatal { .. }), "{err}");
    }
}
