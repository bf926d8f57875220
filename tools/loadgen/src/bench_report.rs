//! `loadgen report`: the result files of `bench/results/` as one Markdown page for a run,
//! with a table and an SVG chart per scenario comparing the run with the ones before it.
//!
//! Result files are read as plain JSON, field by field: files written by earlier versions of
//! the tool lack some fields (shown as `—`), and a file that cannot be used is listed on the
//! page with the reason instead of stopping the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::chart::{self, BarStyle, Chart, Point, number};

/// Arguments of `loadgen report`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Folder of the result files (`<stamp>-<scenario>.json`, as `scripts/loadtest.sh`
    /// writes them).
    #[arg(long, default_value = "bench/results")]
    pub results: PathBuf,
    /// Where the page goes: `<stamp>.md`, a copy as `latest.md`, the charts in `<stamp>/`.
    #[arg(long, default_value = "bench/reports")]
    pub out_dir: PathBuf,
    /// The run to report on (the `<stamp>` of its result files); default: the newest.
    #[arg(long)]
    pub stamp: Option<String>,
    /// Runs per scenario in the tables and charts: this one and those before it.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub last: u16,
}

/// Other work above this share of one core (during the run, or of the machine in the
/// second before it) makes a run's figures noisy.
const BUSY_PCT: f64 = 10.0;

/// The scenarios, in the order of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    JoinStorm,
    WebhookFlood,
    SseFanout,
    CallStorm,
    ChatStorm,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::JoinStorm,
        Kind::WebhookFlood,
        Kind::SseFanout,
        Kind::CallStorm,
        Kind::ChatStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::JoinStorm => "join-storm",
            Kind::WebhookFlood => "webhook-flood",
            Kind::SseFanout => "sse-fanout",
            Kind::CallStorm => "call-storm",
            Kind::ChatStorm => "chat-storm",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn title(self) -> &'static str {
        match self {
            Kind::JoinStorm => "Join storm",
            Kind::WebhookFlood => "Webhook flood",
            Kind::SseFanout => "SSE fan-out",
            Kind::CallStorm => "Call storm",
            Kind::ChatStorm => "Chat storm",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::JoinStorm => {
                "Every viewer asks token-issuer once for a token to one public live session \
                 (`POST /v1/tokens`). Throughput: answered requests per second; latency: one \
                 request, 2xx answers."
            }
            Kind::WebhookFlood => {
                "Signed `participant_joined` webhooks to webhook-ingest \
                 (`POST /webhooks/livekit`). Throughput: answered webhooks per second; \
                 latency: one webhook, 2xx answers."
            }
            Kind::SseFanout => {
                "Every participant of one live session holds `GET /v1/events` open on the \
                 notifier; events are published one at a time. Throughput: receipts per \
                 second while an event fans out (connected clients ÷ mean time from the \
                 publish to the last client); latency: publish → last client, per event."
            }
            Kind::CallStorm => {
                "Pairs of users call each other at once through call-signaling: initiate, \
                 push (notifier in log mode), `call.ringing` on the callee's stream, accept. \
                 Throughput: call set-ups per second; latency: one whole set-up."
            }
            Kind::ChatStorm => {
                "Every participant of one live session posts chat messages through \
                 session-manager, past the rate limit. Throughput: answered posts per second \
                 (201 and 429); latency: the 201 answers."
            }
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Kind::JoinStorm => "requests/s",
            Kind::WebhookFlood => "webhooks/s",
            Kind::SseFanout => "receipts/s",
            Kind::CallStorm => "set-ups/s",
            Kind::ChatStorm => "answers/s",
        }
    }

    fn latency_of(self) -> &'static str {
        match self {
            Kind::JoinStorm => "one token request",
            Kind::WebhookFlood => "one webhook",
            Kind::SseFanout => "publish → last client",
            Kind::CallStorm => "one call set-up",
            Kind::ChatStorm => "one accepted post (201)",
        }
    }

    fn cpu_per(self) -> &'static str {
        match self {
            Kind::SseFanout => "event",
            Kind::CallStorm => "call set-up",
            _ => "request",
        }
    }

    /// The parameters that make two runs the same size, with their labels.
    fn size_params(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::JoinStorm => &[("viewers", "viewers"), ("connections", "connections")],
            Kind::WebhookFlood => &[("events", "events"), ("connections", "connections")],
            Kind::SseFanout => &[("clients", "clients"), ("events", "events")],
            Kind::CallStorm => &[("pairs", "pairs"), ("concurrency", "in flight")],
            Kind::ChatStorm => &[
                ("participants", "participants"),
                ("messagesPerParticipant", "messages each"),
                ("connections", "connections"),
            ],
        }
    }
}

