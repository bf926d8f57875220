//! The scripted workload of one trial: creators run sessions (viewers join, pay, gift,
//! leave and come back; hosts end, drop for good, drop and return, pause; one never shows
//! up), pairs of users call each other (answered and hung up, left, dropped, rejected,
//! cancelled, missed, no device, answered and never joined). Every choice comes from the
//! trial's seeded RNG. The actors start a little apart and go on until the trial's last
//! fault is over, so that every fault lands in the middle of the work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::{Answer, Api, GaveUp};
use crate::record::{
    Ack, CallPlan, CallRecord, GiftRecord, Party, Record, SessionPlan, SessionRecord, TokenRecord,
};

/// Coins in each viewer's wallet at the start.
pub const VIEWER_COINS: i64 = 5_000;

/// The gifts of the catalogue the migrations seed: (id, coins).
const GIFTS: [(&str, i64); 4] = [
    ("0190e7a0-0000-7000-8000-000000000001", 1),
    ("0190e7a0-0000-7000-8000-000000000002", 5),
    ("0190e7a0-0000-7000-8000-000000000003", 10),
    ("0190e7a0-0000-7000-8000-000000000004", 100),
];

/// The users of a trial, seeded straight into its database (they are the app's tables).
#[derive(Debug, Clone)]
pub struct Cast {
    pub creators: Vec<(Uuid, SessionPlan)>,
    pub viewers: Vec<Uuid>,
    pub pairs: Vec<(Uuid, Uuid, CallPlan)>,
    /// For the LiveKit probes: a creator and a pair.
    pub probe_creator: Uuid,
    pub probe_pair: (Uuid, Uuid),
}

/// Creates the cast: profiles, wallets (each with its `top_up` ledger row, so every
/// balance equals the sum of its ledger), follows and push devices.
pub async fn seed(db: &tokio_postgres::Client, rng: &mut StdRng) -> anyhow::Result<(Cast, i64)> {
    let mut session_plans = vec![
        SessionPlan::HostEnds,
        SessionPlan::HostDrops,
        SessionPlan::HostReturns,
        SessionPlan::PauseResume,
        SessionPlan::NoShow,
    ];
    session_plans.push(
        *[SessionPlan::HostEnds, SessionPlan::HostDrops]
            .choose(rng)
            .expect("plans"),
    );
    session_plans.shuffle(rng);
    let mut call_plans = vec![
        CallPlan::Hangup(random_party(rng)),
        CallPlan::Leave(random_party(rng)),
        CallPlan::Drop(random_party(rng)),
        CallPlan::Reject,
        CallPlan::Cancel,
        CallPlan::Miss,
        CallPlan::NoDevice,
        CallPlan::NoJoin,
    ];
    call_plans.shuffle(rng);
    let mut n = 0;
    let mut user = async |prefix: &str, creator: bool| -> anyhow::Result<Uuid> {
        n += 1;
        let id = Uuid::new_v4();
        db.execute(
            "INSERT INTO profiles (id, username, is_creator) VALUES ($1, $2, $3)",
            &[&id, &format!("{prefix}{n}"), &creator],
        )
        .await?;
        Ok(id)
    };
    let mut creators = Vec::new();
    for plan in session_plans {
        creators.push((user("creator", true).await?, plan));
    }
    let mut viewers = Vec::new();
    for _ in 0..6 {
        viewers.push(user("viewer", false).await?);
    }
    let mut pairs = Vec::new();
    for plan in call_plans {
        pairs.push((
            user("caller", false).await?,
            user("callee", false).await?,
            plan,
        ));
    }
    let probe_creator = user("probe", true).await?;
    let probe_pair = (
        user("probecaller", false).await?,
        user("probecallee", false).await?,
    );
    let mut total = 0;
    for v in &viewers {
        db.execute(
            "INSERT INTO coin_wallets (user_id, balance) VALUES ($1, $2)",
            &[v, &VIEWER_COINS],
        )
        .await?;
        db.execute(
            "INSERT INTO coin_transactions (user_id, amount, kind) VALUES ($1, $2, 'top_up')",
            &[v, &VIEWER_COINS],
        )
        .await?;
        total += VIEWER_COINS;
        // Each viewer follows one or two creators and has a phone for their pushes.
        let follows = rng.random_range(1..=2);
        for (c, _) in creators.choose_multiple(rng, follows) {
            db.execute(
                "INSERT INTO follows (follower_id, creator_id) VALUES ($1, $2)",
                &[v, c],
            )
            .await?;
        }
        device(db, *v, "android", "standard").await?;
    }
    for (c, _) in &creators {
        device(db, *c, "android", "standard").await?;
    }
    for (_, callee, plan) in &pairs {
        if *plan != CallPlan::NoDevice {
            device(db, *callee, "ios", "voip").await?;
        }
    }
    device(db, probe_pair.1, "ios", "voip").await?;
    Ok((
        Cast {
            creators,
            viewers,
            pairs,
            probe_creator,
            probe_pair,
        },
        total,
    ))
}

