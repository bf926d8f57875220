//! The faults, injected while the workload runs, and what each must not break:
//!
//! - **kill -9** of a service, a pause, and a start again on its port;
//! - **NATS restart** and **PostgreSQL restart** (a crash, `pg_ctl stop -m immediate`): every
//!   service must come back to a healthy `/health` on its own, still the same process;
//! - **LiveKit slow** (`apiDelayMs`) or **failing** (`failNextApiCalls`): a request that needs
//!   LiveKit answers within the service's LiveKit timeout plus a margin, with a clear
//!   error when it could not be served; no request is retried against LiveKit without bound;
//!   once the fault is lifted the services are healthy again and the probes' resources can
//!   be created and ended.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system::{Stack, Svc};

use crate::client::Api;
use crate::infra::Infra;
use crate::invariants::Report;
use crate::workload::{self, Cast, Lookup, ProbeRecords};

/// What the services give one LiveKit call before giving up (`livekit::DEFAULT_CALL_TIMEOUT`).
pub const LIVEKIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The generous margin on top of it for "nothing hangs" (a bound, not a speed assertion).
pub const MARGIN: Duration = Duration::from_secs(5);
/// At most this many RoomService calls for one (method, room) during a LiveKit fault.
pub const RETRY_BOUND: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then a start again after `down_ms`.
    Kill9 { svc: Svc, down_ms: u64 },
    /// An orderly stop, or a crash (SIGKILL), then a start again after `down_ms`.
    NatsRestart { down_ms: u64, crash: bool },
    /// A crash (`-m immediate`), then a start again after `down_ms`.
    PgRestart { down_ms: u64 },
    /// Every RoomService call answered this many ms late.
    LiveKitSlow(u64),
    /// Every RoomService call answered with Twirp `unavailable`.
    LiveKitFailing,
}

impl Fault {
    /// The summary's name of the kind.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Kill9 { .. } => "kill9",
            Fault::NatsRestart { .. } => "nats restart",
            Fault::PgRestart { .. } => "pg restart",
            Fault::LiveKitSlow(_) => "livekit slow",
            Fault::LiveKitFailing => "livekit failing",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill9 { svc, down_ms } => write!(f, "kill -9 {} ({down_ms} ms down)", svc.bin()),
            Fault::NatsRestart { down_ms, crash } => write!(
                f,
                "nats {} ({down_ms} ms down)",
                if *crash { "crash" } else { "restart" }
            ),
            Fault::PgRestart { down_ms } => write!(f, "pg restart ({down_ms} ms down)"),
            Fault::LiveKitSlow(ms) => write!(f, "livekit slow ({ms} ms)"),
            Fault::LiveKitFailing => f.write_str(self.kind()),
        }
    }
}

/// What the trial needs to inject faults.
pub struct Injector<'a> {
    pub stack: &'a mut Stack,
    pub infra: &'a mut Infra,
    pub api: Api,
    pub lookup: Lookup,
    pub cast: Cast,
    /// Records of the probes' sessions and calls, for the invariant checker.
    pub probes: Vec<ProbeRecords>,
}