/// One result file, as the page needs it.
#[derive(Debug, Clone)]
pub struct Run {
    pub file: String,
    /// `20261201T220706Z`: the run of `scripts/loadtest.sh` the file belongs to.
    pub stamp: String,
    pub kind: Kind,
    pub commit: Option<String>,
    pub dirty: Option<bool>,
    /// Cores and CPU model: runs compare only on the same.
    pub machine: Option<String>,
    /// Memory and kernel, for the header.
    pub machine_more: Option<String>,
    pub size: String,
    pub throughput: f64,
    /// p50, p95, p99 in milliseconds.
    pub latency: [f64; 3],
    pub errors: BTreeMap<String, u64>,
    pub detail: Option<String>,
    pub cpu_ms: BTreeMap<String, f64>,
    pub others_pct: Option<f64>,
    pub busy_before_pct: Option<f64>,
}

/// A file the page could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

impl Run {
    /// Reads one result file; `Err` says why it cannot be used.
    pub fn parse(file: &str, text: &str) -> Result<Run, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let scenario = json
            .get("scenario")
            .and_then(Value::as_str)
            .ok_or("no `scenario`")?;
        let kind =
            Kind::from_name(scenario).ok_or_else(|| format!("unknown scenario `{scenario}`"))?;
        let stamp = stamp_of(file, &json).ok_or("no timestamp in the name or `startedAt`")?;
        let params = json.get("params").unwrap_or(&Value::Null);
        let (throughput, latency, detail) = match kind {
            Kind::SseFanout => {
                let connected = json
                    .get("connected")
                    .and_then(Value::as_f64)
                    .ok_or("no `connected`")?;
                let last = json.get("eventToLastClientMs");
                let latency = percentiles(last).ok_or("no `eventToLastClientMs`")?;
                let mean_ms = last.and_then(|l| l.get("mean")).and_then(Value::as_f64);
                let throughput = match mean_ms {
                    Some(ms) if ms > 0.0 => (connected / (ms / 1000.0)).round(),
                    _ => 0.0,
                };
                let field = |k: &str| json.get(k).and_then(Value::as_u64);
                let detail = format!(
                    "{} of {} clients connected, {} of {} events to every client, {} receipts missed",
                    connected,
                    field("clients").map_or("?".into(), |v| v.to_string()),
                    field("eventsFullyDelivered").map_or("?".into(), |v| v.to_string()),
                    field("events").map_or("?".into(), |v| v.to_string()),
                    field("missedReceipts").map_or("?".into(), |v| v.to_string()),
                );
                (throughput, latency, Some(detail))
            }
            _ => {
                let throughput = json
                    .get("throughputPerSec")
                    .and_then(Value::as_f64)
                    .ok_or("no `throughputPerSec`")?;
                let latency = percentiles(json.get("latencyMs")).ok_or("no `latencyMs`")?;
                (throughput, latency, detail(kind, params))
            }
        };
        let errors = json
            .get("errors")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let cpu = json.get("cpu");
        let cpu_ms = cpu
            .and_then(|c| c.get("processes"))
            .and_then(Value::as_object)
            .map(|procs| {
                procs
                    .iter()
                    .filter_map(|(label, p)| {
                        Some((label.clone(), p.get("cpuMsPerRequest")?.as_f64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cpu_field = |k: &str| cpu.and_then(|c| c.get(k)).and_then(Value::as_f64);
        let machine = json.get("machine");
        let machine_field = |k: &str| machine.and_then(|m| m.get(k));
        Ok(Run {
            file: file.to_owned(),
            stamp,
            kind,
            commit: json
                .get("gitCommit")
                .and_then(Value::as_str)
                .map(str::to_owned),
            dirty: json.get("gitDirty").and_then(Value::as_bool),
            machine: machine_field("cores").and_then(Value::as_u64).map(
                |cores| match machine_field("cpuModel").and_then(Value::as_str) {
                    Some(model) => format!("{cores} × {model}"),
                    None => format!("{cores} cores"),
                },
            ),
            machine_more: {
                let parts: Vec<String> = [
                    machine_field("memoryMib")
                        .and_then(Value::as_u64)
                        .map(|m| format!("{m} MiB")),
                    machine_field("kernel")
                        .and_then(Value::as_str)
                        .map(|k| format!("kernel {k}")),
                ]
                .into_iter()
                .flatten()
                .collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            },
            size: size(kind, params),
            throughput,
            latency,
            errors,
            detail,
            cpu_ms,
            others_pct: cpu_field("othersPctOfCore"),
            busy_before_pct: cpu_field("machineBusyBeforePct"),
        })
    }

    fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Something else had the cores: during the run, or right before it.
    fn busy(&self) -> bool {
        self.others_pct.is_some_and(|p| p > BUSY_PCT)
            || self.busy_before_pct.is_some_and(|p| p > BUSY_PCT)
    }

    fn compares_with(&self, other: &Run) -> bool {
        self.size == other.size && self.machine == other.machine
    }

    fn commit_text(&self) -> String {
        match (&self.commit, self.dirty) {
            (Some(c), Some(true)) => format!("`{c}`*"),
            (Some(c), _) => format!("`{c}`"),
            (None, _) => "—".to_owned(),
        }
    }
}

/// The stamp in the file name (`<stamp>-<scenario>.json`), or else the one of `startedAt`.
fn stamp_of(file: &str, json: &Value) -> Option<String> {
    let name = Path::new(file).file_name()?.to_str()?;
    let looks_like = |s: &str| {
        s.len() == 16
            && s.char_indices().all(|(i, c)| match i {
                8 => c == 'T',
                15 => c == 'Z',
                _ => c.is_ascii_digit(),
            })
    };
    if let Some((stamp, _)) = name.split_once('-').filter(|(s, _)| looks_like(s)) {
        return Some(stamp.to_owned());
    }
    let started = json.get("startedAt")?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(started).ok()?;
    Some(
        at.with_timezone(&chrono::Utc)
            .format("%Y%m%dT%H%M%SZ")
            .to_string(),
    )
}

fn percentiles(v: Option<&Value>) -> Option<[f64; 3]> {
    let v = v?;
    let p = |k: &str| v.get(k)?.as_f64();
    Some([p("p50")?, p("p95")?, p("p99")?])
}

fn size(kind: Kind, params: &Value) -> String {
    let parts: Vec<String> = kind
        .size_params()
        .iter()
        .filter_map(|(key, label)| Some(format!("{} {label}", params.get(*key)?)))
        .collect();
    if parts.is_empty() {
        "unknown size".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The figures of a scenario that the common columns do not hold.
fn detail(kind: Kind, params: &Value) -> Option<String> {
    let p50 = |key: &str| params.get(key)?.get("p50")?.as_f64();
    match kind {
        Kind::CallStorm => Some(format!(
            "initiate p50 {} ms, ringing p50 {} ms",
            number(p50("initiateLatencyMs")?),
            number(p50("ringingLatencyMs")?)
        )),
        Kind::ChatStorm => Some(format!(
            "{} posts/s accepted (201), {} × 429 (p50 {} ms)",
            params.get("postedPerSec")?,
            params.get("rateLimited429")?,
            number(p50("rateLimitedLatencyMs")?)
        )),
        _ => None,
    }
}

/// Every `*.json` of `dir`, read; the unusable ones as [`Skipped`].
pub fn load(dir: &Path) -> anyhow::Result<(Vec<Run>, Vec<Skipped>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("unreadable ({e})"))
            .and_then(|text| Run::parse(&file, &text));
        match parsed {
            Ok(run) => runs.push(run),
            Err(reason) => skipped.push(Skipped { file, reason }),
        }
    }
    Ok((runs, skipped))
}

/// The page of one run: the Markdown and one SVG per scenario that has runs.
#[derive(Debug)]
pub struct Page {
    pub stamp: String,
    /// No run is newer: the page is also `latest.md`.
    pub newest: bool,
    pub markdown: String,
    pub charts: Vec<(Kind, String)>,
}

impl Page {
    /// Where the chart of a scenario goes, relative to the page.
    pub fn chart_path(stamp: &str, kind: Kind) -> String {
        format!("{stamp}/{}.svg", kind.name())
    }
}

/// One scenario's runs up to the reported one.
struct History<'a> {
    kind: Kind,
    /// The last `last` runs, oldest first.
    shown: Vec<&'a Run>,
    /// Runs older than those shown.
    hidden: usize,
    /// The run compared with the others: the reported run's, else the newest.
    reference: &'a Run,
    in_this_run: bool,
    /// The newest earlier run of the same size on the same machine.
    previous: Option<&'a Run>,
}

impl<'a> History<'a> {
    fn new(kind: Kind, runs: &'a [Run], stamp: &str, last: usize) -> Option<Self> {
        let mut all: Vec<&Run> = runs
            .iter()
            .filter(|r| r.kind == kind && r.stamp.as_str() <= stamp)
            .collect();
        all.sort_by(|a, b| (&a.stamp, &a.file).cmp(&(&b.stamp, &b.file)));
        let reference = *all.last()?;
        let previous = all[..all.len() - 1]
            .iter()
            .rev()
            .find(|r| r.compares_with(reference))
            .copied();
        let hidden = all.len().saturating_sub(last);
        Some(History {
            kind,
            shown: all.split_off(hidden),
            hidden,
            reference,
            in_this_run: reference.stamp == stamp,
            previous,
        })
    }

    fn style(&self, run: &Run) -> BarStyle {
        if std::ptr::eq(run, self.reference) {
            BarStyle::Current
        } else if run.compares_with(self.reference) {
            BarStyle::Comparable
        } else {
            BarStyle::Other
        }
    }

    fn chart(&self) -> String {
        let points: Vec<Point> = self
            .shown
            .iter()
            .map(|r| Point {
                label: short_stamp(&r.stamp),
                sub: match (&r.commit, r.dirty) {
                    (Some(c), Some(true)) => format!("{c}*"),
                    (Some(c), _) => c.clone(),
                    (None, _) => "no commit".to_owned(),
                },
                throughput: r.throughput,
                latency: r.latency,
                style: self.style(r),
            })
            .collect();
        let dirty = self.shown.iter().any(|r| r.dirty == Some(true));
        let subtitle = format!(
            "{}; {}",
            self.reference.size,
            if self.in_this_run {
                "this run and the ones before it"
            } else {
                "not measured in this run"
            }
        );
        chart::svg(&Chart {
            title: self.kind.title(),
            subtitle: &subtitle,
            current_label: if self.in_this_run {
                "this run"
            } else {
                "newest run"
            },
            throughput_unit: self.kind.unit(),
            latency_of: self.kind.latency_of(),
            points: &points,
            footnote: dirty.then_some("* uncommitted changes in the working tree"),
        })
    }

    /// `throughput −18 % (6892 → 5610 requests/s), p99 +24 % (15.5 → 19.2 ms)`.
    fn change(&self) -> Option<String> {
        let (old, new) = (self.previous?, self.reference);
        Some(format!(
            "throughput {} ({} → {} {}), p50 {} ({} → {} ms), p99 {} ({} → {} ms)",
            percent_change(old.throughput, new.throughput),
            number(old.throughput),
            number(new.throughput),
            self.kind.unit(),
            percent_change(old.latency[0], new.latency[0]),
            number(old.latency[0]),
            number(new.latency[0]),
            percent_change(old.latency[2], new.latency[2]),
            number(old.latency[2]),
            number(new.latency[2]),
        ))
    }
}

fn percent_change(old: f64, new: f64) -> String {
    if old == 0.0 {
        return "n/a".to_owned();
    }
    let pct = (new - old) / old * 100.0;
    match pct.round() {
        p if p > 0.0 => format!("+{p:.0} %"),
        p if p < 0.0 => format!("−{:.0} %", -p),
        _ => "±0 %".to_owned(),
    }
}

/// `20261201T220706Z` → `12-01 22:07`.
fn short_stamp(stamp: &str) -> String {
    match (
        stamp.get(4..6),
        stamp.get(6..8),
        stamp.get(9..11),
        stamp.get(11..13),
    ) {
        (Some(mo), Some(d), Some(h), Some(mi)) => format!("{mo}-{d} {h}:{mi}"),
        _ => stamp.to_owned(),
    }
}

fn errors_text(run: &Run) -> String {
    let total = run.error_total();
    if total == 0 {
        return "0".to_owned();
    }
    let kinds: Vec<String> = run
        .errors
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect();
    format!("{total} ({})", kinds.join(", "))
}

fn load_text(run: &Run) -> String {
    let mut text = match run.others_pct {
        Some(p) => format!("{p:.0} %"),
        None => "—".to_owned(),
    };
    if run.busy() {
        text.push_str(" busy");
    }
    text
}

/// Builds the page of the run `stamp` (default: the newest) from every run up to it.
pub fn build(
    runs: &[Run],
    skipped: &[Skipped],
    stamp: Option<&str>,
    last: usize,
) -> anyhow::Result<Page> {
    let stamp = match stamp {
        Some(s) => {
            anyhow::ensure!(
                runs.iter().any(|r| r.stamp == s),
                "no result file of run {s}"
            );
            s.to_owned()
        }
        None => runs
            .iter()
            .map(|r| r.stamp.clone())
            .max()
            .context("no usable result files")?,
    };
    let histories: Vec<(Kind, Option<History>)> = Kind::ALL
        .into_iter()
        .map(|k| (k, History::new(k, runs, &stamp, last.max(1))))
        .collect();
    let this: Vec<&Run> = runs.iter().filter(|r| r.stamp == stamp).collect();

    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report {stamp}\n");
    let _ = writeln!(
        md,
        "The load generator's scenarios (`tools/loadgen`) against release builds on this \
         machine, each on a fresh database (`scripts/bench-report.sh`). Per scenario: this \
         run against up to {} runs before it, a chart (throughput per run as bars, this run \
         darkest and runs of another size or machine pale and dashed; p50/p95/p99 latency as \
         lines; oldest run on the left) and the table behind it. `*` after a commit: the \
         working tree had uncommitted changes. Only runs of the same size on the same \
         machine compare.\n",
        last.max(1) - 1
    );
    let commits: BTreeSet<String> = this.iter().map(|r| r.commit_text()).collect();
    let _ = writeln!(
        md,
        "- **Commit**: {}",
        commits.into_iter().collect::<Vec<_>>().join(", ")
    );
    let machines: BTreeSet<String> = this
        .iter()
        .map(|r| {
            let m = r.machine.clone().unwrap_or_else(|| "unknown".to_owned());
            match &r.machine_more {
                Some(more) => format!("{m} ({more})"),
                None => m,
            }
        })
        .collect();
    let _ = writeln!(
        md,
        "- **Machine**: {}",
        machines.into_iter().collect::<Vec<_>>().join("; ")
    );
    let busiest = this
        .iter()
        .filter(|r| r.busy())
        .map(|r| {
            let during = r.others_pct.unwrap_or(0.0);
            let before = r.busy_before_pct.unwrap_or(0.0);
            (during.max(before), r)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let _ = match busiest {
        Some((_, r)) => writeln!(
            md,
            "- **Machine load**: busy: other work took up to {:.0} % of a core during \
             {} (and the machine was {:.0} % busy in the second before it); figures of \
             scenarios marked `busy` are noisy, measure again on a quiet machine before \
             drawing conclusions from them.",
            r.others_pct.unwrap_or(0.0),
            r.kind.name(),
            r.busy_before_pct.unwrap_or(0.0),
        ),
        None if this.iter().any(|r| r.others_pct.is_some()) => writeln!(
            md,
            "- **Machine load**: quiet: other work stayed under {BUSY_PCT:.0} % of a core \
             during every scenario."
        ),
        None => writeln!(
            md,
            "- **Machine load**: not recorded (no `cpu` in the result files)."
        ),
    };
    let missing: Vec<&str> = Kind::ALL
        .into_iter()
        .filter(|k| !this.iter().any(|r| r.kind == *k))
        .map(Kind::name)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(md, "- **Not in this run**: {}", missing.join(", "));
    }
    md.push('\n');

    let _ = writeln!(
        md,
        "| scenario | size | throughput | p50 ms | p99 ms | errors | other load | against the previous comparable run |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---|");
    for (kind, history) in &histories {
        let Some(h) = history.as_ref().filter(|h| h.in_this_run) else {
            continue;
        };
        let r = h.reference;
        let _ = writeln!(
            md,
            "| [{}](#{}) | {} | {} {} | {} | {} | {} | {} | {} |",
            kind.name(),
            anchor(kind.title()),
            r.size,
            number(r.throughput),
            kind.unit(),
            number(r.latency[0]),
            number(r.latency[2]),
            errors_text(r),
            load_text(r),
            h.change().unwrap_or_else(|| "none yet".to_owned())
        );
    }
    md.push('\n');

    let mut charts = Vec::new();
    for (kind, history) in &histories {
        let _ = writeln!(md, "## {}\n", kind.title());
        let _ = writeln!(md, "{}\n", kind.what());
        let Some(h) = history else {
            let _ = writeln!(md, "No runs of `{}` yet.\n", kind.name());
            continue;
        };
        if !h.in_this_run {
            let _ = writeln!(
                md,
                "Not measured in this run; the newest run of it is {}.\n",
                h.reference.stamp
            );
        }
        let path = Page::chart_path(&stamp, *kind);
        let _ = writeln!(
            md,
            "![{}: throughput and p50/p95/p99 latency per run]({path})\n",
            kind.title()
        );
        charts.push((*kind, h.chart()));
        let _ = match (h.change(), h.previous) {
            (Some(change), Some(p)) => writeln!(
                md,
                "Against the previous run of the same size on the same machine ({}, {}): {change}.\n",
                p.stamp,
                p.commit_text()
            ),
            _ => writeln!(
                md,
                "No earlier run of the same size ({}) on the same machine to compare with.\n",
                h.reference.size
            ),
        };
        let with_detail = h.shown.iter().any(|r| r.detail.is_some());
        let _ = write!(
            md,
            "| run | commit | size | {} | p50 ms | p95 ms | p99 ms | errors | other load | compares |",
            kind.unit()
        );
        md.push_str(if with_detail { " notes |\n" } else { "\n" });
        md.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|");
        md.push_str(if with_detail { "---|\n" } else { "\n" });
        for r in &h.shown {
            let style = h.style(r);
            let run = if style == BarStyle::Current {
                format!("**{}**", r.stamp)
            } else {
                r.stamp.clone()
            };
            let compares = match style {
                BarStyle::Current if h.in_this_run => "this run",
                BarStyle::Current => "newest",
                BarStyle::Comparable => "yes",
                BarStyle::Other => {
                    match (r.size != h.reference.size, r.machine != h.reference.machine) {
                        (true, true) => "other size and machine",
                        (true, false) => "other size",
                        _ => "other machine",
                    }
                }
            };
            let _ = write!(
                md,
                "| {run} | {} | {} | {} | {} | {} | {} | {} | {} | {compares} |",
                r.commit_text(),
                r.size,
                number(r.throughput),
                number(r.latency[0]),
                number(r.latency[1]),
                number(r.latency[2]),
                errors_text(r),
                load_text(r),
            );
            if with_detail {
                let _ = write!(md, " {} |", r.detail.as_deref().unwrap_or("—"));
            }
            md.push('\n');
        }
        if h.hidden > 0 {
            let _ = writeln!(
                md,
                "\n{} earlier runs are not shown (`loadgen report --last`).",
                h.hidden
            );
        }
        let processes: BTreeSet<&String> = h.shown.iter().flat_map(|r| r.cpu_ms.keys()).collect();
        if !processes.is_empty() {
            let _ = write!(md, "\nCPU milliseconds per {}", kind.cpu_per());
            if processes.iter().any(|p| p.starts_with("postgres:")) {
                md.push_str(
                    " (`postgres` is all of PostgreSQL, `postgres:<database>` its backends \
                     serving the benchmark's database)",
                );
            }
            md.push_str(":\n\n");
            let names: Vec<&str> = processes.iter().map(|p| p.as_str()).collect();
            let _ = writeln!(md, "| run | {} |", names.join(" | "));
            let _ = writeln!(md, "|---|{}", "---:|".repeat(names.len()));
            for r in h.shown.iter().filter(|r| !r.cpu_ms.is_empty()) {
                let cells: Vec<String> = names
                    .iter()
                    .map(|p| r.cpu_ms.get(*p).map_or("—".to_owned(), |v| number(*v)))
                    .collect();
                let _ = writeln!(md, "| {} | {} |", r.stamp, cells.join(" | "));
            }
        }
        md.push('\n');
    }

    if !skipped.is_empty() {
        let _ = writeln!(md, "## Files skipped\n");
        for s in skipped {
            let _ = writeln!(md, "- `{}`: {}", s.file, s.reason);
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "How to run and compare: `bench/README.md`. Fields of the result files: \
         `tools/loadgen/README.md`."
    );
    Ok(Page {
        newest: runs.iter().all(|r| r.stamp <= stamp),
        stamp,
        markdown: md,
        charts,
    })
}

/// GitHub's heading anchor of a title: lower case, spaces as `-`, other punctuation gone.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `loadgen report`: reads, builds, writes `<stamp>.md`, `latest.md` and the charts.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let (runs, skipped) = load(&args.results)?;
    for s in &skipped {
        eprintln!("report: skipped {}: {}", s.file, s.reason);
    }
    let page = build(
        &runs,
        &skipped,
        args.stamp.as_deref(),
        usize::from(args.last),
    )?;
    let charts_dir = args.out_dir.join(&page.stamp);
    std::fs::create_dir_all(&charts_dir)
        .with_context(|| format!("creating {}", charts_dir.display()))?;
    for (kind, svg) in &page.charts {
        let path = args.out_dir.join(Page::chart_path(&page.stamp, *kind));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    let page_path = args.out_dir.join(format!("{}.md", page.stamp));
    let latest = args.out_dir.join("latest.md");
    let paths = if page.newest {
        vec![&page_path, &latest]
    } else {
        vec![&page_path]
    };
    for path in paths {
        std::fs::write(path, &page.markdown)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "report: {} ({} charts in {}, {} files skipped)",
        page_path.display(),
        page.charts.len(),
        charts_dir.display(),
        skipped.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_JOIN: &str = include_str!("../tests/fixtures/20261126T122851Z-join-storm.json");
    const NEW_JOIN: &str = include_str!("../tests/fixtures/20261202T100000Z-join-storm.json");
    const FANOUT: &str = include_str!("../tests/fixtures/20261202T100000Z-sse-fanout.json");
    const CALLS: &str = include_str!("../tests/fixtures/20261202T100000Z-call-storm.json");
    const NO_COMMIT: &str = include_str!("../tests/fixtures/20261120T090000Z-webhook-flood.json");

    fn runs() -> Vec<Run> {
        [
            ("20261126T122851Z-join-storm.json", OLD_JOIN),
            ("20261202T100000Z-join-storm.json", NEW_JOIN),
            ("20261202T100000Z-sse-fanout.json", FANOUT),
            ("20261202T100000Z-call-storm.json", CALLS),
            ("20261120T090000Z-webhook-flood.json", NO_COMMIT),
        ]
        .into_iter()
        .map(|(f, t)| Run::parse(f, t).unwrap())
        .collect()
    }

    /// Well-formed XML, checked by hand: tags nest and close, attributes are quoted, text
    /// holds no bare `<` or `&` outside an entity.
    fn assert_well_formed(xml: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = xml.trim();
        assert!(rest.starts_with("<svg "), "{rest:.40}");
        while let Some(start) = rest.find('<') {
            check_text(&rest[..start]);
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "`<` inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
                assert!(
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                    "tag name `{name}`"
                );
                check_attributes(attrs);
                if !self_closing {
                    open.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        check_text(rest);
        assert!(open.is_empty(), "never closed: {open:?}");
    }

    fn check_attributes(mut attrs: &str) {
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                return;
            }
            let (name, value) = attrs.split_once("=\"").expect("attribute without quotes");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "attribute `{name}`"
            );
            let close = value.find('"').expect("unterminated attribute");
            check_text(&value[..close]);
            attrs = &value[close + 1..];
        }
    }

    fn check_text(text: &str) {
        assert!(!text.contains('<'), "bare `<` in {text:?}");
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
                "bare `&` in {text:?}"
            );
        }
    }

    #[test]
    fn a_section_a_chart_and_the_numbers_of_every_scenario() {
        let skipped = vec![Skipped {
            file: "bench/results/broken.json".into(),
            reason: "not JSON (EOF while parsing a value at line 1 column 0)".into(),
        }];
        let page = build(&runs(), &skipped, None, 8).unwrap();
        assert_eq!(page.stamp, "20261202T100000Z");
        assert!(page.newest);
        let md = &page.markdown;
        assert!(
            md.starts_with("# Benchmark report 20261202T100000Z\n"),
            "{md}"
        );
        for kind in Kind::ALL {
            assert!(md.contains(&format!("\n## {}\n", kind.title())), "{md}");
        }
        // A chart per scenario with runs, linked from its section; chat-storm has none.
        let charted: Vec<Kind> = page.charts.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            charted,
            [
                Kind::JoinStorm,
                Kind::WebhookFlood,
                Kind::SseFanout,
                Kind::CallStorm
            ]
        );
        for kind in &charted {
            assert!(
                md.contains(&format!("]({})", Page::chart_path(&page.stamp, *kind))),
                "{md}"
            );
        }
        assert!(md.contains("No runs of `chat-storm` yet."), "{md}");
        assert!(
            md.contains("- **Not in this run**: webhook-flood, chat-storm"),
            "{md}"
        );
        // The table rows: the earlier run and this one, with their figures.
        assert!(
            md.contains(
                "| 20261126T122851Z | `92a2dd7` | 20000 viewers, 64 connections | 6892 | 9.22 | 13.3 | 15.5 | 0 | 1 % | yes |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| **20261202T100000Z** | `abc1234`* | 20000 viewers, 64 connections | 5610 | 11.4 | 16.3 | 19.2 | 3 (429 RATE_LIMITED ×2, error: timeout ×1) | 24 % busy | this run |"
            ),
            "{md}"
        );
        assert!(
            md.contains("throughput −19 % (6892 → 5610 requests/s)"),
            "{md}"
        );
        // CPU per request where the file has it, `—` where it does not.
        assert!(
            md.contains(
                "| run | loadgen | nats-server | postgres | postgres:ipelya_bench | token-issuer |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 20261126T122851Z | 0.044 | 0.002 | 0.103 | 0.103 | 0.106 |"),
            "{md}"
        );
        assert!(
            md.contains("| 20261202T100000Z | 0.04 | — | 0.52 | — | 0.21 |"),
            "{md}"
        );
        // The fan-out: receipts/s derived from the connected clients and the mean.
        assert!(md.contains("| 50000 |"), "{md}");
        assert!(md.contains("2000 of 2000 clients connected"), "{md}");
        assert!(
            md.contains("initiate p50 104 ms, ringing p50 311 ms"),
            "{md}"
        );
        // An old file without commit or CPU still shows, with blanks.
        assert!(md.contains("| **20261120T090000Z** | — |"), "{md}");
        assert!(md.contains("Not measured in this run; the newest run of it is 20261120T090000Z."));
        assert!(
            md.contains("busy: other work took up to 24 % of a core during join-storm"),
            "{md}"
        );
        assert!(
            md.contains("- `bench/results/broken.json`: not JSON (EOF"),
            "{md}"
        );
        for (kind, svg) in &page.charts {
            assert_well_formed(svg);
            assert!(svg.contains(kind.title()), "{svg}");
            assert!(svg.contains(kind.unit()), "{svg}");
        }
        let join = &page.charts[0].1;
        assert_eq!(
            join.matches("<rect x=").count(),
            2 + 2,
            "two bars, a legend swatch for each of their two styles"
        );
        assert!(
            join.contains(">6892</text>") && join.contains(">5610</text>"),
            "{join}"
        );
        assert!(join.contains("p99 19.2"), "{join}");
        assert!(join.contains("uncommitted changes"), "{join}");
    }

    #[test]
    fn an_earlier_run_can_be_reported() {
        let page = build(&runs(), &[], Some("20261126T122851Z"), 8).unwrap();
        assert_eq!(
            page.charts.len(),
            2,
            "join storm and the older webhook flood"
        );
        assert!(page.markdown.contains("No earlier run of the same size"));
        assert!(!page.markdown.contains("20261202T100000Z"));
        let err = build(&runs(), &[], Some("20300101T000000Z"), 8).unwrap_err();
        assert_eq!(err.to_string(), "no result file of run 20300101T000000Z");
        let err = build(&[], &[], None, 8).unwrap_err();
        assert_eq!(err.to_string(), "no usable result files");
    }

    #[test]
    fn only_the_last_runs_are_shown() {
        let page = build(&runs(), &[], None, 1).unwrap();
        assert!(
            page.markdown.contains("1 earlier runs are not shown"),
            "{}",
            page.markdown
        );
        assert!(!page.charts[0].1.contains(">6892</text>"));
        // The comparison still finds the earlier run.
        assert!(page.markdown.contains("throughput −19 %"));
    }

    #[test]
    fn unusable_files_say_why() {
        let reason = |text: &str| Run::parse("20261202T100000Z-x.json", text).unwrap_err();
        assert!(reason("{").starts_with("not JSON ("), "{}", reason("{"));
        assert_eq!(reason("[1, 2]"), "no `scenario`");
        assert_eq!(
            reason(r#"{"scenario": "moon-landing"}"#),
            "unknown scenario `moon-landing`"
        );
        assert_eq!(
            reason(r#"{"scenario": "join-storm", "latencyMs": {"p50": 1, "p95": 2, "p99": 3}}"#),
            "no `throughputPerSec`"
        );
        assert_eq!(
            reason(r#"{"scenario": "join-storm", "throughputPerSec": 5, "latencyMs": {"p50": 1}}"#),
            "no `latencyMs`"
        );
        assert_eq!(
            reason(r#"{"scenario": "sse-fanout", "connected": 5}"#),
            "no `eventToLastClientMs`"
        );
        let no_stamp = Run::parse(
            "run.json",
            r#"{"scenario": "join-storm", "throughputPerSec": 5, "latencyMs": {"p50": 1, "p95": 2, "p99": 3}}"#,
        );
        assert_eq!(
            no_stamp.unwrap_err(),
            "no timestamp in the name or `startedAt`"
        );
        // Without a stamp in the name, `startedAt` gives it.
        let named = Run::parse(
            "run.json",
            r#"{"scenario": "join-storm", "startedAt": "2026-12-01T22:07:07.516Z",
                "throughputPerSec": 5, "latencyMs": {"p50": 1, "p95": 2, "p99": 3}}"#,
        )
        .unwrap();
        assert_eq!(named.stamp, "20261201T220707Z");
        assert_eq!(named.size, "unknown size");
    }

    #[test]
    fn loading_a_folder_keeps_the_bad_files_apart() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("20261202T100000Z-join-storm.json"), NEW_JOIN).unwrap();
        std::fs::write(dir.join("20261202T100000Z-broken.json"), "{\"scenario\":").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a result").unwrap();
        let (runs, skipped) = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].file.ends_with("20261202T100000Z-broken.json"));
        assert!(
            skipped[0].reason.starts_with("not JSON"),
            "{:?}",
            skipped[0]
        );
        assert!(load(Path::new("/nonexistent/results")).is_err());
    }

    #[test]
    fn small_helpers() {
        assert_eq!(short_stamp("20261201T220706Z"), "12-01 22:07");
        assert_eq!(percent_change(100.0, 112.4), "+12 %");
        assert_eq!(percent_change(100.0, 81.0), "−19 %");
        assert_eq!(percent_change(100.0, 100.2), "±0 %");
        assert_eq!(percent_change(0.0, 1.0), "n/a");
        assert_eq!(anchor("SSE fan-out"), "sse-fan-out");
    }
}
