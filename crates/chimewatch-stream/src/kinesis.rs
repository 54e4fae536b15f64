//! Amazon Kinesis Data Streams: an aggregating producer, the consumer runtime's shard source, and a simple reader. Only this module names `aws_sdk_*`
//! types; SDK errors become [`ProduceError`](crate::ProduceError)s here, and the retry classification lives here.

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

mod errors;
mod producer;
mod reader;
mod shard_map;
mod source;

pub use producer::{KinesisProducer, KinesisProducerConfig};
pub use reader::{ReadFrom, read_stream};
pub use shard_map::{ShardMap, ShardRange};
pub use source::{KinesisSource, KinesisSourceConfig};

/// A Kinesis client from the AWS SDK configuration (region, credentials, `AWS_ENDPOINT_URL*`), with `interceptors`
/// on every call (the binary's count of retried and throttled attempts).
pub fn client(sdk: &aws_types::SdkConfig, interceptors: &[SharedInterceptor]) -> aws_sdk_kinesis::Client {
    let mut builder = aws_sdk_kinesis::config::Builder::from(sdk);
    for i in interceptors {
        builder.push_interceptor(i.clone());
    }
    aws_sdk_kinesis::Client::from_conf(builder.build())
}

/// Why a Kinesis call failed, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KinesisError {
    #[error("stream {stream} was not found: {message}")]
    NotFound { stream: String, message: String },
    #[error("{operation} failed and will not succeed on retry: {message}")]
    Fatal { operation: &'static str, message: String },
    #[error("{operation} failed: {message}")]
    Transient { operation: &'static str, message: String, throttled: bool },
}
