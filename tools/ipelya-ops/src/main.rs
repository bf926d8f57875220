#![doc = include_str!("../README.md")]

mod client;
mod table;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use client::{Client, Failure, seg};
use table::{field, render};

/// Operate Ipelya Live from a terminal: moderation's /v1/ops API with an operator's JWT.
#[derive(Debug, Parser)]
#[command(
    name = "ipelya-ops",
    version,
    after_help = "Exit codes: 0 done, 2 bad command line, 3 not authorised (401/403), \
                  4 not found, 5 refused (validation, conflict, other 4xx), \
                  6 service failed or unreachable."
)]
struct Cli {
    /// moderation's base URL.
    #[arg(long, env = "IPELYA_OPS_URL", default_value = "http://127.0.0.1:8084")]
    url: String,
    /// An operator's access token (JWT; `profiles.role` admin or ops).
    #[arg(long, env = "IPELYA_OPS_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the service's answer as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Active sessions with creator, type, participant count and duration.
    Sessions {
        /// Which sessions (the API's `status`).
        #[arg(long, default_value = "live")]
        status: String,
    },
    /// One session: participants, stats, recent chat.
    Session { session_id: uuid::Uuid },
    /// Ends a session now: the room is deleted, the session `ended` with `admin_terminated`.
    Terminate { session_id: uuid::Uuid },
    /// Removes a participant from the room (they may join again).
    Kick {
        session_id: uuid::Uuid,
        user_id: uuid::Uuid,
    },
    /// Bans a user from the whole platform for some hours.
    Ban {
        user_id: uuid::Uuid,
        #[arg(long)]
        hours: u32,
        #[arg(long)]
        reason: String,
    },
    /// Lifts a global ban.
    Unban { user_id: uuid::Uuid },
    /// Bans in force: global, per session, by creators.
    Bans,
    /// The kill switch for new sessions: `on` refuses them with LIVE_DISABLED; `status` tells.
    KillSwitch { state: Switch },
    /// Participant minutes and peak concurrency of a month against the quota.
    Usage {
        /// `YYYY-MM` (default: this month).
        #[arg(long)]
        month: Option<String>,
    },
    /// The daily summary of the last days.
    Daily {
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// The creators with the most sessions or minutes.
    TopCreators {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Sessions live for over an hour with nobody in the room.
    Problems,
    /// Who created the most sessions in the last minutes (abuse).
    RecentCreators {
        #[arg(long, default_value_t = 5)]
        minutes: u32,
    },
    /// The reports queue.
    Reports {
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Resolves a report.
    Resolve {
        report_id: uuid::Uuid,
        action: Resolution,
        /// Ban length (with `ban`).
        #[arg(long)]
        hours: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
    Status,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Resolution {
    Dismiss,
    Warn,
    Ban,
}

impl Resolution {
    fn as_str(self) -> &'static str {
        match self {
            Resolution::Dismiss => "dismiss",
            Resolution::Warn => "warn",
            Resolution::Ban => "ban",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider (DEPENDENCIES.md): install ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(client::exit::SERVICE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}

/// Runs one command; the text for stdout.
async fn run(cli: Cli) -> Result<String, Failure> {
    let api = Client::new(&cli.url, &cli.token, Duration::from_secs(cli.timeout))?;
    let (answer, human) = match cli.command {
        Command::Sessions { status } => {
            let v = api
                .get(&format!("/v1/ops/sessions?status={}", seg(&status)))
                .await?;
            let text = sessions_table(&v);
            (v, text)
        }
        Command::Session { session_id } => {
            let v = api.get(&format!("/v1/ops/sessions/{session_id}")).await?;
            let text = session_detail(&v);
            (v, text)
        }
        Command::Terminate { session_id } => {
            let v = api
                .post(&format!("/v1/ops/sessions/{session_id}/terminate"), None)
                .await?;
            let text = format!("session {session_id} terminated (admin_terminated)\n");
            (v, text)
        }
        Command::Kick {
            session_id,
            user_id,
        } => {
            let v = api
                .post(
                    &format!("/v1/ops/participants/{session_id}/{user_id}/kick"),
                    None,
                )
                .await?;
            (v, format!("{user_id} removed from session {session_id}\n"))
        }
        Command::Ban {
            user_id,
            hours,
            reason,
        } => {
            let v = api
                .post(
                    &format!("/v1/ops/users/{user_id}/ban"),
                    Some(json!({"hours": hours, "reason": reason})),
                )
                .await?;
            let until = field(&v, &["bannedUntil", "ban.bannedUntil", "user.bannedUntil"]);
            (
                v,
                format!("{user_id} banned for {hours} h (until {until})\n"),
            )
        }
        Command::Unban { user_id } => {
            let v = api
                .send(
                    reqwest::Method::DELETE,
                    &format!("/v1/ops/users/{user_id}/ban"),
                    None,
                )
                .await?;
            (v, format!("ban of {user_id} lifted\n"))
        }
        Command::Bans => {
            let v = api.get("/v1/ops/bans").await?;
            let text = bans_report(&v);
            (v, text)
        }
        Command::KillSwitch {
            state: Switch::Status,
        } => {
            let v = api.get("/v1/ops/config").await?;
            let text = match v["config"]["liveSessionsDisabled"].as_bool() {
                Some(true) => "kill switch ON: new sessions are refused with LIVE_DISABLED\n",
                Some(false) => "kill switch OFF: new sessions are allowed\n",
                None => "kill switch: unknown (the service did not say)\n",
            };
            (v, text.to_owned())
        }
        Command::KillSwitch { state } => {
            let on = matches!(state, Switch::On);
            let v = api
                .send(
                    reqwest::Method::PUT,
                    "/v1/ops/config/live-sessions-disabled",
                    Some(json!({"value": on})),
                )
                .await?;
            let text = if on {
                "kill switch ON: new sessions are refused with LIVE_DISABLED\n"
            } else {
                "kill switch OFF: new sessions are allowed\n"
            };
            (v, text.to_owned())
        }
        Command::Usage { month } => {
            let month = month.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m").to_string());
            let v = api
                .get(&format!("/v1/ops/usage?month={}", seg(&month)))
                .await?;
            let text = usage_report(&v);
            (v, text)
        }
        Command::Daily { days } => {
            let v = api.get(&format!("/v1/ops/stats/daily?days={days}")).await?;
            let text = generic_table(&v, &["days", "daily", "stats", "items"]);
            (v, text)
        }
        Command::TopCreators { days } => {
            let v = api
                .get(&format!("/v1/ops/stats/top-creators?days={days}"))
                .await?;
            let text = generic_table(&v, &["creators", "topCreators", "items"]);
            (v, text)
        }
        Command::Problems => {
            let v = api.get("/v1/ops/stats/problem-sessions").await?;
            let text = sessions_table(&v);
            (v, text)
        }
        Command::RecentCreators { minutes } => {
            let v = api
                .get(&format!("/v1/ops/stats/recent-creators?minutes={minutes}"))
                .await?;
            let text = generic_table(&v, &["creators"]);
            (v, text)
        }
        Command::Reports { status } => {
            let v = api
                .get(&format!("/v1/ops/reports?status={}", seg(&status)))
                .await?;
            let text = reports_table(&v);
            (v, text)
        }
        Command::Resolve {
            report_id,
            action,
            hours,
        } => {
            let mut body = json!({"action": action.as_str()});
            if let Some(h) = hours {
                body["hours"] = json!(h);
            }
            let v = api
                .post(&format!("/v1/ops/reports/{report_id}/resolve"), Some(body))
                .await?;
            (
                v,
                format!("report {report_id} resolved: {}\n", action.as_str()),
            )
        }
    };
    if cli.json {
        let mut out = serde_json::to_string_pretty(&answer).unwrap_or_default();
        out.push('\n');
        Ok(out)
    } else {
        Ok(human)
    }
}

/// The first array among the names (the list of a list answer).
fn list<'a>(v: &'a Value, names: &[&str]) -> &'a [Value] {
    names
        .iter()
        .find_map(|n| v[*n].as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// How long a session has been on air: its own figure, else since `startedAt`.
fn session_duration(s: &Value) -> String {
    if let Some(secs) = s["durationSeconds"].as_i64() {
        return table::duration(secs);
    }
    s["startedAt"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| table::duration((chrono::Utc::now() - t.to_utc()).num_seconds()))
        .unwrap_or_else(|| "-".to_owned())
}

fn sessions_table(v: &Value) -> String {
    let rows = list(v, &["sessions", "problemSessions", "items"]);
    if rows.is_empty() {
        return "no sessions\n".to_owned();
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                field(s, &["id"]),
                field(s, &["creatorUsername", "creator.username", "creatorId"]),
                field(s, &["sessionType"]),
                field(s, &["status"]),
                field(s, &["participantCount", "participants", "viewerCount"]),
                session_duration(s),
                field(s, &["title"]),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "id",
            "creator",
            "type",
            "status",
            "participants",
            "duration",
            "title",
        ],
        &rows,
    );
    out.push_str(&format!("{} session(s)\n", rows.len()));
    out
}

fn session_detail(v: &Value) -> String {
    let s = if v["session"].is_object() {
        &v["session"]
    } else {
        v
    };
    let mut out = format!(
        "{}  {}  {}  by {}\nstarted {}  duration {}  end reason {}\n",
        field(s, &["id"]),
        field(s, &["status"]),
        field(s, &["sessionType"]),
        field(s, &["creatorUsername", "creator.username", "creatorId"]),
        field(s, &["startedAt"]),
        session_duration(s),
        field(s, &["endReason"]),
    );
    let stats = if v["stats"].is_object() {
        &v["stats"]
    } else {
        s
    };
    out.push_str(&format!(
        "viewers {}  peak {}  messages {}  gifts {}\n\n",
        field(stats, &["participantCount", "viewerCount"]),
        field(stats, &["peakViewers"]),
        field(stats, &["totalMessages"]),
        field(stats, &["totalGiftsReceived"]),
    ));
    let participants = list(v, &["participants"]);
    if participants.is_empty() {
        out.push_str("no participants\n");
    } else {
        let rows: Vec<Vec<String>> = participants
            .iter()
            .map(|p| {
                vec![
                    field(p, &["userId"]),
                    field(p, &["username"]),
                    field(p, &["role"]),
                    field(p, &["isActive", "active"]),
                    field(p, &["joinedAt"]),
                ]
            })
            .collect();
        out.push_str(&render(
            &["user", "username", "role", "active", "joined"],
            &rows,
        ));
    }
    let chat = list(v, &["messages", "recentChat", "chat", "recentMessages"]);
    out.push('\n');
    if chat.is_empty() {
        out.push_str("no recent chat\n");
    } else {
        let rows: Vec<Vec<String>> = chat
            .iter()
            .map(|m| {
                vec![
                    field(m, &["createdAt"]),
                    field(m, &["username", "userId"]),
                    field(m, &["body"]),
                ]
            })
            .collect();
        out.push_str(&render(&["when", "who", "message"], &rows));
    }
    out
}

fn usage_report(v: &Value) -> String {
    let u = &v["usage"];
    let minutes = u["participantMinutes"].as_f64().unwrap_or(0.0);
    let quota = u["quotaParticipantMinutes"].as_f64().unwrap_or(0.0);
    let pct = |a: f64, b: f64| if b > 0.0 { a * 100.0 / b } else { 0.0 };
    let bar = |p: f64| {
        let filled = ((p.min(100.0) / 100.0) * 30.0).round() as usize;
        format!("[{}{}]", "#".repeat(filled), ".".repeat(30 - filled))
    };
    let peak = u["peakConcurrent"].as_f64().unwrap_or(0.0);
    let quota_c = u["quotaConcurrent"].as_f64().unwrap_or(0.0);
    let projected = u["projectedParticipantMinutes"].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "month {}\nparticipant minutes {} / {}  {} {:.1} %\nprojected by month end {} ({:.0} % of quota)\npeak concurrent {} / {}  {} {:.1} %\n",
        field(u, &["month"]),
        minutes,
        quota,
        bar(pct(minutes, quota)),
        pct(minutes, quota),
        projected,
        pct(projected, quota),
        peak,
        quota_c,
        bar(pct(peak, quota_c)),
        pct(peak, quota_c),
    );
    let days = list(u, &["days"]);
    if !days.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = days
            .iter()
            .map(|d| {
                vec![
                    field(d, &["date"]),
                    field(d, &["participantMinutes"]),
                    field(d, &["peakConcurrent"]),
                ]
            })
            .collect();
        out.push_str(&render(
            &["date", "participant minutes", "peak concurrent"],
            &rows,
        ));
    }
    out
}

fn reports_table(v: &Value) -> String {
    let reports = list(v, &["reports", "items"]);
    if reports.is_empty() {
        return "no reports\n".to_owned();
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                field(r, &["id"]),
                field(r, &["status"]),
                field(r, &["reportedUsername", "reportedUserId"]),
                field(r, &["reporterUsername", "reporterId"]),
                field(r, &["sessionId"]),
                field(r, &["reason"]),
                field(r, &["createdAt"]),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "id", "status", "reported", "reporter", "session", "reason", "created",
        ],
        &rows,
    );
    out.push_str(&format!("{} report(s)\n", rows.len()));
    out
}

/// A list of flat objects (the runbook's queries) as a table of their scalar fields, in the
/// order the first row has them.
fn generic_table(v: &Value, names: &[&str]) -> String {
    let items = list(v, names);
    let Some(first) = items.first().and_then(Value::as_object) else {
        // Not a list: show the payload's fields (a summary object).
        let obj = v.as_object().into_iter().flatten();
        let rows: Vec<Vec<String>> = obj
            .filter(|(k, _)| k.as_str() != "success")
            .map(|(k, val)| vec![k.clone(), table::text(val)])
            .collect();
        return if rows.is_empty() {
            "nothing to show\n".to_owned()
        } else {
            render(&["field", "value"], &rows)
        };
    };
    let keys: Vec<&String> = first
        .iter()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, _)| k)
        .collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| keys.iter().map(|k| field(it, &[k.as_str()])).collect())
        .collect();
    let headers: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    render(&headers, &rows)
}

fn bans_report(v: &Value) -> String {
    let b = &v["bans"];
    let section = |title: &str, items: &[Value], headers: &[&str], cols: &[&[&str]]| {
        let mut out = format!("{title}: {}\n", items.len());
        if !items.is_empty() {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|it| cols.iter().map(|names| field(it, names)).collect())
                .collect();
            out.push_str(&render(headers, &rows));
        }
        out
    };
    let mut out = section(
        "global bans",
        list(b, &["global"]),
        &["user", "username", "until"],
        &[&["userId"], &["username"], &["bannedUntil"]],
    );
    out.push('\n');
    out.push_str(&section(
        "session bans",
        list(b, &["session"]),
        &["user", "session", "by", "reason", "created"],
        &[
            &["userId"],
            &["sessionId"],
            &["bannedBy"],
            &["reason"],
            &["createdAt"],
        ],
    ));
    out.push('\n');
    out.push_str(&section(
        "creator bans",
        list(b, &["creator"]),
        &["user", "creator", "reason", "created"],
        &[&["userId"], &["creatorId"], &["reason"], &["createdAt"]],
    ));
    out
}
