//! The CloudWatch Logs adapter of the log sink: creates the group (with its retention) and streams when missing,
//! then PutLogEvents in planned batches, without sequence tokens (ignored since 2023, so writers need not
//! coordinate). Only this module names `aws_sdk_cloudwatchlogs` types.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use crate::logs::{LogEvent, LogSink, plan_batches};
use crate::metrics::SinkError;

#[derive(Debug)]
pub struct CloudWatchLogsSink {
    client: Client,
    /// Days the group keeps events; `None` leaves the group's setting alone.
    retention_days: Option<i32>,
    /// Send `x-amzn-logs-format: json/emf`, so CloudWatch extracts the metrics of EMF lines.
    emf: bool,
    ready: Mutex<HashSet<(String, String)>>,
}

/// A CloudWatch Logs client from the AWS SDK configuration.
pub fn client(sdk: &aws_types::SdkConfig) -> Client {
    Client::new(sdk)
}

impl CloudWatchLogsSink {
    pub fn new(client: Client, retention_days: Option<i32>) -> Self {
        Self { client, retention_days, emf: false, ready: Mutex::new(HashSet::new()) }
    }

    /// For lines in the Embedded Metric Format: PutLogEvents carries the header that has CloudWatch extract them.
    pub fn emf(mut self) -> Self {
        self.emf = true;
        self
    }

    fn is_ready(&self, group: &str, stream: &str) -> bool {
        self.ready.lock().is_ok_and(|r| r.contains(&(group.to_owned(), stream.to_owned())))
    }

    async fn prepare(&self, group: &str, stream: &str) -> Result<(), SinkError> {
        let groups_known = self.ready.lock().is_ok_and(|r| r.iter().any(|(g, _)| g == group));
        if !groups_known {
            match self.client.create_log_group().log_group_name(group).send().await {
                Ok(_) => tracing::info!(group, "Created the log group."),
                Err(e) if already_exists(&e) => {}
                Err(e) => return Err(classify("CreateLogGroup", e)),
            }
            if let Some(days) = self.retention_days {
                self.client
                    .put_retention_policy()
                    .log_group_name(group)
                    .retention_in_days(days)
                    .send()
                    .await
                    .map_err(|e| classify("PutRetentionPolicy", e))?;
            }
        }
        match self.client.create_log_stream().log_group_name(group).log_stream_name(stream).send().await {
            Ok(_) => {}
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(classify("CreateLogStream", e)),
        }
        if let Ok(mut r) = self.ready.lock() {
            r.insert((group.to_owned(), stream.to_owned()));
        }
        Ok(())
    }
}

fn already_exists<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceAlreadyExistsException")
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: SdkError<E, R>,
) -> SinkError {
    let message = DisplayErrorContext(&e).to_string();
    let transient = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            code.contains("Throttl") || code == "ServiceUnavailableException" || code == "OperationAbortedException"
        }
        _ => true,
    };
    if transient { SinkError::Transient { operation, message } } else { SinkError::Fatal { operation, message } }
}

#[async_trait]
impl LogSink for CloudWatchLogsSink {
    async fn put(&self, group: &str, stream: &str, events: Vec<LogEvent>) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        if !self.is_ready(group, stream) {
            self.prepare(group, stream).await?;
        }
        for batch in plan_batches(events) {
            let events: Vec<InputLogEvent> = batch
                .into_iter()
                .filter_map(|e| {
                    InputLogEvent::builder().timestamp(e.timestamp.as_i64()).message(e.message).build().ok()
                })
                .collect();
            let request =
                self.client.put_log_events().log_group_name(group).log_stream_name(stream).set_log_events(Some(events));
            let sent = if self.emf {
                request
                    .customize()
                    .mutate_request(|r| {
                        r.headers_mut().insert("x-amzn-logs-format", "json/emf");
                    })
                    .send()
                    .await
            } else {
                request.send().await
            };
            let out = sent.map_err(|e| classify("PutLogEvents", e))?;
            if let Some(r) = out.rejected_log_events_info() {
                // Events outside what the group accepts (too old for its retention, or too far ahead) cannot be
                // written by any retry; they stay in the stream and the archive.
                tracing::warn!(
                    group, stream,
                    too_old_before = ?r.too_old_log_event_end_index(),
                    too_new_from = ?r.too_new_log_event_start_index(),
                    expired_before = ?r.expired_log_event_end_index(),
                    "CloudWatch Logs rejected some events for their timestamps."
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chimewatch_model::UnixMillis;

    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every request `200 {}` and keeps each request's head.
    async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        if let Some(head) = text.split("\r\n\r\n").next().filter(|h| h.starts_with("POST")) {
                            seen.lock().unwrap().push(head.to_lowercase());
                            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\n\r\n{}";
                            if socket.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, heads)
    }

    fn client(url: &str) -> Client {
        let config = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        Client::from_conf(config)
    }

    #[tokio::test]
    async fn emf_lines_are_sent_with_the_header_that_has_cloudwatch_extract_them() {
        let (url, heads) = recorder().await;
        let event = || vec![LogEvent { timestamp: UnixMillis(1), message: "{}".into() }];
        CloudWatchLogsSink::new(client(&url), Some(30)).emf().put("g", "s", event()).await.unwrap();
        CloudWatchLogsSink::new(client(&url), None).put("g", "s", event()).await.unwrap();
        let heads = heads.lock().unwrap().clone();
        let puts: Vec<&String> =
            heads.iter().filter(|h| h.contains("x-amz-target: logs_20140328.putlogevents")).collect();
        assert_eq!(puts.len(), 2, "{heads:?}");
        assert!(puts[0].contains("x-amzn-logs-format: json/emf"));
        assert!(!puts[1].contains("x-amzn-logs-format"));
        assert!(heads.iter().any(|h| h.contains("putretentionpolicy")), "retention is set on the group");
    }
}
