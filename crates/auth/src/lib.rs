#![doc = include_str!("../README.md")]

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a token is refused (all of them are `401 UNAUTHORIZED` to the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed authorization header")]
    Malformed,
    #[error("invalid or expired token")]
    Invalid,
    #[error("token subject is not a user id")]
    BadSubject,
}

/// The claims we rely on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A verified caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
}

/// Verifies client tokens. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier(HS256, aud=authenticated)")
    }
}

pub const AUDIENCE: &str = "authenticated";

impl JwtVerifier {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 30;
        JwtVerifier {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies a raw token.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::BadSubject)?;
        Ok(Caller { user_id })
    }

    /// Verifies the value of an `Authorization` header (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?
            .trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        self.verify(token)
    }
}

/// Mints a client token (tests, the load generator and the demo seed).
pub fn mint(secret: &[u8], user_id: Uuid, ttl_seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user_id.to_string(),
        aud: AUDIENCE.into(),
        exp: now + ttl_seconds,
        iat: Some(now),
        role: Some("authenticated".into()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    }

    #[test]
    fn accepts_a_valid_token_and_refuses_the_rest() {
        provider();
        let v = JwtVerifier::hs256(b"secret");
        let user = Uuid::new_v4();
        let good = mint(b"secret", user, 60);
        assert_eq!(
            v.verify_header(Some(&format!("Bearer {good}")))
                .unwrap()
                .user_id,
            user
        );
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        assert_eq!(v.verify_header(Some(&good)), Err(AuthError::Malformed));
        assert_eq!(v.verify_header(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(v.verify(&mint(b"other", user, 60)), Err(AuthError::Invalid));
        assert_eq!(
            v.verify(&mint(b"secret", user, -3600)),
            Err(AuthError::Invalid)
        );
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Invalid));
        let bad_sub = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "bob".into(),
                aud: AUDIENCE.into(),
                exp: chrono::Utc::now().timestamp() + 60,
                iat: None,
                role: None,
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(v.verify(&bad_sub), Err(AuthError::BadSubject));
        let wrong_aud = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: user.to_string(),
                aud: "anon".into(),
                exp: chrono::Utc::now().timestamp() + 60,
                iat: None,
                role: None,
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(v.verify(&wrong_aud), Err(AuthError::Invalid));
    }
}
