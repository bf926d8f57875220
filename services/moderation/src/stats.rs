//! Usage accounting and the runbook's queries as endpoints.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web as aw};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use db::queries::moderation as mq;
use db::queries::usage as uq;
use diesel_async::AsyncPgConnection;
use domain::moderation::{Interval, minutes, project, usage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use web::openapi::{ErrorBody, Success, ok};
use web::{ApiError, AuthUser};

use crate::State;
use crate::authz;
use crate::ops::session_status_schema;
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

    /// `YYYY-MM`, digits only (`str::parse` alone would take `+202-01` and `2026-+1`).
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) {
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `YYYY-MM` (default: this month, UTC).
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    month: Option<String>,
}

/// One day of a month's usage.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDay {
    #[schema(format = Date)]
    date: String,
    participant_minutes: i64,
    peak_concurrent: i64,
}

/// A month's usage against the configured quota.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// `YYYY-MM`.
    month: String,
    participant_minutes: i64,
    /// Over all rooms at once.
    peak_concurrent: i64,
    quota_participant_minutes: i64,
    quota_concurrent: i64,
    /// The month's minutes if it goes on as it went so far.
    projected_participant_minutes: i64,
    days: Vec<UsageDay>,
}

/// `{"usage":{...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBody {
    usage: UsageView,
}

/// `GET /v1/ops/usage`: participant minutes, peak concurrency, per day, against the quota.
#[utoipa::path(
    get,
    path = "/v1/ops/usage",
    tag = "ops",
    params(UsageQuery),
    responses(
        (status = 200, description = "The month's usage", body = Success<UsageBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter, a month not `YYYY-MM`", body = ErrorBody),
    )
)]
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
    let days = u
        .days
        .iter()
        .map(|(d, m, p)| UsageDay {
            date: d.format("%Y-%m-%d").to_string(),
            participant_minutes: *m,
            peak_concurrent: *p,
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        UsageBody {
            usage: UsageView {
                month: u.month.label(),
                participant_minutes: u.participant_minutes,
                peak_concurrent: u.peak_concurrent,
                quota_participant_minutes: state.quota_participant_minutes,
                quota_concurrent: state.quota_concurrent,
                projected_participant_minutes: u.projected_minutes,
                days,
            },
        },
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// How many days back (default 7).
    #[param(minimum = 1, maximum = 90)]
    days: Option<i32>,
}

/// One day of the runbook's daily numbers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    #[schema(format = Date)]
    date: String,
    sessions_created: i64,
    sessions_ended: i64,
    unique_creators: i64,
    unique_viewers: i64,
    total_duration_seconds: i64,
    peak_viewers: i32,
    messages: i64,
    gift_coins: i64,
    reports: i64,
}

/// `{"days":[...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DailyBody {
    days: Vec<DayStats>,
}

/// `GET /v1/ops/stats/daily`: sessions, viewers, chat, gifts and reports per day.
#[utoipa::path(
    get,
    path = "/v1/ops/stats/daily",
    tag = "ops",
    params(DailyQuery),
    responses(
        (status = 200, description = "One row per day", body = Success<DailyBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter, days out of range", body = ErrorBody),
    )
)]
pub(crate) async fn daily(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<DailyQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let days = bounded(q.days, 7, 90, "days")?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::daily_stats(&mut conn, days).await?;
    let days = rows
        .iter()
        .map(|d| DayStats {
            date: d.date.clone(),
            sessions_created: d.sessions_created,
            sessions_ended: d.sessions_ended,
            unique_creators: d.unique_creators,
            unique_viewers: d.unique_viewers,
            total_duration_seconds: d.total_duration_seconds,
            peak_viewers: d.peak_viewers,
            messages: d.messages,
            gift_coins: d.gift_coins,
            reports: d.reports,
        })
        .collect();
    Ok(ok(StatusCode::OK, DailyBody { days }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// How many days back (default 30).
    #[param(minimum = 1, maximum = 365)]
    days: Option<i32>,
    /// How many creators (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// A creator's numbers over the period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatorStatsView {
    creator_id: Uuid,
    username: String,
    sessions: i64,
    total_duration_seconds: i64,
    peak_viewers: i32,
    messages: i64,
    gift_coins: i64,
}

/// `{"creators":[...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopCreatorsBody {
    creators: Vec<CreatorStatsView>,
}

/// `GET /v1/ops/stats/top-creators`: creators by gift coins and viewers over the period.
#[utoipa::path(
    get,
    path = "/v1/ops/stats/top-creators",
    tag = "ops",
    params(TopQuery),
    responses(
        (status = 200, description = "The top creators", body = Success<TopCreatorsBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter, days or limit out of range", body = ErrorBody),
    )
)]
pub(crate) async fn top_creators(
    user: AuthUser,
    state: aw::Data<State>,
    query: aw::Query<TopQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let days = bounded(q.days, 30, 365, "days")?;
    let limit = web::cursor::limit(q.limit)?;
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::top_creators(&mut conn, days, limit).await?;
    let creators = rows
        .iter()
        .map(|c| CreatorStatsView {
            creator_id: c.creator_id,
            username: c.username.clone(),
            sessions: c.sessions,
            total_duration_seconds: c.total_duration_seconds,
            peak_viewers: c.peak_viewers,
            messages: c.messages,
            gift_coins: c.gift_coins,
        })
        .collect();
    Ok(ok(StatusCode::OK, TopCreatorsBody { creators }))
}

