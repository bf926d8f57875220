//! `Idempotency-Key` for POSTs that move coins (API.md): scoped to the user, kept 24 h; a
//! repeat answers the first response, a repeat still in flight waits for it, the same key
//! with a different request is `409 CONFLICT`.
//!
//! A handler runs its whole work in one transaction and, inside it:
//! 1. `claim`s the key first (the insert waits for a concurrent holder of the same key, see
//!    `db::queries::idempotency`), returning the stored answer or a conflict if used;
//! 2. does the work, producing an [`Answer`] (success or a refusal);
//! 3. `finish`es: the answer is stored with the key, and commits with the coins it moved.
//!
//! A failure that rolls the transaction back (a database error, a 5xx) takes the claim with
//! it, so a retry runs again; everything answered is kept and replayed, refusals included,
//! as "a repeat answers the first response" says. A request without the header runs the
//! same code without steps 1 and 3.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use diesel_async::AsyncPgConnection;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};
use uuid::Uuid;

use crate::error::ApiError;
use db::queries::idempotency::{self as q, Claim};

/// The header.
pub const HEADER: &str = "Idempotency-Key";
/// Set on a replayed answer.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// How long a key is kept.
pub const KEEP: chrono::Duration = chrono::Duration::hours(24);
/// The longest key accepted (the column's limit).
pub const MAX_LEN: usize = 255;

/// The request's `Idempotency-Key`, if it sent one. A malformed one (empty, over 255
/// characters, not visible ASCII) is refused with `422` before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    /// Parses the header's value.
    pub fn parse(value: Option<&[u8]>) -> Result<Self, ApiError> {
        let Some(raw) = value else {
            return Ok(IdempotencyKey(None));
        };
        let valid = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw.iter().all(|b| (0x20..0x7f).contains(b))
            && raw.first() != Some(&b' ')
            && raw.last() != Some(&b' ');
        if !valid {
            return Err(ApiError::validation(format!(
                "{HEADER} must be 1 to {MAX_LEN} visible ASCII characters"
            )));
        }
        Ok(IdempotencyKey(Some(
            String::from_utf8(raw.to_vec()).expect("checked ASCII"),
        )))
    }

    /// The key scoped to `user` and bound to this exact request (`method`, `path` and the
    /// parsed body: whitespace or key order of the JSON do not make another request).
    pub fn scope(&self, user: Uuid, method: &str, path: &str, body: &Value) -> Option<Scope> {
        self.0.as_ref().map(|key| Scope {
            user,
            key: key.clone(),
            request_hash: request_hash(method, path, body),
        })
    }
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut values = req.headers().get_all(HEADER);
        let first = values.next();
        if values.next().is_some() {
            return ready(Err(ApiError::validation(format!(
                "{HEADER} may be sent once"
            ))));
        }
        ready(Self::parse(first.map(|v| v.as_bytes())))
    }
}

/// SHA-256 of the request: `METHOD path\n<canonical JSON>` (serde_json's maps are sorted).
pub fn request_hash(method: &str, path: &str, body: &Value) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A key bound to one user and one request.
#[derive(Debug, Clone)]
pub struct Scope {
    pub user: Uuid,
    pub key: String,
    pub request_hash: String,
}

/// What a handler answers, in a form that can be stored and replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    /// The whole body, envelope included.
    pub body: Value,
    pub replayed: bool,
}

