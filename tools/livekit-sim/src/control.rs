//! `/sim/*`: drive simulated participants and faults, and look inside.

use actix_web::{HttpResponse, web};
use livekit_protocol::DisconnectReason;
use serde::Deserialize;
use serde_json::json;

use crate::error::SimError;
use crate::sim::{FaultsRequest, Sim};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/sim")
            .app_data(web::JsonConfig::default().error_handler(|err, _| {
                SimError::new("malformed", format!("bad JSON body: {err}")).into()
            }))
            .route("/join", web::post().to(join))
            .route("/leave", web::post().to(leave))
            .route("/drop", web::post().to(drop_connection))
            .route("/abort", web::post().to(abort))
            .route("/publish", web::post().to(publish))
            .route("/unpublish", web::post().to(unpublish))
            .route("/rooms", web::get().to(rooms))
            .route("/calls", web::get().to(calls))
            .route("/faults", web::get().to(get_faults))
            .route("/faults", web::post().to(set_faults))
            .route("/reset", web::post().to(reset))
            .route("/webhooks/pending", web::get().to(pending)),
    );
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
struct Who {
    room: String,
    identity: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AbortBody {
    Token(TokenBody),
    Who(Who),
}

#[derive(Deserialize)]
struct PublishBody {
    room: String,
    identity: String,
    source: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnpublishBody {
    room: String,
    identity: String,
    track_sid: String,
}

#[derive(Deserialize)]
struct CallsQuery {
    method: Option<String>,
}

/// A join token verified as LiveKit does at connect; any failure is a 401.
fn claims_of(sim: &Sim, token: &str) -> Result<livekit::AccessClaims, SimError> {
    livekit::verify_access_token(&sim.creds, token)
        .map_err(|e| SimError::unauthenticated(format!("invalid token: {e}")))
}

async fn join(sim: web::Data<Sim>, body: web::Json<TokenBody>) -> Result<HttpResponse, SimError> {
    let claims = claims_of(&sim, &body.token)?;
    let joined = sim.join(&claims)?;
    Ok(HttpResponse::Ok().json(joined))
}

async fn leave(sim: web::Data<Sim>, who: web::Json<Who>) -> Result<HttpResponse, SimError> {
    let sid = sim.remove_participant(
        &who.room,
        &who.identity,
        DisconnectReason::ClientInitiated,
        "participant_left",
    )?;
    Ok(HttpResponse::Ok().json(json!({ "sid": sid })))
}

/// An abrupt disconnect: LiveKit notices the closed signal connection and sends
/// `participant_left` with `SIGNAL_CLOSE`; the sim sends it at once.
async fn drop_connection(
    sim: web::Data<Sim>,
    who: web::Json<Who>,
) -> Result<HttpResponse, SimError> {
    let sid = sim.remove_participant(
        &who.room,
        &who.identity,
        DisconnectReason::SignalClose,
        "participant_left",
    )?;
    Ok(HttpResponse::Ok().json(json!({ "sid": sid })))
}

async fn abort(sim: web::Data<Sim>, body: web::Json<AbortBody>) -> Result<HttpResponse, SimError> {
    let sid = match body.into_inner() {
        AbortBody::Token(t) => {
            let claims = claims_of(&sim, &t.token)?;
            sim.abort_join(&claims)?
        }
        AbortBody::Who(who) => sim.remove_participant(
            &who.room,
            &who.identity,
            DisconnectReason::ConnectionTimeout,
            "participant_connection_aborted",
        )?,
    };
    Ok(HttpResponse::Ok().json(json!({ "sid": sid })))
}

async fn publish(
    sim: web::Data<Sim>,
    body: web::Json<PublishBody>,
) -> Result<HttpResponse, SimError> {
    let track = sim.publish(&body.room, &body.identity, &body.source)?;
    Ok(HttpResponse::Ok().json(json!({ "sid": track.sid })))
}

async fn unpublish(
    sim: web::Data<Sim>,
    body: web::Json<UnpublishBody>,
) -> Result<HttpResponse, SimError> {
    sim.unpublish(&body.room, &body.identity, &body.track_sid)?;
    Ok(HttpResponse::Ok().json(json!({ "sid": body.track_sid })))
}

async fn rooms(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.rooms_view())
}

async fn calls(sim: web::Data<Sim>, q: web::Query<CallsQuery>) -> HttpResponse {
    HttpResponse::Ok().json(sim.calls(q.method.as_deref()))
}

async fn get_faults(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(sim.faults())
}

async fn set_faults(sim: web::Data<Sim>, body: web::Json<FaultsRequest>) -> HttpResponse {
    HttpResponse::Ok().json(sim.set_faults(body.into_inner()))
}

async fn reset(sim: web::Data<Sim>) -> HttpResponse {
    sim.reset_faults();
    HttpResponse::Ok().json(sim.faults())
}

async fn pending(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "pending": sim.dispatcher.pending() }))
}
