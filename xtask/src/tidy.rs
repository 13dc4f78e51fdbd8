//! Tidy checks over the repository, run as ordinary tests (`cargo test -p xtask`).

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::root;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Crates where audio or the allocator truly need `unsafe` (FFI to
    /// `malloc_trim`, a counting global allocator in a test).
    const UNSAFE_ALLOWED: &[&str] = &["steward-monitor", "steward-audio"];

    fn members() -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir(root().join("crates"))
            .expect("crates/ exists")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("Cargo.toml").exists())
            .collect();
        dirs.sort();
        dirs
    }

    #[test]
    fn every_crate_inherits_workspace_settings() {
        for dir in members().into_iter().chain([
            root().join("xtask"),
            root().join("tests"),
            root().join("benches"),
        ]) {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
            for needle in ["edition.workspace = true", "rust-version.workspace = true"] {
                assert!(
                    manifest.contains(needle),
                    "{} lacks `{needle}`",
                    dir.display()
                );
            }
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if UNSAFE_ALLOWED.contains(&name.as_str()) {
                // These copy the workspace lints with `unsafe_code = "deny"`, so
                // single audited items can opt in with `#[allow(unsafe_code)]`.
                assert!(
                    manifest.contains("unsafe_code = \"deny\""),
                    "{name} must deny unsafe_code"
                );
                assert!(
                    manifest.contains("missing_docs = \"warn\""),
                    "{name} must warn on missing_docs"
                );
            } else {
                assert!(
                    manifest.contains("[lints]\nworkspace = true"),
                    "{} lacks workspace lints",
                    dir.display()
                );
            }
        }
    }

    /// docs.rs builds each library with its features and, where features
    /// gate items, marks which one (`doc_cfg` under `--cfg docsrs`).
    #[test]
    fn every_library_has_docs_rs_metadata() {
        for dir in members() {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
            assert!(
                manifest.contains("[package.metadata.docs.rs]")
                    && manifest.contains("rustdoc-args = [\"--cfg\", \"docsrs\"]"),
                "{} lacks [package.metadata.docs.rs] with rustdoc-args --cfg docsrs",
                dir.display()
            );
            let mut files = Vec::new();
            rust_files(&dir.join("src"), &mut files);
            let gated = files
                .iter()
                .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains("cfg(feature = ")));
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
            assert!(
                !gated || lib.contains("#![cfg_attr(docsrs, feature(doc_cfg))]"),
                "{}: features gate items but src/lib.rs lacks #![cfg_attr(docsrs, feature(doc_cfg))]",
                dir.display()
            );
        }
    }

    #[test]
    fn every_published_file_is_there() {
        for file in ["LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md", "deny.toml"] {
            assert!(root().join(file).is_file(), "{file} is missing");
        }
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            manifest.contains("license = \"MIT OR Apache-2.0\""),
            "the workspace license is not the one LICENSE-MIT and LICENSE-APACHE give"
        );
    }

    #[test]
    fn folder_name_is_crate_name() {
        for dir in members() {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
            let folder = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(
                manifest.contains(&format!("name = \"{folder}\"")),
                "crate in {folder} is not named {folder}"
            );
        }
    }

    #[test]
    fn every_lib_opens_with_docs_and_an_example() {
        for dir in members() {
            let lib = dir.join("src/lib.rs");
            let Ok(text) = std::fs::read_to_string(&lib) else {
                continue;
            };
            assert!(
                text.starts_with("//!"),
                "{} does not open with //! docs",
                lib.display()
            );
            let docs: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
            assert!(
                docs.contains("```"),
                "{} has no runnable example in its //! docs",
                lib.display()
            );
        }
    }

    #[test]
    fn no_debug_leftovers_or_todo_in_sources() {
        let mut files = Vec::new();
        rust_files(&root().join("crates"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for (n, line) in text.lines().enumerate() {
                for bad in ["dbg!(", "todo!(", "unimplemented!("] {
                    assert!(
                        !line.contains(bad),
                        "{}:{} contains {bad}",
                        file.display(),
                        n + 1
                    );
                }
            }
        }
    }

    /// The public-API check runs rustdoc with `RUSTC_BOOTSTRAP=1`; no
    /// source may take that as leave to use an unstable feature (but for
    /// docs.rs's own `doc_cfg`, under `cfg(docsrs)`).
    #[test]
    fn no_unstable_features_in_sources() {
        for file in own_rust_files() {
            let text = std::fs::read_to_string(&file).expect("read");
            for (n, line) in text.lines().enumerate() {
                // Spelt in two parts, so that this line does not match.
                let unstable = line.contains(concat!("#![", "feature("));
                assert!(
                    !unstable,
                    "{}:{} enables an unstable feature",
                    file.display(),
                    n + 1
                );
            }
        }
    }

    #[test]
    fn ci_runs_exactly_the_readme_test_command() {
        let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
        let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
        let command = ci
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .expect(".ci/run has a command")
            .trim()
            .trim_start_matches("exec ");
        assert!(
            readme.contains(command),
            "README.md does not give `{command}`"
        );
    }

    #[test]
    fn docs_architecture_names_every_crate() {
        let arch =
            std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        for dir in members() {
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(
                arch.contains(&name),
                "docs/ARCHITECTURE.md does not mention {name}"
            );
        }
    }

    /// Every Rust file of the repository's own code (the vendored client
    /// left out: it stays as published).
    fn own_rust_files() -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for dir in ["crates", "xtask", "tests", "benches", "fuzz"] {
            rust_files(&root().join(dir), &mut files);
        }
        files.sort();
        files
    }

    /// `path` relative to the repository root, with `/` separators.
    fn relative(path: &Path) -> String {
        let rel = path.strip_prefix(root()).unwrap_or(path);
        rel.to_string_lossy().replace('\\', "/")
    }

    /// Files allowed over [`LINE_LIMIT`] lines, with their line count when
    /// the budget was set. A count may only go down: lower it when a file
    /// shrinks, drop the row once the file is within the limit. Split a
    /// file along its seams rather than raise a number.
    const LINE_BUDGET: &[(&str, usize)] = &[
        ("crates/steward-cli/src/standin/conversation.rs", 927),
        ("crates/steward-cli/tests/it/standin.rs", 1202),
        ("crates/steward-realtime/tests/it/model.rs", 1239),
        ("crates/steward-tracker/src/tracker.rs", 896),
    ];

    /// The most lines a Rust file may have without a row in [`LINE_BUDGET`].
    const LINE_LIMIT: usize = 800;

    #[test]
    fn files_stay_within_their_line_budget() {
        let mut seen = std::collections::BTreeSet::new();
        for file in own_rust_files() {
            let rel = relative(&file);
            let lines = std::fs::read_to_string(&file)
                .expect("read")
                .lines()
                .count();
            match LINE_BUDGET.iter().find(|(p, _)| *p == rel) {
                Some(&(_, budget)) => {
                    seen.insert(rel.clone());
                    assert!(
                        lines <= budget,
                        "{rel} has {lines} lines, over its budget of {budget} in \
                         xtask/src/tidy.rs: split it along its seams"
                    );
                    assert!(
                        lines > LINE_LIMIT,
                        "{rel} has {lines} lines, within {LINE_LIMIT}: drop its row \
                         from LINE_BUDGET in xtask/src/tidy.rs"
                    );
                }
                None => assert!(
                    lines <= LINE_LIMIT,
                    "{rel} has {lines} lines, over {LINE_LIMIT}: split it along its \
                     seams (the budget in xtask/src/tidy.rs only shrinks)"
                ),
            }
        }
        for (path, _) in LINE_BUDGET {
            assert!(
                seen.contains(*path),
                "{path} is in LINE_BUDGET (xtask/src/tidy.rs) but is gone: drop its row"
            );
        }
    }

    /// The nearest folder above `file` with a `Cargo.toml`: its crate.
    fn crate_of(file: &Path) -> std::path::PathBuf {
        file.ancestors()
            .skip(1)
            .find(|d| d.join("Cargo.toml").is_file())
            .expect("every Rust file is inside a crate")
            .to_path_buf()
    }

    /// `path` with `.` and `..` taken out, without touching the disk.
    fn normalize(path: &Path) -> std::path::PathBuf {
        let mut out = std::path::PathBuf::new();
        for part in path.components() {
            match part {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }

    /// A `#[path]` into another crate compiles that crate's file twice,
    /// under lints and features it was not written for: share code through
    /// a crate (`steward-test-support` for test helpers) instead.
    #[test]
    fn no_path_attribute_leaves_its_crate() {
        for file in own_rust_files() {
            let text = std::fs::read_to_string(&file).expect("read");
            let home = crate_of(&file);
            let dir = file.parent().expect("a file has a folder");
            for (n, line) in text.lines().enumerate() {
                let Some(rest) = line.trim_start().strip_prefix("#[path") else {
                    continue;
                };
                let target = rest
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{}:{}: unreadable #[path]", relative(&file), n + 1));
                let resolved = normalize(&dir.join(target));
                assert!(
                    resolved.starts_with(&home),
                    "{}:{}: #[path = \"{target}\"] reaches outside its crate ({})",
                    relative(&file),
                    n + 1,
                    relative(&home)
                );
            }
        }
    }

    /// The soak summary's copy of the monitor's Theil–Sen slope (kept so
    /// that xtask does not build the monitor) is the monitor's file, byte
    /// for byte.
    #[test]
    fn theil_sen_copy_is_identical() {
        let monitor = std::fs::read(root().join("crates/steward-monitor/src/theil_sen.rs"))
            .expect("the monitor's theil_sen.rs");
        let copy = std::fs::read(root().join("xtask/src/soak/theil_sen.rs"))
            .expect("xtask's theil_sen.rs");
        assert!(
            monitor == copy,
            "xtask/src/soak/theil_sen.rs differs from crates/steward-monitor/src/theil_sen.rs: \
             copy the monitor's file over it"
        );
    }

    /// Backticked paths in ARCHITECTURE.md that must exist: those under
    /// `crates/`, and `.rs` files named with a folder (from the root).
    fn architecture_paths(text: &str) -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.contains(char::is_whitespace))
            .filter(|s| s.starts_with("crates/") || (s.ends_with(".rs") && s.contains('/')))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_path_in_architecture_exists() {
        let arch =
            std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let paths = architecture_paths(&arch);
        assert!(!paths.is_empty(), "docs/ARCHITECTURE.md names no paths");
        for path in paths {
            assert!(
                root().join(&path).exists(),
                "docs/ARCHITECTURE.md names `{path}`, which does not exist"
            );
        }
    }

    #[test]
    fn architecture_paths_are_found_in_backticks_only() {
        let text = "a `crates/x` b `y.rs` c `src/z.rs` d `memory.json` e crates/w `f g.rs`";
        assert_eq!(architecture_paths(text), ["crates/x", "src/z.rs"]);
    }
}
