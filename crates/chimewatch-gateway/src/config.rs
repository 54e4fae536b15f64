//! The gateway's typed settings, validated by the binary before they get here.

use chimewatch_model::Limits;

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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 << 20,
            max_events_per_request: 10_000,
            max_record_bytes: (1 << 20) - 512,
            limits: Limits::default(),
            cors_origins: vec!["*".into()],
            auth: AuthConfig::default(),
        }
    }
}
