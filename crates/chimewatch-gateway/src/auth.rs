//! Who a request acts as: anonymous (local use), a holder of an API key (a customer's backend), or one attendee of
//! one meeting, proven by a token the customer's backend signed (HS256 JWT).
//!
//! Browsers cannot set headers on `navigator.sendBeacon`, so credentials are also read from the query string
//! (`?token=` or `?api_key=`), which tolerates the Chime SDK's blind `?beacon=1` append (`...?token=x?beacon=1`).
//!
//! Keys and tokens are compared by their SHA-256 digests in constant time, so neither a key's bytes nor its length
//! leak through timing. Several token secrets may be configured: the first signs, all verify, so a secret is
//! rotated without downtime (add the new one first, mint with it, drop the old one once its tokens expired).

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
    /// HMAC secrets of attendee tokens: the first signs (`token mint`), every one verifies.
    pub token_secrets: Vec<Vec<u8>>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &format_args!("[{} redacted]", self.api_keys.len()))
            .field("token_secrets", &format_args!("[{} redacted]", self.token_secrets.len()))
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
        /// The customer's id of the person (Chime's `ExternalUserId`), when the token or registration names it: it
        /// lets events re-sent from that person's earlier sessions through.
        user: Option<String>,
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
    /// The attendee's `ExternalUserId`, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
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

/// Equal in constant time, whatever the lengths: compares SHA-256 digests.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b): ([u8; 32], [u8; 32]) = (Sha256::digest(a).into(), Sha256::digest(b).into());
    bool::from(a.ct_eq(&b))
}

impl AuthConfig {
    pub fn is_anonymous(&self) -> bool {
        self.api_keys.is_empty() && self.token_secrets.is_empty()
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
        self.authenticate_candidates(&credentials(headers, query, body_token), None, 0)
    }

