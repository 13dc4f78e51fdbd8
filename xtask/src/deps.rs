//! Dependency hygiene over `cargo metadata`, run as tidy tests: the
//! licenses, bans and sources of `deny.toml`, and the workspace's
//! `rust-version` against the locked dependencies'.
//!
//! Why not cargo-deny itself: CI starts from the Rust toolchain alone, and
//! building cargo-deny there costs minutes of its 15 (measured in the
//! commit that added this file); these checks need only `cargo metadata`.
//! `deny.toml` stays the one policy, readable by cargo-deny where it is
//! installed.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use crate::{metadata, root};

    /// crates.io's source id in `cargo metadata` (`registry+` and its index
    /// URL, which ends so).
    fn is_crates_io(source: &str) -> bool {
        source.starts_with("registry+") && source.ends_with("/rust-lang/crates.io-index")
    }

    fn deny_toml() -> String {
        std::fs::read_to_string(root().join("deny.toml")).expect("deny.toml at the root")
    }

    /// The elements of `key = [...]` in `[section]` of a plain TOML text:
    /// strings as they are, inline tables as their `crate` value.
    fn list(toml: &str, section: &str, key: &str) -> Vec<String> {
        let mut in_section = false;
        let mut body = None;
        let mut lines = toml.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.starts_with('[') && !line.starts_with("[[") && line.ends_with(']') {
                in_section = line == format!("[{section}]");
                continue;
            }
            let Some(rest) = line.strip_prefix(key) else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix('=') else {
                continue;
            };
            if !in_section {
                continue;
            }
            let mut text = rest.trim().to_string();
            while !text.trim_end().ends_with(']') {
                let next = lines
                    .next()
                    .unwrap_or_else(|| panic!("deny.toml: [{section}] {key} has no closing ]"));
                text.push('\n');
                text.push_str(next);
            }
            body = Some(text);
            break;
        }
        let body = body.unwrap_or_else(|| panic!("deny.toml: no `{key}` in [{section}]"));
        elements(&body)
    }

    /// Splits a TOML array of strings or inline tables into its elements,
    /// comments dropped; a table gives its `crate = "..."` value.
    fn elements(array: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut strings = Vec::new();
        let mut current = String::new();
        let (mut quoted, mut comment, mut table) = (false, false, false);
        for c in array.chars() {
            match c {
                '\n' => comment = false,
                _ if comment => {}
                '"' if quoted => {
                    quoted = false;
                    strings.push(std::mem::take(&mut current));
                }
                _ if quoted => current.push(c),
                '"' => quoted = true,
                '#' => comment = true,
                '{' => table = true,
                '}' => {
                    table = false;
                    // `{ crate = "x", reason = "..." }`: the first string.
                    out.extend(strings.drain(..).next());
                }
                _ => {}
            }
            if !table && !quoted {
                out.append(&mut strings);
            }
        }
        out
    }

    /// The dependency graph deny.toml's `[graph]` describes: every package
    /// but the workspace members, from the locked resolve.
    struct Graph {
        packages: Vec<Value>,
    }

    fn graph() -> Graph {
        let deny = deny_toml();
        let mut args = vec!["--all-features"];
        let targets = list(&deny, "graph", "targets");
        assert_eq!(
            targets.len(),
            1,
            "deny.toml: xtask judges one target, [graph] targets = {targets:?}"
        );
        args.extend(["--filter-platform", targets[0].as_str()]);
        let meta = metadata(&args).expect("cargo metadata");
        let packages = outside_workspace(&meta);
        Graph { packages }
    }

    /// The resolved packages that are not workspace members.
    fn outside_workspace(meta: &Value) -> Vec<Value> {
        let ids = |v: &Value| -> BTreeSet<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().or_else(|| n["id"].as_str()))
                .map(str::to_string)
                .collect()
        };
        let members = ids(&meta["workspace_members"]);
        let resolved = ids(&meta["resolve"]["nodes"]);
        meta["packages"]
            .as_array()
            .expect("cargo metadata lists packages")
            .iter()
            .filter(|p| {
                let id = p["id"].as_str().unwrap_or_default();
                resolved.contains(id) && !members.contains(id)
            })
            .cloned()
            .collect()
    }

    fn name_version(p: &Value) -> String {
        format!(
            "{}@{}",
            p["name"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default()
        )
    }

    /// Whether an SPDX expression holds with only the `allowed` licenses:
    /// `OR` needs one side, `AND` both, `WITH` names one license with its
    /// exception; `/` is the old spelling of `OR`.
    fn satisfied(expr: &str, allowed: &[String]) -> Result<bool, String> {
        let spaced = expr
            .replace('(', " ( ")
            .replace(')', " ) ")
            .replace('/', " OR ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut pos = 0;
        let ok = or_expr(&tokens, &mut pos, allowed)?;
        if pos != tokens.len() {
            return Err(format!("unexpected `{}`", tokens[pos]));
        }
        Ok(ok)
    }

    fn or_expr(t: &[&str], pos: &mut usize, allowed: &[String]) -> Result<bool, String> {
        let mut ok = and_expr(t, pos, allowed)?;
        while t.get(*pos) == Some(&"OR") {
            *pos += 1;
            ok |= and_expr(t, pos, allowed)?;
        }
        Ok(ok)
    }

    fn and_expr(t: &[&str], pos: &mut usize, allowed: &[String]) -> Result<bool, String> {
        let mut ok = license(t, pos, allowed)?;
        while t.get(*pos) == Some(&"AND") {
            *pos += 1;
            ok &= license(t, pos, allowed)?;
        }
        Ok(ok)
    }

    fn license(t: &[&str], pos: &mut usize, allowed: &[String]) -> Result<bool, String> {
        let Some(&first) = t.get(*pos) else {
            return Err("expression ends early".into());
        };
        *pos += 1;
        if first == "(" {
            let ok = or_expr(t, pos, allowed)?;
            if t.get(*pos) != Some(&")") {
                return Err("no closing )".into());
            }
            *pos += 1;
            return Ok(ok);
        }
        let mut id = first.to_string();
        if t.get(*pos) == Some(&"WITH") {
            let exception = t.get(*pos + 1).ok_or("WITH names no exception")?;
            id = format!("{first} WITH {exception}");
            *pos += 2;
        }
        Ok(allowed.contains(&id))
    }

    #[test]
    fn spdx_expressions_are_judged_like_cargo_deny() {
        let allowed = vec!["MIT".to_string(), "Apache-2.0".to_string()];
        for (expr, ok) in [
            ("MIT", true),
            ("GPL-3.0", false),
            ("MIT OR GPL-3.0", true),
            ("MIT AND GPL-3.0", false),
            ("MIT/Apache-2.0", true),
            ("(MIT OR Apache-2.0) AND ISC", false),
            ("(MIT OR GPL-3.0) AND Apache-2.0", true),
            ("Apache-2.0 WITH LLVM-exception", false),
            ("Apache-2.0 WITH LLVM-exception OR MIT", true),
        ] {
            assert_eq!(satisfied(expr, &allowed), Ok(ok), "{expr}");
        }
        assert!(satisfied("(MIT", &allowed).is_err());
    }

    #[test]
    fn deny_toml_lists_are_read() {
        let deny = deny_toml();
        assert!(list(&deny, "licenses", "allow").contains(&"MIT".to_string()));
        assert!(list(&deny, "bans", "deny").contains(&"openssl".to_string()));
        let skip = list(&deny, "bans", "skip");
        assert!(skip.iter().all(|s| s.contains('@')), "{skip:?}");
        assert_eq!(
            elements("[\"a\", # \"not\"\n { crate = \"b\", reason = \"c\" }]"),
            ["a", "b"]
        );
    }

    #[test]
    fn every_dependency_license_is_allowed() {
        let allowed = list(&deny_toml(), "licenses", "allow");
        let mut refused = Vec::new();
        for p in graph().packages {
            let who = name_version(&p);
            match p["license"].as_str() {
                None => refused.push(format!("{who}: no license expression")),
                Some(expr) => match satisfied(expr, &allowed) {
                    Ok(true) => {}
                    Ok(false) => refused.push(format!("{who}: {expr}")),
                    Err(e) => refused.push(format!("{who}: `{expr}`: {e}")),
                },
            }
        }
        assert!(
            refused.is_empty(),
            "licenses not allowed by deny.toml [licenses] allow:\n{}",
            refused.join("\n")
        );
    }

    #[test]
    fn no_banned_crate_is_a_dependency() {
        let banned = list(&deny_toml(), "bans", "deny");
        let found: Vec<String> = graph()
            .packages
            .iter()
            .filter(|p| banned.iter().any(|b| p["name"].as_str() == Some(b)))
            .map(name_version)
            .collect();
        assert!(
            found.is_empty(),
            "banned by deny.toml [bans] deny: {found:?}"
        );
    }

    /// One version of each crate but the `skip` exceptions, and no
    /// exception that matches nothing (the list may only shrink).
    #[test]
    fn one_version_of_each_crate() {
        let skip: BTreeSet<String> = list(&deny_toml(), "bans", "skip").into_iter().collect();
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut present = BTreeSet::new();
        for p in graph().packages {
            let nv = name_version(&p);
            present.insert(nv.clone());
            if skip.contains(&nv) {
                continue;
            }
            let name = p["name"].as_str().unwrap_or_default().to_string();
            versions.entry(name).or_default().push(nv);
        }
        let doubled: Vec<_> = versions.values().filter(|v| v.len() > 1).collect();
        assert!(
            doubled.is_empty(),
            "several versions of a crate (remove one, or add the older to deny.toml [bans] skip with a reason): {doubled:?}"
        );
        let stale: Vec<_> = skip.difference(&present).collect();
        assert!(
            stale.is_empty(),
            "deny.toml [bans] skip names crates no longer in the graph, remove them: {stale:?}"
        );
    }

    #[test]
    fn every_source_is_allowed() {
        let git = list(&deny_toml(), "sources", "allow-git");
        let mut unknown = Vec::new();
        for p in graph().packages {
            // A path dependency (the vendored crate) has no source.
            let Some(source) = p["source"].as_str() else {
                continue;
            };
            let allowed_git = source
                .strip_prefix("git+")
                .is_some_and(|url| git.iter().any(|g| url.starts_with(g.as_str())));
            if !is_crates_io(source) && !allowed_git {
                unknown.push(format!("{}: {source}", name_version(&p)));
            }
        }
        assert!(
            unknown.is_empty(),
            "sources deny.toml [sources] does not allow:\n{}",
            unknown.join("\n")
        );
    }

    /// `1.95` and `1.95.0` alike, as three numbers.
    fn version(text: &str) -> [u64; 3] {
        let mut parts = text.split('.').map(|n| n.parse().unwrap_or(0));
        [(); 3].map(|()| parts.next().unwrap_or(0))
    }

    /// The workspace's `rust-version` is the highest `rust-version` of the
    /// locked dependencies: no lower (it would not build), no higher (it
    /// would turn users away for nothing).
    #[test]
    fn rust_version_is_the_dependencies_highest() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
        let declared = manifest
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = "))
            .expect("Cargo.toml: [workspace.package] rust-version")
            .trim_matches('"');
        // Every platform's dependencies: the MSRV holds everywhere.
        let meta = metadata(&["--all-features"]).expect("cargo metadata");
        let mut highest: Option<([u64; 3], String)> = None;
        for p in outside_workspace(&meta) {
            let Some(rv) = p["rust_version"].as_str() else {
                continue;
            };
            let v = version(rv);
            if highest.as_ref().is_none_or(|(h, _)| v > *h) {
                highest = Some((v, format!("{} ({rv})", name_version(&p))));
            }
        }
        let (needed, by) = highest.expect("some dependency declares a rust-version");
        assert_eq!(
            version(declared),
            needed,
            "Cargo.toml rust-version = \"{declared}\", but the highest a locked dependency needs is {by}"
        );
    }
}
