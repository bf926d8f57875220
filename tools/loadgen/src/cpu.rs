//! Where the CPU went during the measured phase: the CPU time of the load generator itself,
//! of the processes named with `--cpu-watch`, and how busy the whole machine was. Read from
//! `/proc` before and after the phase (Linux; elsewhere the report has no `cpu`).
//!
//! On a small machine the service, PostgreSQL and the load generator share the cores, so a
//! throughput figure means little without knowing which of them was saturated.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;

/// `/proc` counts CPU time in USER_HZ ticks, 100 a second on every Linux architecture we run.
const TICKS_PER_SEC: f64 = 100.0;

/// Which processes one `--cpu-watch` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub label: String,
    selector: Selector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    /// Every process whose command name (`/proc/<pid>/comm`) is `name`, e.g. all `postgres`
    /// processes; with `args_contain`, only those whose command line holds that text (the
    /// PostgreSQL backends of one database: their title names it).
    Command {
        name: String,
        args_contain: Option<String>,
    },
    /// One process.
    Pid(u32),
    /// The load generator.
    Myself,
}

impl std::str::FromStr for Watch {
    type Err = String;

    /// `NAME` (every process with that command name), `NAME:TEXT` (those of them whose
    /// command line contains TEXT) or `LABEL=PID`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let invalid = || format!("`{spec}`: expected NAME, NAME:TEXT or LABEL=PID");
        if let Some((label, pid)) = spec.split_once('=') {
            let pid = pid.trim().parse().map_err(|_| invalid())?;
            if label.is_empty() {
                return Err(invalid());
            }
            return Ok(Watch {
                label: label.to_owned(),
                selector: Selector::Pid(pid),
            });
        }
        let (name, args_contain) = match spec.split_once(':') {
            Some((name, text)) => (name, Some(text.to_owned()).filter(|t| !t.is_empty())),
            None => (spec, None),
        };
        if name.is_empty() || (spec.contains(':') && args_contain.is_none()) {
            return Err(invalid());
        }
        Ok(Watch {
            label: spec.to_owned(),
            selector: Selector::Command {
                name: name.to_owned(),
                args_contain,
            },
        })
    }
}

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// (busy, total) ticks of the whole machine.
    machine: Option<(u64, u64)>,
    /// Ticks per process id, per label.
    processes: Vec<(String, HashMap<u32, u64>)>,
}

/// CPU use over the measured phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuUsage {
    /// Share of all cores that was busy (any process), in percent.
    pub machine_busy_pct: Option<f64>,
    /// How busy the machine was in the second before the run started (nothing of ours
    /// running): above a few percent, something else competed for the cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_busy_before_pct: Option<f64>,
    /// CPU used during the run by everything not watched (other work on the machine, the
    /// kernel's own threads), in percent of one core: well above a few percent, the run
    /// shared the machine and its figures are low.
    pub others_pct_of_core: f64,
    /// Per label: CPU seconds and percent of one core (as `top` shows; 200 = two cores).
    pub processes: BTreeMap<String, ProcessCpu>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessCpu {
    pub cpu_secs: f64,
    pub pct_of_core: f64,
    /// CPU milliseconds per request of the run: what a request costs this process, which
    /// moves far less than throughput when something else shares the machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_request: Option<f64>,
}

/// Reads every counter for `watches`, plus the load generator itself (`loadgen`).
pub fn snapshot(watches: &[Watch]) -> Snapshot {
    let myself = Watch {
        label: "loadgen".to_owned(),
        selector: Selector::Myself,
    };
    let all_stats = watches
        .iter()
        .any(|w| matches!(w.selector, Selector::Command { .. }))
        .then(all_process_stats);
    let processes = std::iter::once(&myself)
        .chain(watches)
        .map(|w| {
            let ticks = match &w.selector {
                Selector::Myself => read_stat("self")
                    .map(|(pid, _, t)| HashMap::from([(pid, t)]))
                    .unwrap_or_default(),
                Selector::Pid(pid) => read_stat(&pid.to_string())
                    .map(|(_, _, t)| HashMap::from([(*pid, t)]))
                    .unwrap_or_default(),
                Selector::Command { name, args_contain } => all_stats
                    .iter()
                    .flatten()
                    .filter(|(pid, comm, _)| {
                        comm == name
                            && args_contain
                                .as_deref()
                                .is_none_or(|text| command_line(*pid).contains(text))
                    })
                    .map(|(pid, _, t)| (*pid, *t))
                    .collect(),
            };
            (w.label.clone(), ticks)
        })
        .collect();
    Snapshot {
        at: Instant::now(),
        machine: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| machine_ticks(&s)),
        processes,
    }
}

/// How busy the whole machine is over the next `period`, in percent.
pub async fn machine_busy(period: std::time::Duration) -> Option<f64> {
    let before = snapshot(&[]);
    tokio::time::sleep(period).await;
    usage(&before, &snapshot(&[]))?.machine_busy_pct
}

