//! The gateway's typed settings, validated by the binary before they get here.

use chimewatch_model::Limits;

use std::time::Duration;

use crate::auth::AuthConfig;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest request body, before and after gzip inflation.
    pub max_body_bytes: usize,
    /// Most events (or SIP records) in one request.
    pub max_events_per_request: usize,
    /// Largest encoded record; a Kinesis record holds 1 MiB with its partition key.
    pub max_record_bytes: usize,
    /// Caps applied to events by truncation.
    pub limits: Limits,
    /// Origins allowed by CORS; `*` allows any.
    pub cors_origins: Vec<String>,
    pub auth: AuthConfig,
    /// How long a delivered event's key is remembered to drop its duplicates (ingestion protocol).
    pub dedup_window_ms: i64,
    /// Most keys remembered for deduplication; the oldest are forgotten first.
    pub dedup_max_keys: usize,
    /// How long a registered JoinToken is accepted, unless its registration says otherwise.
    pub join_token_ttl_ms: i64,
    /// Most JoinTokens registered at once.
    pub max_join_tokens: usize,
    /// Most requests handled at once; beyond, clients get 503 with `Retry-After` instead of the gateway queueing
    /// work (and memory) without bound.
    pub max_concurrent_requests: usize,
    /// Longest a client may take to send its request headers, and then its body.
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// What becomes of `externalUserId` and `externalMeetingId` before events reach the stream.
    pub external_ids: crate::privacy::ExternalIds,
}

impl GatewayConfig {
    /// Checks the settings against each other and the protocols they serve; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 {
            return Err("gateway.max_body_bytes must be positive".into());
        }
        if self.max_events_per_request == 0 {
            return Err("gateway.max_events_per_request must be positive".into());
        }
        if self.limits.max_history_entries == 0 {
            return Err("limits.max_history_entries must be positive".into());
        }
        if self.limits.max_attribute_bytes < 64 {
            return Err("limits.max_attribute_bytes must be at least 64".into());
        }
        // HS256 takes a key as long as its hash (RFC 7518, section 3.2): 32 bytes.
        if self.auth.token_secrets.iter().any(|s| s.len() < 32) {
            return Err(
                "gateway.token_secret (and each of gateway.previous_token_secrets) must be at least 32 bytes".into()
            );
        }
        if self.max_concurrent_requests == 0 {
            return Err("gateway.max_concurrent_requests must be positive".into());
        }
        if self.header_read_timeout.is_zero() || self.body_read_timeout.is_zero() {
            return Err("gateway.header_read_timeout and body_read_timeout must be positive".into());
        }
        if matches!(&self.external_ids, crate::privacy::ExternalIds::Hash(key) if key.len() < 32) {
            return Err("gateway.external_id_key must be at least 32 bytes to hash external ids".into());
        }
        if self.dedup_window_ms < 0 || self.join_token_ttl_ms < 0 {
            return Err("gateway.dedup_window_secs and join_token_ttl_secs must not be negative".into());
        }
        Ok(())
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_events_per_request: 10_000,
            max_record_bytes: (1 << 20) - 512,
            limits: Limits::default(),
            // No cross-origin browser may post unless its origin is configured (`up` on loopback allows any).
            cors_origins: Vec::new(),
            auth: AuthConfig::default(),
            dedup_window_ms: 10 * 60 * 1000,
            dedup_max_keys: 1_000_000,
            join_token_ttl_ms: 48 * 3600 * 1000,
            max_join_tokens: 1_000_000,
            max_concurrent_requests: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            external_ids: crate::privacy::ExternalIds::Keep,
        }
    }
}
