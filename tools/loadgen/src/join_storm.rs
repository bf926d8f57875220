//! `join-storm`: thousands of distinct viewers ask token-issuer for a token to the same
//! public live session at once, as when a big creator goes live.

use std::net::Ipv4Addr;

use anyhow::Context;
use bytes::Bytes;
use domain::ids::SessionId;
use domain::rooms::session_room;
use domain::session::{AccessType, SessionStatus, SessionType};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::json;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::engine::Prepared;
use crate::{Phases, RunArgs};

/// How long the pre-minted client tokens live: far longer than any run.
const CLIENT_TOKEN_TTL_SECS: i64 = 3600;

/// Arguments of `loadgen join-storm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// token-issuer's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub url: reqwest::Url,
    /// The database token-issuer uses (the creator, the session and the viewers are seeded
    /// there).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ipelya"
    )]
    pub database_url: String,
    /// Distinct viewers, each asking once (the warm-up viewers come on top).
    #[arg(long, default_value_t = 20_000)]
    pub viewers: usize,
    /// token-issuer's `AUTH_JWT_SECRET`, to mint the viewers' client tokens.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Client addresses the viewers are spread over (`X-Forwarded-For`, as the gateway
    /// sets it); they come from 10.0.0.0/8.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1 << 24))]
    pub addresses: u32,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Seeds the data, pre-mints every client token and builds the requests.
pub async fn prepare(args: &Args) -> anyhow::Result<Phases> {
    let warmup = args.run.warmup;
    eprintln!(
        "join-storm: seeding a creator, a public live session and {} viewers",
        args.viewers + warmup
    );
    let seed = seed(&args.database_url, args.viewers + warmup).await?;
    let requests = requests(
        args.jwt_secret.as_bytes(),
        seed.session,
        &seed.viewers,
        args.addresses,
    )?;
    let url = args
        .url
        .join("/v1/tokens")
        .context("building the /v1/tokens URL")?;
    let (warmup_requests, measured) = requests.split_at(warmup);
    Ok(Phases {
        url,
        content_type: HeaderValue::from_static("application/json"),
        warmup: warmup_requests.into(),
        measured: measured.into(),
        params: json!({
            "url": args.url.as_str(),
            "viewers": args.viewers,
            "connections": args.run.connections,
            "warmup": warmup,
            "durationSecs": args.run.duration_secs,
            "addresses": args.addresses,
            "threads": args.run.threads,
            "sessionId": seed.session,
        }),
    })
}

/// What was seeded.
struct Seed {
    session: Uuid,
    viewers: Vec<Uuid>,
}

/// One creator, one public live video session, `viewers` plain profiles; one transaction,
/// the viewers in one statement. Names carry a run tag so runs can share a database.
async fn seed(database_url: &str, viewers: usize) -> anyhow::Result<Seed> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("connecting to PostgreSQL (--database-url)")?;
    let connection = tokio::spawn(connection);
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let creator = Uuid::new_v4();
    let session = Uuid::new_v4();
    let viewer_ids: Vec<Uuid> = (0..viewers).map(|_| Uuid::new_v4()).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO profiles (id, username, is_creator) VALUES ($1, $2, true)",
        &[&creator, &format!("loadgen_{tag}_creator")],
    )
    .await
    .context("seeding the creator (has token-issuer migrated this database?)")?;
    tx.execute(
        "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, \
         room_name, started_at) VALUES ($1, $2, $3, 'loadgen join storm', $4, $5, $6, now())",
        &[
            &session,
            &creator,
            &SessionType::VideoLive.as_str(),
            &AccessType::Public.as_str(),
            &SessionStatus::Live.as_str(),
            &session_room(SessionType::VideoLive, SessionId::from(session)),
        ],
    )
    .await
    .context("seeding the live session")?;
    tx.execute(
        "INSERT INTO profiles (id, username) \
         SELECT id, $2 || ord FROM unnest($1::uuid[]) WITH ORDINALITY AS v(id, ord)",
        &[&viewer_ids, &format!("loadgen_{tag}_viewer_")],
    )
    .await
    .context("seeding the viewers")?;
    tx.commit().await.context("committing the seed")?;
    drop(client);
    let _ = connection.await;
    Ok(Seed {
        session,
        viewers: viewer_ids,
    })
}

/// One request per viewer, in order: its own client token, the shared body, and a client
/// address derived from its position.
fn requests(
    jwt_secret: &[u8],
    session: Uuid,
    viewers: &[Uuid],
    addresses: u32,
) -> anyhow::Result<Vec<Prepared>> {
    let body = Bytes::from(serde_json::to_vec(&json!({ "sessionId": session }))?);
    let forwarded_for = HeaderName::from_static("x-forwarded-for");
    viewers
        .iter()
        .enumerate()
        .map(|(index, &viewer)| {
            let token = auth::mint(jwt_secret, viewer, CLIENT_TOKEN_TTL_SECS);
            let mut authorization = HeaderValue::try_from(format!("Bearer {token}"))?;
            authorization.set_sensitive(true);
            let address = HeaderValue::try_from(client_address(index, addresses).to_string())?;
            Ok(Prepared {
                headers: vec![
                    (AUTHORIZATION, authorization),
                    (forwarded_for.clone(), address),
                ],
                body: body.clone(),
            })
        })
        .collect()
}

/// The client address of the viewer at `index`: `10.x.y.z`, cycling through `addresses`
/// consecutive addresses (at most 2^24), so each address carries about
/// `viewers / addresses` viewers, as behind a carrier's NAT.
pub fn client_address(index: usize, addresses: u32) -> Ipv4Addr {
    let spread = u64::from(addresses.clamp(1, 1 << 24));
    let offset = u32::try_from(index as u64 % spread).expect("below 2^24");
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) | offset)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn addresses_spread_and_wrap() {
        let first: HashSet<Ipv4Addr> = (0..4096).map(|i| client_address(i, 4096)).collect();
        assert_eq!(first.len(), 4096);
        assert_eq!(client_address(0, 4096), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(client_address(4095, 4096), Ipv4Addr::new(10, 0, 15, 255));
        assert_eq!(client_address(4096, 4096), client_address(0, 4096));
        assert_eq!(
            client_address(20_000, 4096),
            client_address(20_000 % 4096, 4096)
        );
        assert_eq!(client_address(7, 1), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(
            client_address((1 << 24) - 1, 1 << 24),
            Ipv4Addr::new(10, 255, 255, 255)
        );
        // None is loopback: token-issuer trusts loopback proxies and would skip them.
        assert!(first.iter().all(|a| a.is_private() && !a.is_loopback()));
    }

    #[test]
    fn one_verifiable_token_per_viewer() {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let session = Uuid::new_v4();
        let viewers: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let built = requests(b"bench-secret", session, &viewers, 2).unwrap();
        assert_eq!(built.len(), 3);
        let verifier = auth::JwtVerifier::hs256(b"bench-secret");
        for (i, (request, viewer)) in built.iter().zip(&viewers).enumerate() {
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_str().unwrap().to_owned())
                    .unwrap()
            };
            let caller = verifier
                .verify_header(Some(&header("authorization")))
                .unwrap();
            assert_eq!(caller.user_id, *viewer);
            assert_eq!(header("x-forwarded-for"), client_address(i, 2).to_string());
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(body, json!({ "sessionId": session }));
        }
    }
}
