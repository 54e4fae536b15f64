//! What the gateway keeps of the customer's own ids for people and meetings (`externalUserId`, `externalMeetingId`):
//! kept as sent, replaced by a keyed hash, or dropped, before the event reaches the stream (so neither the logs nor
//! the archive ever hold them). A keyed hash (HMAC-SHA256) still groups one person's events without revealing who it
//! is, and cannot be reversed by hashing a list of candidate ids without the key.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use chimewatch_model::NormalizedEvent;

/// The attributes this applies to.
pub const EXTERNAL_IDS: [&str; 2] = ["externalUserId", "externalMeetingId"];

#[derive(Clone, Default)]
pub enum ExternalIds {
    #[default]
    Keep,
    /// HMAC-SHA256 with this key, as `hmac-sha256:<hex>`.
    Hash(Vec<u8>),
    Drop,
}

impl std::fmt::Debug for ExternalIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Keep => "Keep",
            Self::Hash(_) => "Hash(redacted key)",
            Self::Drop => "Drop",
        })
    }
}

impl ExternalIds {
    /// Applies the policy to the event's attributes and to what normalization kept as sent.
    pub fn apply(&self, event: &mut NormalizedEvent) {
        if matches!(self, Self::Keep) {
            return;
        }
        for map in [&mut event.event.attributes, &mut event.original] {
            for key in EXTERNAL_IDS {
                match self {
                    Self::Keep => {}
                    Self::Drop => {
                        map.remove(key);
                    }
                    Self::Hash(secret) => {
                        if let Some(value) = map.get_mut(key) {
                            let text = match &*value {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            *value = Value::String(hash(secret, &text));
                        }
                    }
                }
            }
        }
    }
}

fn hash(secret: &[u8], text: &str) -> String {
    // HMAC takes a key of any length, so creating it cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(text.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("hmac-sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use chimewatch_model::{Limits, event::normalize};
    use serde_json::json;

    use super::*;

    fn event() -> NormalizedEvent {
        let v = json!({"name": "meetingEnded", "attributes": {"meetingId": "m", "attendeeId": "a", "timestampMs": 1_763_712_000_000_i64,
            "externalUserId": "alice@example.com", "externalMeetingId": 42}});
        normalize(v, &Limits::default(), 1_763_712_000_000).unwrap()
    }

    #[test]
    fn ids_are_kept_hashed_or_dropped() {
        let mut kept = event();
        ExternalIds::Keep.apply(&mut kept);
        assert_eq!(kept.event.attributes["externalUserId"], "alice@example.com");

        let (mut one, mut two) = (event(), event());
        ExternalIds::Hash(b"key".to_vec()).apply(&mut one);
        ExternalIds::Hash(b"key".to_vec()).apply(&mut two);
        let hashed = one.event.attributes["externalUserId"].as_str().unwrap().to_owned();
        assert!(hashed.starts_with("hmac-sha256:") && hashed.len() == 12 + 64, "{hashed}");
        assert_eq!(one.event.attributes, two.event.attributes, "the same id hashes the same, so events still group");
        let mut other_key = event();
        ExternalIds::Hash(b"other".to_vec()).apply(&mut other_key);
        assert_ne!(other_key.event.attributes["externalUserId"], one.event.attributes["externalUserId"]);
        let text = serde_json::to_string(&one.original).unwrap() + &serde_json::to_string(&one.event).unwrap();
        assert!(!text.contains("alice") && !text.contains("\"42\"") && !text.contains(":42"), "{text}");

        let mut dropped = event();
        ExternalIds::Drop.apply(&mut dropped);
        assert!(
            EXTERNAL_IDS
                .iter()
                .all(|k| !dropped.event.attributes.contains_key(*k) && !dropped.original.contains_key(*k))
        );
        assert_eq!(dropped.event.attributes["attendeeId"], "a");
    }
}