impl Answer {
    /// A success: `{"success":true, ...payload}`.
    pub fn success(status: StatusCode, payload: Value) -> Self {
        let mut body = serde_json::Map::new();
        body.insert("success".into(), Value::Bool(true));
        if let Value::Object(map) = payload {
            body.extend(map);
        }
        Answer {
            status,
            body: Value::Object(body),
            replayed: false,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.replayed {
            res.insert_header((REPLAYED_HEADER, "true"));
        }
        res.json(self.body)
    }
}

impl From<ApiError> for Answer {
    /// A refusal, with the same envelope `ApiError` answers.
    fn from(e: ApiError) -> Self {
        Answer {
            status: e.status_code(),
            body: json!({"success": false, "error": e.message, "errorCode": e.code.as_str()}),
            replayed: false,
        }
    }
}

/// Claims the key in the caller's transaction. `Some(answer)`: answer that and do nothing
/// (the stored first answer, or `409 CONFLICT` for a different request under the same key).
pub async fn claim(c: &mut AsyncPgConnection, scope: &Scope) -> db::DbResult<Option<Answer>> {
    let expired_before = chrono::Utc::now() - KEEP;
    match q::claim(
        c,
        scope.user,
        &scope.key,
        &scope.request_hash,
        expired_before,
    )
    .await?
    {
        Claim::Fresh => Ok(None),
        Claim::Used { request_hash, .. } if request_hash != scope.request_hash => {
            metrics::counter!("idempotency_keys_total", "outcome" => "conflict").increment(1);
            Ok(Some(
                ApiError::conflict(format!("this {HEADER} was used for another request")).into(),
            ))
        }
        Claim::Used {
            response: Some((status, body)),
            ..
        } => {
            metrics::counter!("idempotency_keys_total", "outcome" => "replayed").increment(1);
            Ok(Some(Answer {
                status: u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
                replayed: true,
            }))
        }
        Claim::Used { response: None, .. } => Ok(Some(
            ApiError::conflict(format!("a request with this {HEADER} is still in progress")).into(),
        )),
    }
}

/// Stores the answer with the claimed key, in the same transaction.
pub async fn finish(c: &mut AsyncPgConnection, scope: &Scope, answer: &Answer) -> db::DbResult<()> {
    metrics::counter!("idempotency_keys_total", "outcome" => "stored").increment(1);
    q::complete(
        c,
        scope.user,
        &scope.key,
        i32::from(answer.status.as_u16()),
        &answer.body,
    )
    .await
}

/// Deletes expired keys now and then (any replica; the delete is idempotent).
pub fn spawn_purge(
    pool: db::Pool,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                _ = shutdown.changed() => return,
            }
            let purged = match db::pool::conn(&pool).await {
                Ok(mut c) => q::purge(&mut c, chrono::Utc::now() - KEEP).await,
                Err(e) => Err(e),
            };
            match purged {
                Ok(n) if n > 0 => tracing::info!(keys = n, "expired idempotency keys purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(IdempotencyKey::parse(None).unwrap(), IdempotencyKey(None));
        assert_eq!(
            IdempotencyKey::parse(Some(b"abc-123_X"))
                .unwrap()
                .0
                .as_deref(),
            Some("abc-123_X")
        );
        assert!(IdempotencyKey::parse(Some(&[b'k'; 255])).is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 256],
            b"tab\there",
            b" lead",
            b"caf\xc3\xa9",
        ] {
            let e = IdempotencyKey::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code, domain::ErrorCode::ValidationError, "{bad:?}");
        }
    }

    #[test]
    fn the_hash_binds_the_request_not_its_spelling() {
        let a: Value = serde_json::from_str(r#"{"b":1, "a":"x"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"x","b":1}"#).unwrap();
        assert_eq!(
            request_hash("POST", "/p", &a),
            request_hash("POST", "/p", &b)
        );
        assert_ne!(
            request_hash("POST", "/p", &a),
            request_hash("POST", "/q", &a)
        );
        assert_ne!(
            request_hash("POST", "/p", &a),
            request_hash("POST", "/p", &json!({"a":"y","b":1}))
        );
    }

    #[test]
    fn a_refusal_keeps_the_envelope() {
        let a = Answer::from(ApiError::new(domain::ErrorCode::PaymentRequired, "short"));
        assert_eq!(a.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            a.body,
            json!({"success": false, "error": "short", "errorCode": "PAYMENT_REQUIRED"})
        );
    }
}
