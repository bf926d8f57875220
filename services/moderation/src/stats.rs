//! Usage accounting and the runbook's queries as endpoints.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use db::queries::moderation as mq;
use db::queries::usage as uq;
use diesel_async::AsyncPgConnection;
use domain::moderation::{Interval, minutes, project, usage};
use serde::Deserialize;
use serde_json::{Value, json};
use web::error::success;
use web::{ApiError, AuthUser};

use crate::State;
use crate::authz;
use crate::routes::{ts, ts_opt};

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Month {
    pub fn of(t: DateTime<Utc>) -> Month {
        Self::new(t.year(), t.month()).expect("a valid month")
    }

    pub fn new(year: i32, month: u32) -> Option<Month> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        Some(Month {
            start: Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0)?),
            end: Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?),
        })
    }

    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        Self::new(y.parse().ok()?, m.parse().ok()?)
    }

    pub fn label(&self) -> String {
        self.start.format("%Y-%m").to_string()
    }
}

/// A month's usage as `GET /v1/ops/usage` answers it and the alert checks read it.
#[derive(Debug, Clone)]
pub struct MonthUsage {
    pub month: Month,
    pub participant_minutes: i64,
    pub peak_concurrent: i64,
    pub projected_minutes: i64,
    pub days: Vec<(NaiveDate, i64, i64)>,
}

/// Participant minutes and peak concurrency of `month` as of `now`, from LiveKit's joins
/// and leaves over every room.
pub async fn month_usage(
    c: &mut AsyncPgConnection,
    month: Month,
    now: DateTime<Utc>,
) -> Result<MonthUsage, db::DbError> {
    let rows = uq::connections_between(c, month.start, month.end.min(now)).await?;
    let intervals: Vec<Interval> = rows
        .iter()
        .map(|(j, l)| Interval {
            start: j.timestamp(),
            end: l.map(|l| l.timestamp()),
        })
        .collect();
    let (from, to, at) = (
        month.start.timestamp(),
        month.end.timestamp(),
        now.timestamp(),
    );
    let u = usage(&intervals, from, to, at);
    let days = u
        .days
        .iter()
        .filter_map(|d| {
            DateTime::from_timestamp(d.day_start, 0)
                .map(|t| (t.date_naive(), minutes(d.seconds), d.peak_concurrent))
        })
        .collect();
    Ok(MonthUsage {
        month,
        participant_minutes: minutes(u.seconds),
        peak_concurrent: u.peak_concurrent,
        projected_minutes: minutes(project(u.seconds, from, to, at)),
        days,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    month: Option<String>,
}

pub(crate) async fn usage_route(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let month = match query.into_inner().month {
        None => Month::of(now),
        Some(m) => Month::parse(&m).ok_or_else(|| ApiError::validation("month must be YYYY-MM"))?,
    };
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let u = month_usage(&mut conn, month, now).await?;
    let days: Vec<Value> = u
        .days
        .iter()
        .map(|(d, m, p)| {
            json!({"date": d.format("%Y-%m-%d").to_string(), "participantMinutes": m, "peakConcurrent": p})
        })
        .collect();
    Ok(success(
        StatusCode::OK,
        json!({ "usage": {
            "month": u.month.label(),
            "participantMinutes": u.participant_minutes,
            "peakConcurrent": u.peak_concurrent,
            "quotaParticipantMinutes": state.quota_participant_minutes,
            "quotaConcurrent": state.quota_concurrent,
            "projectedParticipantMinutes": u.projected_minutes,
            "days": days,
        }}),
    ))
}

/// A bounded integer query parameter.
fn bounded(v: Option<i32>, default: i32, max: i32, name: &str) -> Result<i32, ApiError> {
    let v = v.unwrap_or(default);
    if !(1..=max).contains(&v) {
        return Err(ApiError::validation(format!(
            "{name} must be between 1 and {max}"
        )));
    }
    Ok(v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaysQuery {
    days: Option<i32>,
    limit: Option<i64>,
}

pub(crate) async fn daily(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<DaysQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let days = bounded(q.days, 7, 90, "days")?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::daily_stats(&mut conn, days).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "date": d.date,
                "sessionsCreated": d.sessions_created,
                "sessionsEnded": d.sessions_ended,
                "uniqueCreators": d.unique_creators,
                "uniqueViewers": d.unique_viewers,
                "totalDurationSeconds": d.total_duration_seconds,
                "peakViewers": d.peak_viewers,
                "messages": d.messages,
                "giftCoins": d.gift_coins,
                "reports": d.reports,
            })
        })
        .collect();
    Ok(success(StatusCode::OK, json!({ "days": out })))
}

pub(crate) async fn top_creators(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<DaysQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let days = bounded(q.days, 30, 365, "days")?;
    let limit = web::cursor::limit(q.limit)?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::top_creators(&mut conn, days, limit).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|c| {
            json!({
                "creatorId": c.creator_id,
                "username": c.username,
                "sessions": c.sessions,
                "totalDurationSeconds": c.total_duration_seconds,
                "peakViewers": c.peak_viewers,
                "messages": c.messages,
                "giftCoins": c.gift_coins,
            })
        })
        .collect();
    Ok(success(StatusCode::OK, json!({ "creators": out })))
}

/// Sessions the runbook calls problems: not ended, running for over an hour, nobody in.
pub const PROBLEM_AFTER_SECONDS: i64 = 3600;

pub fn silent_json(s: &mq::SilentSession) -> Value {
    json!({
        "id": s.id,
        "creatorId": s.creator_id,
        "creatorUsername": s.creator_username,
        "status": s.status,
        "roomName": s.room_name,
        "createdAt": ts(s.created_at),
        "startedAt": ts_opt(s.started_at),
        "lastActivityAt": ts(s.last_activity_at),
        "runningSeconds": (Utc::now() - s.started_at.unwrap_or(s.created_at)).num_seconds().max(0),
    })
}

pub(crate) async fn problem_sessions(
    user: AuthUser,
    state: aw::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::silent_sessions(&mut conn, PROBLEM_AFTER_SECONDS, 100).await?;
    Ok(success(
        StatusCode::OK,
        json!({ "sessions": rows.iter().map(silent_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinutesQuery {
    minutes: Option<i32>,
    limit: Option<i64>,
}

pub(crate) async fn recent_creators(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<MinutesQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let mins = bounded(q.minutes, 5, 1440, "minutes")?;
    let limit = web::cursor::limit(q.limit)?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::recent_creators(&mut conn, mins, limit).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|c| {
            json!({
                "creatorId": c.creator_id,
                "username": c.username,
                "sessions": c.sessions,
                "lastCreatedAt": ts(c.last_created_at),
            })
        })
        .collect();
    Ok(success(
        StatusCode::OK,
        json!({ "minutes": mins, "creators": out }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.label(), "2026-12");
        assert_eq!(m.end, Month::parse("2027-01").unwrap().start);
        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "abcd-ef",
        ] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
    }
}
