//! The S3 adapter of the object store port: one PutObject for small files, multipart uploads streamed from disk for
//! large ones, and `If-None-Match: *` for create-if-absent.

use std::path::Path;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::objects::{ObjectError, ObjectInfo, ObjectStore};

/// Parts of a multipart upload: 16 MiB (S3 wants 5 MiB to 5 GiB per part, at most 10,000 parts).
pub const DEFAULT_PART_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    part_bytes: u64,
}

fn failed<E, R>(op: &'static str, key: &str, e: SdkError<E, R>) -> ObjectError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ObjectError::Store { op, key: key.to_owned(), message: DisplayErrorContext(&e).to_string() }
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

fn read_error(op: &'static str, key: &str, e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Store { op, key: key.to_owned(), message: e.to_string() }
}

/// An S3 client from the AWS SDK configuration, with path-style addressing when an endpoint is set (S3-compatible
/// stores and emulators on an IP address have no virtual-host buckets).
pub fn client(sdk: &aws_types::SdkConfig, interceptors: &[SharedInterceptor]) -> Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder.force_path_style(true);
    }
    for i in interceptors {
        builder.push_interceptor(i.clone());
    }
    Client::from_conf(builder.build())
}

impl S3Objects {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into(), part_bytes: DEFAULT_PART_BYTES }
    }

    /// Multipart parts of `bytes` each (at least 5 MiB, as S3 requires of every part but the last).
    pub fn part_bytes(mut self, bytes: u64) -> Self {
        self.part_bytes = bytes.max(5 * 1024 * 1024);
        self
    }

    async fn multipart(&self, key: &str, path: &Path, size: u64) -> Result<(), ObjectError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| read_error("CreateMultipartUpload", key, "no upload id in the answer"))?
            .to_owned();
        let result = self.upload_parts(key, path, size, &upload_id).await;
        if result.is_err() {
            // Parts of an abandoned upload are billed until aborted.
            let aborted =
                self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
            if let Err(e) = aborted {
                tracing::warn!(key, error = %DisplayErrorContext(&e), "Could not abort a failed multipart upload; a lifecycle rule for incomplete uploads cleans it up.");
            }
        }
        result
    }

    async fn upload_parts(&self, key: &str, path: &Path, size: u64, upload_id: &str) -> Result<(), ObjectError> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let length = self.part_bytes.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| read_error("UploadPart", key, e))?;
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| failed("UploadPart", key, e))?;
            parts.push(CompletedPart::builder().set_e_tag(part.e_tag().map(str::to_owned)).part_number(number).build());
            offset += length;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", key, e))?;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| ObjectError::Io { op: "put", key: key.into(), source })?
            .len();
        if size > self.part_bytes {
            return self.multipart(key, path, size).await;
        }
        let body = ByteStream::from_path(path).await.map_err(|e| read_error("PutObject", key, e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| failed("PutObject", key, e))?;
        Ok(())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| failed("PutObject", key, e))?;
        Ok(())
    }

    async fn create_new(&self, key: &str, body: Bytes) -> Result<bool, ObjectError> {
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            // 412: the key exists. (409 is a concurrent conditional write in progress: an error, retried later.)
            Err(e) if status(&e) == Some(412) => Ok(false),
            Err(e) => Err(failed("PutObject", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, ObjectError> {
        let got = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(got) => got,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(failed("GetObject", key, e)),
        };
        let body = got.body.collect().await.map_err(|e| read_error("GetObject", key, e))?;
        Ok(Some(body.into_bytes()))
    }

    async fn download(&self, key: &str, to: &Path) -> Result<(), ObjectError> {
        let mut got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| failed("GetObject", key, e))?;
        let io = |source| ObjectError::Io { op: "get", key: key.to_owned(), source };
        let mut file = tokio::fs::File::create(to).await.map_err(io)?;
        while let Some(chunk) = got.body.try_next().await.map_err(|e| read_error("GetObject", key, e))? {
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    last_modified_ms: object.last_modified().map(|t| t.to_millis().unwrap_or(0)).unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ObjectError> {
        // DeleteObjects takes at most 1,000 keys.
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read_error("DeleteObjects", &chunk[0], e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| read_error("DeleteObjects", &chunk[0], e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| failed("DeleteObjects", &chunk[0], e))?;
            if let Some(error) = out.errors().first() {
                return Err(ObjectError::Store {
                    op: "DeleteObjects",
                    key: error.key().unwrap_or_default().to_owned(),
                    message: format!("{} ({})", error.message().unwrap_or_default(), error.code().unwrap_or_default()),
                });
            }
        }
        Ok(())
    }

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
    use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput;
    use aws_sdk_s3::operation::upload_part::UploadPartOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    /// A part that fails aborts the upload (abandoned parts are billed) and fails the put; nothing is completed.
    #[tokio::test]
    async fn a_failed_part_aborts_the_multipart_upload() {
        let create = mock!(Client::create_multipart_upload)
            .then_output(|| CreateMultipartUploadOutput::builder().upload_id("u-1").build());
        let parts = mock!(Client::upload_part)
            .sequence()
            .output(|| UploadPartOutput::builder().e_tag("\"e1\"").build())
            .http_status(403, None)
            .build();
        let complete =
            mock!(Client::complete_multipart_upload).then_output(|| CompleteMultipartUploadOutput::builder().build());
        let abort = mock!(Client::abort_multipart_upload)
            .match_requests(|r| r.upload_id() == Some("u-1"))
            .then_output(|| AbortMultipartUploadOutput::builder().build());
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&create, &parts, &complete, &abort]);
        let store = S3Objects::new(client, "b").part_bytes(5 * 1024 * 1024);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![7u8; 11 * 1024 * 1024]).unwrap();
        let err = store.put_file("t/big.parquet", &path).await.unwrap_err();
        assert!(err.to_string().contains("UploadPart"), "{err}");
        assert_eq!((parts.num_calls(), abort.num_calls(), complete.num_calls()), (2, 1, 0));
    }
}
