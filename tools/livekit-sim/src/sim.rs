//! The simulated server: rooms, participants, tracks, faults, and the events they cause.
//!
//! Every change happens under one lock and queues its webhooks before releasing it, so a room's
//! events leave in the order their causes happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use livekit::{AccessClaims, Credentials, VideoClaims};
use livekit_protocol as proto;
use proto::participant_info::State;
use proto::{DisconnectReason, TrackSource, TrackType};
use serde::{Deserialize, Serialize};

use crate::SimConfig;
use crate::error::SimError;
use crate::ids::{new_id, now_ms};
use crate::webhooks::Dispatcher;

/// The misbehaviour currently switched on (`POST /sim/faults`, cleared by `POST /sim/reset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Drop the next N webhooks (of `drop_event` only, when set) silently.
    pub drop_next: u32,
    pub drop_event: Option<String>,
    /// Send the next N webhooks (of `duplicate_event` only, when set) twice, same id.
    pub duplicate_next: u32,
    pub duplicate_event: Option<String>,
    /// On a reconnect, send the new `participant_joined` before the old sid's
    /// `DUPLICATE_IDENTITY` `participant_left` (the default: LiveKit often does).
    pub delay_duplicate_identity_leave: bool,
    /// Answer the next N Twirp calls with `fail_code`.
    pub fail_next_api_calls: u32,
    pub fail_code: String,
    /// Delay every Twirp answer by this much.
    pub api_delay_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop_next: 0,
            drop_event: None,
            duplicate_next: 0,
            duplicate_event: None,
            delay_duplicate_identity_leave: true,
            fail_next_api_calls: 0,
            fail_code: "unavailable".to_owned(),
            api_delay_ms: 0,
        }
    }
}

/// The body of `POST /sim/faults`: each field present changes its fault.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct FaultsRequest {
    drop_next: Option<u32>,
    duplicate_next: Option<u32>,
    /// Restricts `dropNext`/`duplicateNext` of the same request to this event name.
    event: Option<String>,
    delay_duplicate_identity_leave: Option<bool>,
    fail_next_api_calls: Option<u32>,
    code: Option<String>,
    api_delay_ms: Option<u64>,
}

/// One RoomService call the sim received (`GET /sim/calls`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub method: String,
    pub room: String,
    pub identity: String,
    /// The request as protojson (camelCase).
    pub body: serde_json::Value,
    /// The Twirp error code answered, `None` when the call succeeded.
    pub code: Option<String>,
    pub at_ms: i64,
}

struct RoomState {
    info: proto::Room,
    empty_timeout: Duration,
    departure_timeout: Duration,
    participants: Vec<proto::ParticipantInfo>,
    ever_joined: bool,
    /// The generation of the pending finish timer; 0 = none.
    timer: u64,
}

impl RoomState {
    fn snapshot(&self) -> proto::Room {
        let mut r = self.info.clone();
        r.num_participants = self.participants.len() as u32;
        r.num_publishers = self.participants.iter().filter(|p| p.is_publisher).count() as u32;
        r
    }

    fn position(&self, identity: &str) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.identity == identity)
    }
}

#[derive(Default)]
struct Inner {
    rooms: BTreeMap<String, RoomState>,
    faults: Faults,
    calls: Vec<CallRecord>,
}

pub(crate) struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) creds: Credentials,
    pub(crate) dispatcher: Arc<Dispatcher>,
    rt: tokio::runtime::Handle,
    inner: Mutex<Inner>,
    next_timer: AtomicU64,
}

/// What `/sim/join` answers.
#[derive(Debug, Serialize)]
pub(crate) struct Joined {
    pub sid: String,
    pub room: String,
    pub identity: String,
}

fn source_from_name(source: &str) -> Result<(TrackSource, &'static str), SimError> {
    let name = livekit::normalize_source(source)
        .ok_or_else(|| SimError::invalid_argument(format!("unknown track source {source:?}")))?;
    let src = TrackSource::from_str_name(&name.to_ascii_uppercase())
        .ok_or_else(|| SimError::invalid_argument(format!("unknown track source {source:?}")))?;
    Ok((src, name))
}

