//! The opaque `cursor` of list routes: the last item's `(created_at, id)`, so a page after
//! it is exact even when many rows share a timestamp.

use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ApiError;

/// The cursor that continues after an item created at `at` with `id`.
pub fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", at.timestamp_micros()))
}

/// Reads a cursor back; a cursor this service did not write is `VALIDATION_ERROR`.
pub fn decode(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    parse(cursor).ok_or_else(|| ApiError::validation("invalid cursor"))
}

fn parse(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (micros, id) = text.split_once('|')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id.parse().ok()?,
    ))
}

/// A list route's `limit` (default 20, 1 to 100 as API.md says).
pub fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 100"));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode(&encode(at, id)).unwrap(), (at, id));
        for bad in ["", "!!", "bm9waXBl", &encode(at, id)[1..]] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert_eq!(limit(None).unwrap(), 20);
        assert!(limit(Some(0)).is_err() && limit(Some(101)).is_err());
    }
}
