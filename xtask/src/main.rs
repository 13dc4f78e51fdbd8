//! Maintainer tasks for steward, run as `cargo xtask <task>`.
//!
//! Kept light on purpose: std, anyhow and serde_json only.

mod bench;
mod cpu;
mod deps;
mod heap;
mod mutants;
mod public_api;
mod soak;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

tasks:
  ci                        setup, fmt --check, clippy -D warnings (also the facade
                            with each feature alone), the fuzz targets built,
                            tests (tidy and dependency policy too), docs -D warnings,
                            the public API against its snapshots
  setup                     install and start what the tests need (sound server, Python peer, Redis)
  test [ARGS...]            setup, then every test (nextest when present) and the doctests
  bench [NAME] [--quick]    criterion benches (store, pool, tracker, monitor, ws, audio,
                            realtime) and `cpu` (a 20 s assistant session's share of a
                            core, with and without audio); written to
                            target/bench/summary.json
  fuzz [TARGET] [--seconds N]  run cargo-fuzz targets (default: all, 30 s each)
  proptest [--cases N]      the property tests with many more cases (default 2000)
  mutants [PART...] [--list] [--jobs N] [--shard K/N]
                            cargo-mutants over the pool, the tracker, the store's core and
                            the realtime state machine; the share of viable mutants caught
                            per part in target/mutants/summary.json (goal: 85 % each)
  public-api [--bless]      each library crate's public API compared with its snapshot in
                            docs/public-api/ (--bless: write the snapshots)
  soak [--duration 1h] [--sessions N] [--drop-every T] [--max-growth-kib-per-hour G] [--heap]
                            a long assistant run against the local stand-in: RSS every
                            second to target/soak/rss.csv and rss.png, growth per hour
                            after the warm-up (Theil–Sen, 95 % interval) in
                            target/soak/summary.json; fails above G (default 256 KiB/h);
                            --heap: allocation sites still live at the end (dhat)
";

