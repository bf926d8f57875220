//! Access tokens: minting join tokens and verifying tokens the way a LiveKit server does.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use livekit_api::access_token::{AccessToken, VideoGrants};
use serde::Deserialize;

use crate::Credentials;

/// The track sources LiveKit knows, as its tokens spell them.
pub const TRACK_SOURCES: [&str; 4] = ["camera", "microphone", "screen_share", "screen_share_audio"];

/// LiveKit's clock leeway when it checks `exp` and `nbf` (go-jose's default, one minute).
const LEEWAY_SECONDS: u64 = 60;

/// Maps a track source name in any of its spellings (`camera`, `CAMERA`) to the lower-case name
/// LiveKit's tokens and our API use; `None` for a name LiveKit does not know.
pub fn normalize_source(source: &str) -> Option<&'static str> {
    let lower = source.to_ascii_lowercase();
    TRACK_SOURCES.into_iter().find(|s| *s == lower)
}

/// What a participant may do in one room: the part of LiveKit's video grant a role decides.
///
/// The lead maps `domain::roles::Grants` to this; the crate keeps no dependency on `domain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomGrant {
    /// The room the token joins.
    pub room: String,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    /// A non-empty list restricts publishing to these sources (`camera`, `microphone`,
    /// `screen_share`, `screen_share_audio`); empty means any source when `can_publish`.
    pub can_publish_sources: Vec<String>,
    /// Moderation rights in the room (remove/mute others through the server API).
    pub room_admin: bool,
}

/// Minting a token failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The grant cannot be expressed as a LiveKit token (empty room or identity, unknown source).
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// The signing library refused (empty key or secret).
    #[error("cannot sign the access token: {0}")]
    Sign(String),
}

