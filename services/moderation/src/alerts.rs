//! The alert checks: every `ALERT_CHECK_INTERVAL_SECONDS` one replica (the one that claims
//! the periodic deadline) reads each rule's level, compares it with `alert_states`, and
//! posts one message to `ALERT_WEBHOOK_URL` per change: on entry (`warning`, `critical`)
//! and on exit (`resolved`). A level is stored only once its message went out (or, without
//! a target, was logged), so a failed post is retried at the next check, never lost.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use db::models::DeadlineRow;
use db::queries::{config, moderation as mq};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::moderation::{AlertLevel, notification, quota_level};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AlertConfig;
use crate::stats::{Month, month_usage};

/// The deadline kind of the periodic check, and its one subject.
pub const KIND: &str = "moderation.alert_check";
pub const SUBJECT: Uuid = Uuid::nil();

/// Alert names (`alert_states.name`, the `alert` field of the message).
pub mod names {
    pub const PARTICIPANT_MINUTES: &str = "quota_participant_minutes";
    pub const CONCURRENT: &str = "quota_concurrent";
    pub const ORPHANED_SESSIONS: &str = "orphaned_sessions";
    pub const PENDING_REPORTS: &str = "pending_reports";
    pub const TOKEN_FAILURES: &str = "token_failures";
}

/// More orphaned sessions than this is a warning.
pub const ORPHANED_LIMIT: usize = 5;
/// More pending reports than this is a warning.
pub const PENDING_REPORTS_LIMIT: i64 = 10;
/// More refused token requests a minute than this is critical.
pub const TOKEN_FAILURES_PER_MINUTE_LIMIT: f64 = 10.0;

/// Where the last token-failure sample is kept (`system_config`), so whichever replica runs
/// the next check computes the rate over the interval since.
const TOKEN_SAMPLE_KEY: &str = "alert_token_failures_sample";

