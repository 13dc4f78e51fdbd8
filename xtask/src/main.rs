//! Maintainer tasks for steward, run as `cargo xtask <task>`.
//!
//! Kept light on purpose: std, anyhow and serde_json only.

mod bench;
mod cpu;
mod heap;
mod soak;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

tasks:
  ci                        setup, fmt --check, clippy -D warnings, tests, docs -D warnings
  setup                     install and start what the tests need (sound server, Python peer, Redis)
  test [ARGS...]            setup, then every test (nextest when present) and the doctests
  bench [NAME] [--quick]    criterion benches (store, pool, tracker, monitor, ws, audio,
                            realtime) and `cpu` (a 20 s assistant session's share of a
                            core, with and without audio); written to
                            target/bench/summary.json
  fuzz [TARGET] [--seconds N]  run cargo-fuzz targets (default: all, 30 s each)
  proptest [--cases N]      the property tests with many more cases (default 2000)
  soak [--duration 1h] [--sessions N] [--drop-every T] [--max-growth-kib-per-hour G] [--heap]
                            a long assistant run against the local stand-in: RSS every
                            second to target/soak/rss.csv and rss.png, growth per hour
                            after the warm-up (Theil–Sen, 95 % interval) in
                            target/soak/summary.json; fails above G (default 256 KiB/h);
                            --heap: allocation sites still live at the end (dhat)
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "ci" => ci(),
        "setup" => setup(),
        "test" => {
            setup()?;
            test(&rest)
        }
        "bench" => bench::run(&rest),
        "fuzz" => fuzz(&rest),
        "proptest" => proptest(&rest),
        "soak" => soak::run_soak(&rest),
        "" | "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

/// The workspace root (the parent of this crate's folder).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `program args...` in the workspace root, failing with the command line on error.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> Result<()> {
    let started = std::time::Instant::now();
    setup()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    test(&[])?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    eprintln!("xtask ci: all green in {:.0?}", started.elapsed());
    Ok(())
}

/// Installs missing system packages, the Python WebSocket peer and starts the
/// sound server. Idempotent: a second run only checks.
fn setup() -> Result<()> {
    run(Command::new("bash").arg("scripts/setup.sh"))
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn test(extra: &[String]) -> Result<()> {
    if has_nextest() {
        run(cargo()
            .args([
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
            ])
            .args(extra))?;
    } else {
        run(cargo()
            .args([
                "test",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
                "--lib",
                "--bins",
                "--tests",
            ])
            .args(extra))?;
    }
    run(cargo().args(["test", "--workspace", "--all-features", "--doc"]))
}

fn proptest(args: &[String]) -> Result<()> {
    let mut cases = "2000".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--cases" => cases = it.next().context("--cases needs a number")?.clone(),
            other => bail!("unknown proptest argument `{other}`"),
        }
    }
    setup()?;
    // Property tests are the test functions whose name starts with `prop_`.
    let mut cmd = cargo();
    if has_nextest() {
        cmd.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--release",
            "-E",
            "test(/prop_/)",
        ]);
    } else {
        cmd.args([
            "test",
            "--workspace",
            "--all-features",
            "--release",
            "prop_",
        ]);
    }
    run(cmd.env("PROPTEST_CASES", cases))
}

fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = "30".to_string();
    let mut target = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a number")?.clone(),
            t if target.is_none() => target = Some(t.to_string()),
            other => bail!("unknown fuzz argument `{other}`"),
        }
    }
    let has_cargo_fuzz = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_cargo_fuzz {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let targets = match target {
        Some(t) => vec![t],
        None => fuzz_targets()?,
    };
    if targets.is_empty() {
        bail!("no fuzz targets under fuzz/fuzz_targets");
    }
    for t in targets {
        run(cargo()
            .args([
                "fuzz",
                "run",
                &t,
                "--fuzz-dir",
                "fuzz",
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}

pub(crate) fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem()
        {
            names.push(stem.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}
