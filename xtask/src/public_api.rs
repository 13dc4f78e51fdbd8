//! `cargo xtask public-api [--bless]`: each library crate's public API, one
//! line per item (see `render.rs`), compared with the snapshot committed in
//! `docs/public-api/<crate>.txt`. CI runs the comparison, so that a change
//! of a public signature is a visible change of a committed file in review;
//! `--bless` writes the snapshots after an intended change.
//!
//! The API comes from rustdoc's JSON output, which the stable toolchain
//! gives only with `RUSTC_BOOTSTRAP=1` (an unstable rustdoc option, no
//! unstable language feature: the tidy tests still forbid `#![feature]`).
//! Each crate is documented with its features on, but for the ones that
//! only compile elsewhere (PipeWire).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

mod render;

/// Workspace members that are libraries for users (the command, the test
/// support and the task runner are not).
fn library_crates() -> Result<Vec<(String, Vec<String>)>> {
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
        let features = package["features"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(f, _)| f.clone())
            .filter(|f| f != "default")
            .filter(|f| !crate::COMPILE_ONLY_FEATURES.contains(&format!("{name}/{f}").as_str()))
            .collect();
        crates.push((name.to_string(), features));
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

/// The public API of crate `name` with `features`, as the lines its
/// snapshot holds.
fn current(name: &str, features: &[String]) -> Result<Vec<String>> {
    run(cargo()
        .args([
            "rustdoc",
            "-p",
            name,
            "--lib",
            "--features",
            &features.join(","),
        ])
        .args(["--", "-Z", "unstable-options", "--output-format", "json"])
        .env("RUSTC_BOOTSTRAP", "1"))?;
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
    let mut changed = Vec::new();
    for (name, features) in library_crates()? {
        let lines = current(&name, &features)?;
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