/// Signs a LiveKit access token that joins `grant.room` as `identity`.
///
/// Every permission is written explicitly (`canPublish: false` rather than absent) because
/// LiveKit reads an absent `canPublish`/`canSubscribe` as `true`. An unknown source name is an
/// error: LiveKit would silently drop it, and a restriction list that ends up empty would allow
/// every source.
pub fn mint_token(
    creds: &Credentials,
    identity: &str,
    name: &str,
    grant: &RoomGrant,
    ttl: Duration,
) -> Result<String, Error> {
    if identity.is_empty() {
        return Err(Error::InvalidGrant("empty identity".into()));
    }
    if grant.room.is_empty() {
        return Err(Error::InvalidGrant("empty room".into()));
    }
    let sources = grant
        .can_publish_sources
        .iter()
        .map(|s| {
            normalize_source(s)
                .map(str::to_owned)
                .ok_or_else(|| Error::InvalidGrant(format!("unknown track source {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let video = VideoGrants {
        room_join: true,
        room: grant.room.clone(),
        can_publish: Some(grant.can_publish),
        can_subscribe: Some(grant.can_subscribe),
        can_publish_data: Some(grant.can_publish_data),
        can_publish_sources: sources,
        room_admin: grant.room_admin,
        ..Default::default()
    };
    AccessToken::with_api_key(&creds.api_key, &creds.api_secret)
        .with_identity(identity)
        .with_name(name)
        .with_grants(video)
        .with_ttl(ttl)
        .to_jwt()
        .map_err(|e| Error::Sign(e.to_string()))
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a valid JWT: {0}")]
    Malformed(String),
    #[error("token signature does not match the API secret")]
    InvalidSignature,
    /// `iss` is missing or is not our API key (LiveKit: "unknown API key").
    #[error("token was not issued for this API key")]
    UnknownApiKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

/// The claims of a verified access token, with LiveKit's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`.
    pub identity: String,
    pub name: String,
    pub metadata: String,
    /// `iss`: the API key.
    pub issuer: String,
    /// `exp`, Unix seconds; LiveKit accepts a token without one.
    pub expires_at: Option<i64>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    pub video: VideoClaims,
}

/// The video grant of a token, resolved as LiveKit resolves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoClaims {
    pub room: String,
    pub room_join: bool,
    pub room_admin: bool,
    pub room_create: bool,
    pub room_list: bool,
    pub room_record: bool,
    /// Absent = `true`.
    pub can_publish: bool,
    /// Absent = `true`.
    pub can_subscribe: bool,
    /// Absent = the value of `can_publish` (LiveKit's `GetCanPublishData`), so `true` unless
    /// publishing is explicitly off.
    pub can_publish_data: bool,
    /// Lower-case source names; names LiveKit does not know are dropped, as LiveKit does.
    pub can_publish_sources: Vec<String>,
    /// Absent = `false`.
    pub can_update_own_metadata: bool,
    pub hidden: bool,
    pub recorder: bool,
}

impl VideoClaims {
    /// Whether these grants allow publishing a track of `source` (LiveKit's rule: publishing
    /// must be on, and a non-empty source list must contain it).
    pub fn can_publish_source(&self, source: &str) -> bool {
        let Some(source) = normalize_source(source) else {
            return false;
        };
        self.can_publish
            && (self.can_publish_sources.is_empty()
                || self.can_publish_sources.iter().any(|s| s == source))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawClaims {
    iss: String,
    sub: String,
    name: String,
    metadata: String,
    exp: Option<f64>,
    nbf: Option<f64>,
    video: Option<RawVideo>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawVideo {
    room: String,
    room_join: bool,
    room_admin: bool,
    room_create: bool,
    room_list: bool,
    room_record: bool,
    can_publish: Option<bool>,
    can_subscribe: Option<bool>,
    can_publish_data: Option<bool>,
    can_publish_sources: Vec<String>,
    can_update_own_metadata: Option<bool>,
    hidden: bool,
    recorder: bool,
}

/// The validation a LiveKit server applies: HMAC signature, `iss` present and equal to the key,
/// `exp` and `nbf` checked when present with one minute of leeway, `aud` ignored.
fn livekit_validation(api_key: &str, require_exp: bool) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    // go-jose in LiveKit accepts the whole HMAC family.
    v.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    v.leeway = LEEWAY_SECONDS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.required_spec_claims.insert("iss".to_owned());
    if require_exp {
        v.required_spec_claims.insert("exp".to_owned());
    }
    v.set_issuer(&[api_key]);
    v
}

pub(crate) fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::InvalidSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::UnknownApiKey,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::UnknownApiKey,
        _ => TokenError::Malformed(e.to_string()),
    }
}

pub(crate) fn decode_claims<T: serde::de::DeserializeOwned>(
    creds: &Credentials,
    token: &str,
    require_exp: bool,
) -> Result<T, TokenError> {
    let validation = livekit_validation(&creds.api_key, require_exp);
    jsonwebtoken::decode::<T>(
        token.trim(),
        &DecodingKey::from_secret(creds.api_secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| map_jwt_error(&e))
}

/// Verifies an access token as a LiveKit server does and returns its resolved claims.
///
/// It does not check that the token grants anything: callers check `video.room_join`,
/// `video.room_admin` and the others for the action they guard.
pub fn verify_access_token(creds: &Credentials, token: &str) -> Result<AccessClaims, TokenError> {
    let raw: RawClaims = decode_claims(creds, token, false)?;
    let v = raw.video.unwrap_or_default();
    let can_publish = v.can_publish.unwrap_or(true);
    Ok(AccessClaims {
        identity: raw.sub,
        name: raw.name,
        metadata: raw.metadata,
        issuer: raw.iss,
        expires_at: raw.exp.map(|t| t as i64),
        not_before: raw.nbf.map(|t| t as i64),
        video: VideoClaims {
            room: v.room,
            room_join: v.room_join,
            room_admin: v.room_admin,
            room_create: v.room_create,
            room_list: v.room_list,
            room_record: v.room_record,
            can_publish,
            can_subscribe: v.can_subscribe.unwrap_or(true),
            can_publish_data: v.can_publish_data.unwrap_or(can_publish),
            can_publish_sources: v
                .can_publish_sources
                .iter()
                .filter_map(|s| normalize_source(s).map(str::to_owned))
                .collect(),
            can_update_own_metadata: v.can_update_own_metadata.unwrap_or(false),
            hidden: v.hidden,
            recorder: v.recorder,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn creds() -> Credentials {
        Credentials::new("APIkey", "secret-secret-secret-secret")
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn sign(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn audio_grant() -> RoomGrant {
        RoomGrant {
            room: "live-1".into(),
            can_publish: true,
            can_subscribe: true,
            can_publish_data: false,
            can_publish_sources: vec!["microphone".into()],
            room_admin: false,
        }
    }

    #[test]
    fn minted_token_verifies_with_its_grants() {
        let t = mint_token(
            &creds(),
            "user-1",
            "Alice",
            &audio_grant(),
            Duration::from_secs(600),
        )
        .unwrap();
        let c = verify_access_token(&creds(), &t).unwrap();
        assert_eq!(c.identity, "user-1");
        assert_eq!(c.name, "Alice");
        assert_eq!(c.issuer, "APIkey");
        assert!(c.video.room_join);
        assert_eq!(c.video.room, "live-1");
        assert!(c.video.can_publish && c.video.can_subscribe && !c.video.can_publish_data);
        assert_eq!(c.video.can_publish_sources, vec!["microphone"]);
        assert!(c.video.can_publish_source("microphone"));
        assert!(!c.video.can_publish_source("camera"));
        let exp = c.expires_at.unwrap();
        assert!((exp - now() - 600).abs() <= 2);
    }

    #[test]
    fn minted_token_spells_grants_as_livekit() {
        let mut g = audio_grant();
        g.can_publish_sources = vec!["CAMERA".into(), "screen_share".into()];
        let t = mint_token(&creds(), "u", "", &g, Duration::from_secs(60)).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["video"]["roomJoin"], true);
        assert_eq!(v["video"]["canPublishData"], false);
        assert_eq!(
            v["video"]["canPublishSources"],
            json!(["camera", "screen_share"])
        );
        assert_eq!(v["sub"], "u");
    }

    #[test]
    fn unknown_source_is_refused_when_minting() {
        let mut g = audio_grant();
        g.can_publish_sources = vec!["webcam".into()];
        assert!(matches!(
            mint_token(&creds(), "u", "", &g, Duration::from_secs(60)),
            Err(Error::InvalidGrant(_))
        ));
    }

    #[test]
    fn defaults_follow_livekit() {
        let t = sign(
            "secret-secret-secret-secret",
            json!({"iss":"APIkey","sub":"u","exp":now()+60,"video":{"roomJoin":true,"room":"r"}}),
        );
        let c = verify_access_token(&creds(), &t).unwrap();
        assert!(c.video.can_publish && c.video.can_subscribe && c.video.can_publish_data);
        assert!(!c.video.can_update_own_metadata);
        let t = sign(
            "secret-secret-secret-secret",
            json!({"iss":"APIkey","sub":"u","exp":now()+60,"video":{"canPublish":false}}),
        );
        let c = verify_access_token(&creds(), &t).unwrap();
        assert!(!c.video.can_publish && !c.video.can_publish_data && c.video.can_subscribe);
    }

    #[test]
    fn refusals() {
        let good = |exp: i64| json!({"iss":"APIkey","sub":"u","exp":exp});
        let s = "secret-secret-secret-secret";
        assert_eq!(
            verify_access_token(&creds(), &sign("other", good(now() + 60))),
            Err(TokenError::InvalidSignature)
        );
        assert_eq!(
            verify_access_token(&creds(), &sign(s, good(now() - 120))),
            Err(TokenError::Expired)
        );
        // Within the minute of leeway.
        assert!(verify_access_token(&creds(), &sign(s, good(now() - 30))).is_ok());
        assert_eq!(
            verify_access_token(
                &creds(),
                &sign(s, json!({"iss":"other","sub":"u","exp":now()+60}))
            ),
            Err(TokenError::UnknownApiKey)
        );
        assert_eq!(
            verify_access_token(&creds(), &sign(s, json!({"sub":"u","exp":now()+60}))),
            Err(TokenError::UnknownApiKey)
        );
        assert_eq!(
            verify_access_token(
                &creds(),
                &sign(
                    s,
                    json!({"iss":"APIkey","sub":"u","exp":now()+600,"nbf":now()+300})
                )
            ),
            Err(TokenError::NotYetValid)
        );
        assert!(matches!(
            verify_access_token(&creds(), "not.a.jwt"),
            Err(TokenError::Malformed(_))
        ));
    }
}
