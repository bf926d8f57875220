//! `webhook-flood`: LiveKit reports a burst of `participant_joined` events (each a new
//! connection, spread over a handful of rooms) to webhook-ingest.

use anyhow::Context;
use bytes::Bytes;
use domain::ids::SessionId;
use domain::rooms::session_room;
use domain::session::SessionType;
use livekit::{Credentials, ParticipantInfo, RoomInfo, WebhookEvent};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::json;
use uuid::Uuid;

use crate::engine::Prepared;
use crate::{Phases, RunArgs};

/// Arguments of `loadgen webhook-flood`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// webhook-ingest's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8085")]
    pub url: reqwest::Url,
    /// Events sent (the warm-up events come on top).
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Rooms the joins are spread over.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,
    /// webhook-ingest's `LIVEKIT_API_KEY` (the `iss` of the signatures).
    #[arg(long, env = "LIVEKIT_API_KEY")]
    pub api_key: String,
    /// webhook-ingest's `LIVEKIT_API_SECRET`, to sign the bodies.
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    pub api_secret: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Builds and signs every body before the clock starts. LiveKit's signatures are valid for
/// five minutes, so a run must not last longer than that.
pub fn prepare(args: &Args) -> anyhow::Result<Phases> {
    let warmup = args.run.warmup;
    eprintln!(
        "webhook-flood: signing {} participant_joined events",
        args.events + warmup
    );
    let creds = Credentials::new(&args.api_key, &args.api_secret);
    let rooms = rooms(args.rooms);
    let created_at = chrono::Utc::now().timestamp();
    let requests = (0..args.events + warmup)
        .map(|i| {
            signed(
                &creds,
                &participant_joined(&rooms[i % rooms.len()], i, created_at),
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let url = args
        .url
        .join("/webhooks/livekit")
        .context("building the /webhooks/livekit URL")?;
    let (warmup_requests, measured) = requests.split_at(warmup);
    Ok(Phases {
        url,
        content_type: HeaderValue::from_static("application/webhook+json"),
        warmup: warmup_requests.into(),
        measured: measured.into(),
        params: json!({
            "url": args.url.as_str(),
            "events": args.events,
            "rooms": args.rooms,
            "connections": args.run.connections,
            "warmup": warmup,
            "durationSecs": args.run.duration_secs,
            "threads": args.run.threads,
        }),
    })
}

/// `n` rooms of live video sessions, each with its LiveKit sid.
fn rooms(n: u32) -> Vec<RoomInfo> {
    (0..n)
        .map(|_| RoomInfo {
            sid: format!("RM_{}", &Uuid::new_v4().simple().to_string()[..12]),
            name: session_room(SessionType::VideoLive, SessionId::new_v7()),
            ..Default::default()
        })
        .collect()
}

/// A `participant_joined` body as LiveKit sends it (protobuf-JSON): a new event id, a new
/// connection (participant sid) of a new identity in `room`.
fn participant_joined(room: &RoomInfo, index: usize, created_at: i64) -> Vec<u8> {
    let event = WebhookEvent {
        event: "participant_joined".to_owned(),
        room: Some(room.clone()),
        participant: Some(ParticipantInfo {
            sid: format!("PA_{}", Uuid::new_v4().simple()),
            identity: Uuid::new_v4().to_string(),
            name: format!("viewer {index}"),
            state: "ACTIVE".to_owned(),
            joined_at: created_at,
            ..Default::default()
        }),
        id: format!("EV_{}", Uuid::new_v4().simple()),
        created_at,
        ..Default::default()
    };
    serde_json::to_vec(&event).expect("a webhook event serialises")
}

/// The body with LiveKit's `Authorization` (a raw JWT carrying the body's SHA-256).
fn signed(creds: &Credentials, body: &[u8]) -> anyhow::Result<Prepared> {
    Ok(Prepared {
        headers: vec![(
            AUTHORIZATION,
            HeaderValue::try_from(livekit::sign_webhook(creds, body))?,
        )],
        body: Bytes::copy_from_slice(body),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn creds() -> Credentials {
        Credentials::new("APIbench", "bench-secret-bench-secret-bench")
    }

    #[test]
    fn bodies_are_livekit_participant_joins() {
        let room = &rooms(1)[0];
        let body = participant_joined(room, 7, 1_771_351_907);
        let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // protobuf-JSON: camelCase, int64 as strings.
        assert_eq!(raw["createdAt"], "1771351907");
        assert!(raw["id"].as_str().unwrap().starts_with("EV_"));
        let event = livekit::parse_webhook(&body).unwrap();
        assert_eq!(event.event, "participant_joined");
        assert_eq!(event.created_at, 1_771_351_907);
        assert_eq!(event.room.as_ref().unwrap().name, room.name);
        assert!(event.room.unwrap().name.starts_with("live_video_"));
        let participant = event.participant.unwrap();
        assert!(participant.sid.starts_with("PA_"));
        assert!(Uuid::parse_str(&participant.identity).is_ok());
        assert_eq!(participant.name, "viewer 7");
    }

    #[test]
    fn signatures_verify_and_ids_are_distinct() {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let rooms = rooms(3);
        let mut ids = HashSet::new();
        let mut sids = HashSet::new();
        let mut room_names = HashSet::new();
        for i in 0..30 {
            let body = participant_joined(&rooms[i % rooms.len()], i, 1_771_351_907);
            let request = signed(&creds(), &body).unwrap();
            let (name, value) = &request.headers[0];
            assert_eq!(name, AUTHORIZATION);
            assert!(!value.to_str().unwrap().starts_with("Bearer"));
            assert_eq!(
                livekit::verify_webhook(&creds(), Some(value.to_str().unwrap()), &request.body),
                Ok(())
            );
            let event = livekit::parse_webhook(&request.body).unwrap();
            ids.insert(event.id);
            sids.insert(event.participant.unwrap().sid);
            room_names.insert(event.room.unwrap().name);
        }
        assert_eq!((ids.len(), sids.len(), room_names.len()), (30, 30, 3));
        // Another secret does not verify.
        let body = participant_joined(&rooms[0], 0, 1);
        let request = signed(&Credentials::new("APIbench", "another-secret"), &body).unwrap();
        let value = request.headers[0].1.to_str().unwrap();
        assert!(livekit::verify_webhook(&creds(), Some(value), &body).is_err());
    }
}
