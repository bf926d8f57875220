//! `loadgen report` over a folder of result files, as `scripts/bench-report.sh` runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A fresh folder under the target directory, with the fixtures copied into `results/`.
fn workdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "report-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let results = dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, results.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn report(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("report")
        .arg("--results")
        .arg(dir.join("results"))
        .arg("--out-dir")
        .arg(dir.join("reports"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn writes_the_page_latest_and_a_chart_per_scenario_and_lists_bad_files() {
    let dir = workdir();
    std::fs::write(
        dir.join("results/20261202T100000Z-chat-storm.json"),
        "{\"scen",
    )
    .unwrap();
    std::fs::write(
        dir.join("results/20261202T100000Z-moon-landing.json"),
        r#"{"scenario": "moon-landing", "throughputPerSec": 1}"#,
    )
    .unwrap();
    let out = report(&dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("20261202T100000Z.md (4 charts in") && stdout.contains("2 files skipped"),
        "{stdout}"
    );
    assert!(
        stderr.contains("20261202T100000Z-chat-storm.json: not JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("20261202T100000Z-moon-landing.json: unknown scenario `moon-landing`"),
        "{stderr}"
    );

    let reports = dir.join("reports");
    let page = std::fs::read_to_string(reports.join("20261202T100000Z.md")).unwrap();
    assert_eq!(
        std::fs::read_to_string(reports.join("latest.md")).unwrap(),
        page
    );
    assert!(page.contains("## Files skipped"), "{page}");
    assert!(
        page.contains("moon-landing.json`: unknown scenario"),
        "{page}"
    );
    for scenario in ["join-storm", "webhook-flood", "sse-fanout", "call-storm"] {
        let link = format!("](20261202T100000Z/{scenario}.svg)");
        assert!(page.contains(&link), "{link} in {page}");
        let svg = std::fs::read_to_string(reports.join(format!("20261202T100000Z/{scenario}.svg")))
            .unwrap();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_earlier_run_is_not_the_latest_and_nothing_to_report_is_an_error() {
    let dir = workdir();
    // An earlier run's page: written, but it is not the latest.
    let out = report(&dir, &["--stamp", "20261126T122851Z"]);
    assert!(out.status.success());
    assert!(dir.join("reports/20261126T122851Z.md").exists());
    assert!(dir.join("reports/20261126T122851Z/join-storm.svg").exists());
    assert!(!dir.join("reports/latest.md").exists());

    let out = report(&dir, &["--stamp", "20300101T000000Z"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no result file of run 20300101T000000Z"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("reports/latest.md").exists());

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["report", "--results"])
        .arg(&empty)
        .arg("--out-dir")
        .arg(dir.join("reports"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable result files"));
    std::fs::remove_dir_all(&dir).unwrap();
}
