//! Moderation and operations rules: who may moderate, how reports are resolved, how usage is
//! counted from LiveKit's joins and leaves, and when an alert changes state.

use std::collections::BTreeMap;

wire_enum! {
    /// What an operator decides about a report.
    pub enum ReportAction ("report action") {
        /// Nothing to do.
        Dismiss => "dismiss",
        /// The reported user is warned.
        Warn => "warn",
        /// The reported user is banned globally for some hours.
        Ban => "ban",
    }
}

wire_enum! {
    /// The status of a report (`live_reports.status`).
    pub enum ReportStatus ("report status") {
        /// Waiting in the operators' queue.
        Pending => "pending",
        /// Resolved with nothing done.
        Dismissed => "dismissed",
        /// Resolved with a warning.
        Warned => "warned",
        /// Resolved with a global ban.
        Banned => "banned",
    }
}

impl ReportAction {
    /// The status a pending report takes when resolved with this action.
    pub fn resolves_to(self) -> ReportStatus {
        match self {
            ReportAction::Dismiss => ReportStatus::Dismissed,
            ReportAction::Warn => ReportStatus::Warned,
            ReportAction::Ban => ReportStatus::Banned,
        }
    }
}

/// The longest global ban an operator can give in one go: ten years, in hours.
pub const MAX_BAN_HOURS: i64 = 24 * 365 * 10;

/// Whether `role` (`profiles.role`) is an operator's.
pub fn is_operator(role: Option<&str>) -> bool {
    matches!(role, Some("admin" | "ops"))
}

/// Whether `actor` may moderate a session created by `creator`: its host, or any operator.
pub fn may_moderate(actor: uuid::Uuid, actor_role: Option<&str>, creator: uuid::Uuid) -> bool {
    actor == creator || is_operator(actor_role)
}

// ---- usage ------------------------------------------------------------------------------

/// One LiveKit connection as usage counts it: from its join to its leave (or to "now" while
/// it is open), in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// When LiveKit reported the join.
    pub start: i64,
    /// When LiveKit reported the leave; `None` while the connection is open.
    pub end: Option<i64>,
}

/// Usage of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    /// Start of the day, unix seconds.
    pub day_start: i64,
    /// Connected seconds within the day, over every room.
    pub seconds: i64,
    /// Most connections open at one moment within the day.
    pub peak_concurrent: i64,
}

/// Usage of a period made of whole days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodUsage {
    /// Connected seconds in the period (up to `now`).
    pub seconds: i64,
    /// Most connections open at one moment in the period.
    pub peak_concurrent: i64,
    /// Each day of the period, in order (days after `now` count nothing).
    pub days: Vec<DayUsage>,
}

/// Seconds as API.md's minutes: seconds / 60 rounded to the nearest minute (half up).
pub fn minutes(seconds: i64) -> i64 {
    (seconds + 30).div_euclid(60)
}

const DAY: i64 = 86_400;

/// Usage in `[from, to)` (both at midnight UTC) as of `now`: an open connection counts until
/// `now`, nothing counts after `now`. Connections that end before they start (clock skew
/// between LiveKit nodes) count nothing.
pub fn usage(intervals: &[Interval], from: i64, to: i64, now: i64) -> PeriodUsage {
    let horizon = to.min(now);
    let mut days: Vec<DayUsage> = (0..((to - from) / DAY).max(0))
        .map(|i| DayUsage {
            day_start: from + i * DAY,
            seconds: 0,
            peak_concurrent: 0,
        })
        .collect();
    // Changes of concurrency by time: leaves (-1) sort before joins (+1) at the same
    // second, so a reconnect in the same second is not counted twice.
    let mut changes: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut open_at_start = 0;
    let mut seconds = 0;
    for iv in intervals {
        let end = iv.end.unwrap_or(now).min(now);
        if end <= iv.start {
            continue;
        }
        let (s, e) = (iv.start.max(from), end.min(horizon));
        if s < e {
            seconds += e - s;
            for day in days.iter_mut() {
                let (ds, de) = (day.day_start, day.day_start + DAY);
                let overlap = e.min(de) - s.max(ds);
                if overlap > 0 {
                    day.seconds += overlap;
                }
            }
        }
        if iv.start < from {
            if end > from {
                open_at_start += 1;
                changes.entry(end).or_default().0 -= 1;
            }
        } else if iv.start < horizon {
            changes.entry(iv.start).or_default().1 += 1;
            changes.entry(end).or_default().0 -= 1;
        }
    }
    let mut current = open_at_start;
    let mut peak = 0;
    let day_peak = |t: i64, value: i64, days: &mut Vec<DayUsage>| {
        if t >= from && t < horizon {
            let i = ((t - from) / DAY) as usize;
            if let Some(d) = days.get_mut(i) {
                d.peak_concurrent = d.peak_concurrent.max(value);
            }
        }
    };
    // What is open at the start of each day counts toward that day's peak.
    let starts: Vec<i64> = days
        .iter()
        .map(|d| d.day_start)
        .filter(|t| *t < horizon)
        .collect();
    let mut day_starts = starts.into_iter().peekable();
    if from < horizon {
        peak = current;
    }
    for (t, (leaves, joins)) in changes {
        while let Some(ds) = day_starts.next_if(|ds| *ds < t) {
            day_peak(ds, current, &mut days);
        }
        current += leaves;
        if t < horizon {
            day_peak(t, current, &mut days);
        }
        current += joins;
        if t < horizon {
            peak = peak.max(current);
            day_peak(t, current, &mut days);
        }
    }
    for ds in day_starts {
        day_peak(ds, current, &mut days);
    }
    PeriodUsage {
        seconds,
        peak_concurrent: peak,
        days,
    }
}