fn allows(perm: &proto::ParticipantPermission, source: i32) -> bool {
    perm.can_publish
        && (perm.can_publish_sources.is_empty() || perm.can_publish_sources.contains(&source))
}

/// The permission LiveKit derives from a token's video grant (`VideoGrant.ToPermission`).
fn permission_from_grant(v: &VideoClaims) -> proto::ParticipantPermission {
    proto::ParticipantPermission {
        can_subscribe: v.can_subscribe,
        can_publish: v.can_publish,
        can_publish_data: v.can_publish_data,
        can_publish_sources: v
            .can_publish_sources
            .iter()
            .filter_map(|s| source_from_name(s).ok().map(|(s, _)| s as i32))
            .collect(),
        hidden: v.hidden,
        can_update_metadata: v.can_update_own_metadata,
        ..Default::default()
    }
}

fn matches(filter: &Option<String>, event: &str) -> bool {
    filter.as_deref().is_none_or(|f| f == event)
}

impl Sim {
    pub(crate) fn new(config: SimConfig, rt: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let creds = config.credentials();
        let dispatcher = Arc::new(Dispatcher::new(
            creds.clone(),
            config.webhook_retry_base,
            rt.clone(),
        )?);
        Ok(Self {
            config,
            creds,
            dispatcher,
            rt,
            inner: Mutex::new(Inner::default()),
            next_timer: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough data for a simulator.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- faults and the call log ----

    pub(crate) fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub(crate) fn set_faults(&self, req: FaultsRequest) -> Faults {
        let mut inner = self.lock();
        let f = &mut inner.faults;
        if let Some(n) = req.drop_next {
            f.drop_next = n;
            f.drop_event = req.event.clone();
        }
        if let Some(n) = req.duplicate_next {
            f.duplicate_next = n;
            f.duplicate_event = req.event.clone();
        }
        if let Some(d) = req.delay_duplicate_identity_leave {
            f.delay_duplicate_identity_leave = d;
        }
        if let Some(n) = req.fail_next_api_calls {
            f.fail_next_api_calls = n;
            f.fail_code = req.code.unwrap_or_else(|| "unavailable".to_owned());
        }
        if let Some(ms) = req.api_delay_ms {
            f.api_delay_ms = ms;
        }
        f.clone()
    }

    pub(crate) fn reset_faults(&self) {
        self.lock().faults = Faults::default();
    }

    pub(crate) fn api_delay(&self) -> Duration {
        Duration::from_millis(self.lock().faults.api_delay_ms)
    }

    pub(crate) fn take_api_failure(&self) -> Option<SimError> {
        let mut inner = self.lock();
        let f = &mut inner.faults;
        if f.fail_next_api_calls == 0 {
            return None;
        }
        f.fail_next_api_calls -= 1;
        Some(SimError::new(
            &f.fail_code,
            "simulated failure (livekit-sim fault)",
        ))
    }

    pub(crate) fn record_call(&self, call: CallRecord) {
        self.lock().calls.push(call);
    }

    pub(crate) fn calls(&self, method: Option<&str>) -> Vec<CallRecord> {
        self.lock()
            .calls
            .iter()
            .filter(|c| method.is_none_or(|m| c.method == m))
            .cloned()
            .collect()
    }

    // ---- events ----

    fn emit(
        &self,
        faults: &mut Faults,
        event: &str,
        room: &proto::Room,
        participant: Option<&proto::ParticipantInfo>,
        track: Option<&proto::TrackInfo>,
    ) {
        let ev = proto::WebhookEvent {
            event: event.to_owned(),
            room: Some(room.clone()),
            participant: participant.cloned(),
            track: track.cloned(),
            id: new_id("EV_"),
            created_at: now_ms() / 1000,
            ..Default::default()
        };
        if faults.drop_next > 0 && matches(&faults.drop_event, event) {
            faults.drop_next -= 1;
            tracing::info!(event.id = %ev.id, event.name = event, "webhook dropped (fault)");
            return;
        }
        let copies = if faults.duplicate_next > 0 && matches(&faults.duplicate_event, event) {
            faults.duplicate_next -= 1;
            2
        } else {
            1
        };
        let body = match serde_json::to_vec(&ev) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::error!(event.name = event, error = %e, "cannot serialize webhook");
                return;
            }
        };
        for url in &self.config.webhook_urls {
            for _ in 0..copies {
                self.dispatcher
                    .enqueue(url, &room.name, &ev.id, event, Arc::clone(&body));
            }
        }
    }

    /// A participant already taken out of `room` goes: its tracks are unpublished, then
    /// `event` (`participant_left` or `participant_connection_aborted`) with `reason`.
    fn emit_departure(
        &self,
        faults: &mut Faults,
        room: &RoomState,
        mut p: proto::ParticipantInfo,
        reason: DisconnectReason,
        event: &str,
    ) {
        let snapshot = room.snapshot();
        let tracks = std::mem::take(&mut p.tracks);
        for t in &tracks {
            self.emit(faults, "track_unpublished", &snapshot, Some(&p), Some(t));
        }
        p.state = State::Disconnected as i32;
        p.disconnect_reason = reason as i32;
        p.version += 1;
        self.emit(faults, event, &snapshot, Some(&p), None);
    }

    // ---- room lifecycle ----

    fn schedule_finish(self: &Arc<Self>, room: &mut RoomState) {
        let generation = self.next_timer.fetch_add(1, Ordering::SeqCst);
        room.timer = generation;
        let delay = if room.ever_joined {
            room.departure_timeout
        } else {
            room.empty_timeout
        };
        let name = room.info.name.clone();
        let sim = Arc::clone(self);
        self.rt.spawn(async move {
            tokio::time::sleep(delay).await;
            sim.finish_if_idle(&name, generation);
        });
    }

    fn finish_if_idle(&self, name: &str, generation: u64) {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let idle = rooms
            .get(name)
            .is_some_and(|r| r.timer == generation && r.participants.is_empty());
        if idle && let Some(room) = rooms.remove(name) {
            tracing::info!(room.name = name, "room finished");
            self.emit(faults, "room_finished", &room.snapshot(), None, None);
        }
    }

    /// The room named `name`, created (with `room_started`) when absent.
    fn room_or_create<'a>(
        &self,
        rooms: &'a mut BTreeMap<String, RoomState>,
        faults: &mut Faults,
        name: &str,
        req: Option<&proto::CreateRoomRequest>,
    ) -> (&'a mut RoomState, bool) {
        let created = !rooms.contains_key(name);
        if created {
            let empty_s = req.map(|r| r.empty_timeout).unwrap_or(0);
            let departure_s = req.map(|r| r.departure_timeout).unwrap_or(0);
            let empty_timeout = if empty_s > 0 {
                Duration::from_secs(empty_s.into())
            } else {
                self.config.empty_timeout
            };
            let departure_timeout = if departure_s > 0 {
                Duration::from_secs(departure_s.into())
            } else {
                self.config.departure_timeout
            };
            let now = now_ms();
            let room = RoomState {
                info: proto::Room {
                    sid: new_id("RM_"),
                    name: name.to_owned(),
                    empty_timeout: empty_timeout.as_secs().max(1) as u32,
                    departure_timeout: departure_timeout.as_secs().max(1) as u32,
                    max_participants: req.map(|r| r.max_participants).unwrap_or(0),
                    creation_time: now / 1000,
                    creation_time_ms: now,
                    metadata: req.map(|r| r.metadata.clone()).unwrap_or_default(),
                    ..Default::default()
                },
                empty_timeout,
                departure_timeout,
                participants: Vec::new(),
                ever_joined: false,
                timer: 0,
            };
            tracing::info!(room.name = name, room.sid = %room.info.sid, "room started");
            self.emit(faults, "room_started", &room.snapshot(), None, None);
            rooms.insert(name.to_owned(), room);
        }
        let room = rooms.get_mut(name).expect("room just ensured");
        (room, created)
    }

