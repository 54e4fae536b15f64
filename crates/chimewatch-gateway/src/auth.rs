//! Who a request acts as: anonymous (local use), a holder of an API key (a customer's backend), or one attendee of
//! one meeting, proven by a token the customer's backend signed (HS256 JWT).
//!
//! Browsers cannot set headers on `navigator.sendBeacon`, so credentials are also read from the query string
//! (`?token=` or `?api_key=`), which tolerates the Chime SDK's blind `?beacon=1` append (`...?token=x?beacon=1`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How requests are authenticated. With neither keys nor a secret, every request is anonymous.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<String>,
    /// HMAC secret of attendee tokens.
    pub token_secret: Option<Vec<u8>>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &format_args!("[{} redacted]", self.api_keys.len()))
            .field("token_secret", &self.token_secret.as_ref().map(|_| "redacted"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// The index of the matching key in the configuration (never the key itself).
    ApiKey(usize),
    Attendee {
        meeting_id: String,
        attendee_id: String,
    },
}

/// The claims of an attendee token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttendeeClaims {
    pub meeting_id: String,
    pub attendee_id: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: send an API key (x-api-key or Authorization: Bearer) or an attendee token (Authorization: Bearer, ?token=)"
    )]
    Missing,
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

impl AuthConfig {
    pub fn is_anonymous(&self) -> bool {
        self.api_keys.is_empty() && self.token_secret.is_none()
    }

    /// Authenticates a request from its headers, its query string, and a token found in its body (beacons).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body_token: Option<&str>,
    ) -> Result<Principal, AuthError> {
        if self.is_anonymous() {
            return Ok(Principal::Anonymous);
        }
        let candidates = credentials(headers, query, body_token);
        if candidates.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut last_error = None;
        for candidate in &candidates {
            if let Some(i) = self.api_keys.iter().position(|k| bool::from(k.as_bytes().ct_eq(candidate.as_bytes()))) {
                return Ok(Principal::ApiKey(i));
            }
            if let Some(secret) = &self.token_secret {
                match verify_token(secret, candidate) {
                    Ok(c) => return Ok(Principal::Attendee { meeting_id: c.meeting_id, attendee_id: c.attendee_id }),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        Err(AuthError::Invalid(last_error.unwrap_or_else(|| "not a known API key".into())))
    }
}

fn credentials(headers: &HeaderMap, query: Option<&str>, body_token: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).unwrap_or(v);
        out.push(token.trim().to_owned());
    }
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        out.push(v.trim().to_owned());
    }
    if let Some(q) = query {
        // `?beacon=1` is appended blindly by the JS SDK, so `?` separates pairs as `&` does.
        for part in q.split('?') {
            for (k, v) in form_urlencoded::parse(part.as_bytes()) {
                if k == "token" || k == "api_key" {
                    out.push(v.into_owned());
                }
            }
        }
    }
    if let Some(t) = body_token {
        out.push(t.trim().strip_prefix("Bearer ").unwrap_or(t.trim()).to_owned());
    }
    out.retain(|c| !c.is_empty());
    out
}

fn verify_token(secret: &[u8], token: &str) -> Result<AttendeeClaims, String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 30;
    jsonwebtoken::decode::<AttendeeClaims>(token, &DecodingKey::from_secret(secret), &validation)
        .map(|d| d.claims)
        .map_err(|e| format!("attendee token rejected: {e}"))
}

/// JoinTokens registered by the customer's backend when it created each attendee (`POST /v1/admin/attendees`).
///
/// Chime issues the JoinToken, so nothing can verify it cryptographically; a token that matches the registered one
/// for the meeting and attendee a request names is the proof. Only SHA-256 digests are kept. Entries expire, and the
/// registry holds at most `max_entries` (oldest dropped first). It is per gateway instance.
#[derive(Debug)]
pub struct JoinTokenRegistry {
    max_entries: usize,
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    entries: HashMap<(String, String), ([u8; 32], i64)>,
    order: VecDeque<(i64, (String, String))>,
}

impl JoinTokenRegistry {
    pub fn new(max_entries: usize) -> Self {
        Self { max_entries, state: Mutex::default() }
    }

    pub fn register(&self, meeting_id: &str, attendee_id: &str, join_token: &str, expires_ms: i64) {
        let Ok(mut s) = self.state.lock() else { return };
        let key = (meeting_id.to_owned(), attendee_id.to_owned());
        s.entries.insert(key.clone(), (Sha256::digest(join_token.as_bytes()).into(), expires_ms));
        s.order.push_back((expires_ms, key));
        while s.order.len() > self.max_entries {
            if let Some((expires, key)) = s.order.pop_front()
                && s.entries.get(&key).is_some_and(|(_, e)| *e == expires)
            {
                s.entries.remove(&key);
            }
        }
    }

    /// Whether `join_token` is the one registered for the meeting and attendee, and not expired.
    pub fn verify(&self, meeting_id: &str, attendee_id: &str, join_token: &str, now_ms: i64) -> bool {
        let Ok(s) = self.state.lock() else { return false };
        let digest: [u8; 32] = Sha256::digest(join_token.as_bytes()).into();
        s.entries
            .get(&(meeting_id.to_owned(), attendee_id.to_owned()))
            .is_some_and(|(d, expires)| *expires > now_ms && bool::from(d.ct_eq(&digest)))
    }