async fn device(
    db: &tokio_postgres::Client,
    user: Uuid,
    platform: &str,
    kind: &str,
) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO push_devices (id, user_id, platform, kind, token) VALUES ($1, $2, $3, $4, $5)",
        &[
            &Uuid::new_v4(),
            &user,
            &platform,
            &kind,
            &format!("tok-{}", Uuid::new_v4().simple()),
        ],
    )
    .await?;
    Ok(())
}

/// A database lookup that survives the cluster's restart: the app would reload its state
/// from the API; the suite asks the database for the one thing the API does not list (the
/// id of a resource whose creation answer was lost).
#[derive(Clone)]
pub struct Lookup {
    pub url: String,
}

impl Lookup {
    pub async fn id(&self, sql: &str, a: Uuid, b: Option<Uuid>) -> Option<Uuid> {
        for _ in 0..60 {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await
            {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let rows = match b {
                    Some(b) => client.query(sql, &[&a, &b]).await,
                    None => client.query(sql, &[&a]).await,
                };
                if let Ok(rows) = rows {
                    return rows.first().map(|r| r.get(0));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }
}

/// What one scenario produced.
#[derive(Default)]
struct Out {
    sessions: Vec<SessionRecord>,
    calls: Vec<CallRecord>,
    gifts: Vec<GiftRecord>,
    tokens: Vec<TokenRecord>,
    gave_up: Vec<String>,
}

impl Out {
    fn merge(&mut self, o: Out) {
        self.sessions.extend(o.sessions);
        self.calls.extend(o.calls);
        self.gifts.extend(o.gifts);
        self.tokens.extend(o.tokens);
        self.gave_up.extend(o.gave_up);
    }

    /// Keeps the answer's ack, noting a give-up.
    fn ack(&mut self, what: &str, r: &Result<Answer, GaveUp>) -> Ack {
        if let Err(e) = r {
            self.gave_up.push(format!("{what}: {e}"));
        }
        Ack::of(r)
    }
}

/// Runs every actor of the cast at once, each from its own start offset: a creator runs
/// sessions one after the other (its first with its cast plan, then plans at random), a
/// pair calls again and again, until `stop` is set; each then finishes the scenario at
/// hand. Between two scenarios an actor waits for the previous session or call to end (a
/// creator has one session at a time, a party one call). Returns the record.
pub async fn run(
    api: &Api,
    lookup: &Lookup,
    cast: &Cast,
    seed: u64,
    spread: Duration,
    stop: Arc<AtomicBool>,
) -> Record {
    let mut tasks = tokio::task::JoinSet::new();
    let mut rng = StdRng::seed_from_u64(seed);
    for (creator, first) in cast.creators.iter().copied() {
        let (api, lookup, stop) = (api.clone(), lookup.clone(), stop.clone());
        let viewers = cast.viewers.clone();
        let mut rng = StdRng::seed_from_u64(rng.random());
        let start = spread.mul_f64(rng.random_range(0.0..1.0));
        tasks.spawn(async move {
            tokio::time::sleep(start).await;
            let mut out = Out::default();
            let mut plan = first;
            loop {
                let k = rng.random_range(2..=4);
                let audience = viewers.choose_multiple(&mut rng, k).copied().collect();
                let o = session(&api, &lookup, creator, plan, audience, &mut rng).await;
                let id = o.sessions.last().and_then(|r| r.id);
                out.merge(o);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = format!(
                    "{}/v1/sessions/{}",
                    api.urls.session_manager,
                    id.unwrap_or_default()
                );
                if id.is_none()
                    || wait_status(
                        &api,
                        creator,
                        &url,
                        "session",
                        Duration::from_secs(40),
                        |s| s == "ended",
                    )
                    .await
                        != "ended"
                {
                    break; // a session that does not end: the checker will say so
                }
                plan = *SESSION_PLANS.choose(&mut rng).expect("plans");
                sleep_ms(&mut rng, 100, 1000).await;
            }
            out
        });
    }
    for (caller, callee, first) in cast.pairs.iter().copied() {
        let (api, lookup, stop) = (api.clone(), lookup.clone(), stop.clone());
        let mut rng = StdRng::seed_from_u64(rng.random());
        let start = spread.mul_f64(rng.random_range(0.0..1.0));
        tasks.spawn(async move {
            tokio::time::sleep(start).await;
            let mut out = Out::default();
            let mut plan = first;
            loop {
                let o = call(&api, &lookup, caller, callee, plan, &mut rng).await;
                let id = o.calls.last().and_then(|r| r.id);
                out.merge(o);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let url = format!(
                    "{}/v1/calls/{}",
                    api.urls.call_signaling,
                    id.unwrap_or_default()
                );
                let over = |s: &str| {
                    s.parse::<domain::call::CallStatus>()
                        .is_ok_and(|s| s.is_terminal())
                };
                if id.is_none()
                    || !over(
                        &wait_status(&api, caller, &url, "call", Duration::from_secs(40), over)
                            .await,
                    )
                {
                    break;
                }
                // The pair without a device can only fail the push; the others never do.
                if plan != CallPlan::NoDevice {
                    plan = random_call_plan(&mut rng);
                }
                sleep_ms(&mut rng, 100, 1000).await;
            }
            out
        });
    }
    let mut record = Record::default();
    while let Some(done) = tasks.join_next().await {
        let out = done.expect("a scenario panicked");
        record.sessions.extend(out.sessions);
        record.calls.extend(out.calls);
        record.gifts.extend(out.gifts);
        record.tokens.extend(out.tokens);
        record.gave_up.extend(out.gave_up);
    }
    record
}

/// The plans a creator draws from after its first session.
const SESSION_PLANS: [SessionPlan; 5] = [
    SessionPlan::HostEnds,
    SessionPlan::HostDrops,
    SessionPlan::HostReturns,
    SessionPlan::PauseResume,
    SessionPlan::NoShow,
];

fn random_party(rng: &mut StdRng) -> Party {
    if rng.random_bool(0.5) {
        Party::Caller
    } else {
        Party::Callee
    }
}

fn random_call_plan(rng: &mut StdRng) -> CallPlan {
    match rng.random_range(0..7) {
        0 => CallPlan::Hangup(random_party(rng)),
        1 => CallPlan::Leave(random_party(rng)),
        2 => CallPlan::Drop(random_party(rng)),
        3 => CallPlan::Reject,
        4 => CallPlan::Cancel,
        5 => CallPlan::Miss,
        _ => CallPlan::NoJoin,
    }
}

fn sleep_ms(rng: &mut StdRng, lo: u64, hi: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(rng.random_range(lo..=hi)))
}

const ACTIVE_SESSION: &str = "SELECT id FROM live_sessions WHERE creator_id = $1 AND status <> 'ended' ORDER BY created_at DESC LIMIT 1";
const ACTIVE_CALL: &str = "SELECT id FROM calls WHERE caller_id = $1 AND callee_id = $2 AND status <> 'busy' ORDER BY created_at DESC LIMIT 1";

/// `POST /v1/sessions`; a `409 CONFLICT` on a retry means the first attempt was stored and
/// its answer lost: the session is the creator's current one.
async fn create_session(
    api: &Api,
    lookup: &Lookup,
    out: &mut Out,
    rec: &mut SessionRecord,
    body: Value,
) {
    let url = format!("{}/v1/sessions", api.urls.session_manager);
    let r = api.post(rec.creator, url, body).await;
    rec.create = out.ack("create session", &r);
    match &r {
        Ok(a) if a.ok() => {
            rec.id = a.body["session"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
        }
        Ok(a) if a.code() == "CONFLICT" && a.attempts > 1 => {
            rec.id = lookup.id(ACTIVE_SESSION, rec.creator, None).await;
            rec.create = Ack::Ok;
        }
        _ => {}
    }
}

/// A token for the session or call (its request's answer), then the simulated participant
/// joins with it (the token, once in the room).
async fn join(
    api: &Api,
    out: &mut Out,
    user: Uuid,
    target: Value,
    what: &str,
) -> (Ack, Option<String>) {
    let r = api
        .post(user, format!("{}/v1/tokens", api.urls.token_issuer), target)
        .await;
    let ack = out.ack(what, &r);
    let Some(token) = r
        .ok()
        .filter(Answer::ok)
        .and_then(|a| Some(a.body["token"].as_str()?.to_owned()))
    else {
        return (ack, None);
    };
    let joined = api.sim("/sim/join", json!({ "token": token })).await;
    out.ack("sim join", &joined);
    (ack, joined.ok().filter(Answer::ok).map(|_| token))
}

async fn sim_exit(api: &Api, how: &str, room: &str, user: Uuid) -> bool {
    api.sim(how, json!({ "room": room, "identity": user.to_string() }))
        .await
        .is_ok_and(|a| a.ok())
}

/// Polls the resource until `done(status)` or `within` passes; returns the last status.
async fn wait_status(
    api: &Api,
    user: Uuid,
    url: &str,
    field: &str,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::new();
    loop {
        if let Ok(a) = api.get(user, url.to_owned()).await
            && a.ok()
        {
            last = a.body[field]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if done(&last) {
                return last;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn session(
    api: &Api,
    lookup: &Lookup,
    creator: Uuid,
    plan: SessionPlan,
    viewers: Vec<Uuid>,
    rng: &mut StdRng,
) -> Out {
    let mut out = Out::default();
    let mut rec = SessionRecord::new(creator, plan);
    let video = rng.random_bool(0.6);
    let price = rng.random_bool(0.5).then(|| rng.random_range(10..=50_i64));
    let mut body = json!({
        "sessionType": if video { "video_live" } else { "audio_room" },
        "title": format!("fault suite {plan:?}"),
        "accessType": if price.is_some() { "pay_per_view" } else { "public" },
    });
    if let Some(p) = price {
        body["priceCoins"] = p.into();
    }
    create_session(api, lookup, &mut out, &mut rec, body).await;
    let Some(id) = rec.id else {
        out.sessions.push(rec);
        return out;
    };
    if plan == SessionPlan::NoShow {
        out.sessions.push(rec);
        return out;
    }
    let sm = api.urls.session_manager.clone();
    let session_url = format!("{sm}/v1/sessions/{id}");
    let room = format!("{}_{id}", if video { "live_video" } else { "audio_room" });
    let target = json!({ "sessionId": id });
    let (_, host_token) = join(api, &mut out, creator, target.clone(), "host token").await;
    rec.host_joined = host_token.is_some();
    wait_status(
        api,
        creator,
        &session_url,
        "session",
        Duration::from_secs(20),
        |s| s == "live",
    )
    .await;
    // The audience: each viewer joins (paying once on a pay-per-view session), gifts, and
    // may leave and come back (a re-join is never charged again).
    let mut audience = Vec::new();
    for v in viewers {
        let (api, target, room) = (api.clone(), target.clone(), room.clone());
        let mut rng = StdRng::seed_from_u64(rng.random());
        audience.push(tokio::spawn(async move {
            let mut out = Out::default();
            sleep_ms(&mut rng, 0, 800).await;
            let (ack, joined) = join(&api, &mut out, v, target.clone(), "viewer token").await;
            out.tokens.push(TokenRecord {
                user: v,
                session: id,
                ack,
            });
            if joined.is_none() {
                return out;
            }
            for _ in 0..rng.random_range(0..=3) {
                sleep_ms(&mut rng, 100, 600).await;
                gift(&api, &mut out, v, id, &mut rng).await;
            }
            if rng.random_bool(0.4) && sim_exit(&api, "/sim/leave", &room, v).await {
                sleep_ms(&mut rng, 100, 500).await;
                let (ack, _) = join(&api, &mut out, v, target.clone(), "viewer token again").await;
                out.tokens.push(TokenRecord {
                    user: v,
                    session: id,
                    ack,
                });
            }
            out
        }));
    }
    for a in audience {
        let o = a.await.expect("a viewer panicked");
        out.tokens.extend(o.tokens);
        out.gifts.extend(o.gifts);
        out.gave_up.extend(o.gave_up);
    }
    sleep_ms(rng, 200, 1500).await;
    let end_url = format!("{session_url}/end");
    match plan {
        SessionPlan::HostDrops => {
            rec.host_dropped_for_good = sim_exit(api, "/sim/drop", &room, creator).await;
        }
        SessionPlan::HostReturns => {
            if sim_exit(api, "/sim/drop", &room, creator).await
                && let Some(token) = &host_token
            {
                sleep_ms(rng, 200, 700).await;
                let back = api.sim("/sim/join", json!({ "token": token })).await;
                out.ack("host rejoin", &back);
                wait_status(
                    api,
                    creator,
                    &session_url,
                    "session",
                    Duration::from_secs(15),
                    |s| s == "live",
                )
                .await;
                sleep_ms(rng, 300, 1000).await;
            }
            let r = api.post(creator, end_url, json!({})).await;
            rec.end = out.ack("end session", &r);
        }
        SessionPlan::PauseResume => {
            let r = api
                .post(creator, format!("{session_url}/pause"), json!({}))
                .await;
            rec.pause = out.ack("pause", &r);
            sleep_ms(rng, 300, 1200).await;
            let r = api
                .post(creator, format!("{session_url}/resume"), json!({}))
                .await;
            rec.resume = out.ack("resume", &r);
            sleep_ms(rng, 200, 800).await;
            let r = api.post(creator, end_url, json!({})).await;
            rec.end = out.ack("end session", &r);
        }
        SessionPlan::HostEnds | SessionPlan::NoShow | SessionPlan::Probe => {
            let r = api.post(creator, end_url, json!({})).await;
            rec.end = out.ack("end session", &r);
        }
    }
    out.sessions.push(rec);
    out
}

/// One gift with its own `Idempotency-Key`, retried with the same key. A viewer LiveKit
/// has not yet been reported in (403) tries again shortly with a new key: a refusal is
/// stored with its key and replayed.
async fn gift(api: &Api, out: &mut Out, sender: Uuid, session: Uuid, rng: &mut StdRng) {
    let (gift_id, _) = GIFTS[rng.random_range(0..GIFTS.len())];
    let url = format!("{}/v1/sessions/{session}/gifts", api.urls.session_manager);
    for _ in 0..20 {
        let key = format!("gift-{}", Uuid::new_v4().simple());
        let r = api
            .send(
                Some(sender),
                reqwest::Method::POST,
                &url,
                Some(&json!({ "giftId": gift_id })),
                Some(&key),
            )
            .await;
        let ack = out.ack("gift", &r);
        let gift_row = r
            .as_ref()
            .ok()
            .filter(|a| a.ok())
            .and_then(|a| a.body["gift"]["id"].as_str()?.parse().ok());
        let retry = matches!(&ack, Ack::Refused(code) if code == "FORBIDDEN");
        out.gifts.push(GiftRecord {
            sender,
            session,
            key,
            ack,
            gift_row,
        });
        if !retry {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn call(
    api: &Api,
    lookup: &Lookup,
    caller: Uuid,
    callee: Uuid,
    plan: CallPlan,
    rng: &mut StdRng,
) -> Out {
    let mut out = Out::default();
    let mut rec = CallRecord::new(caller, callee, plan);
    let cs = api.urls.call_signaling.clone();
    let video = rng.random_bool(0.5);
    let r = api
        .post(
            caller,
            format!("{cs}/v1/calls"),
            json!({ "calleeId": callee, "callType": if video { "video_call" } else { "audio_call" } }),
        )
        .await;
    rec.initiate = out.ack("initiate call", &r);
    let mut room = String::new();
    match &r {
        Ok(a) if a.ok() => {
            rec.id = a.body["call"]["id"].as_str().and_then(|s| s.parse().ok());
            room = a.body["call"]["roomName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        // The first attempt was stored and its answer lost: the parties are busy with it.
        Ok(a) if a.code() == "BUSY" && a.attempts > 1 => {
            rec.id = lookup.id(ACTIVE_CALL, caller, Some(callee)).await;
            rec.initiate = Ack::Ok;
        }
        _ => {}
    }
    let Some(id) = rec.id else {
        out.calls.push(rec);
        return out;
    };
    let call_url = format!("{cs}/v1/calls/{id}");
    if room.is_empty()
        && let Ok(a) = api.get(caller, call_url.clone()).await
    {
        room = a.body["call"]["roomName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    if plan == CallPlan::NoDevice {
        out.calls.push(rec);
        return out;
    }
    let status = wait_status(
        api,
        caller,
        &call_url,
        "call",
        Duration::from_secs(15),
        |s| s != "initiated",
    )
    .await;
    if status != "ringing" {
        out.calls.push(rec);
        return out;
    }
    sleep_ms(rng, 100, 800).await;
    match plan {
        CallPlan::Reject => {
            let r = api
                .post(callee, format!("{call_url}/reject"), json!({}))
                .await;
            rec.reject = out.ack("reject", &r);
        }
        CallPlan::Cancel => {
            let r = api
                .post(caller, format!("{call_url}/cancel"), json!({}))
                .await;
            rec.cancel = out.ack("cancel", &r);
        }
        CallPlan::Miss | CallPlan::NoDevice | CallPlan::Probe => {}
        CallPlan::NoJoin | CallPlan::Hangup(_) | CallPlan::Leave(_) | CallPlan::Drop(_) => {
            let r = api
                .post(callee, format!("{call_url}/accept"), json!({}))
                .await;
            rec.accept = out.ack("accept", &r);
            if rec.accept != Ack::Ok || plan == CallPlan::NoJoin {
                out.calls.push(rec);
                return out;
            }
            let target = json!({ "callId": id });
            let (_, a) = join(api, &mut out, caller, target.clone(), "caller token").await;
            let (_, b) = join(api, &mut out, callee, target, "callee token").await;
            rec.both_joined = a.is_some() && b.is_some();
            let s = wait_status(
                api,
                caller,
                &call_url,
                "call",
                Duration::from_secs(15),
                |s| s == "live",
            )
            .await;
            rec.seen_live = s == "live";
            sleep_ms(rng, 300, 1500).await;
            let who = |p: Party| if p == Party::Caller { caller } else { callee };
            match plan {
                CallPlan::Hangup(p) => {
                    let r = api.post(who(p), format!("{call_url}/end"), json!({})).await;
                    rec.end = out.ack("end call", &r);
                }
                CallPlan::Leave(p) => {
                    rec.departed = sim_exit(api, "/sim/leave", &room, who(p)).await
                }
                CallPlan::Drop(p) => rec.departed = sim_exit(api, "/sim/drop", &room, who(p)).await,
                _ => {}
            }
        }
    }
    out.calls.push(rec);
    out
}

/// The LiveKit probes: one attempt that needs LiveKit each, measured.
pub struct Probe {
    pub what: &'static str,
    pub answer: Result<Answer, String>,
    pub elapsed: Duration,
}

/// One unretried `POST /v1/sessions` and one `POST /v1/calls` during a LiveKit fault.
pub async fn probe(api: &Api, cast: &Cast) -> Vec<Probe> {
    let session = async {
        let started = std::time::Instant::now();
        let answer = api
            .once(
                Some(cast.probe_creator),
                reqwest::Method::POST,
                &format!("{}/v1/sessions", api.urls.session_manager),
                Some(
                    &json!({"sessionType": "video_live", "title": "probe", "accessType": "public"}),
                ),
                None,
            )
            .await;
        Probe {
            what: "POST /v1/sessions",
            answer,
            elapsed: started.elapsed(),
        }
    };
    let call = async {
        let started = std::time::Instant::now();
        let answer = api
            .once(
                Some(cast.probe_pair.0),
                reqwest::Method::POST,
                &format!("{}/v1/calls", api.urls.call_signaling),
                Some(&json!({"calleeId": cast.probe_pair.1, "callType": "audio_call"})),
                None,
            )
            .await;
        Probe {
            what: "POST /v1/calls",
            answer,
            elapsed: started.elapsed(),
        }
    };
    let (a, b) = tokio::join!(session, call);
    vec![a, b]
}

/// After the fault is lifted, the probes' resources converge: the probe session exists (it
/// is created now if the probe's attempt failed) and its host ends it; the probe call
/// exists and its caller cancels it.
pub async fn finish_probes(api: &Api, lookup: &Lookup, cast: &Cast) -> ProbeRecords {
    let mut out = Out::default();
    let mut s = SessionRecord::new(cast.probe_creator, SessionPlan::Probe);
    s.id = lookup.id(ACTIVE_SESSION, cast.probe_creator, None).await;
    if s.id.is_none() {
        create_session(
            api,
            lookup,
            &mut out,
            &mut s,
            json!({"sessionType": "video_live", "title": "probe", "accessType": "public"}),
        )
        .await;
    } else {
        s.create = Ack::Ok;
    }
    if let Some(id) = s.id {
        let r = api
            .post(
                cast.probe_creator,
                format!("{}/v1/sessions/{id}/end", api.urls.session_manager),
                json!({}),
            )
            .await;
        s.end = out.ack("end probe session", &r);
    }
    let (caller, callee) = cast.probe_pair;
    let mut c = CallRecord::new(caller, callee, CallPlan::Probe);
    c.id = lookup.id(ACTIVE_CALL, caller, Some(callee)).await;
    let cs = api.urls.call_signaling.clone();
    if c.id.is_none() {
        let r = api
            .post(
                caller,
                format!("{cs}/v1/calls"),
                json!({"calleeId": callee, "callType": "audio_call"}),
            )
            .await;
        c.initiate = out.ack("initiate probe call", &r);
        c.id = r
            .ok()
            .filter(Answer::ok)
            .and_then(|a| a.body["call"]["id"].as_str()?.parse().ok());
    } else {
        c.initiate = Ack::Ok;
    }
    if let Some(id) = c.id {
        let r = api
            .post(caller, format!("{cs}/v1/calls/{id}/cancel"), json!({}))
            .await;
        c.cancel = out.ack("cancel probe call", &r);
    }
    ProbeRecords {
        session: s,
        call: c,
        gave_up: out.gave_up,
    }
}

/// The probes' records.
pub struct ProbeRecords {
    pub session: SessionRecord,
    pub call: CallRecord,
    pub gave_up: Vec<String>,
}
