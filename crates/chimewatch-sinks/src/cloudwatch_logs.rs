//! The CloudWatch Logs adapter of the log sink: creates the group (with its retention) and streams when missing,
//! then PutLogEvents in planned batches, without sequence tokens (ignored since 2023, so writers need not
//! coordinate). Only this module names `aws_sdk_cloudwatchlogs` types.
//!
//! Events PutLogEvents would refuse are not sent ([`check_event`]); events it refuses anyway (its
//! `rejectedLogEventsInfo` for timestamps outside the group's retention, or a batch refused for its content, split
//! until the offending events are found) are reported as rejected, never retried and never silently dropped.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use chimewatch_model::Clock;

use crate::logs::{LogEvent, LogSink, check_event, plan_batches};
use crate::metrics::{Outcome, SinkError};

#[derive(Debug)]
pub struct CloudWatchLogsSink {
    client: Client,
    /// Days the group keeps events; `None` leaves the group's setting alone.
    retention_days: Option<i32>,
    /// Send `x-amzn-logs-format: json/emf`, so CloudWatch extracts the metrics of EMF lines.
    emf: bool,
    ready: Mutex<HashSet<(String, String)>>,
    clock: Clock,
}

/// A CloudWatch Logs client from the AWS SDK configuration, with `interceptors` on every call.
pub fn client(sdk: &aws_types::SdkConfig, interceptors: &[SharedInterceptor]) -> Client {
    let mut builder = aws_sdk_cloudwatchlogs::config::Builder::from(sdk);
    for i in interceptors {
        builder.push_interceptor(i.clone());
    }
    Client::from_conf(builder.build())
}

impl CloudWatchLogsSink {
    pub fn new(client: Client, retention_days: Option<i32>, clock: Clock) -> Self {
        Self { client, retention_days, emf: false, ready: Mutex::new(HashSet::new()), clock }
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

type PutError = aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
type HttpResponse = aws_sdk_cloudwatchlogs::config::http::HttpResponse;

/// The indices of a batch that CloudWatch Logs took but did not keep, with why (its `rejectedLogEventsInfo`).
fn not_kept(batch: &[usize], info: &aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo) -> Vec<(usize, String)> {
    let index = |i: Option<i32>| i.and_then(|i| usize::try_from(i).ok());
    let mut out = Vec::new();
    for (position, &i) in batch.iter().enumerate() {
        let reason = if index(info.too_new_log_event_start_index()).is_some_and(|s| position >= s) {
            "CloudWatch Logs refused the event as too new (more than 2 hours ahead)"
        } else if index(info.too_old_log_event_end_index()).is_some_and(|e| position < e) {
            "CloudWatch Logs refused the event as too old (more than 14 days)"
        } else if index(info.expired_log_event_end_index()).is_some_and(|e| position < e) {
            "CloudWatch Logs refused the event as older than the log group's retention"
        } else {
            continue;
        };
        out.push((i, reason.to_owned()));
    }
    out
}

impl CloudWatchLogsSink {
    async fn send(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
        batch: &[usize],
    ) -> Result<aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsOutput, SdkError<PutError, HttpResponse>>
    {
        let input: Vec<InputLogEvent> = batch
            .iter()
            .filter_map(|&i| {
                let e = &events[i];
                InputLogEvent::builder().timestamp(e.timestamp.as_i64()).message(e.message.as_ref()).build().ok()
            })
            .collect();
        let request =
            self.client.put_log_events().log_group_name(group).log_stream_name(stream).set_log_events(Some(input));
        if self.emf {
            request
                .customize()
                .mutate_request(|r| {
                    r.headers_mut().insert("x-amzn-logs-format", "json/emf");
                })
                .send()
                .await
        } else {
            request.send().await
        }
    }
}

#[async_trait]
impl LogSink for CloudWatchLogsSink {
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Outcome {
        if events.is_empty() {
            return Outcome::default();
        }
        if !self.is_ready(group, stream)
            && let Err(e) = self.prepare(group, stream).await
        {
            return Outcome::failed(events.len(), e);
        }
        let now = (self.clock)();
        let mut outcome = Outcome::default();
        let mut valid = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            match check_event(e, Some(now)) {
                Ok(()) => valid.push(i),
                Err(reason) => outcome.rejected.push((i, reason)),
            }
        }
        let mut todo = plan_batches(events, valid);
        todo.reverse();
        while let Some(batch) = todo.pop() {
            match self.send(group, stream, events, &batch).await {
                Ok(out) => {
                    if let Some(info) = out.rejected_log_events_info() {
                        let refused = not_kept(&batch, info);
                        tracing::warn!(
                            group,
                            stream,
                            events = refused.len(),
                            "CloudWatch Logs refused events for their timestamps."
                        );
                        outcome.rejected.extend(refused);
                    }
                }
                Err(e) => {
                    let invalid =
                        e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("InvalidParameterException");
                    match (invalid, batch.len()) {
                        (true, 1) => outcome.rejected.push((batch[0], DisplayErrorContext(&e).to_string())),
                        (true, _) => {
                            let (first, second) = batch.split_at(batch.len() / 2);
                            todo.push(second.to_vec());
                            todo.push(first.to_vec());
                        }
                        (false, _) => {
                            outcome.unsent.extend(batch);
                            outcome.unsent.extend(todo.drain(..).rev().flatten());
                            outcome.unsent.sort_unstable();
                            outcome.error = Some(classify("PutLogEvents", e));
                        }
                    }
                }
            }
        }
        outcome.rejected.sort_by_key(|(i, _)| *i);
        outcome
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
        let event = [LogEvent { timestamp: UnixMillis(1), message: "{}".into() }];
        let clock = || UnixMillis(1);
        assert_eq!(
            CloudWatchLogsSink::new(client(&url), Some(30), clock).emf().put("g", "s", &event).await,
            Outcome::default()
        );
        assert_eq!(CloudWatchLogsSink::new(client(&url), None, clock).put("g", "s", &event).await, Outcome::default());
        let heads = heads.lock().unwrap().clone();
        let puts: Vec<&String> =
            heads.iter().filter(|h| h.contains("x-amz-target: logs_20140328.putlogevents")).collect();
        assert_eq!(puts.len(), 2, "{heads:?}");
        assert!(puts[0].contains("x-amzn-logs-format: json/emf"));
        assert!(!puts[1].contains("x-amzn-logs-format"));
        assert!(heads.iter().any(|h| h.contains("putretentionpolicy")), "retention is set on the group");
    }

    #[test]
    fn events_cloudwatch_logs_did_not_keep_are_reported_by_their_own_index() {
        use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
        // The batch holds events 7, 3, 9, 4, 8 in time order; the first is too old and the last two too new.
        let info =
            RejectedLogEventsInfo::builder().too_old_log_event_end_index(1).too_new_log_event_start_index(3).build();
        let refused = not_kept(&[7, 3, 9, 4, 8], &info);
        assert_eq!(refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [7, 4, 8]);
        assert!(refused[0].1.contains("too old") && refused[1].1.contains("too new"));
    }
}
