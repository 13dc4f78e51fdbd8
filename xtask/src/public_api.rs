//! `cargo xtask public-api [--bless]`: each library crate's public API, one
//! line per item (see `render.rs`), compared with the snapshot committed in
//! `docs/public-api/<crate>.txt`. CI runs the comparison, so that a change
//! of a public signature is a visible change of a committed file in review;
//! `--bless` writes the snapshots after an intended change.
//!
//! The API comes from rustdoc's JSON output, which the stable toolchain
//! gives only with `RUSTC_BOOTSTRAP=1` (an unstable rustdoc option, no
//! unstable language feature: the tidy tests still forbid `#![feature]`).
//! Each crate is documented with every feature on, PipeWire's too: the API
//! a user of any feature sees.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

mod render;

/// Workspace members that are libraries for users (the command, the test
/// support and the task runner are not).
fn library_crates() -> Result<Vec<String>> {
    let meta = crate::metadata(&["--no-deps"])?;
    let mut crates = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let has_lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            });
        let internal = ["steward-cli", "steward-test-support", "steward-tests"].contains(&name);
        if !has_lib || internal {
            continue;
        }
        crates.push(name.to_string());
    }
    crates.sort();
    Ok(crates)
}

fn snapshot_path(name: &str) -> PathBuf {
    root()
        .join("docs")
        .join("public-api")
        .join(format!("{name}.txt"))
}

const HEADER: &str = "# The public API of this crate, one line per item: written by \
`cargo xtask public-api --bless`, compared in CI. Do not edit by hand.";

/// rustdoc's JSON of every library crate of the workspace, with every
/// feature on (the same build as the CI's `doc` phase, so the dependencies
/// are already checked).
///
/// `RUSTC_BOOTSTRAP=1` reaches rustdoc alone, through this task as the
/// `RUSTDOC` wrapper (see [`rustdoc_wrapper`]): set for cargo, it would make
/// every build script that watches it (proc-macro2's, serde's...) run again
/// and every dependency be checked a second time, which cost CI minutes.
fn document_as_json() -> Result<()> {
    let real = std::env::var("RUSTDOC").unwrap_or_else(|_| "rustdoc".into());
    let me = std::env::current_exe().context("cannot find the xtask binary")?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features", "--lib"])
        .env("RUSTDOC", me)
        .env(WRAPPED_RUSTDOC, real)
        .env("RUSTDOCFLAGS", "-Z unstable-options --output-format json"))
}

/// Names the real rustdoc when this task runs as cargo's `RUSTDOC`.
const WRAPPED_RUSTDOC: &str = "STEWARD_XTASK_WRAPPED_RUSTDOC";

/// When cargo started this task as its rustdoc (see [`document_as_json`]):
/// runs the real rustdoc with `RUSTC_BOOTSTRAP=1` and exits with its
/// status. Returns otherwise.
pub(crate) fn rustdoc_wrapper() -> Result<()> {
    let Some(real) = std::env::var_os(WRAPPED_RUSTDOC) else {
        return Ok(());
    };
    let status = std::process::Command::new(&real)
        .args(std::env::args_os().skip(1))
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .with_context(|| format!("cannot start {}", real.to_string_lossy()))?;
    std::process::exit(status.code().unwrap_or(1));
}

/// The public API of crate `name`, as the lines its snapshot holds, from
/// the JSON [`document_as_json`] wrote.
fn current(name: &str) -> Result<Vec<String>> {
    let json = crate::bench::target_dir()
        .join("doc")
        .join(format!("{}.json", name.replace('-', "_")));
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("cannot read {}", json.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", json.display()))?;
    Ok(render::public_api(&doc))
}

pub(crate) fn run_public_api(args: &[String]) -> Result<()> {
    let bless = match args {
        [] => false,
        [flag] if flag == "--bless" => true,
        _ => bail!("usage: cargo xtask public-api [--bless]"),
    };
    document_as_json()?;
    let mut changed = Vec::new();
    for name in library_crates()? {
        let lines = current(&name)?;
        let path = snapshot_path(&name);
        if bless {
            let parent = path.parent().context("snapshot path has a parent")?;
            std::fs::create_dir_all(parent)?;
            let text = format!("{HEADER}\n{}\n", lines.join("\n"));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let old: BTreeSet<&str> = committed.lines().filter(|l| !l.starts_with('#')).collect();
        let new: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
        if old == new {
            continue;
        }
        eprintln!("public API of {name} differs from {}:", path.display());
        for gone in old.difference(&new) {
            eprintln!("  - {gone}");
        }
        for added in new.difference(&old) {
            eprintln!("  + {added}");
        }
        changed.push(name);
    }
    if !changed.is_empty() {
        bail!(
            "the public API of {} changed: if intended, run `cargo xtask public-api --bless` and commit docs/public-api/",
            changed.join(", ")
        );
    }
    Ok(())
}
