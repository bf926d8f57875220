//! The reads and the one write of `POST /v1/tokens`. The session check chain reads every
//! fact it needs in ONE round trip (`session_facts`); pay-per-view charges in one
//! transaction (`charge_pay_per_view`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::schema::{coin_transactions, coin_wallets, live_payments};

/// Everything the check chain needs about one user and one session.
#[derive(Debug, Clone, QueryableByName)]
pub struct SessionFactsRow {
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = Bool)]
    pub globally_banned: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub status: Option<String>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub creator_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub session_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub access_type: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::BigInt>)]
    pub price_coins: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub room_name: Option<String>,
    #[diesel(sql_type = Bool)]
    pub session_banned: bool,
    #[diesel(sql_type = Bool)]
    pub creator_banned: bool,
    #[diesel(sql_type = Bool)]
    pub subscribed: bool,
    #[diesel(sql_type = Bool)]
    pub paid: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub participant_role: Option<String>,
}

/// The facts for `user` joining `session`; `None` when the user has no profile.
///
/// One statement, one round trip, written with diesel's query builder so that its prepared
/// statement is cached per connection (a raw `sql_query` is parsed and planned anew each
/// time, which costs the join storm more than the query itself).
pub async fn session_facts(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    session: Uuid,
) -> DbResult<Option<SessionFactsRow>> {
    use crate::schema::{
        creator_bans as cb, creator_subscriptions as cs, live_participants as lpa,
        live_payments as pay, live_session_bans as lsb, live_sessions as ls, profiles as p,
    };
    use diesel::dsl::exists;
    let clock = Utc::now();
    let creator_of = diesel::alias!(crate::schema::live_sessions as creator_of);
    let creator = creator_of
        .filter(creator_of.field(ls::id).eq(session))
        .select(creator_of.field(ls::creator_id))
        .single_value();
    let row = p::table
        .left_join(ls::table.on(ls::id.eq(session)))
        .filter(p::id.eq(user))
        .select((
            p::username,
            p::banned_until.gt(clock),
            ls::status.nullable(),
            ls::creator_id.nullable(),
            ls::session_type.nullable(),
            ls::access_type.nullable(),
            ls::price_coins.nullable(),
            ls::room_name.nullable(),
            exists(
                lsb::table
                    .filter(lsb::session_id.eq(session))
                    .filter(lsb::user_id.eq(user)),
            ),
            exists(
                cb::table
                    .filter(cb::creator_id.nullable().eq(creator))
                    .filter(cb::user_id.eq(user)),
            ),
            exists(
                cs::table
                    .filter(cs::subscriber_id.eq(user))
                    .filter(cs::creator_id.nullable().eq(creator))
                    .filter(cs::status.eq("active"))
                    .filter(cs::expires_at.is_null().or(cs::expires_at.gt(clock))),
            ),
            exists(
                pay::table
                    .filter(pay::session_id.eq(session))
                    .filter(pay::viewer_id.eq(user)),
            ),
            lpa::table
                .filter(lpa::session_id.eq(session))
                .filter(lpa::user_id.eq(user))
                .select(lpa::role)
                .single_value(),
        ))
        .first::<(
            String,
            Option<bool>,
            Option<String>,
            Option<Uuid>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            bool,
            bool,
            bool,
            bool,
            Option<String>,
        )>(conn)
        .await
        .optional()?;
    Ok(row.map(|r| SessionFactsRow {
        username: r.0,
        globally_banned: r.1.unwrap_or(false),
        status: r.2,
        creator_id: r.3,
        session_type: r.4,
        access_type: r.5,
        price_coins: r.6,
        room_name: r.7,
        session_banned: r.8,
        creator_banned: r.9,
        subscribed: r.10,
        paid: r.11,
        participant_role: r.12,
    }))
}

/// Everything a call token needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct CallFactsRow {
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = Bool)]
    pub globally_banned: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub caller_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub callee_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub call_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub room_name: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub created_at: Option<DateTime<Utc>>,
}

