//! `chat-storm`: every participant of one live session posts chat messages through
//! session-manager (`POST /v1/sessions/{id}/messages`) at once, each more than the
//! `CHAT_RATE_PER_MIN` burst, so the run shows both the posting path (limiter, facts query,
//! the session's counter, the message, its outbox row) and what a refused post costs.
//!
//! Posts go round-robin over the participants (each one's messages spread over the run, as
//! a busy chat looks); 201 and 429 latencies are kept apart. The session and its active
//! participants are seeded in the database directly, as LiveKit's joins would leave them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use domain::ids::SessionId;
use domain::rooms::session_room;
use domain::session::{AccessType, SessionStatus, SessionType};
use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::engine::Outcome;
use crate::report::{LatencyMs, Report};

const CLIENT_TOKEN_TTL_SECS: i64 = 3600;

/// Arguments of `loadgen chat-storm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// session-manager's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub url: reqwest::Url,
    /// The database session-manager uses (the session and its participants are seeded).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ipelya"
    )]
    pub database_url: String,
    /// session-manager's `AUTH_JWT_SECRET`, to mint the participants' client tokens.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Participants of the session, all posting.
    #[arg(long, default_value_t = 1000)]
    pub participants: usize,
    /// Messages each participant posts: above `CHAT_RATE_PER_MIN` (20) some get 429.
    #[arg(long, default_value_t = 30)]
    pub messages: usize,
    /// Concurrent workers, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// Per-request timeout, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Processes whose CPU time is measured (as in the other scenarios). Repeatable.
    #[arg(long = "cpu-watch", value_name = "NAME|NAME:TEXT|LABEL=PID")]
    pub cpu_watch: Vec<crate::cpu::Watch>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// One live public session with `participants` active viewers; returns the session and the
/// viewers. Names carry a run tag so runs can share a database.
async fn seed(database_url: &str, participants: usize) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("connecting to PostgreSQL (--database-url)")?;
    let connection = tokio::spawn(connection);
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let creator = Uuid::new_v4();
    let session = Uuid::now_v7();
    let users: Vec<Uuid> = (0..participants).map(|_| Uuid::new_v4()).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO profiles (id, username, is_creator) VALUES ($1, $2, true)",
        &[&creator, &format!("chatstorm_{tag}_creator")],
    )
    .await
    .context("seeding the creator (has session-manager migrated this database?)")?;
    tx.execute(
        "INSERT INTO live_sessions (id, creator_id, session_type, title, access_type, status, \
         room_name, started_at) VALUES ($1, $2, $3, 'loadgen chat storm', $4, $5, $6, now())",
        &[
            &session,
            &creator,
            &SessionType::VideoLive.as_str(),
            &AccessType::Public.as_str(),
            &SessionStatus::Live.as_str(),
            &session_room(SessionType::VideoLive, SessionId::from(session)),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO profiles (id, username) \
         SELECT id, $2 || ord FROM unnest($1::uuid[]) WITH ORDINALITY AS v(id, ord)",
        &[&users, &format!("chatstorm_{tag}_viewer_")],
    )
    .await?;
    tx.execute(
        "INSERT INTO live_participants (id, session_id, user_id, role, is_active, joined_at, \
         first_joined_at) SELECT gen_random_uuid(), $2, id, 'viewer', true, now(), now() \
         FROM unnest($1::uuid[]) AS v(id)",
        &[&users, &session],
    )
    .await?;
    tx.commit().await.context("committing the seed")?;
    drop(client);
    let _ = connection.await;
    Ok((session, users))
}

async fn total_messages(database_url: &str, session: Uuid) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    let connection = tokio::spawn(connection);
    let n: i64 = client
        .query_one(
            "SELECT total_messages FROM live_sessions WHERE id = $1",
            &[&session],
        )
        .await?
        .get(0);
    drop(client);
    let _ = connection.await;
    Ok(n)
}

