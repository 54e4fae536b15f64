//! Reading a request body within limits: declared and actual size, gzip inflation (bombs included), content type.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

/// Media types a body may declare; `navigator.sendBeacon` and the JS SDK send `text/plain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    /// JSON or newline-delimited JSON.
    JsonOrLines,
}

pub fn check_content_type(headers: &HeaderMap, accept: Accept) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = match essence.as_str() {
        "" | "application/json" | "text/plain" => true,
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => accept == Accept::JsonOrLines,
        _ => false,
    };
    if ok { Ok(()) } else { Err(ApiError::UnsupportedContentType(text.to_owned())) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(Encoding::Identity) };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        _ => Err(ApiError::UnsupportedEncoding(text)),
    }
}

/// Reads the whole body within `timeout`, refusing more than `max` bytes on the wire or after inflation.
pub async fn read(headers: &HeaderMap, body: Body, max: usize, timeout: Duration) -> Result<Vec<u8>, ApiError> {
    let encoding = content_encoding(headers)?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(ApiError::TooLarge { limit: max });
    }
    // A client that trickles its body ties up a connection and a concurrency slot: it gets 408 instead.
    let collected = tokio::time::timeout(timeout, Limited::new(body, max).collect())
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout))?
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::TooLarge { limit: max }
            } else {
                ApiError::BodyRead(e.to_string())
            }
        })?;
    let raw = collected.to_bytes();
    match encoding {
        Encoding::Identity => Ok(raw.to_vec()),
        Encoding::Gzip => {
            // Inflate on a blocking thread: a large body takes milliseconds of CPU.
            tokio::task::spawn_blocking(move || gunzip(&raw, max))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
    }
}

fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    // Reading one byte past the limit tells a body at the limit from a bomb, without inflating the bomb.
    flate2::read::MultiGzDecoder::new(raw)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadGzip(e.to_string()))?;
    if out.len() > max {
        return Err(ApiError::InflatesTooLarge { limit: max });
    }
    Ok(out)
}