    /// The principal one of `candidates` proves: an API key, an attendee token, or (given a registry) a registered
    /// JoinToken.
    fn authenticate_candidates(
        &self,
        candidates: &[String],
        registry: Option<&JoinTokenRegistry>,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        if candidates.is_empty() {
            return Err(AuthError::Missing);
        }
        let mut last_error = None;
        for candidate in candidates {
            if let Some(i) = self.api_keys.iter().position(|k| same_secret(k.as_bytes(), candidate.as_bytes())) {
                return Ok(Principal::ApiKey(i));
            }
            if !self.token_secrets.is_empty() {
                match verify_token(&self.token_secrets, candidate) {
                    Ok(c) => {
                        return Ok(Principal::Attendee {
                            meeting_id: c.meeting_id,
                            attendee_id: c.attendee_id,
                            user: c.external_user_id,
                        });
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if let Some((meeting_id, attendee_id, user)) = registry.and_then(|r| r.lookup(candidate, now_ms)) {
                return Ok(Principal::Attendee { meeting_id, attendee_id, user });
            }
        }
        Err(AuthError::Invalid(last_error.unwrap_or_else(|| "not a known API key, token or JoinToken".into())))
    }

    /// Authenticates an ingestion-protocol request from its headers and query string alone, before its body is
    /// read: an API key, an attendee token, or a registered JoinToken. `Ok(None)` when neither carries credentials
    /// (a page-end beacon: its token is in the body, see [`AuthConfig::authenticate_beacon`]).
    pub fn authenticate_client(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        registry: &JoinTokenRegistry,
        now_ms: i64,
    ) -> Result<Option<Principal>, AuthError> {
        if self.is_anonymous() {
            return Ok(Some(Principal::Anonymous));
        }
        let candidates = credentials(headers, query, None);
        if candidates.is_empty() {
            return Ok(None);
        }
        self.authenticate_candidates(&candidates, Some(registry), now_ms).map(Some)
    }

    /// Authenticates a beacon by the token in its body's `authorization` field.
    pub fn authenticate_beacon(
        &self,
        body_token: Option<&str>,
        registry: &JoinTokenRegistry,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        self.authenticate_candidates(&credentials(&HeaderMap::new(), None, body_token), Some(registry), now_ms)
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

fn verify_token(secrets: &[Vec<u8>], token: &str) -> Result<AttendeeClaims, String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 30;
    let mut last = String::from("no secret");
    for secret in secrets {
        match jsonwebtoken::decode::<AttendeeClaims>(token, &DecodingKey::from_secret(secret), &validation) {
            Ok(d) => return Ok(d.claims),
            // A token signed with another secret may be one of a rotation; an expired or malformed one is not.
            Err(e) => {
                let signature = matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature);
                last = format!("attendee token rejected: {e}");
                if !signature {
                    break;
                }
            }
        }
    }
    Err(last)
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
    entries: HashMap<(String, String), Registered>,
    /// The same entries by the digest of their JoinToken, so a token in a header names its attendee.
    by_token: HashMap<[u8; 32], (String, String)>,
    order: VecDeque<(i64, (String, String))>,
}

#[derive(Debug)]
struct Registered {
    digest: [u8; 32],
    expires_ms: i64,
    user: Option<String>,
}

impl JoinTokenRegistry {
    pub fn new(max_entries: usize) -> Self {
        Self { max_entries, state: Mutex::default() }
    }

    /// Registers the attendee's JoinToken until `expires_ms`; `user` is its `ExternalUserId`, if the backend gave it.
    pub fn register(&self, meeting_id: &str, attendee_id: &str, join_token: &str, expires_ms: i64, user: Option<&str>) {
        let Ok(mut s) = self.state.lock() else { return };
        let key = (meeting_id.to_owned(), attendee_id.to_owned());
        let digest: [u8; 32] = Sha256::digest(join_token.as_bytes()).into();
        if let Some(old) =
            s.entries.insert(key.clone(), Registered { digest, expires_ms, user: user.map(str::to_owned) })
        {
            s.by_token.remove(&old.digest);
        }
        s.by_token.insert(digest, key.clone());
        s.order.push_back((expires_ms, key));
        while s.order.len() > self.max_entries {
            if let Some((expires, key)) = s.order.pop_front()
                && s.entries.get(&key).is_some_and(|r| r.expires_ms == expires)
                && let Some(gone) = s.entries.remove(&key)
            {
                s.by_token.remove(&gone.digest);
            }
        }
    }

    /// The meeting, attendee and user `join_token` was registered for, unless it expired.
    pub fn lookup(&self, join_token: &str, now_ms: i64) -> Option<(String, String, Option<String>)> {
        let s = self.state.lock().ok()?;
        let digest: [u8; 32] = Sha256::digest(join_token.as_bytes()).into();
        let key = s.by_token.get(&digest)?;
        let entry = s.entries.get(key).filter(|r| r.expires_ms > now_ms && bool::from(r.digest.ct_eq(&digest)))?;
        Some((key.0.clone(), key.1.clone(), entry.user.clone()))
    }

    /// The `ExternalUserId` the meeting and attendee were registered with, unless they expired or gave none.
    pub fn user_of(&self, meeting_id: &str, attendee_id: &str, now_ms: i64) -> Option<String> {
        let s = self.state.lock().ok()?;
        s.entries
            .get(&(meeting_id.to_owned(), attendee_id.to_owned()))
            .filter(|r| r.expires_ms > now_ms)
            .and_then(|r| r.user.clone())
    }
}

/// Mints an attendee token, as a customer's backend would (any JWT library does the same), with the first secret.
pub fn mint_token(secret: &[u8], claims: &AttendeeClaims) -> Result<String, String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FAR_FUTURE: u64 = 4_000_000_000;
    const SECRET: &[u8] = b"s3cret-s3cret-s3cret-s3cret-s3cr";

    fn config() -> AuthConfig {
        AuthConfig { api_keys: vec!["key-one".into(), "key-two".into()], token_secrets: vec![SECRET.to_vec()] }
    }

    fn token(secret: &[u8], exp: u64) -> String {
        let claims = AttendeeClaims { meeting_id: "m1".into(), attendee_id: "a1".into(), exp, external_user_id: None };
        mint_token(secret, &claims).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn attendee(meeting: &str, attendee: &str, user: Option<&str>) -> Principal {
        Principal::Attendee { meeting_id: meeting.into(), attendee_id: attendee.into(), user: user.map(Into::into) }
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
        // A prefix or an extension of a key is not the key.
        assert!(c.authenticate(&headers(&[("x-api-key", "key-on")]), None, None).is_err());
        assert!(c.authenticate(&headers(&[("x-api-key", "key-one-and-more")]), None, None).is_err());
    }

    #[test]
    fn attendee_tokens_scope_the_principal() {
        let c = config();
        let t = token(SECRET, FAR_FUTURE);
        let expect = Ok(attendee("m1", "a1", None));
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
        check(&token(b"another-secret-another-secret-xx", FAR_FUTURE), "InvalidSignature");
        check(&token(SECRET, 1_000), "ExpiredSignature");
        check("garbage", "attendee token rejected");
    }

    #[test]
    fn secrets_rotate_without_downtime() {
        let (old, new) = (b"the-old-secret-the-old-secret-xx".to_vec(), b"the-new-secret-the-new-secret-xx".to_vec());
        let by_old = token(&old, FAR_FUTURE);
        let q = |t: &str| format!("token={t}");
        // Both secrets verify while the rotation is under way; the new one signs.
        let rotating = AuthConfig { api_keys: vec![], token_secrets: vec![new.clone(), old.clone()] };
        assert!(rotating.authenticate(&HeaderMap::new(), Some(&q(&by_old)), None).is_ok());
        assert!(rotating.authenticate(&HeaderMap::new(), Some(&q(&token(&new, FAR_FUTURE))), None).is_ok());
        // Once the old one is dropped, its tokens no longer pass.
        let rotated = AuthConfig { api_keys: vec![], token_secrets: vec![new] };
        assert!(rotated.authenticate(&HeaderMap::new(), Some(&q(&by_old)), None).is_err());
    }

    #[test]
    fn registered_join_tokens_authenticate_their_attendee_from_the_headers() {
        let c = config();
        let registry = JoinTokenRegistry::new(10);
        registry.register("m1", "a1", "join-token-1", 1_000, Some("user-1"));
        let bearer = headers(&[("authorization", "Bearer join-token-1")]);
        let expect = Ok(Some(attendee("m1", "a1", Some("user-1"))));
        assert_eq!(c.authenticate_client(&bearer, None, &registry, 500), expect);
        assert_eq!(
            c.authenticate_beacon(Some("join-token-1"), &registry, 500),
            Ok(attendee("m1", "a1", Some("user-1")))
        );
        assert!(c.authenticate_client(&bearer, None, &registry, 1_000).is_err(), "expired");
        assert!(c.authenticate_client(&headers(&[("authorization", "Bearer other")]), None, &registry, 500).is_err());
        assert_eq!(c.authenticate_client(&HeaderMap::new(), None, &registry, 500), Ok(None), "look in the body");
        assert_eq!(c.authenticate_beacon(None, &registry, 500), Err(AuthError::Missing));
        assert_eq!(registry.user_of("m1", "a1", 999).as_deref(), Some("user-1"));
        assert_eq!(registry.user_of("m1", "a1", 1_000), None);
        // Registering the attendee again replaces its token.
        registry.register("m1", "a1", "join-token-2", 2_000, None);
        assert!(c.authenticate_client(&bearer, None, &registry, 500).is_err());
    }

    #[test]
    fn registry_is_bounded() {
        let registry = JoinTokenRegistry::new(2);
        for i in 0..5 {
            registry.register("m", &format!("a{i}"), &format!("t{i}"), 1_000, None);
        }
        assert_eq!(registry.lookup("t0", 0), None);
        assert_eq!(registry.lookup("t4", 0), Some(("m".into(), "a4".into(), None)));
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", config());
        assert!(!text.contains("key-one") && !text.contains("s3cret"), "{text}");
    }
}