/// The CPU used between two snapshots of the same watches. A process that started in
/// between counts whole; one that ended in between is lost (short-lived processes are rare
/// here: the services keep pooled connections).
pub fn usage(before: &Snapshot, after: &Snapshot) -> Option<CpuUsage> {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let ((busy0, total0), (busy1, total1)) = (before.machine?, after.machine?);
    if wall <= 0.0 || total1 <= total0 {
        return None;
    }
    let delta = |now: &HashMap<u32, u64>, then: &HashMap<u32, u64>| -> HashMap<u32, u64> {
        now.iter()
            .map(|(pid, t)| (*pid, t.saturating_sub(then.get(pid).copied().unwrap_or(0))))
            .collect()
    };
    let pct_of_core = |ticks: u64| round1(ticks as f64 / TICKS_PER_SEC * 100.0 / wall);
    // Watches may overlap (`postgres` and `postgres:ipelya_bench`): each process counts once
    // towards what the watched processes used together.
    let mut watched: HashMap<u32, u64> = HashMap::new();
    let mut processes = BTreeMap::new();
    for ((label, now), (_, then)) in after.processes.iter().zip(&before.processes) {
        let used = delta(now, then);
        let ticks: u64 = used.values().sum();
        watched.extend(used);
        let secs = ticks as f64 / TICKS_PER_SEC;
        processes.insert(
            label.clone(),
            ProcessCpu {
                cpu_secs: (secs * 100.0).round() / 100.0,
                pct_of_core: pct_of_core(ticks),
                cpu_ms_per_request: None,
            },
        );
    }
    let busy_ticks = busy1.saturating_sub(busy0);
    let watched_ticks: u64 = watched.values().sum();
    Some(CpuUsage {
        machine_busy_pct: Some(round1(busy_ticks as f64 * 100.0 / (total1 - total0) as f64)),
        machine_busy_before_pct: None,
        others_pct_of_core: pct_of_core(busy_ticks.saturating_sub(watched_ticks)),
        processes,
    })
}

impl CpuUsage {
    /// Fills in each process's CPU cost per request.
    pub fn per_request(mut self, requests: u64) -> Self {
        if requests > 0 {
            for p in self.processes.values_mut() {
                let ms = p.cpu_secs * 1000.0 / requests as f64;
                p.cpu_ms_per_request = Some((ms * 1000.0).round() / 1000.0);
            }
        }
        self
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// (pid, command name, utime + stime ticks) of every process.
fn all_process_stats() -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: u32 = name.to_str()?.parse().ok()?;
        read_stat(&pid.to_string())
    })
    .collect()
}

/// The command line (arguments joined by spaces; a PostgreSQL backend's title) or "".
fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

fn read_stat(pid: &str) -> Option<(u32, String, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... utime stime ...`; the command name
/// may hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<(u32, String, u64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    let mut fields = line[close + 1..].split_whitespace().skip(11); // to field 14, utime
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((pid, comm, utime + stime))
}

/// (busy, total) from the `cpu` line of `/proc/stat`; idle and iowait are not busy.
fn machine_ticks(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest is inside user)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_watch_specs() {
        assert_eq!(
            "postgres".parse::<Watch>().unwrap(),
            Watch {
                label: "postgres".into(),
                selector: Selector::Command {
                    name: "postgres".into(),
                    args_contain: None
                }
            }
        );
        assert_eq!(
            "postgres:ipelya_bench".parse::<Watch>().unwrap(),
            Watch {
                label: "postgres:ipelya_bench".into(),
                selector: Selector::Command {
                    name: "postgres".into(),
                    args_contain: Some("ipelya_bench".into())
                }
            }
        );
        assert!("postgres:".parse::<Watch>().is_err());
        assert!(":x".parse::<Watch>().is_err());
        assert_eq!(
            "token-issuer=4242".parse::<Watch>().unwrap(),
            Watch {
                label: "token-issuer".into(),
                selector: Selector::Pid(4242)
            }
        );
        assert!("x=abc".parse::<Watch>().is_err());
        assert!("=12".parse::<Watch>().is_err());
        assert!("".parse::<Watch>().is_err());
    }

    #[test]
    fn parses_proc_stat_lines() {
        let line = "4242 (token (issuer)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    731 269 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some((4242, "token (issuer)".to_owned(), 1000))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn machine_busy_share() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some((150, 1000)));
    }

    #[test]
    fn usage_between_snapshots() {
        let at = Instant::now();
        let before = Snapshot {
            at,
            machine: Some((100, 1000)),
            processes: vec![
                ("postgres".into(), HashMap::from([(1, 50), (2, 10)])),
                ("postgres:db".into(), HashMap::from([(1, 50)])),
            ],
        };
        let after = Snapshot {
            at: at + std::time::Duration::from_secs(2),
            machine: Some((400, 1400)),
            // pid 2 ended, pid 3 started
            processes: vec![
                ("postgres".into(), HashMap::from([(1, 150), (3, 30)])),
                ("postgres:db".into(), HashMap::from([(1, 150)])),
            ],
        };
        let u = usage(&before, &after).unwrap();
        assert_eq!(u.machine_busy_pct, Some(75.0));
        // 300 busy ticks in 2 s, 130 of them watched (pid 1 counted once): 170 = 85 %.
        assert_eq!(u.others_pct_of_core, 85.0);
        assert_eq!(u.processes["postgres:db"].cpu_secs, 1.0);
        let pg = u.processes["postgres"];
        assert_eq!(pg.cpu_secs, 1.3);
        assert_eq!(pg.pct_of_core, 65.0);
        let pg = u.per_request(1000).processes["postgres"];
        assert_eq!(pg.cpu_ms_per_request, Some(1.3));
    }

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let before = snapshot(&[]);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let u = usage(&before, &snapshot(&[])).unwrap();
        assert!(u.processes.contains_key("loadgen"));
        assert!(u.machine_busy_pct.is_some());
    }
}