    /// Whether the meeting and attendee were registered and have not expired (re-sent events of an earlier session).
    pub fn knows(&self, meeting_id: &str, attendee_id: &str, now_ms: i64) -> bool {
        let Ok(s) = self.state.lock() else { return false };
        s.entries.get(&(meeting_id.to_owned(), attendee_id.to_owned())).is_some_and(|(_, e)| *e > now_ms)
    }
}

impl AuthConfig {
    /// Authenticates an ingestion-protocol request: as [`AuthConfig::authenticate`], and also by a JoinToken
    /// registered for the meeting and attendee the body's metadata names.
    pub fn authenticate_client(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body_token: Option<&str>,
        claimed: Option<(&str, &str)>,
        registry: &JoinTokenRegistry,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        match self.authenticate(headers, query, body_token) {
            Ok(p) => Ok(p),
            Err(e) => {
                let Some((meeting_id, attendee_id)) = claimed else { return Err(e) };
                credentials(headers, query, body_token)
                    .iter()
                    .any(|c| registry.verify(meeting_id, attendee_id, c, now_ms))
                    .then(|| Principal::Attendee {
                        meeting_id: meeting_id.to_owned(),
                        attendee_id: attendee_id.to_owned(),
                    })
                    .ok_or(e)
            }
        }
    }
}

/// Mints an attendee token, as a customer's backend would (any JWT library does the same).
pub fn mint_token(secret: &[u8], claims: &AttendeeClaims) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FAR_FUTURE: u64 = 4_000_000_000;

    fn config() -> AuthConfig {
        AuthConfig { api_keys: vec!["key-one".into(), "key-two".into()], token_secret: Some(b"s3cret".to_vec()) }
    }

    fn token(secret: &[u8], exp: u64) -> String {
        mint_token(secret, &AttendeeClaims { meeting_id: "m1".into(), attendee_id: "a1".into(), exp }).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn anonymous_when_nothing_is_configured() {
        assert_eq!(AuthConfig::default().authenticate(&HeaderMap::new(), None, None), Ok(Principal::Anonymous));
    }

    #[test]
    fn api_keys_from_each_place() {
        let c = config();
        assert_eq!(c.authenticate(&headers(&[("x-api-key", "key-two")]), None, None), Ok(Principal::ApiKey(1)));
        assert_eq!(
            c.authenticate(&headers(&[("authorization", "Bearer key-one")]), None, None),
            Ok(Principal::ApiKey(0))
        );
        assert_eq!(c.authenticate(&HeaderMap::new(), Some("api_key=key-one"), None), Ok(Principal::ApiKey(0)));
        assert_eq!(c.authenticate(&HeaderMap::new(), None, None), Err(AuthError::Missing));
        assert!(matches!(c.authenticate(&headers(&[("x-api-key", "nope")]), None, None), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn attendee_tokens_scope_the_principal() {
        let c = config();
        let t = token(b"s3cret", FAR_FUTURE);
        let expect = Ok(Principal::Attendee { meeting_id: "m1".into(), attendee_id: "a1".into() });
        assert_eq!(c.authenticate(&headers(&[("authorization", &format!("Bearer {t}"))]), None, None), expect);
        // The SDK appends ?beacon=1 blindly after an existing query.
        assert_eq!(c.authenticate(&HeaderMap::new(), Some(&format!("token={t}?beacon=1")), None), expect);
        assert_eq!(c.authenticate(&HeaderMap::new(), None, Some(&t)), expect);
    }

    #[test]
    fn bad_tokens_say_why() {
        let c = config();
        let check = |t: &str, expect: &str| {
            let err = c.authenticate(&HeaderMap::new(), Some(&format!("token={t}")), None).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        };
        check(&token(b"other", FAR_FUTURE), "InvalidSignature");
        check(&token(b"s3cret", 1_000), "ExpiredSignature");
        check("garbage", "attendee token rejected");
    }

    #[test]
    fn registered_join_tokens_authenticate_their_attendee_only() {
        let c = config();
        let registry = JoinTokenRegistry::new(10);
        registry.register("m1", "a1", "join-token-1", 1_000);
        let bearer = headers(&[("authorization", "Bearer join-token-1")]);
        let expect = Ok(Principal::Attendee { meeting_id: "m1".into(), attendee_id: "a1".into() });
        assert_eq!(c.authenticate_client(&bearer, None, None, Some(("m1", "a1")), &registry, 500), expect);
        assert_eq!(
            c.authenticate_client(&HeaderMap::new(), None, Some("join-token-1"), Some(("m1", "a1")), &registry, 500),
            expect
        );
        assert!(
            c.authenticate_client(&bearer, None, None, Some(("m1", "a2")), &registry, 500).is_err(),
            "another attendee"
        );
        assert!(c.authenticate_client(&bearer, None, None, Some(("m1", "a1")), &registry, 1_000).is_err(), "expired");
        assert!(
            c.authenticate_client(&HeaderMap::new(), None, None, Some(("m1", "a1")), &registry, 500).is_err(),
            "no token"
        );
        assert!(registry.knows("m1", "a1", 999) && !registry.knows("m1", "a1", 1_000));
    }

    #[test]
    fn registry_is_bounded() {
        let registry = JoinTokenRegistry::new(2);
        for i in 0..5 {
            registry.register("m", &format!("a{i}"), "t", 1_000);
        }
        assert!(!registry.verify("m", "a0", "t", 0));
        assert!(registry.verify("m", "a4", "t", 0));
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", config());
        assert!(!text.contains("key-one") && !text.contains("s3cret"), "{text}");
    }
}