fn main() -> Result<()> {
    public_api::rustdoc_wrapper()?;
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
        "mutants" => mutants::run_mutants(&rest),
        "public-api" => public_api::run_public_api(&rest),
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
    let shown = shell_line(cmd);
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

/// A command as a shell line: the variables it sets, the program and its
/// arguments (not the dozen variables [`cargo`] removes, which `Debug`
/// would print before every command).
pub(crate) fn shell_line(cmd: &Command) -> String {
    let vars = cmd.get_envs().filter_map(|(name, value)| {
        value.map(|v| format!("{}={}", name.to_string_lossy(), v.to_string_lossy()))
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| w.to_string_lossy().into_owned());
    vars.chain(words).collect::<Vec<_>>().join(" ")
}

/// `cargo`, without the variables `cargo xtask` set for this task
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`...): build scripts that watch
/// them (ring's) would otherwise run again, and all that depends on them be
/// rebuilt, between a plain `cargo test` and the same build under xtask.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name);
        if set_by_cargo_run {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn ci() -> Result<()> {
    let started = std::time::Instant::now();
    let mut phases = Phases::default();
    phases.time("setup", setup)?;
    phases.time("fmt", || run(cargo().args(["fmt", "--all", "--check"])))?;
    phases.time("clippy", || {
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    phases.time("facade features", check_facade_features)?;
    phases.time("fuzz build", check_fuzz_targets)?;
    phases.time("tests", || test(&[]))?;
    phases.time("doc", || {
        run(cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"))
    })?;
    phases.time("public api", || public_api::run_public_api(&[]))?;
    eprintln!("xtask ci: all green in {:.0?}", started.elapsed());
    phases.print();
    Ok(())
}

/// How long each CI phase took, printed at the end so that the 15-minute
/// budget can be tracked phase by phase.
#[derive(Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    fn time(&mut self, name: &'static str, phase: impl FnOnce() -> Result<()>) -> Result<()> {
        let started = std::time::Instant::now();
        let outcome = phase();
        self.0.push((name, started.elapsed()));
        if outcome.is_err() {
            self.print();
        }
        outcome
    }

    fn print(&self) {
        for (name, took) in &self.0 {
            eprintln!("xtask ci: {name:<16} {:>6.0?}", took);
        }
    }
}

/// The facade with no feature and with each feature alone, and the command
/// without its default feature, so a feature that leans on another one it
/// does not enable fails here rather than for a user (the rest of CI builds
/// every feature at once).
fn check_facade_features() -> Result<()> {
    let mut sets = vec![String::new()];
    sets.extend(
        workspace_features()?
            .iter()
            .filter_map(|f| f.strip_prefix("steward/"))
            .map(str::to_string),
    );
    for features in sets {
        run(cargo()
            .args(["clippy", "-p", "steward", "--no-default-features"])
            .args(["--features", &features, "--", "-D", "warnings"]))?;
    }
    // The command without its default `plot` (its tests too: they expect
    // no rss.png then).
    run(cargo()
        .args(["clippy", "-p", "steward-cli", "--no-default-features"])
        .args(["--all-targets", "--", "-D", "warnings"]))
}

/// The fuzz targets build (cargo-fuzz itself runs them, on request):
/// checked with their own lock file, in a target directory of their own
/// since they are outside the workspace.
fn check_fuzz_targets() -> Result<()> {
    run(cargo()
        .args(["check", "--manifest-path", "fuzz/Cargo.toml"])
        .args(["--locked", "--bins"])
        .env("CARGO_TARGET_DIR", bench::target_dir().join("fuzz-check"))
        .env("RUSTFLAGS", "-D warnings"))
}

/// Installs missing system packages, the Python WebSocket peer and starts the
/// sound server. Idempotent: a second run only checks.
fn setup() -> Result<()> {
    run(Command::new("bash").arg("scripts/setup.sh"))
}

fn has_nextest() -> bool {
    has_cargo_tool("nextest")
}

/// Whether `cargo <subcommand>` is installed.
pub(crate) fn has_cargo_tool(subcommand: &str) -> bool {
    cargo()
        .args([subcommand, "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Features that only compile here, never run: a PipeWire server is not on
/// this machine, and a heap profiler as the global allocator is for the
/// soak. Clippy (`--all-features`) still checks them; the tests leave them
/// out, and with them their build (bindgen and libclang for PipeWire).
const COMPILE_ONLY_FEATURES: &[&str] = &[
    "steward-audio/pipewire",
    "steward/audio-pipewire",
    "steward-cli/dhat-heap",
];

/// `cargo metadata --format-version 1 ARGS...` of the workspace, parsed.
pub(crate) fn metadata(args: &[&str]) -> Result<serde_json::Value> {
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .args(args)
        .current_dir(root())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")
}

/// Every `package/feature` of the workspace members (`default` left out).
fn workspace_features() -> Result<Vec<String>> {
    let meta = metadata(&["--no-deps"])?;
    let mut features = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let own = package["features"].as_object().into_iter().flatten();
        for (feature, _) in own.filter(|(f, _)| *f != "default") {
            features.push(format!("{name}/{feature}"));
        }
    }
    Ok(features)
}

/// Every feature of every workspace member but the compile-only ones, as
/// one `--features` value.
fn test_features() -> Result<String> {
    let mut features = workspace_features()?;
    features.retain(|f| !COMPILE_ONLY_FEATURES.contains(&f.as_str()));
    Ok(features.join(","))
}

fn test(extra: &[String]) -> Result<()> {
    let features = test_features()?;
    if has_nextest() {
        run(cargo()
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(["--features", &features])
            .args(extra))?;
    } else {
        run(cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(["--lib", "--bins", "--tests", "--features", &features])
            .args(extra))?;
    }
    run(cargo().args(["test", "--workspace", "--doc", "--features", &features]))
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
    let features = test_features()?;
    if has_nextest() {
        cmd.args(["nextest", "run", "--workspace", "--release"])
            .args(["--features", &features, "-E", "test(/prop_/)"]);
    } else {
        cmd.args(["test", "--workspace", "--release"])
            .args(["--features", &features, "prop_"]);
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
    if !has_cargo_tool("fuzz") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_run_every_feature_but_the_compile_only_ones() {
        let features = test_features().expect("cargo metadata");
        let features: Vec<&str> = features.split(',').collect();
        for f in [
            "steward/full",
            "steward-store/redis",
            "steward-realtime/audio",
        ] {
            assert!(features.contains(&f), "{f} not tested: {features:?}");
        }
        for f in COMPILE_ONLY_FEATURES {
            assert!(!features.contains(f), "{f} tested");
        }
    }

    /// A renamed or removed compile-only feature would silently be tested.
    #[test]
    fn every_compile_only_feature_exists() {
        let all = workspace_features().expect("cargo metadata");
        for f in COMPILE_ONLY_FEATURES {
            assert!(
                all.iter().any(|a| a == f),
                "{f} is not a feature of the workspace"
            );
        }
    }
}
