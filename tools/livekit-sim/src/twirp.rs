//! `POST /twirp/livekit.RoomService/<Method>`, in protobuf or protojson.

use std::sync::Arc;

use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use livekit::{AccessClaims, VideoClaims};
use livekit_protocol as proto;
use proto::DisconnectReason;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::SimError;
use crate::ids::now_ms;
use crate::sim::{CallRecord, Sim};

/// RoomService methods LiveKit has that the sim does not: they answer `unimplemented`.
const UNIMPLEMENTED: &[&str] = &[
    "UpdateSubscriptions",
    "SendData",
    "UpdateRoomMetadata",
    "ForwardParticipant",
    "MoveParticipant",
    "PerformRpc",
];

#[derive(Clone, Copy)]
enum Format {
    Protobuf,
    Json,
}

/// What the call log keeps of a request.
#[derive(Default)]
struct Seen {
    room: String,
    identity: String,
    body: serde_json::Value,
}

pub(crate) async fn handle(
    sim: web::Data<Sim>,
    method: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let method = method.into_inner();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = match content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "application/protobuf" | "application/x-protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            return SimError::new(
                "bad_route",
                format!("unexpected Content-Type: {content_type:?}"),
            )
            .error_response();
        }
    };
    let delay = sim.api_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sim = sim.into_inner();
    let mut seen = Seen::default();
    let result = dispatch(&sim, &method, format, &body, auth.as_deref(), &mut seen);
    if let Err(e) = &result {
        tracing::info!(method, code = %e.code, msg = %e.msg, "twirp call refused");
    }
    sim.record_call(CallRecord {
        method,
        room: seen.room,
        identity: seen.identity,
        body: seen.body,
        code: result.as_ref().err().map(|e| e.code.clone()),
        at_ms: now_ms(),
    });
    result.unwrap_or_else(|e| e.error_response())
}

fn dispatch(
    sim: &Arc<Sim>,
    method: &str,
    format: Format,
    body: &[u8],
    auth: Option<&str>,
    seen: &mut Seen,
) -> Result<HttpResponse, SimError> {
    let c = Call {
        sim,
        format,
        body,
        auth,
    };
    match method {
        "CreateRoom" => c.run(
            seen,
            |v, _: &proto::CreateRoomRequest| v.room_create,
            |sim, req| {
                if req.name.is_empty() {
                    return Err(SimError::invalid_argument("room name is required"));
                }
                Ok(sim.create_room(&req))
            },
        ),
        "DeleteRoom" => c.run(
            seen,
            |v, _: &proto::DeleteRoomRequest| v.room_create,
            |sim, req| {
                sim.delete_room(&req.room)?;
                Ok(proto::DeleteRoomResponse {})
            },
        ),
        "ListRooms" => c.run(
            seen,
            |v, _: &proto::ListRoomsRequest| v.room_list,
            |sim, req| {
                Ok(proto::ListRoomsResponse {
                    rooms: sim.list_rooms(&req.names),
                })
            },
        ),
        "ListParticipants" => c.run(
            seen,
            |v, req: &proto::ListParticipantsRequest| admin_of(v, &req.room),
            |sim, req| {
                Ok(proto::ListParticipantsResponse {
                    participants: sim.list_participants(&req.room),
                })
            },
        ),
        "GetParticipant" => c.run(
            seen,
            |v, req: &proto::RoomParticipantIdentity| admin_of(v, &req.room),
            |sim, req| sim.get_participant(&req.room, &req.identity),
        ),
        "RemoveParticipant" => c.run(
            seen,
            |v, req: &proto::RoomParticipantIdentity| admin_of(v, &req.room),
            |sim, req| {
                sim.remove_participant(
                    &req.room,
                    &req.identity,
                    DisconnectReason::ParticipantRemoved,
                    "participant_left",
                )?;
                Ok(proto::RemoveParticipantResponse {})
            },
        ),
        "UpdateParticipant" => c.run(
            seen,
            |v, req: &proto::UpdateParticipantRequest| admin_of(v, &req.room),
            |sim, req| sim.update_participant(req),
        ),
        "MutePublishedTrack" => c.run(
            seen,
            |v, req: &proto::MuteRoomTrackRequest| admin_of(v, &req.room),
            |sim, req| {
                Ok(proto::MuteRoomTrackResponse {
                    track: Some(sim.mute_track(&req)?),
                })
            },
        ),
        m if UNIMPLEMENTED.contains(&m) => Err(SimError::new(
            "unimplemented",
            format!("livekit-sim does not implement {m}"),
        )),
        m => Err(SimError::new(
            "bad_route",
            format!("no handler for livekit.RoomService/{m}"),
        )),
    }
}

fn admin_of(v: &VideoClaims, room: &str) -> bool {
    v.room_admin && v.room == room
}

struct Call<'a> {
    sim: &'a Arc<Sim>,
    format: Format,
    body: &'a [u8],
    auth: Option<&'a str>,
}

impl Call<'_> {
    /// Decode, log, apply the failure fault, authenticate, check the grant, run, encode.
    fn run<Req, Resp>(
        &self,
        seen: &mut Seen,
        allowed: impl FnOnce(&VideoClaims, &Req) -> bool,
        run: impl FnOnce(&Arc<Sim>, Req) -> Result<Resp, SimError>,
    ) -> Result<HttpResponse, SimError>
    where
        Req: prost::Message + Default + DeserializeOwned + Serialize,
        Resp: prost::Message + Serialize,
    {
        let req: Req = match self.format {
            Format::Protobuf => Req::decode(self.body)
                .map_err(|e| SimError::new("malformed", format!("bad protobuf body: {e}")))?,
            Format::Json if self.body.iter().all(u8::is_ascii_whitespace) => Req::default(),
            Format::Json => serde_json::from_slice(self.body)
                .map_err(|e| SimError::new("malformed", format!("bad JSON body: {e}")))?,
        };
        seen.body = serde_json::to_value(&req).unwrap_or_default();
        let field = |k: &str| seen.body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        seen.room = field("room").or_else(|| field("name")).unwrap_or_default();
        seen.identity = field("identity").unwrap_or_default();

        if let Some(e) = self.sim.take_api_failure() {
            return Err(e);
        }
        let claims = authenticate(self.sim, self.auth)?;
        if !allowed(&claims.video, &req) {
            return Err(SimError::permissions_denied());
        }
        let resp = run(self.sim, req)?;
        Ok(match self.format {
            Format::Protobuf => HttpResponse::Ok()
                .content_type("application/protobuf")
                .body(resp.encode_to_vec()),
            Format::Json => HttpResponse::Ok()
                .content_type("application/json")
                .body(serde_json::to_vec(&resp).unwrap_or_default()),
        })
    }
}

/// The `Authorization: Bearer <jwt>` of a server API call, verified as LiveKit does.
fn authenticate(sim: &Sim, auth: Option<&str>) -> Result<AccessClaims, SimError> {
    let header = auth.unwrap_or_default().trim();
    let token = match header.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => "",
    };
    if token.is_empty() {
        // LiveKit lets the request through without grants; every RoomService method then
        // refuses it.
        return Err(SimError::permissions_denied());
    }
    livekit::verify_access_token(&sim.creds, token)
        .map_err(|e| SimError::unauthenticated(format!("invalid token: {e}")))
}