    // ---- RoomService ----

    pub(crate) fn create_room(self: &Arc<Self>, req: &proto::CreateRoomRequest) -> proto::Room {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let (room, created) = self.room_or_create(rooms, faults, &req.name, Some(req));
        if created {
            self.schedule_finish(room);
        }
        room.snapshot()
    }

    pub(crate) fn delete_room(&self, name: &str) -> Result<(), SimError> {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let mut room = rooms
            .remove(name)
            .ok_or_else(|| SimError::not_found("requested room does not exist"))?;
        let participants = std::mem::take(&mut room.participants);
        for p in participants {
            self.emit_departure(
                faults,
                &room,
                p,
                DisconnectReason::RoomDeleted,
                "participant_left",
            );
        }
        tracing::info!(room.name = name, "room deleted");
        self.emit(faults, "room_finished", &room.snapshot(), None, None);
        Ok(())
    }

    pub(crate) fn list_rooms(&self, names: &[String]) -> Vec<proto::Room> {
        self.lock()
            .rooms
            .values()
            .filter(|r| names.is_empty() || names.contains(&r.info.name))
            .map(RoomState::snapshot)
            .collect()
    }

    pub(crate) fn list_participants(&self, room: &str) -> Vec<proto::ParticipantInfo> {
        self.lock()
            .rooms
            .get(room)
            .map(|r| r.participants.clone())
            .unwrap_or_default()
    }

