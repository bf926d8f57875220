//! `profiles`, `coin_wallets`: the main app's users as this system reads them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::DbResult;
use crate::models::{NewProfile, Profile};
use crate::schema::{coin_wallets, profiles};

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> DbResult<Option<Profile>> {
    Ok(profiles::table
        .find(id)
        .select(Profile::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn insert(conn: &mut AsyncPgConnection, profile: &NewProfile<'_>) -> DbResult<()> {
    diesel::insert_into(profiles::table)
        .values(profile)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_banned_until(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    until: Option<DateTime<Utc>>,
) -> DbResult<usize> {
    Ok(diesel::update(profiles::table.find(id))
        .set(profiles::banned_until.eq(until))
        .execute(conn)
        .await?)
}

/// The user's coin balance (0 without a wallet).
pub async fn balance(conn: &mut AsyncPgConnection, user: Uuid) -> DbResult<i64> {
    Ok(coin_wallets::table
        .find(user)
        .select(coin_wallets::balance)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(0))
}

/// Sets a wallet's balance directly (seeding and tests; the app tops wallets up).
pub async fn set_balance(conn: &mut AsyncPgConnection, user: Uuid, balance: i64) -> DbResult<()> {
    diesel::insert_into(coin_wallets::table)
        .values((
            coin_wallets::user_id.eq(user),
            coin_wallets::balance.eq(balance),
        ))
        .on_conflict(coin_wallets::user_id)
        .do_update()
        .set(coin_wallets::balance.eq(balance))
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the wallets of two users, in id order: every transaction that moves coins between
/// two wallets (a gift, a pay-per-view charge) takes them this way first, so two of them
/// crossing the same pair of wallets cannot deadlock. A user without a wallet locks nothing.
pub async fn lock_wallets(
    conn: &mut AsyncPgConnection,
    a: Uuid,
    b: Uuid,
) -> Result<(), diesel::result::Error> {
    let mut users = [a, b];
    users.sort();
    coin_wallets::table
        .filter(coin_wallets::user_id.eq_any(users))
        .order(coin_wallets::user_id)
        .select(coin_wallets::user_id)
        .for_update()
        .load::<Uuid>(conn)
        .await?;
    Ok(())
}
