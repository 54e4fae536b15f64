//! The aggregator's settings, validated by the binary and passed in whole.

use std::time::Duration;

use chimewatch_metrics::{AggregatorConfig, CatalogueConfig};

/// The blog sample's namespace, so its dashboard keeps working.
pub const DEFAULT_NAMESPACE: &str = "AmazonChimeSDKMeetingEvents";
pub const DEFAULT_LOG_GROUP: &str = "/chimewatch/meeting-events";
/// Where `up` logs SIP message records (the aggregator logs none unless told where).
pub const DEFAULT_SIP_LOG_GROUP: &str = "/chimewatch/sip-messages";
/// Where the Voice Connector metrics derived from SIP logs go (a custom namespace may not start with `AWS/`).
pub const DEFAULT_VOICE_NAMESPACE: &str = "ChimeWatch/VoiceConnector";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorServiceConfig {
    pub namespace: String,
    /// Namespace of the Voice Connector metrics derived from SIP message logs.
    pub voice_namespace: String,
    /// Where SIP message log records go as log lines (as Voice Connector logs them); `None` writes none.
    pub sip_log_group: Option<String>,
    /// How SIP messages are counted into calls (`chimewatch_sip::tracker`).
    pub sip_policy: chimewatch_sip::Policy,
    /// Where every event goes as a log line; `None` publishes metrics only.
    pub log_group: Option<String>,
    pub windows: AggregatorConfig,
    pub catalogue: CatalogueConfig,
    /// Longest a log event waits for others before it is written.
    pub log_flush_interval: Duration,
    /// Log events that trigger a write before the interval ends.
    pub log_flush_events: usize,
    /// First wait after a failed publish; doubles per failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Datums waiting to be published, and log events waiting to be written, beyond which shards stop reading.
    pub max_pending_datums: usize,
    pub max_pending_log_events: usize,
}

impl AggregatorServiceConfig {
    /// Checks the settings against what CloudWatch accepts; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        for (setting, namespace) in
            [("aggregator.namespace", &self.namespace), ("aggregator.voice_namespace", &self.voice_namespace)]
        {
            if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with("AWS/") {
                return Err(format!(
                    "{setting} {namespace:?} is invalid: 1 to 255 characters, not starting with \"AWS/\""
                ));
            }
        }
        if self.windows.window_ms < 1000 {
            return Err("aggregator.window_secs must be at least 1".into());
        }
        if self.windows.out_of_orderness_ms < 0 || self.windows.idle_timeout_ms < 0 {
            return Err("aggregator.out_of_orderness_secs and idle_timeout_secs must not be negative".into());
        }
        if self.windows.max_series_per_metric == 0 {
            return Err("aggregator.max_series_per_metric must be at least 1".into());
        }
        if let Some(big) = self.catalogue.dimension_sets.iter().find(|s| s.len() > 29) {
            return Err(format!(
                "aggregator.dimension_sets: {big:?} has more than 29 dimensions (CloudWatch allows 30 with the metric's own)"
            ));
        }
        if self.sip_policy.failover_ms < 0
            || self.sip_policy.ring_timeout_ms <= 0
            || self.sip_policy.call_timeout_ms <= 0
        {
            return Err("aggregator.sip: failover_ms must not be negative, and the timeouts must be positive".into());
        }
        Ok(())
    }
}

impl Default for AggregatorServiceConfig {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.into(),
            voice_namespace: DEFAULT_VOICE_NAMESPACE.into(),
            sip_policy: chimewatch_sip::Policy::default(),
            sip_log_group: None,
            log_group: Some(DEFAULT_LOG_GROUP.into()),
            windows: AggregatorConfig::default(),
            catalogue: CatalogueConfig::default(),
            log_flush_interval: Duration::from_secs(1),
            log_flush_events: 5_000,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            max_pending_datums: 20_000,
            max_pending_log_events: 50_000,
        }
    }
}