    pub(crate) fn get_participant(
        &self,
        room: &str,
        identity: &str,
    ) -> Result<proto::ParticipantInfo, SimError> {
        self.lock()
            .rooms
            .get(room)
            .and_then(|r| r.participants.iter().find(|p| p.identity == identity))
            .cloned()
            .ok_or_else(|| SimError::not_found("participant not found"))
    }

    /// Takes `identity` out of `room` and sends its departure (`event` with `reason`).
    pub(crate) fn remove_participant(
        self: &Arc<Self>,
        room_name: &str,
        identity: &str,
        reason: DisconnectReason,
        event: &str,
    ) -> Result<String, SimError> {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let room = rooms
            .get_mut(room_name)
            .ok_or_else(|| SimError::not_found("room not found"))?;
        let idx = room
            .position(identity)
            .ok_or_else(|| SimError::not_found("participant not found"))?;
        let p = room.participants.remove(idx);
        let sid = p.sid.clone();
        tracing::info!(room.name = room_name, participant.sid = %sid, reason = reason.as_str_name(), "participant gone");
        self.emit_departure(faults, room, p, reason, event);
        if room.participants.is_empty() {
            self.schedule_finish(room);
        }
        Ok(sid)
    }

    pub(crate) fn update_participant(
        &self,
        req: proto::UpdateParticipantRequest,
    ) -> Result<proto::ParticipantInfo, SimError> {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let room = rooms
            .get_mut(&req.room)
            .ok_or_else(|| SimError::not_found("participant not found"))?;
        let idx = room
            .position(&req.identity)
            .ok_or_else(|| SimError::not_found("participant not found"))?;
        let p = &mut room.participants[idx];
        if let Some(perm) = req.permission {
            // LiveKit replaces the whole permission: fields not sent are now false.
            p.permission = Some(perm);
        }
        if !req.metadata.is_empty() {
            p.metadata = req.metadata;
        }
        if !req.name.is_empty() {
            p.name = req.name;
        }
        for (k, v) in req.attributes {
            if v.is_empty() {
                p.attributes.remove(&k);
            } else {
                p.attributes.insert(k, v);
            }
        }
        p.version += 1;
        let perm = p.permission.clone().unwrap_or_default();
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut p.tracks)
            .into_iter()
            .partition(|t| allows(&perm, t.source));
        p.tracks = kept;
        let updated = p.clone();
        let snapshot = room.snapshot();
        for t in &gone {
            self.emit(
                faults,
                "track_unpublished",
                &snapshot,
                Some(&updated),
                Some(t),
            );
        }
        Ok(updated)
    }

    pub(crate) fn mute_track(
        &self,
        req: &proto::MuteRoomTrackRequest,
    ) -> Result<proto::TrackInfo, SimError> {
        let mut inner = self.lock();
        let track = inner
            .rooms
            .get_mut(&req.room)
            .and_then(|r| {
                r.participants
                    .iter_mut()
                    .find(|p| p.identity == req.identity)
            })
            .and_then(|p| p.tracks.iter_mut().find(|t| t.sid == req.track_sid))
            .ok_or_else(|| SimError::not_found("track not found"))?;
        // The sim allows remote unmute, as a server with `enable_remote_unmute` does.
        track.muted = req.muted;
        Ok(track.clone())
    }

    // ---- simulated clients ----

    pub(crate) fn join(self: &Arc<Self>, claims: &AccessClaims) -> Result<Joined, SimError> {
        let v = &claims.video;
        if !v.room_join {
            return Err(SimError::unauthenticated("token has no roomJoin grant"));
        }
        if v.room.is_empty() || claims.identity.is_empty() {
            return Err(SimError::unauthenticated(
                "token has no room or no identity",
            ));
        }
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let (room, _) = self.room_or_create(rooms, faults, &v.room, None);
        let others = room
            .participants
            .iter()
            .filter(|p| p.identity != claims.identity)
            .count() as u32;
        if room.info.max_participants > 0 && others >= room.info.max_participants {
            return Err(SimError::new("resource_exhausted", "room is full"));
        }
        room.timer = 0;
        room.ever_joined = true;
        let now = now_ms();
        let p = proto::ParticipantInfo {
            sid: new_id("PA_"),
            identity: claims.identity.clone(),
            name: claims.name.clone(),
            metadata: claims.metadata.clone(),
            state: State::Active as i32,
            joined_at: now / 1000,
            joined_at_ms: now,
            version: 1,
            permission: Some(permission_from_grant(v)),
            ..Default::default()
        };
        let old = room
            .position(&claims.identity)
            .map(|i| room.participants.remove(i));
        room.participants.push(p.clone());
        tracing::info!(room.name = %v.room, participant.sid = %p.sid, replaces = ?old.as_ref().map(|o| &o.sid), "participant joined");
        let snapshot = room.snapshot();
        match old {
            None => self.emit(faults, "participant_joined", &snapshot, Some(&p), None),
            Some(old) if faults.delay_duplicate_identity_leave => {
                self.emit(faults, "participant_joined", &snapshot, Some(&p), None);
                self.emit_departure(
                    faults,
                    room,
                    old,
                    DisconnectReason::DuplicateIdentity,
                    "participant_left",
                );
            }
            Some(old) => {
                self.emit_departure(
                    faults,
                    room,
                    old,
                    DisconnectReason::DuplicateIdentity,
                    "participant_left",
                );
                self.emit(faults, "participant_joined", &snapshot, Some(&p), None);
            }
        }
        Ok(Joined {
            sid: p.sid,
            room: v.room.clone(),
            identity: p.identity,
        })
    }

    /// A join that never got connected: `participant_connection_aborted` with a fresh sid. The
    /// room is created as the join attempt would have created it.
    pub(crate) fn abort_join(self: &Arc<Self>, claims: &AccessClaims) -> Result<String, SimError> {
        let v = &claims.video;
        if !v.room_join || v.room.is_empty() || claims.identity.is_empty() {
            return Err(SimError::unauthenticated("token has no roomJoin grant"));
        }
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let (room, _) = self.room_or_create(rooms, faults, &v.room, None);
        let p = proto::ParticipantInfo {
            sid: new_id("PA_"),
            identity: claims.identity.clone(),
            name: claims.name.clone(),
            state: State::Joining as i32,
            permission: Some(permission_from_grant(v)),
            ..Default::default()
        };
        let sid = p.sid.clone();
        self.emit_departure(
            faults,
            room,
            p,
            DisconnectReason::ConnectionTimeout,
            "participant_connection_aborted",
        );
        if room.participants.is_empty() {
            self.schedule_finish(room);
        }
        Ok(sid)
    }

    pub(crate) fn publish(
        &self,
        room_name: &str,
        identity: &str,
        source: &str,
    ) -> Result<proto::TrackInfo, SimError> {
        let (src, name) = source_from_name(source)?;
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let room = rooms
            .get_mut(room_name)
            .ok_or_else(|| SimError::not_found("room not found"))?;
        let idx = room
            .position(identity)
            .ok_or_else(|| SimError::not_found("participant not found"))?;
        let p = &mut room.participants[idx];
        let perm = p.permission.clone().unwrap_or_default();
        if !allows(&perm, src as i32) {
            return Err(SimError::permission_denied(format!(
                "participant is not allowed to publish {name}"
            )));
        }
        let video = matches!(src, TrackSource::Camera | TrackSource::ScreenShare);
        let track = proto::TrackInfo {
            sid: new_id("TR_"),
            r#type: if video {
                TrackType::Video
            } else {
                TrackType::Audio
            } as i32,
            name: name.to_owned(),
            source: src as i32,
            mime_type: if video { "video/VP8" } else { "audio/opus" }.to_owned(),
            width: if video { 1280 } else { 0 },
            height: if video { 720 } else { 0 },
            ..Default::default()
        };
        p.tracks.push(track.clone());
        p.is_publisher = true;
        p.version += 1;
        let updated = p.clone();
        let snapshot = room.snapshot();
        self.emit(
            faults,
            "track_published",
            &snapshot,
            Some(&updated),
            Some(&track),
        );
        Ok(track)
    }

    pub(crate) fn unpublish(
        &self,
        room_name: &str,
        identity: &str,
        track_sid: &str,
    ) -> Result<(), SimError> {
        let mut guard = self.lock();
        let Inner { rooms, faults, .. } = &mut *guard;
        let room = rooms
            .get_mut(room_name)
            .ok_or_else(|| SimError::not_found("room not found"))?;
        let idx = room
            .position(identity)
            .ok_or_else(|| SimError::not_found("participant not found"))?;
        let p = &mut room.participants[idx];
        let t = p
            .tracks
            .iter()
            .position(|t| t.sid == track_sid)
            .ok_or_else(|| SimError::not_found("track not found"))?;
        let track = p.tracks.remove(t);
        p.version += 1;
        let updated = p.clone();
        let snapshot = room.snapshot();
        self.emit(
            faults,
            "track_unpublished",
            &snapshot,
            Some(&updated),
            Some(&track),
        );
        Ok(())
    }

    /// `GET /sim/rooms`.
    pub(crate) fn rooms_view(&self) -> Vec<RoomView> {
        self.lock()
            .rooms
            .values()
            .map(|r| RoomView {
                sid: r.info.sid.clone(),
                name: r.info.name.clone(),
                empty_timeout: r.info.empty_timeout,
                departure_timeout: r.info.departure_timeout,
                max_participants: r.info.max_participants,
                creation_time: r.info.creation_time,
                num_participants: r.participants.len() as u32,
                participants: r.participants.iter().map(ParticipantView::from).collect(),
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomView {
    sid: String,
    name: String,
    empty_timeout: u32,
    departure_timeout: u32,
    max_participants: u32,
    creation_time: i64,
    num_participants: u32,
    participants: Vec<ParticipantView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ParticipantView {
    sid: String,
    identity: String,
    name: String,
    state: &'static str,
    joined_at: i64,
    permission: PermissionView,
    tracks: Vec<TrackView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PermissionView {
    can_publish: bool,
    can_subscribe: bool,
    can_publish_data: bool,
    /// Lower-case names, as in tokens.
    can_publish_sources: Vec<String>,
    hidden: bool,
    can_update_metadata: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackView {
    sid: String,
    source: String,
    r#type: &'static str,
    muted: bool,
}

fn lower_source(v: i32) -> String {
    TrackSource::try_from(v)
        .map(|s| s.as_str_name().to_ascii_lowercase())
        .unwrap_or_else(|_| v.to_string())
}

impl From<&proto::ParticipantInfo> for ParticipantView {
    fn from(p: &proto::ParticipantInfo) -> Self {
        let perm = p.permission.clone().unwrap_or_default();
        Self {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            name: p.name.clone(),
            state: State::try_from(p.state)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN"),
            joined_at: p.joined_at,
            permission: PermissionView {
                can_publish: perm.can_publish,
                can_subscribe: perm.can_subscribe,
                can_publish_data: perm.can_publish_data,
                can_publish_sources: perm
                    .can_publish_sources
                    .iter()
                    .map(|s| lower_source(*s))
                    .collect(),
                hidden: perm.hidden,
                can_update_metadata: perm.can_update_metadata,
            },
            tracks: p
                .tracks
                .iter()
                .map(|t| TrackView {
                    sid: t.sid.clone(),
                    source: lower_source(t.source),
                    r#type: TrackType::try_from(t.r#type)
                        .map(|t| t.as_str_name())
                        .unwrap_or("UNKNOWN"),
                    muted: t.muted,
                })
                .collect(),
        }
    }
}