impl Injector<'_> {
    /// Injects `fault`, checks what it promises, adds the checks to `report`.
    pub async fn inject(&mut self, fault: Fault, report: &mut Report) {
        match fault {
            Fault::Kill9 { svc, down_ms } => {
                let killed = self.stack.kill9(svc).await;
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                let back = match killed {
                    Ok(()) => self.stack.restart(svc).await,
                    Err(e) => Err(e),
                };
                report.check(
                    "recovery.restarted",
                    format!("{fault}"),
                    back.is_ok(),
                    || format!("{:#}", back.err().unwrap_or_else(|| anyhow::anyhow!("?"))),
                );
            }
            Fault::NatsRestart { down_ms, crash } => {
                let back = self
                    .infra
                    .nats
                    .restart(Duration::from_millis(down_ms), crash)
                    .await;
                self.recovered(fault, back, report).await;
            }
            Fault::PgRestart { down_ms } => {
                let back = self.infra.pg.restart(Duration::from_millis(down_ms)).await;
                self.recovered(fault, back, report).await;
            }
            Fault::LiveKitSlow(ms) => {
                self.livekit(fault, json!({ "apiDelayMs": ms }), report)
                    .await;
            }
            Fault::LiveKitFailing => {
                self.livekit(
                    fault,
                    json!({ "failNextApiCalls": 1_000_000, "code": "unavailable" }),
                    report,
                )
                .await;
            }
        }
    }

    /// After NATS or PostgreSQL came back: every service healthy again, none restarted.
    async fn recovered(&mut self, fault: Fault, back: anyhow::Result<()>, report: &mut Report) {
        report.check(
            "recovery.infra_back",
            format!("{fault}"),
            back.is_ok(),
            || format!("{:#}", back.err().unwrap_or_else(|| anyhow::anyhow!("?"))),
        );
        for svc in Svc::SERVICES {
            let healthy = self.stack.wait_healthy(svc, Duration::from_secs(30)).await;
            let running = self.stack.is_running(svc);
            report.check(
                "recovery.without_restart",
                format!("{} after {fault}", svc.bin()),
                healthy.is_ok() && running,
                || match healthy {
                    Err(e) => format!("not healthy again on its own: {e:#}"),
                    Ok(()) => "the process is gone".into(),
                },
            );
        }
    }

    async fn livekit(&mut self, fault: Fault, faults: Value, report: &mut Report) {
        let since_ms = chrono::Utc::now().timestamp_millis();
        let set = self.api.sim("/sim/faults", faults).await;
        report.check(
            "livekit.fault_set",
            format!("{fault}"),
            set.is_ok_and(|a| a.ok()),
            || "livekit-sim refused the fault".into(),
        );
        let probes = workload::probe(&self.api, &self.cast).await;
        let succeeds = matches!(fault, Fault::LiveKitSlow(ms) if Duration::from_millis(ms) + Duration::from_secs(1) < LIVEKIT_TIMEOUT);
        let bound = LIVEKIT_TIMEOUT + MARGIN;
        for p in &probes {
            let subject = format!("{} under {fault}", p.what);
            report.check(
                "livekit.answers_in_time",
                &subject,
                p.elapsed <= bound,
                || format!("answered after {:?} (bound {bound:?})", p.elapsed),
            );
            let (ok, got) = match &p.answer {
                Ok(a) if succeeds => (a.status == 201, format!("{} {}", a.status, a.code())),
                Ok(a) => (
                    matches!(a.status, 500 | 503)
                        && a.code() == "INTERNAL_ERROR"
                        && a.body["error"].as_str().is_some_and(|m| !m.is_empty()),
                    format!("{} {} {}", a.status, a.code(), a.body),
                ),
                Err(e) => (false, e.clone()),
            };
            report.check("livekit.clear_answer", &subject, ok, || {
                format!(
                    "expected {}, got {got}",
                    if succeeds {
                        "201 (slow but within the timeout)"
                    } else {
                        "5xx INTERNAL_ERROR with a message"
                    }
                )
            });
        }
        // Hold the fault a moment longer: deadlines and consumers meet it too.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lifted = self.api.sim("/sim/reset", json!({})).await;
        report.check(
            "livekit.fault_lifted",
            format!("{fault}"),
            lifted.is_ok_and(|a| a.ok()),
            || "livekit-sim did not reset".into(),
        );
        self.retries_bounded(fault, since_ms, report).await;
        for svc in [Svc::SessionManager, Svc::CallSignaling, Svc::Moderation] {
            let healthy = self.stack.wait_healthy(svc, Duration::from_secs(30)).await;
            report.check(
                "livekit.converges",
                format!("{} after {fault}", svc.bin()),
                healthy.is_ok(),
                || {
                    format!(
                        "not healthy once LiveKit is back: {:#}",
                        healthy.err().unwrap_or_else(|| anyhow::anyhow!("?"))
                    )
                },
            );
        }
        let started = Instant::now();
        let records = workload::finish_probes(&self.api, &self.lookup, &self.cast).await;
        report.check(
            "livekit.converges",
            format!("probes after {fault}"),
            records.gave_up.is_empty(),
            || {
                format!(
                    "after {:?}: {}",
                    started.elapsed(),
                    records.gave_up.join("; ")
                )
            },
        );
        self.probes.push(records);
    }

    /// No (method, room) got more than [`RETRY_BOUND`] RoomService calls since the fault.
    async fn retries_bounded(&self, fault: Fault, since_ms: i64, report: &mut Report) {
        let url = format!("{}/sim/calls", self.api.urls.livekit_sim);
        let calls = match self
            .api
            .send(None, reqwest::Method::GET, &url, None, None)
            .await
        {
            Ok(a) if a.ok() => a.body.as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut per: std::collections::HashMap<(String, String), usize> = Default::default();
        for c in calls
            .iter()
            .filter(|c| c["atMs"].as_i64().unwrap_or(0) >= since_ms)
        {
            let room = c["room"].as_str().unwrap_or_default();
            if room.is_empty() {
                continue; // ListRooms: the health checks' and the periodic reconciliation's
            }
            let method = c["method"].as_str().unwrap_or_default();
            *per.entry((method.to_owned(), room.to_owned())).or_default() += 1;
        }
        let worst = per.iter().max_by_key(|(_, n)| **n);
        report.check(
            "livekit.retries_bounded",
            format!("{fault}"),
            worst.is_none_or(|(_, n)| *n <= RETRY_BOUND),
            || format!("{worst:?} calls (bound {RETRY_BOUND})"),
        );
    }
}