/// What one rule reads now.
#[derive(Debug, Clone)]
pub struct Reading {
    pub name: &'static str,
    pub level: AlertLevel,
    pub title: String,
    pub fields: Vec<(&'static str, String)>,
}

/// The checker: rules, quotas and where to post.
#[derive(Clone)]
pub struct Alerts {
    pub config: AlertConfig,
    pub quota_participant_minutes: i64,
    pub quota_concurrent: i64,
    pub http: reqwest::Client,
}

fn percent(used: i64, quota: i64) -> f64 {
    if quota <= 0 {
        return 0.0;
    }
    used as f64 * 100.0 / quota as f64
}

impl Alerts {
    pub fn new(config: AlertConfig, quota_minutes: i64, quota_concurrent: i64) -> Self {
        Alerts {
            config,
            quota_participant_minutes: quota_minutes,
            quota_concurrent,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Every rule's reading now. A rule that cannot be read this time (token-issuer's
    /// metrics unreachable) is left out: its stored level stays as it is.
    pub async fn readings(&self, c: &mut AsyncPgConnection) -> anyhow::Result<Vec<Reading>> {
        let now = Utc::now();
        let u = month_usage(c, Month::of(now), now).await?;
        let mut out = Vec::new();
        let minutes_pct = percent(u.participant_minutes, self.quota_participant_minutes);
        out.push(Reading {
            name: names::PARTICIPANT_MINUTES,
            level: quota_level(minutes_pct),
            title: format!(
                "Participant minutes at {minutes_pct:.0}% of the monthly quota ({} of {})",
                u.participant_minutes, self.quota_participant_minutes
            ),
            fields: vec![
                ("Month", u.month.label()),
                ("Used", format!("{} min", u.participant_minutes)),
                ("Quota", format!("{} min", self.quota_participant_minutes)),
                ("Projected", format!("{} min", u.projected_minutes)),
            ],
        });
        let peak_pct = percent(u.peak_concurrent, self.quota_concurrent);
        // For Prometheus too (deploy/prometheus/alerts.yml): set by the replica that ran the
        // check, so the rules take the max over replicas.
        metrics::gauge!("livekit_quota_used_percent", "quota" => "participant_minutes")
            .set(minutes_pct);
        metrics::gauge!("livekit_quota_used_percent", "quota" => "concurrent").set(peak_pct);
        out.push(Reading {
            name: names::CONCURRENT,
            level: quota_level(peak_pct),
            title: format!(
                "Peak concurrent participants at {peak_pct:.0}% of the quota ({} of {})",
                u.peak_concurrent, self.quota_concurrent
            ),
            fields: vec![
                ("Month", u.month.label()),
                ("Peak", u.peak_concurrent.to_string()),
                ("Quota", self.quota_concurrent.to_string()),
            ],
        });
        let orphan_secs = self.config.orphan_after.as_secs() as i64;
        let orphaned = mq::silent_sessions(c, orphan_secs, 1000).await?.len();
        out.push(Reading {
            name: names::ORPHANED_SESSIONS,
            level: if orphaned > ORPHANED_LIMIT {
                AlertLevel::Warning
            } else {
                AlertLevel::Ok
            },
            title: format!("{orphaned} orphaned sessions (limit {ORPHANED_LIMIT})"),
            fields: vec![
                ("Orphaned", orphaned.to_string()),
                ("Silent for over", format!("{orphan_secs} s")),
            ],
        });
        metrics::gauge!("orphaned_sessions").set(orphaned as f64);
        let pending = mq::pending_reports(c).await?;
        metrics::gauge!("pending_reports").set(pending as f64);
        out.push(Reading {
            name: names::PENDING_REPORTS,
            level: if pending > PENDING_REPORTS_LIMIT {
                AlertLevel::Warning
            } else {
                AlertLevel::Ok
            },
            title: format!("{pending} pending reports (limit {PENDING_REPORTS_LIMIT})"),
            fields: vec![("Pending", pending.to_string())],
        });
        if let Some(rate) = self.token_failure_rate(c, now).await? {
            out.push(Reading {
                name: names::TOKEN_FAILURES,
                level: if rate > TOKEN_FAILURES_PER_MINUTE_LIMIT {
                    AlertLevel::Critical
                } else {
                    AlertLevel::Ok
                },
                title: format!(
                    "{rate:.1} refused token requests a minute (limit {TOKEN_FAILURES_PER_MINUTE_LIMIT})"
                ),
                fields: vec![("Per minute", format!("{rate:.1}"))],
            });
        }
        Ok(out)
    }

    /// Refused token requests a minute since the previous check: the sum of
    /// `token_failures_total` over token-issuer's replicas, against the sample the previous
    /// check kept. `None` on the first sample or when a replica could not be read.
    async fn token_failure_rate(
        &self,
        c: &mut AsyncPgConnection,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<f64>> {
        if self.config.token_metrics_urls.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        for url in &self.config.token_metrics_urls {
            let text = match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
                Ok(r) => {
                    tracing::warn!(url = %url, status = r.status().as_u16(), "token-issuer metrics unavailable");
                    return Ok(None);
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "token-issuer metrics unavailable");
                    return Ok(None);
                }
            };
            total += counter_sum(&text, "token_failures_total");
        }
        let previous = read_sample(c).await?;
        config::set(
            c,
            TOKEN_SAMPLE_KEY,
            json!({"total": total, "at": now.timestamp_millis()}),
            None,
        )
        .await?;
        let Some((prev_total, prev_at)) = previous else {
            return Ok(None);
        };
        let minutes = (now.timestamp_millis() - prev_at) as f64 / 60_000.0;
        if minutes <= 0.0 {
            return Ok(None);
        }
        // A replica restarted (its counter began again): count what it has since.
        let delta = if total >= prev_total {
            total - prev_total
        } else {
            total
        };
        Ok(Some(delta / minutes))
    }

    /// One round: every rule whose level changed sends its message; returns what was sent.
    pub async fn check(&self, c: &mut AsyncPgConnection) -> anyhow::Result<Vec<Value>> {
        let stored: HashMap<String, String> = mq::alert_levels(c).await?.into_iter().collect();
        let mut sent = Vec::new();
        for r in self.readings(c).await? {
            let previous = stored
                .get(r.name)
                .and_then(|s| s.parse().ok())
                .unwrap_or(AlertLevel::Ok);
            let Some(severity) = notification(previous, r.level) else {
                continue;
            };
            let body = message(&r, severity);
            if self.deliver(&r, severity, &body).await {
                mq::set_alert_level(c, r.name, r.level.as_str()).await?;
                metrics::counter!("alerts_sent_total", "alert" => r.name, "severity" => severity)
                    .increment(1);
                sent.push(body);
            }
        }
        Ok(sent)
    }

    /// Posts the message (or logs it without a target); whether it counts as delivered.
    async fn deliver(&self, r: &Reading, severity: &str, body: &Value) -> bool {
        let Some(url) = &self.config.webhook_url else {
            tracing::warn!(alert = r.name, severity, "{}", r.title);
            return true;
        };
        match self.http.post(url).json(body).send().await {
            Ok(res) if res.status().is_success() => {
                tracing::info!(alert = r.name, severity, "alert sent");
                true
            }
            Ok(res) => {
                tracing::warn!(
                    alert = r.name,
                    status = res.status().as_u16(),
                    "alert webhook refused the message; retrying at the next check"
                );
                false
            }
            Err(e) => {
                tracing::warn!(alert = r.name, error = %e, "alert webhook unreachable; retrying at the next check");
                false
            }
        }
    }
}

async fn read_sample(c: &mut AsyncPgConnection) -> anyhow::Result<Option<(f64, i64)>> {
    use db::schema::system_config;
    let v: Option<Value> = system_config::table
        .find(TOKEN_SAMPLE_KEY)
        .select(system_config::value)
        .first(c)
        .await
        .optional()?;
    Ok(v.and_then(|v| Some((v["total"].as_f64()?, v["at"].as_i64()?))))
}

/// The sum of a counter's samples (every label set) in Prometheus text.
pub fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.chars().next()? {
                '{' => &rest[rest.find('}')? + 1..],
                ' ' => rest,
                _ => return None, // another metric with this prefix
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Discord embed colours: amber, red, green.
fn colour(severity: &str) -> u32 {
    match severity {
        "critical" => 0xD0_02_1B,
        "resolved" => 0x2E_B6_7D,
        _ => 0xF5_A6_23,
    }
}

/// The one body Slack and Discord both take: Slack reads `text`, Discord `content` and
/// `embeds`; both ignore the fields they do not know. Discord's limits are kept (content
/// 2000, title 256, description 4096, field name 256 and value 1024 characters, 25 fields).
pub fn message(r: &Reading, severity: &str) -> Value {
    fn cut(s: &str, max: usize) -> String {
        s.chars().take(max).collect()
    }
    let head = match severity {
        "resolved" => format!("RESOLVED: {}", r.name),
        s => format!("{}: {}", s.to_uppercase(), r.name),
    };
    let text = cut(&format!("[Ipelya Live] {head} — {}", r.title), 2000);
    let fields: Vec<Value> = r
        .fields
        .iter()
        .take(25)
        .map(|(n, v)| json!({"name": cut(n, 256), "value": cut(v, 1024), "inline": true}))
        .collect();
    json!({
        "text": text,
        "content": text,
        "embeds": [{
            "title": cut(&head, 256),
            "description": cut(&r.title, 4096),
            "color": colour(severity),
            "fields": fields,
        }],
        "severity": severity,
        "alert": r.name,
    })
}

/// The deadline handler: one check per firing.
pub struct AlertTimer {
    pub alerts: Alerts,
}

impl bus::deadlines::DeadlineHandler for AlertTimer {
    fn fire<'a>(
        &'a self,
        c: &'a mut AsyncPgConnection,
        _d: &'a DeadlineRow,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let sent = self.alerts.check(c).await?;
            Ok(format!("sent:{}", sent.len()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sum_reads_every_label_set() {
        let text = "# TYPE token_failures_total counter\n\
                    token_failures_total{code=\"BANNED\"} 3\n\
                    token_failures_total{code=\"UNAUTHORIZED\"} 4 1700000000\n\
                    token_failures_total_other 100\n\
                    tokens_issued_total{role=\"viewer\"} 9\n";
        assert_eq!(counter_sum(text, "token_failures_total"), 7.0);
        assert_eq!(counter_sum("", "token_failures_total"), 0.0);
    }

    #[test]
    fn message_shape() {
        let r = Reading {
            name: names::PENDING_REPORTS,
            level: AlertLevel::Warning,
            title: "12 pending reports".into(),
            fields: vec![("Pending", "12".into())],
        };
        let m = message(&r, "warning");
        assert_eq!(m["severity"], "warning");
        assert_eq!(m["alert"], "pending_reports");
        assert_eq!(m["text"], m["content"]);
        assert!(m["embeds"][0]["color"].is_u64());
    }
}
