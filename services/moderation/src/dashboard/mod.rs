//! `GET /ops` and its assets: the operators' dashboard, a page shell holding no data (it
//! asks for the operator's JWT and calls `/v1/ops/*` with it).

use actix_web::web as aw;

/// Registers `/ops` and its assets.
pub fn routes(_cfg: &mut aw::ServiceConfig) {}
