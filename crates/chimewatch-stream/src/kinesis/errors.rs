//! The one place that classifies Kinesis SDK errors: fatal, transient, or throttled.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use super::KinesisError;

const THROTTLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "ThrottlingException",
];
const NOT_FOUND_CODES: &[&str] = &["ResourceNotFoundException"];

pub(crate) fn classify<E, R>(operation: &'static str, stream: &str, err: &SdkError<E, R>) -> KinesisError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = aws_sdk_kinesis::error::DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) => {
            let code = error_code(service.err());
            let code = code.as_str();
            if NOT_FOUND_CODES.contains(&code) {
                return KinesisError::NotFound { stream: stream.to_owned(), message };
            }
            if THROTTLE_CODES.contains(&code) {
                return KinesisError::Transient { operation, message, throttled: true };
            }
            let status = service_status(&message);
            if code == "InternalFailure" || code == "ServiceUnavailable" || status.is_some_and(|s| s >= 500) {
                KinesisError::Transient { operation, message, throttled: false }
            } else {
                KinesisError::Fatal { operation, message }
            }
        }
        // Timeouts, connection failures and unparseable responses may succeed on retry.
        _ => KinesisError::Transient { operation, message, throttled: false },
    }
}

/// The error code from the response metadata, or else the modeled variant's name (which is the code).
fn error_code<E: ProvideErrorMetadata + std::fmt::Debug>(err: &E) -> String {
    match err.code() {
        Some(code) => code.to_owned(),
        None => format!("{err:?}").split(['(', ' ', '{']).next().unwrap_or_default().to_owned(),
    }
}

/// The SDK keeps the raw status out of the error metadata; it shows in the context text as `status: NNN`.
fn service_status(message: &str) -> Option<u16> {
    let i = message.find("status: ")?;
    message[i + 8..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// Whether a per-entry PutRecords error code means the shard is over its throughput.
pub(crate) fn entry_is_throttle(code: &str) -> bool {
    THROTTLE_CODES.contains(&code)
}