/// What one worker measured.
struct Tally {
    posted_us: Histogram<u64>,
    limited_us: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    retry_after_max: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    eprintln!(
        "chat-storm: seeding a live session with {} participants",
        args.participants
    );
    let (session, users) = seed(&args.database_url, args.participants).await?;
    let url = args
        .url
        .join(&format!("/v1/sessions/{session}/messages"))
        .context("building the messages URL")?;
    // Tokens minted before the clock starts; round-robin order: message k of everyone,
    // then message k + 1.
    let tokens: Vec<HeaderValue> = users
        .iter()
        .map(|u| {
            let mut h = HeaderValue::try_from(format!(
                "Bearer {}",
                auth::mint(args.jwt_secret.as_bytes(), *u, CLIENT_TOKEN_TTL_SECS)
            ))?;
            h.set_sensitive(true);
            Ok(h)
        })
        .collect::<anyhow::Result<_>>()?;
    let total = args.participants * args.messages;
    let bodies: Arc<[Bytes]> = (0..args.messages)
        .map(|k| Bytes::from(json!({ "body": format!("chat storm message {k}") }).to_string()))
        .collect();
    let tokens: Arc<[HeaderValue]> = tokens.into();
    let client = crate::engine::client(
        usize::from(args.connections),
        Duration::from_millis(args.timeout_ms),
    )?;
    eprintln!(
        "chat-storm: measuring {total} posts over {} connections",
        args.connections
    );
    let busy_before = crate::cpu::machine_busy(Duration::from_secs(1)).await;
    let cpu_before = crate::cpu::snapshot(&args.cpu_watch);
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            let (tokens, bodies) = (tokens.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut t = Tally {
                    posted_us: histogram(),
                    limited_us: histogram(),
                    errors: BTreeMap::new(),
                    retry_after_max: 0,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (round, who) = (i / tokens.len(), i % tokens.len());
                    let sent = Instant::now();
                    let res = client
                        .post(url.clone())
                        .header(AUTHORIZATION, tokens[who].clone())
                        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(bodies[round].clone())
                        .send()
                        .await;
                    let res = match res {
                        Ok(r) => r,
                        Err(e) => {
                            *t.errors.entry(format!("error: {e}")).or_default() += 1;
                            continue;
                        }
                    };
                    let status = res.status();
                    let retry_after = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    let body = res.bytes().await.unwrap_or_default();
                    let us = sent.elapsed().as_micros().max(1) as u64;
                    match status.as_u16() {
                        201 => t.posted_us.saturating_record(us),
                        429 => {
                            t.limited_us.saturating_record(us);
                            t.retry_after_max = t.retry_after_max.max(retry_after.unwrap_or(0));
                        }
                        _ => {
                            let kind = crate::engine::classify(status, &body)
                                .unwrap_or_else(|| status.as_u16().to_string());
                            *t.errors.entry(kind).or_default() += 1;
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut posted_us = histogram();
    let mut limited_us = histogram();
    let mut errors = BTreeMap::new();
    let mut retry_after_max = 0;
    for w in workers {
        let t = w.await.context("a worker panicked")?;
        posted_us.add(&t.posted_us).expect("same bounds");
        limited_us.add(&t.limited_us).expect("same bounds");
        for (k, n) in t.errors {
            *errors.entry(k).or_default() += n;
        }
        retry_after_max = retry_after_max.max(t.retry_after_max);
    }
    let elapsed = clock.elapsed();
    let cpu =
        crate::cpu::usage(&cpu_before, &crate::cpu::snapshot(&args.cpu_watch)).map(|mut c| {
            c.machine_busy_before_pct = busy_before;
            c
        });
    let posted = posted_us.len();
    let limited = limited_us.len();
    let counted = total_messages(&args.database_url, session).await?;
    let secs = elapsed.as_secs_f64();
    let mut all_errors = errors.clone();
    if limited > 0 {
        all_errors.insert("429 RATE_LIMITED".into(), limited);
    }
    let outcome = Outcome {
        requests: posted + limited + errors.values().sum::<u64>(),
        ok: posted,
        errors: all_errors,
        latency_us: posted_us,
        elapsed,
    };
    let params = json!({
        "url": args.url.as_str(),
        "participants": args.participants,
        "messagesPerParticipant": args.messages,
        "connections": args.connections,
        "threads": args.threads,
        "sessionId": session,
        "measures": "POST /v1/sessions/{id}/messages, all participants of one live session round-robin; latencyMs is of the 201s",
        "posted201": posted,
        "rateLimited429": limited,
        "postedPerSec": if secs > 0.0 { (posted as f64 / secs).round() } else { 0.0 },
        "rateLimitedLatencyMs": LatencyMs::from_micros(&limited_us),
        "retryAfterMaxSecs": retry_after_max,
        "sessionTotalMessages": counted,
    });
    if counted != posted as i64 {
        eprintln!("chat-storm: warning: total_messages is {counted}, {posted} posts answered 201");
    }
    let report = Report::new("chat-storm", started_at, params, &outcome, cpu);
    let summary = format!(
        "{}; 201 ×{posted} ({:.0}/s), 429 ×{limited} (p50 {:.2} ms, p99 {:.2} ms)",
        report.summary(),
        if secs > 0.0 {
            posted as f64 / secs
        } else {
            0.0
        },
        LatencyMs::from_micros(&limited_us).p50,
        LatencyMs::from_micros(&limited_us).p99,
    );
    match &args.out {
        Some(path) => {
            report.write(path)?;
            println!("{summary}");
            eprintln!("chat-storm: report written to {}", path.display());
        }
        None => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{summary}");
        }
    }
    Ok(())
}