/// The month-end projection: the month's seconds so far extended at the same rate to the
/// whole month. A month that is over projects what it used; one that has not begun, nothing.
pub fn project(seconds_so_far: i64, month_start: i64, month_end: i64, now: i64) -> i64 {
    if now >= month_end {
        return seconds_so_far;
    }
    let elapsed = now - month_start;
    if elapsed <= 0 {
        return 0;
    }
    ((seconds_so_far as i128 * (month_end - month_start) as i128) / elapsed as i128) as i64
}

// ---- alerts -----------------------------------------------------------------------------

wire_enum! {
    /// The state of one alert (`alert_states.severity`).
    pub enum AlertLevel ("alert level") {
        /// The condition does not hold.
        Ok => "ok",
        /// Needs attention.
        Warning => "warning",
        /// Needs action now.
        Critical => "critical",
    }
}

/// Quota usage at or over this percentage is a warning.
pub const QUOTA_WARNING_PERCENT: f64 = 75.0;
/// Quota usage at or over this percentage is critical.
pub const QUOTA_CRITICAL_PERCENT: f64 = 90.0;

/// The level of a quota used at `percent`.
pub fn quota_level(percent: f64) -> AlertLevel {
    if percent >= QUOTA_CRITICAL_PERCENT {
        AlertLevel::Critical
    } else if percent >= QUOTA_WARNING_PERCENT {
        AlertLevel::Warning
    } else {
        AlertLevel::Ok
    }
}

/// What a change of an alert's level sends: `None` when the level did not change; the new
/// level's name (`warning`, `critical`) on entry or escalation; `resolved` on the way back
/// to ok. A critical alert that falls back to warning sends `warning`.
pub fn notification(previous: AlertLevel, now: AlertLevel) -> Option<&'static str> {
    match (previous, now) {
        (p, n) if p == n => None,
        (_, AlertLevel::Ok) => Some("resolved"),
        (_, n) => Some(n.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: i64, end: Option<i64>) -> Interval {
        Interval { start, end }
    }

    #[test]
    fn minutes_round_to_nearest() {
        assert_eq!(minutes(0), 0);
        assert_eq!(minutes(29), 0);
        assert_eq!(minutes(30), 1);
        assert_eq!(minutes(89), 1);
        assert_eq!(minutes(90), 2);
    }

    #[test]
    fn usage_clips_to_the_period_and_to_now() {
        let from = 10 * DAY;
        let to = 12 * DAY;
        let now = 11 * DAY + 600;
        let u = usage(
            &[
                iv(from - 60, Some(from + 60)),   // 60 s inside, open at the start
                iv(from + 100, Some(from + 200)), // 100 s
                iv(11 * DAY - 30, Some(11 * DAY + 30)), // across midnight: 30 + 30
                iv(11 * DAY + 500, None),         // open: 100 s until now
                iv(from + 300, Some(from + 250)), // ends before it starts: nothing
            ],
            from,
            to,
            now,
        );
        assert_eq!(u.seconds, 60 + 100 + 60 + 100);
        assert_eq!(u.days[0].seconds, 60 + 100 + 30);
        assert_eq!(u.days[1].seconds, 30 + 100);
        assert_eq!(u.peak_concurrent, 1);
        assert_eq!(u.days[0].peak_concurrent, 1);
        assert_eq!(u.days[1].peak_concurrent, 1);
    }

    #[test]
    fn peak_counts_overlaps_over_every_room() {
        let u = usage(
            &[
                iv(100, Some(400)),
                iv(200, Some(300)),
                iv(250, Some(260)),
                iv(300, Some(500)), // starts when one leaves: not four at 300
                iv(DAY + 10, Some(DAY + 20)),
            ],
            0,
            2 * DAY,
            3 * DAY,
        );
        assert_eq!(u.peak_concurrent, 3);
        assert_eq!(u.days[0].peak_concurrent, 3);
        assert_eq!(u.days[1].peak_concurrent, 1);
    }

    #[test]
    fn a_connection_open_over_midnight_counts_in_the_next_days_peak() {
        let u = usage(&[iv(DAY - 10, Some(DAY + 10))], 0, 2 * DAY, 3 * DAY);
        assert_eq!(u.days[1].peak_concurrent, 1);
        let u = usage(&[iv(-10, None)], 0, 2 * DAY, DAY + 5);
        assert_eq!(u.peak_concurrent, 1);
        assert_eq!(u.days[0].peak_concurrent, 1);
        assert_eq!(u.days[1].peak_concurrent, 1);
        assert_eq!(u.seconds, DAY + 5);
    }

    #[test]
    fn projection() {
        assert_eq!(project(100, 0, 30, 10), 300);
        assert_eq!(project(100, 0, 30, 40), 100);
        assert_eq!(project(0, 0, 30, -5), 0);
    }

    #[test]
    fn alert_levels_and_notifications() {
        assert_eq!(quota_level(74.9), AlertLevel::Ok);
        assert_eq!(quota_level(75.0), AlertLevel::Warning);
        assert_eq!(quota_level(90.0), AlertLevel::Critical);
        use AlertLevel::*;
        assert_eq!(notification(Ok, Ok), None);
        assert_eq!(notification(Ok, Warning), Some("warning"));
        assert_eq!(notification(Warning, Warning), None);
        assert_eq!(notification(Warning, Critical), Some("critical"));
        assert_eq!(notification(Critical, Warning), Some("warning"));
        assert_eq!(notification(Critical, Ok), Some("resolved"));
    }

    #[test]
    fn report_actions() {
        assert_eq!(ReportAction::Ban.resolves_to(), ReportStatus::Banned);
        assert!("kick".parse::<ReportAction>().is_err());
        assert!(is_operator(Some("ops")) && is_operator(Some("admin")));
        assert!(!is_operator(Some("user")) && !is_operator(None));
    }
}
