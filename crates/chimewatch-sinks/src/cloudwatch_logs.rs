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
    ready: Mutex<HashSet<(String, String)>>,
}

impl CloudWatchLogsSink {
    pub fn new(client: Client, retention_days: Option<i32>) -> Self {
        Self { client, retention_days, ready: Mutex::new(HashSet::new()) }
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
                .filter_map(|e| InputLogEvent::builder().timestamp(e.timestamp_ms).message(e.message).build().ok())
                .collect();
            let out = self
                .client
                .put_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .set_log_events(Some(events))
                .send()
                .await
                .map_err(|e| classify("PutLogEvents", e))?;
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
