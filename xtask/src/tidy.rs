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
}
