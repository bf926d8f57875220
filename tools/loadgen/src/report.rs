//! The JSON report of a run and its one-line summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu::CpuUsage;
use crate::engine::Outcome;

/// One run, as written to `--out` (the files under `bench/results/`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: &'static str,
    /// When the measured phase started (RFC 3339 UTC).
    pub started_at: String,
    /// `git rev-parse --short HEAD` of the working directory, when there is one.
    pub git_commit: Option<String>,
    /// Whether the working tree had uncommitted changes (the commit alone does not say
    /// what was measured then).
    pub git_dirty: Option<bool>,
    pub machine: Machine,
    /// The scenario's parameters, as given or defaulted.
    pub params: serde_json::Value,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub duration_secs: f64,
    /// Requests answered (successes and errors) per second of the measured phase.
    pub throughput_per_sec: f64,
    /// Latency of the successful requests.
    pub latency_ms: LatencyMs,
    /// CPU use of the machine, the load generator and the watched processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUsage>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cores: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`: a run on a machine with less memory may not compare.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The kernel release (`/proc/sys/kernel/osrelease`): the network stack is part of what
    /// is measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl Machine {
    pub fn this() -> Self {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("model name"))
                        .and_then(|rest| rest.split_once(':'))
                        .map(|(_, model)| model.trim().to_owned())
                }),
            memory_mib: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|info| mem_total_mib(&info)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty()),
        }
    }
}

/// `MemTotal:       8138088 kB` → 7947.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Percentiles in milliseconds (three decimals: the histogram records microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    /// Summarises a histogram of microseconds; all zeros when it is empty.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencyMs {
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let ms = |us: f64| round3(us / 1000.0);
        LatencyMs {
            p50: ms(h.value_at_quantile(0.50) as f64),
            p95: ms(h.value_at_quantile(0.95) as f64),
            p99: ms(h.value_at_quantile(0.99) as f64),
            max: ms(h.max() as f64),
            mean: ms(h.mean()),
        }
    }
}

impl Report {
    pub fn new(
        scenario: &'static str,
        started_at: chrono::DateTime<chrono::Utc>,
        params: serde_json::Value,
        outcome: &Outcome,
        cpu: Option<CpuUsage>,
    ) -> Self {
        let secs = outcome.elapsed.as_secs_f64();
        Report {
            scenario,
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            git_commit: git(&["rev-parse", "--short", "HEAD"]),
            git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .map(|s| !s.is_empty()),
            machine: Machine::this(),
            params,
            requests: outcome.requests,
            ok: outcome.ok,
            errors: outcome.errors.clone(),
            duration_secs: round3(secs),
            throughput_per_sec: if secs > 0.0 {
                (outcome.requests as f64 / secs).round()
            } else {
                0.0
            },
            latency_ms: LatencyMs::from_micros(&outcome.latency_us),
            cpu: cpu.map(|c| c.per_request(outcome.requests)),
        }
    }

    /// `join-storm: 20000 requests (20000 ok, 0 errors) in 2.41 s = 8299/s; p50 5.1 ms ...`
    pub fn summary(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        let mut line = format!(
            "{}: {} requests ({} ok, {} errors) in {:.2} s = {:.0}/s; latency ms p50 {:.2} p95 {:.2} p99 {:.2} max {:.2} mean {:.2}",
            self.scenario,
            self.requests,
            self.ok,
            errors,
            self.duration_secs,
            self.throughput_per_sec,
            self.latency_ms.p50,
            self.latency_ms.p95,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.latency_ms.mean,
        );
        if errors > 0 {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            line.push_str(&format!(" [{}]", kinds.join(", ")));
        }
        if let Some(cpu) = &self.cpu {
            let each: Vec<String> = cpu
                .processes
                .iter()
                .map(|(label, p)| format!("{label} {:.0}%", p.pct_of_core))
                .collect();
            line.push_str(&format!("; cpu {}", each.join(", ")));
            if let Some(busy) = cpu.machine_busy_pct {
                line.push_str(&format!(
                    "; machine {busy:.0}% busy ({} cores)",
                    self.machine.cores
                ));
            }
            line.push_str(&format!(", others {:.0}%", cpu.others_pct_of_core));
            if let Some(before) = cpu.machine_busy_before_pct {
                line.push_str(&format!(", {before:.0}% busy before the run"));
            }
        }
        line
    }

    /// Writes the pretty JSON to `path` (parent folders created).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The trimmed output of a git command, or `None` outside a repository or without git.
pub(crate) fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn histogram(values_us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in values_us {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn percentiles_in_milliseconds() {
        // 1..=1000 ms in steps of 1 ms.
        let l = LatencyMs::from_micros(&histogram((1..=1000).map(|ms| ms * 1000)));
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(l.p50, 500.0), "{l:?}");
        assert!(close(l.p95, 950.0), "{l:?}");
        assert!(close(l.p99, 990.0), "{l:?}");
        assert!(close(l.max, 1000.0), "{l:?}");
        assert!(close(l.mean, 500.5), "{l:?}");
    }

    #[test]
    fn sub_millisecond_latencies_keep_microseconds() {
        let l = LatencyMs::from_micros(&histogram([250, 250, 250, 1_500]));
        assert_eq!(l.p50, 0.25);
        assert_eq!(l.max, 1.5);
    }

    #[test]
    fn memory_from_meminfo() {
        let info = "MemTotal:        8138088 kB\nMemFree:          123456 kB\n";
        assert_eq!(mem_total_mib(info), Some(7947));
        assert_eq!(mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_mib("MemTotal: lots\n"), None);
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        assert_eq!(LatencyMs::from_micros(&histogram([])).p99, 0.0);
    }

    #[test]
    fn report_json_and_summary() {
        let mut errors = BTreeMap::new();
        errors.insert("429 RATE_LIMITED".to_owned(), 2);
        let outcome = Outcome {
            requests: 102,
            ok: 100,
            errors,
            latency_us: histogram((1..=100).map(|i| i * 100)),
            elapsed: Duration::from_millis(500),
        };
        let report = Report::new(
            "join-storm",
            chrono::Utc::now(),
            serde_json::json!({"viewers": 100}),
            &outcome,
            None,
        );
        assert_eq!(report.throughput_per_sec, 204.0);
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "scenario",
            "startedAt",
            "gitCommit",
            "machine",
            "params",
            "requests",
            "ok",
            "errors",
            "durationSecs",
            "throughputPerSec",
            "latencyMs",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
        assert_eq!(json["errors"]["429 RATE_LIMITED"], 2);
        for key in ["p50", "p95", "p99", "max", "mean"] {
            assert!(json["latencyMs"][key].is_f64(), "{key}");
        }
        let line = report.summary();
        assert!(
            line.starts_with("join-storm: 102 requests (100 ok, 2 errors)"),
            "{line}"
        );
        assert!(line.contains("429 RATE_LIMITED ×2"), "{line}");
    }
}
