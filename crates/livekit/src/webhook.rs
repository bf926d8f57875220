//! Webhook signatures: LiveKit signs each body with a JWT carrying its SHA-256.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Credentials;
use crate::token::{TokenError, decode_claims};

/// How long LiveKit's webhook signature is valid.
pub const WEBHOOK_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Why a webhook's `Authorization` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookAuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("invalid webhook token: {0}")]
    InvalidToken(TokenError),
    #[error("webhook token has expired")]
    Expired,
    #[error("body does not match the sha256 claim of the webhook token")]
    BodyMismatch,
}

#[derive(Serialize)]
struct SignClaims<'a> {
    iss: &'a str,
    nbf: u64,
    exp: u64,
    sha256: String,
}

#[derive(Deserialize)]
struct VerifyClaims {
    #[serde(default)]
    sha256: String,
}

fn body_hash_b64(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

/// The `Authorization` value LiveKit sends with `body`: a raw JWT (no `Bearer `), HS256 with the
/// API secret, `iss` = API key, valid for five minutes, `sha256` = standard base64 (with padding)
/// of the SHA-256 of the exact body bytes.
pub fn sign_webhook(creds: &Credentials, body: &[u8]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = SignClaims {
        iss: &creds.api_key,
        nbf: now,
        exp: now + WEBHOOK_TOKEN_TTL.as_secs(),
        sha256: body_hash_b64(body),
    };
    // HMAC signing of a plain struct cannot fail: any key length is a valid HMAC key.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(creds.api_secret.as_bytes()),
    )
    .expect("HS256 signing of webhook claims")
}

/// Verifies a LiveKit webhook: `authorization` is the header value, a raw JWT or `Bearer <jwt>`.
/// Checks the signature, `iss`, `exp` (required, one minute leeway) and that the `sha256` claim
/// matches the SHA-256 of the raw `body`, compared in constant time.
pub fn verify_webhook(
    creds: &Credentials,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookAuthError> {
    let raw = authorization.map(str::trim).unwrap_or_default();
    let token = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if raw.eq_ignore_ascii_case("bearer") => "",
        _ => raw,
    };
    if token.is_empty() {
        return Err(WebhookAuthError::Missing);
    }
    let claims: VerifyClaims = decode_claims(creds, token, true).map_err(|e| match e {
        TokenError::Expired => WebhookAuthError::Expired,
        e => WebhookAuthError::InvalidToken(e),
    })?;
    let claimed = STANDARD
        .decode(claims.sha256.trim())
        .map_err(|_| WebhookAuthError::BodyMismatch)?;
    let actual = Sha256::digest(body);
    if claimed.len() == actual.len() && bool::from(claimed.as_slice().ct_eq(&actual[..])) {
        Ok(())
    } else {
        Err(WebhookAuthError::BodyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds() -> Credentials {
        Credentials::new("APIkey", "webhook-secret-webhook-secret")
    }

    const BODY: &[u8] =
        br#"{"event":"room_started","room":{"name":"r"},"id":"EV_1","createdAt":"1771351907"}"#;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn accepts_raw_and_bearer() {
        let sig = sign_webhook(&creds(), BODY);
        assert!(!sig.starts_with("Bearer"));
        assert_eq!(verify_webhook(&creds(), Some(&sig), BODY), Ok(()));
        let bearer = format!("Bearer {sig}");
        assert_eq!(verify_webhook(&creds(), Some(&bearer), BODY), Ok(()));
    }

    #[test]
    fn sha256_claim_is_padded_standard_base64() {
        let sig = sign_webhook(&creds(), BODY);
        let payload = sig.split('.').nth(1).unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let sha = v["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 44);
        assert!(sha.ends_with('='));
        assert_eq!(v["iss"], "APIkey");
        let ttl = v["exp"].as_u64().unwrap() - v["nbf"].as_u64().unwrap();
        assert_eq!(ttl, 300);
    }

    #[test]
    fn rejects_wrong_secret_body_expired_missing() {
        let other = Credentials::new("APIkey", "another-secret");
        let sig = sign_webhook(&other, BODY);
        assert_eq!(
            verify_webhook(&creds(), Some(&sig), BODY),
            Err(WebhookAuthError::InvalidToken(TokenError::InvalidSignature))
        );

        let sig = sign_webhook(&creds(), BODY);
        assert_eq!(
            verify_webhook(&creds(), Some(&sig), b"{\"event\":\"room_finished\"}"),
            Err(WebhookAuthError::BodyMismatch)
        );

        let wrong_key = Credentials::new("OtherKey", "webhook-secret-webhook-secret");
        let sig = sign_webhook(&wrong_key, BODY);
        assert_eq!(
            verify_webhook(&creds(), Some(&sig), BODY),
            Err(WebhookAuthError::InvalidToken(TokenError::UnknownApiKey))
        );

        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss":"APIkey","exp":now()-600,"nbf":now()-900,"sha256":body_hash_b64(BODY)}),
            &EncodingKey::from_secret(creds().api_secret.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify_webhook(&creds(), Some(&expired), BODY),
            Err(WebhookAuthError::Expired)
        );

        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss":"APIkey","sha256":body_hash_b64(BODY)}),
            &EncodingKey::from_secret(creds().api_secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            verify_webhook(&creds(), Some(&no_exp), BODY),
            Err(WebhookAuthError::InvalidToken(_))
        ));

        let no_hash = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss":"APIkey","exp":now()+60}),
            &EncodingKey::from_secret(creds().api_secret.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify_webhook(&creds(), Some(&no_hash), BODY),
            Err(WebhookAuthError::BodyMismatch)
        );

        assert_eq!(
            verify_webhook(&creds(), None, BODY),
            Err(WebhookAuthError::Missing)
        );
        assert_eq!(
            verify_webhook(&creds(), Some("Bearer "), BODY),
            Err(WebhookAuthError::Missing)
        );
        assert!(matches!(
            verify_webhook(&creds(), Some("garbage"), BODY),
            Err(WebhookAuthError::InvalidToken(TokenError::Malformed(_)))
        ));
    }
}
