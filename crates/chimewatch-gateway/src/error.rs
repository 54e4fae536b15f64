//! Every error a client can see, and the status code of each, in one reviewable `match`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chimewatch_model::BatchError;
use chimewatch_stream::ProduceError;

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body inflates past {limit} bytes")]
    InflatesTooLarge { limit: usize },
    #[error("request body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("content encoding {0:?} is not supported; send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error("content type {0:?} is not accepted; send application/json or text/plain")]
    UnsupportedContentType(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("the gateway is at capacity ({0} requests in progress); retry shortly")]
    AtCapacity(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Stream(#[from] ProduceError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Batch(BatchError::TooManyElements { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Batch(_) | Self::BadGzip(_) | Self::BodyRead(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } | Self::InflatesTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedEncoding(_) | Self::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            // The client sends faster than the stream absorbs: slow down (the Chime SDKs retry 429).
            Self::Stream(ProduceError::Overloaded { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Self::Stream(ProduceError::RecordTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Stream(ProduceError::Unavailable { .. } | ProduceError::ShuttingDown) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::AtCapacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Stream(
                ProduceError::Overloaded { retry_after, .. } | ProduceError::Unavailable { retry_after, .. },
            ) => Some(*retry_after),
            Self::Stream(ProduceError::ShuttingDown) | Self::AtCapacity(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = serde_json::json!({"error": self.to_string()});
        if let Self::Batch(BatchError::Syntax { line, column, .. }) = &self {
            body["line"] = (*line).into();
            body["column"] = (*column).into();
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
