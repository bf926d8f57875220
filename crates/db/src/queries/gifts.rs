//! The gift catalogue and sending a gift: the sender's debit, the host's credit, the gift
//! row, a ledger row for each side and the session's counters, in the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::schema::{coin_transactions, coin_wallets, gift_catalog, live_gifts, live_sessions};

/// A gift of the catalogue.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gift_catalog, check_for_backend(diesel::pg::Pg))]
pub struct CatalogGift {
    pub id: Uuid,
    pub name: String,
    pub coin_price: i64,
}

/// A sent gift as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = live_gifts, check_for_backend(diesel::pg::Pg))]
pub struct SentGift {
    pub id: Uuid,
    pub session_id: Uuid,
    pub sender_id: Uuid,
    pub recipient_id: Uuid,
    pub gift_id: Uuid,
    pub coins: i64,
    pub host_share: i64,
    pub platform_share: i64,
    pub created_at: DateTime<Utc>,
}

/// The gifts on offer, in the catalogue's order.
pub async fn catalogue(conn: &mut AsyncPgConnection) -> DbResult<Vec<CatalogGift>> {
    Ok(gift_catalog::table
        .filter(gift_catalog::active.eq(true))
        .order((gift_catalog::sort_order.asc(), gift_catalog::name.asc()))
        .select(CatalogGift::as_select())
        .load(conn)
        .await?)
}

/// One gift on offer (a withdrawn one is unknown).
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<CatalogGift>> {
    Ok(gift_catalog::table
        .filter(gift_catalog::id.eq(id))
        .filter(gift_catalog::active.eq(true))
        .select(CatalogGift::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The session's status and host, its row locked (`FOR NO KEY UPDATE`, the lock the counter
/// update takes anyway) until the transaction ends: a gift and the session's end serialise,
/// so no gift lands on a session that ended meanwhile.
pub async fn lock_session(
    conn: &mut AsyncPgConnection,
    session: Uuid,
) -> DbResult<Option<(String, Uuid)>> {
    Ok(live_sessions::table
        .find(session)
        .select((live_sessions::status, live_sessions::creator_id))
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?)
}

/// A gift to send.
#[derive(Debug, Clone, Copy)]
pub struct Send {
    /// The new gift row's id (the ledger rows' `ref_id`).
    pub id: Uuid,
    pub session: Uuid,
    pub sender: Uuid,
    pub host: Uuid,
    pub gift: Uuid,
    pub coins: i64,
    pub host_share: i64,
}

/// Sends the gift, or writes nothing and answers `None` when the sender's balance is short.
///
/// Both wallets are locked first, in id order, so two users gifting each other's sessions
/// at once cannot deadlock; the debit is guarded (`balance >= coins`) and the balance's
/// `CHECK (balance >= 0)` stands behind it.
pub async fn send(conn: &mut AsyncPgConnection, g: Send) -> DbResult<Option<SentGift>> {
    crate::queries::profiles::lock_wallets(conn, g.sender, g.host).await?;
    let debited = diesel::update(
        coin_wallets::table
            .filter(coin_wallets::user_id.eq(g.sender))
            .filter(coin_wallets::balance.ge(g.coins)),
    )
    .set((
        coin_wallets::balance.eq(coin_wallets::balance - g.coins),
        coin_wallets::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    if debited == 0 {
        return Ok(None);
    }
    let sent = diesel::insert_into(live_gifts::table)
        .values((
            live_gifts::id.eq(g.id),
            live_gifts::session_id.eq(g.session),
            live_gifts::sender_id.eq(g.sender),
            live_gifts::recipient_id.eq(g.host),
            live_gifts::gift_id.eq(g.gift),
            live_gifts::coins.eq(g.coins),
            live_gifts::host_share.eq(g.host_share),
            live_gifts::platform_share.eq(g.coins - g.host_share),
        ))
        .returning(SentGift::as_returning())
        .get_result(conn)
        .await?;
    let mut ledger = vec![(
        coin_transactions::user_id.eq(g.sender),
        coin_transactions::amount.eq(-g.coins),
        coin_transactions::kind.eq("gift_sent"),
        coin_transactions::ref_id.eq(Some(g.id)),
    )];
    // A share of 0 (1 coin at 70 %) moves nothing: no credit, no ledger row (amount <> 0).
    if g.host_share > 0 {
        diesel::insert_into(coin_wallets::table)
            .values((
                coin_wallets::user_id.eq(g.host),
                coin_wallets::balance.eq(g.host_share),
            ))
            .on_conflict(coin_wallets::user_id)
            .do_update()
            .set((
                coin_wallets::balance.eq(coin_wallets::balance + g.host_share),
                coin_wallets::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        ledger.push((
            coin_transactions::user_id.eq(g.host),
            coin_transactions::amount.eq(g.host_share),
            coin_transactions::kind.eq("gift_received"),
            coin_transactions::ref_id.eq(Some(g.id)),
        ));
    }
    diesel::insert_into(coin_transactions::table)
        .values(&ledger)
        .execute(conn)
        .await?;
    diesel::update(live_sessions::table.find(g.session))
        .set((
            live_sessions::total_gifts_received.eq(live_sessions::total_gifts_received + 1),
            live_sessions::total_gift_coins.eq(live_sessions::total_gift_coins + g.coins),
        ))
        .execute(conn)
        .await?;
    Ok(Some(sent))
}
