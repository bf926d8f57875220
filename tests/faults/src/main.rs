//! `cargo run -p faults -- [--trials N] [--seed S] [--long]`: see the README.

use clap::Parser;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = faults::suite::Args::parse();
    tokio::select! {
        code = faults::suite::run(args) => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("fault suite: interrupted; servers stopped, temporary files removed");
            std::process::ExitCode::from(130)
        }
    }
}
