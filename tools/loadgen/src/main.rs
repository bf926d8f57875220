#![doc = include_str!("../README.md")]

mod bench_report;
mod call_storm;
mod chart;
mod chat_storm;
mod cpu;
mod engine;
mod join_storm;
mod report;
mod sse_fanout;
mod webhook_flood;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use reqwest::header::HeaderValue;

use crate::engine::{Prepared, Target};
use crate::report::Report;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load generator of Ipelya Live's services")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Many distinct viewers ask token-issuer for a token to one public live session.
    JoinStorm(join_storm::Args),
    /// A burst of signed `participant_joined` webhooks to webhook-ingest.
    WebhookFlood(webhook_flood::Args),
    /// Thousands of participants of one session on the notifier's event stream; time from
    /// an event's publish to the last client.
    SseFanout(sse_fanout::Args),
    /// Pairs of users calling each other at once: initiate, push (notifier in log mode),
    /// ringing, accept — the whole set-up per call.
    CallStorm(call_storm::Args),
    /// Every participant of one live session posts chat messages through session-manager,
    /// past the rate limit: posts/s, 201 and 429 latencies.
    ChatStorm(chat_storm::Args),
    /// Not a scenario: the result files of `bench/results/` as a Markdown page with a table
    /// and an SVG chart per scenario, comparing a run with the ones before it.
    Report(bench_report::Args),
}

impl Scenario {
    /// The request-driven scenarios' arguments (`sse-fanout` holds streams instead).
    fn run_args(&self) -> Option<&RunArgs> {
        match self {
            Scenario::JoinStorm(a) => Some(&a.run),
            Scenario::WebhookFlood(a) => Some(&a.run),
            Scenario::SseFanout(_)
            | Scenario::CallStorm(_)
            | Scenario::ChatStorm(_)
            | Scenario::Report(_) => None,
        }
    }

    fn threads(&self) -> u16 {
        match self {
            Scenario::SseFanout(a) => a.threads,
            Scenario::CallStorm(a) => a.threads,
            Scenario::ChatStorm(a) => a.threads,
            other => other.run_args().map_or(1, |r| r.threads),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Scenario::JoinStorm(_) => "join-storm",
            Scenario::WebhookFlood(_) => "webhook-flood",
            Scenario::SseFanout(_) => "sse-fanout",
            Scenario::CallStorm(_) => "call-storm",
            Scenario::ChatStorm(_) => "chat-storm",
            Scenario::Report(_) => "report",
        }
    }
}

/// How a run is driven; the same for every scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Concurrent workers, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub connections: u16,
    /// Stop the measured phase after this many seconds, even with requests left (default:
    /// when every request has been sent).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Requests sent first to open the connections and warm the service up; not counted.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Per-request timeout, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Threads of the load generator's runtime. One thread drives tens of thousands of
    /// requests a second and leaves the other cores to the services under test.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Also measure the CPU time of these processes during the measured phase: a command
    /// name (every process of that name, e.g. `postgres`), `NAME:TEXT` (those whose command
    /// line contains TEXT, e.g. `postgres:ipelya_bench`, the backends of one database) or
    /// `LABEL=PID`. Repeatable.
    #[arg(long = "cpu-watch", value_name = "NAME|NAME:TEXT|LABEL=PID")]
    pub cpu_watch: Vec<cpu::Watch>,
    /// Where to write the JSON report; without it the report goes to stdout and the summary
    /// to stderr.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A scenario's prepared work: built (tokens minted, bodies signed) before any request.
pub struct Phases {
    pub url: reqwest::Url,
    pub content_type: HeaderValue,
    pub warmup: Arc<[Prepared]>,
    pub measured: Arc<[Prepared]>,
    /// The parameters recorded in the report.
    pub params: serde_json::Value,
}

fn main() -> ExitCode {
    // Before anything else (see DEPENDENCIES.md): reqwest needs the rustls provider, and the
    // JWT minting and signing must not run on livekit's HMAC-only provider.
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("rustls provider");
    jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
        .install_default()
        .expect("jwt provider");
    let cli = Cli::parse();
    let threads = usize::from(cli.scenario.threads());
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.scenario)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prepares, warms up, measures and reports. Only setup failures are errors: error answers
/// are what the report is for.
async fn run(scenario: Scenario) -> anyhow::Result<()> {
    let name = scenario.name();
    let phases = match &scenario {
        Scenario::JoinStorm(a) => join_storm::prepare(a).await?,
        Scenario::WebhookFlood(a) => webhook_flood::prepare(a)?,
        Scenario::SseFanout(a) => return sse_fanout::run(a.clone()).await,
        Scenario::CallStorm(a) => return call_storm::run(a.clone()).await,
        Scenario::ChatStorm(a) => return chat_storm::run(a.clone()).await,
        Scenario::Report(a) => return bench_report::run(a),
    };
    let args = scenario
        .run_args()
        .expect("request-driven scenarios have run arguments")
        .clone();
    let connections = usize::from(args.connections);
    let client = engine::client(connections, Duration::from_millis(args.timeout_ms))?;
    let target = Target {
        url: phases.url,
        content_type: phases.content_type,
    };
    if !phases.warmup.is_empty() {
        let warm = engine::run(&client, &target, phases.warmup, connections, None).await;
        eprintln!(
            "{name}: warm-up {} requests, {} ok, {:.2} s",
            warm.requests,
            warm.ok,
            warm.elapsed.as_secs_f64()
        );
    }
    eprintln!(
        "{name}: measuring {} requests over {connections} connections",
        phases.measured.len()
    );
    // The services are idle now: whatever keeps the machine busy would compete with them.
    let busy_before = cpu::machine_busy(Duration::from_secs(1)).await;
    if let Some(busy) = busy_before.filter(|b| *b > 10.0) {
        eprintln!(
            "{name}: warning: the machine is already {busy:.0}% busy before the run; \
             the figures will be lower than this machine can do"
        );
    }
    let started_at = chrono::Utc::now();
    let limit = args.duration_secs.map(Duration::from_secs);
    let cpu_before = cpu::snapshot(&args.cpu_watch);
    let outcome = engine::run(&client, &target, phases.measured, connections, limit).await;
    let cpu = cpu::usage(&cpu_before, &cpu::snapshot(&args.cpu_watch)).map(|mut cpu| {
        cpu.machine_busy_before_pct = busy_before;
        cpu
    });
    let report = Report::new(name, started_at, phases.params, &outcome, cpu);
    match &args.out {
        Some(path) => {
            report.write(path)?;
            println!("{}", report.summary());
            eprintln!("{name}: report written to {}", path.display());
        }
        None => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", report.summary());
        }
    }
    Ok(())
}