const CALL_FACTS: &str = "
SELECT p.username, COALESCE(p.banned_until > now(), false) AS globally_banned,
       c.caller_id, c.callee_id, c.call_type, c.status, c.room_name, c.created_at
FROM profiles p
LEFT JOIN calls c ON c.id = $2
WHERE p.id = $1";

/// The facts for `user` joining `call`; `None` when the user has no profile.
pub async fn call_facts(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    call: Uuid,
) -> DbResult<Option<CallFactsRow>> {
    Ok(diesel::sql_query(CALL_FACTS)
        .bind::<SqlUuid, _>(user)
        .bind::<SqlUuid, _>(call)
        .get_result(conn)
        .await
        .optional()?)
}

/// What a pay-per-view charge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged,
    /// A concurrent request paid first: nothing charged again.
    AlreadyPaid,
    InsufficientFunds,
}

/// A pay-per-view purchase.
#[derive(Debug, Clone, Copy)]
pub struct PayPerView {
    pub session: Uuid,
    pub viewer: Uuid,
    pub host: Uuid,
    pub price: i64,
    pub host_share: i64,
}

/// Charges a pay-per-view join once, atomically: the payment row (unique per viewer and
/// session, so a concurrent second request waits and then finds it), the viewer's debit
/// (refused below zero), the host's credit, and a ledger row for each side.
pub async fn charge_pay_per_view(
    conn: &mut AsyncPgConnection,
    ppv: PayPerView,
) -> DbResult<ChargeOutcome> {
    let outcome = conn
        .transaction::<ChargeOutcome, diesel::result::Error, _>(async |c| {
            let inserted = diesel::insert_into(live_payments::table)
                .values((
                    live_payments::id.eq(Uuid::now_v7()),
                    live_payments::session_id.eq(ppv.session),
                    live_payments::viewer_id.eq(ppv.viewer),
                    live_payments::amount.eq(ppv.price),
                    live_payments::host_share.eq(ppv.host_share),
                ))
                .on_conflict_do_nothing()
                .execute(c)
                .await?;
            if inserted == 0 {
                return Ok(ChargeOutcome::AlreadyPaid);
            }
            crate::queries::profiles::lock_wallets(c, ppv.viewer, ppv.host).await?;
            let debited = diesel::update(
                coin_wallets::table
                    .filter(coin_wallets::user_id.eq(ppv.viewer))
                    .filter(coin_wallets::balance.ge(ppv.price)),
            )
            .set((
                coin_wallets::balance.eq(coin_wallets::balance - ppv.price),
                coin_wallets::updated_at.eq(diesel::dsl::now),
            ))
            .execute(c)
            .await?;
            if debited == 0 {
                // Undo the payment row: the whole transaction rolls back.
                return Err(diesel::result::Error::RollbackTransaction);
            }
            let mut ledger = vec![(
                coin_transactions::user_id.eq(ppv.viewer),
                coin_transactions::amount.eq(-ppv.price),
                coin_transactions::kind.eq("ppv_purchase"),
                coin_transactions::ref_id.eq(Some(ppv.session)),
            )];
            if ppv.host_share > 0 {
                diesel::insert_into(coin_wallets::table)
                    .values((
                        coin_wallets::user_id.eq(ppv.host),
                        coin_wallets::balance.eq(ppv.host_share),
                    ))
                    .on_conflict(coin_wallets::user_id)
                    .do_update()
                    .set((
                        coin_wallets::balance.eq(coin_wallets::balance + ppv.host_share),
                        coin_wallets::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(c)
                    .await?;
                ledger.push((
                    coin_transactions::user_id.eq(ppv.host),
                    coin_transactions::amount.eq(ppv.host_share),
                    coin_transactions::kind.eq("ppv_revenue"),
                    coin_transactions::ref_id.eq(Some(ppv.session)),
                ));
            }
            diesel::insert_into(coin_transactions::table)
                .values(&ledger)
                .execute(c)
                .await?;
            Ok(ChargeOutcome::Charged)
        })
        .await;
    match outcome {
        Err(diesel::result::Error::RollbackTransaction) => Ok(ChargeOutcome::InsufficientFunds),
        other => Ok(other?),
    }
}
