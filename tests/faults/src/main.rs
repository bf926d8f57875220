//! `cargo run -p faults -- [--trials N] [--seed S] [--long]`: see the README.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = faults::suite::Args::parse();
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::process::ExitCode::from(2);
    };
    // Interrupted, the suite's future is dropped: its servers stop and its temporary
    // directory goes (Infra and Stack clean up on drop).
    tokio::select! {
        code = faults::suite::run(args) => code,
        _ = tokio::signal::ctrl_c() => interrupted(),
        _ = term.recv() => interrupted(),
    }
}

fn interrupted() -> std::process::ExitCode {
    eprintln!("fault suite: interrupted; servers stopped, temporary files removed");
    std::process::ExitCode::from(130)
}