/// Sessions the runbook calls problems: not ended, running for over an hour, nobody in.
pub const PROBLEM_AFTER_SECONDS: i64 = 3600;

/// A session not ended, running for over an hour, with nobody in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilentView {
    id: Uuid,
    creator_id: Uuid,
    creator_username: String,
    #[schema(schema_with = session_status_schema)]
    status: String,
    room_name: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    #[schema(format = DateTime)]
    last_activity_at: String,
    /// Since it started (or was created).
    running_seconds: i64,
}

impl From<&mq::SilentSession> for SilentView {
    fn from(s: &mq::SilentSession) -> Self {
        SilentView {
            id: s.id,
            creator_id: s.creator_id,
            creator_username: s.creator_username.clone(),
            status: s.status.clone(),
            room_name: s.room_name.clone(),
            created_at: ts(s.created_at),
            started_at: ts_opt(s.started_at),
            last_activity_at: ts(s.last_activity_at),
            running_seconds: (Utc::now() - s.started_at.unwrap_or(s.created_at))
                .num_seconds()
                .max(0),
        }
    }
}

/// `{"sessions":[...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemSessionsBody {
    sessions: Vec<SilentView>,
}

/// `GET /v1/ops/stats/problem-sessions`: not ended, over an hour old, nobody in (at most 100).
#[utoipa::path(
    get,
    path = "/v1/ops/stats/problem-sessions",
    tag = "ops",
    responses(
        (status = 200, description = "The silent sessions", body = Success<ProblemSessionsBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
    )
)]
pub(crate) async fn problem_sessions(
    user: AuthUser,
    state: aw::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::pool::conn(&state.pool).await?;
    authz::operator(&mut conn, user).await?;
    let rows = mq::silent_sessions(&mut conn, PROBLEM_AFTER_SECONDS, 100).await?;
    Ok(ok(
        StatusCode::OK,
        ProblemSessionsBody {
            sessions: rows.iter().map(SilentView::from).collect(),
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MinutesQuery {
    /// How many minutes back (default 5).
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<i32>,
    /// How many creators (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// A creator and the sessions they created in the window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentCreatorView {
    creator_id: Uuid,
    username: String,
    sessions: i64,
    #[schema(format = DateTime)]
    last_created_at: String,
}

/// The window and the creators in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentCreatorsBody {
    minutes: i32,
    creators: Vec<RecentCreatorView>,
}

/// `GET /v1/ops/stats/recent-creators`: creators by sessions created in the last minutes
/// (the runbook's "who is starting sessions right now").
#[utoipa::path(
    get,
    path = "/v1/ops/stats/recent-creators",
    tag = "ops",
    params(MinutesQuery),
    responses(
        (status = 200, description = "The creators", body = Success<RecentCreatorsBody>),
        (status = 401, description = "No valid token, or it names no profile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 422, description = "Bad query: unknown parameter, minutes or limit out of range", body = ErrorBody),
    )
)]
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
    let creators = rows
        .iter()
        .map(|c| RecentCreatorView {
            creator_id: c.creator_id,
            username: c.username.clone(),
            sessions: c.sessions,
            last_created_at: ts(c.last_created_at),
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        RecentCreatorsBody {
            minutes: mins,
            creators,
        },
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
            "2026-13",
            "2026-1",
            "26-01",
            "2026/01",
            "",
            "2026-00",
            "abcd-ef",
            "+202-01",
            "2026-+1",
            "-001-01",
            "２０２６-01",
        ] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
    }
}
