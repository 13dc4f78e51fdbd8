//! A crate's rustdoc JSON turned into its public API: one sorted line per
//! public item (module, type, field, variant, function with its signature,
//! trait, trait implementation, constant), so that a change of any of them
//! shows as a changed line in review.
//!
//! Only what decides whether a user's code still compiles is rendered:
//! names, paths, signatures, generics and `#[non_exhaustive]`; docs and
//! spans are left out. Blanket and auto-trait implementations are left out
//! too (they follow from the rest). An unusual type the renderer does not
//! know is written as its compact JSON: still stable, still compared.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

/// The public API of the crate whose rustdoc JSON is `doc`, one line per
/// item, sorted.
pub(crate) fn public_api(doc: &Value) -> Vec<String> {
    let mut walk = Walk {
        index: &doc["index"],
        lines: BTreeSet::new(),
        seen: HashSet::new(),
    };
    let root = &doc["index"][id_key(&doc["root"])];
    let name = root["name"].as_str().unwrap_or("crate").to_string();
    walk.module(root, &name);
    walk.lines.into_iter().collect()
}

struct Walk<'a> {
    index: &'a Value,
    lines: BTreeSet<String>,
    seen: HashSet<(String, String)>,
}

fn id_key(id: &Value) -> String {
    id.as_u64()
        .map_or_else(|| id.to_string(), |n| n.to_string())
}

fn is_public(item: &Value) -> bool {
    item["visibility"] == "public"
}

/// The one key of an item's `inner` (its kind) and what it holds.
fn inner(item: &Value) -> (&str, &Value) {
    item["inner"]
        .as_object()
        .and_then(|o| o.iter().next())
        .map_or(("", &Value::Null), |(k, v)| (k.as_str(), v))
}

fn non_exhaustive(item: &Value) -> &'static str {
    let attrs = item["attrs"].as_array().into_iter().flatten();
    let marked = attrs
        .filter_map(Value::as_str)
        .any(|a| a.contains("non_exhaustive"));
    if marked { " #[non_exhaustive]" } else { "" }
}

impl<'a> Walk<'a> {
    fn item(&self, id: &Value) -> Option<&'a Value> {
        self.index.get(id_key(id))
    }

    fn module(&mut self, module: &Value, path: &str) {
        self.lines.insert(format!("pub mod {path}"));
        for id in inner(module).1["items"].as_array().into_iter().flatten() {
            let Some(item) = self.item(id) else { continue };
            if !is_public(item) {
                continue;
            }
            let name = item["name"].as_str().unwrap_or("_").to_string();
            self.named(item, path, &name);
        }
    }

    /// An item reached as `path::name` (by definition or a re-export).
    fn named(&mut self, item: &Value, path: &str, name: &str) {
        let key = (id_key(&item["id"]), format!("{path}::{name}"));
        if !self.seen.insert(key) {
            return;
        }
        let (kind, body) = inner(item);
        let full = format!("{path}::{name}");
        match kind {
            "module" => self.module(item, &full),
            "use" => self.reexport(body, path),
            "struct" => self.structure(item, body, &full),
            "enum" => self.enumeration(item, body, &full),
            "union" => self.record("union", item, body, &full),
            "trait" => self.tr(body, &full),
            "function" => {
                let line = format!("pub {}", function(name, body, path));
                self.lines.insert(line);
            }
            "constant" => {
                let line = format!("pub const {full}: {}", ty(&body["type"]));
                self.lines.insert(line);
            }
            "static" => {
                let line = format!("pub static {full}: {}", ty(&body["type"]));
                self.lines.insert(line);
            }
            "type_alias" => {
                let line = format!(
                    "pub type {full}{} = {}",
                    generics(&body["generics"]),
                    ty(&body["type"])
                );
                self.lines.insert(line);
            }
            "macro" | "proc_macro" => {
                self.lines.insert(format!("pub macro {full}!"));
            }
            other => {
                self.lines.insert(format!("pub {other} {full}"));
            }
        }
    }

    fn reexport(&mut self, body: &Value, path: &str) {
        let name = body["name"].as_str().unwrap_or("_");
        let Some(target) = self.item(&body["id"]) else {
            // Defined in another crate: its own snapshot covers it.
            let source = body["source"].as_str().unwrap_or("_");
            self.lines
                .insert(format!("pub use {path}::{name} = {source}"));
            return;
        };
        if body["is_glob"] == true {
            for id in inner(target).1["items"].as_array().into_iter().flatten() {
                let Some(item) = self.item(id) else { continue };
                if is_public(item) {
                    let n = item["name"].as_str().unwrap_or("_").to_string();
                    self.named(item, path, &n);
                }
            }
            return;
        }
        self.named(target, path, name);
    }

    fn structure(&mut self, item: &Value, body: &Value, full: &str) {
        let g = generics(&body["generics"]);
        let ne = non_exhaustive(item);
        let kind = &body["kind"];
        if let Some(fields) = kind["tuple"].as_array() {
            let shown: Vec<String> = fields
                .iter()
                .map(|f| match self.item(f).filter(|f| is_public(f)) {
                    Some(f) => ty(inner(f).1),
                    None => "_".into(),
                })
                .collect();
            let line = format!("pub struct {full}{g}({}){ne}", shown.join(", "));
            self.lines.insert(line);
        } else {
            self.lines.insert(format!("pub struct {full}{g}{ne}"));
            self.fields(&kind["plain"]["fields"], full);
        }
        self.impls(&body["impls"], full);
    }

    fn record(&mut self, word: &str, item: &Value, body: &Value, full: &str) {
        let g = generics(&body["generics"]);
        let ne = non_exhaustive(item);
        self.lines.insert(format!("pub {word} {full}{g}{ne}"));
        self.fields(&body["fields"], full);
        self.impls(&body["impls"], full);
    }

    fn fields(&mut self, fields: &Value, full: &str) {
        for id in fields.as_array().into_iter().flatten() {
            let Some(field) = self.item(id).filter(|f| is_public(f)) else {
                continue;
            };
            let name = field["name"].as_str().unwrap_or("_");
            let line = format!("pub {full}::{name}: {}", ty(inner(field).1));
            self.lines.insert(line);
        }
    }

    fn enumeration(&mut self, item: &Value, body: &Value, full: &str) {
        let g = generics(&body["generics"]);
        let ne = non_exhaustive(item);
        self.lines.insert(format!("pub enum {full}{g}{ne}"));
        for id in body["variants"].as_array().into_iter().flatten() {
            let Some(variant) = self.item(id) else {
                continue;
            };
            let line = format!("pub {full}::{}", self.variant(variant));
            self.lines.insert(line);
        }
        self.impls(&body["impls"], full);
    }

    fn variant(&self, variant: &Value) -> String {
        let name = variant["name"].as_str().unwrap_or("_");
        let kind = &inner(variant).1["kind"];
        let field = |id: &Value| self.item(id).map(|f| (f["name"].clone(), ty(inner(f).1)));
        let ne = non_exhaustive(variant);
        if let Some(fields) = kind["tuple"].as_array() {
            let shown: Vec<String> = fields.iter().filter_map(field).map(|(_, t)| t).collect();
            return format!("{name}({}){ne}", shown.join(", "));
        }
        if let Some(fields) = kind["struct"]["fields"].as_array() {
            let shown: Vec<String> = fields
                .iter()
                .filter_map(field)
                .map(|(n, t)| format!("{}: {t}", n.as_str().unwrap_or("_")))
                .collect();
            return format!("{name} {{ {} }}{ne}", shown.join(", "));
        }
        format!("{name}{ne}")
    }

    fn impls(&mut self, impls: &Value, full: &str) {
        for id in impls.as_array().into_iter().flatten() {
            let Some(imp) = self.item(id) else { continue };
            let body = inner(imp).1;
            if body["is_synthetic"] == true || !body["blanket_impl"].is_null() {
                continue;
            }
            if body["trait"].is_null() {
                self.inherent(body, full);
                continue;
            }
            let negative = if body["is_negative"] == true { "!" } else { "" };
            let line = format!(
                "impl{} {negative}{} for {}{}",
                generics(&body["generics"]),
                path(&body["trait"]),
                ty(&body["for"]),
                where_clause(&body["generics"])
            );
            self.lines.insert(line);
        }
    }

    fn inherent(&mut self, body: &Value, full: &str) {
        for id in body["items"].as_array().into_iter().flatten() {
            let Some(item) = self.item(id).filter(|i| is_public(i)) else {
                continue;
            };
            let name = item["name"].as_str().unwrap_or("_");
            let (kind, inner_body) = inner(item);
            let line = match kind {
                "function" => format!("pub {}", function(name, inner_body, full)),
                "assoc_const" => format!("pub const {full}::{name}: {}", ty(&inner_body["type"])),
                "constant" => format!("pub const {full}::{name}: {}", ty(&inner_body["type"])),
                other => format!("pub {other} {full}::{name}"),
            };
            self.lines.insert(line);
        }
    }

    fn tr(&mut self, body: &Value, full: &str) {
        let supertraits = bounds(&body["bounds"]);
        let colon = if supertraits.is_empty() { "" } else { ": " };
        let unsafe_ = if body["is_unsafe"] == true {
            "unsafe "
        } else {
            ""
        };
        let line = format!(
            "pub {unsafe_}trait {full}{}{colon}{supertraits}{}",
            generics(&body["generics"]),
            where_clause(&body["generics"])
        );
        self.lines.insert(line);
        for id in body["items"].as_array().into_iter().flatten() {
            let Some(item) = self.item(id) else { continue };
            let name = item["name"].as_str().unwrap_or("_");
            let (kind, b) = inner(item);
            let line = match kind {
                "function" => function(name, b, full),
                "assoc_type" => {
                    let bs = bounds(&b["bounds"]);
                    let colon = if bs.is_empty() { "" } else { ": " };
                    format!("type {full}::{name}{colon}{bs}")
                }
                "assoc_const" => format!("const {full}::{name}: {}", ty(&b["type"])),
                other => format!("{other} {full}::{name}"),
            };
            self.lines.insert(line);
        }
    }
}

/// `fn path::name<G>(args) -> R where ...` with its qualifiers.
fn function(name: &str, body: &Value, path: &str) -> String {
    let header = &body["header"];
    let mut quals = String::new();
    for (flag, word) in [
        ("is_const", "const "),
        ("is_async", "async "),
        ("is_unsafe", "unsafe "),
    ] {
        if header[flag] == true {
            quals.push_str(word);
        }
    }
    let sig = &body["sig"];
    let args: Vec<String> = sig["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|input| {
            let arg = input[0].as_str().unwrap_or("_");
            let t = ty(&input[1]);
            if arg == "self" {
                self_arg(&t)
            } else {
                format!("{arg}: {t}")
            }
        })
        .collect();
    let ret = if sig["output"].is_null() {
        String::new()
    } else {
        format!(" -> {}", ty(&sig["output"]))
    };
    format!(
        "{quals}fn {path}::{name}{}({}){ret}{}",
        generics(&body["generics"]),
        args.join(", "),
        where_clause(&body["generics"])
    )
}

fn self_arg(t: &str) -> String {
    match t {
        "Self" => "self".into(),
        "&Self" => "&self".into(),
        "&mut Self" => "&mut self".into(),
        other => format!("self: {other}"),
    }
}

/// `<'a, T: Bound, const N: usize>`, synthetic (`impl Trait` argument)
/// parameters left out; empty without parameters.
fn generics(g: &Value) -> String {
    let params: Vec<String> = g["params"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"]["type"]["is_synthetic"] != true)
        .map(|p| {
            let name = p["name"].as_str().unwrap_or("_");
            let kind = &p["kind"];
            if let Some(t) = kind.get("type") {
                let bs = bounds(&t["bounds"]);
                if bs.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}: {bs}")
                }
            } else if let Some(c) = kind.get("const") {
                format!("const {name}: {}", ty(&c["type"]))
            } else {
                name.to_string()
            }
        })
        .collect();
    if params.is_empty() {
        String::new()
    } else {
        format!("<{}>", params.join(", "))
    }
}

fn where_clause(g: &Value) -> String {
    let preds: Vec<String> = g["where_predicates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            if let Some(b) = p.get("bound_predicate") {
                format!("{}: {}", ty(&b["type"]), bounds(&b["bounds"]))
            } else {
                compact(p)
            }
        })
        .collect();
    if preds.is_empty() {
        String::new()
    } else {
        format!(" where {}", preds.join(", "))
    }
}

fn bounds(bs: &Value) -> String {
    let shown: Vec<String> = bs
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            if let Some(t) = b.get("trait_bound") {
                let maybe = if t["modifier"] == "maybe" { "?" } else { "" };
                format!("{maybe}{}", path(&t["trait"]))
            } else if let Some(l) = b.get("outlives") {
                l.as_str().unwrap_or("'_").to_string()
            } else {
                compact(b)
            }
        })
        .collect();
    shown.join(" + ")
}

/// A path with its generic arguments: `Option<u64>`, `Fn(u8) -> bool`.
fn path(p: &Value) -> String {
    let mut name = p["path"].as_str().unwrap_or("_");
    // How a module happens to spell a path of its own crate (through
    // `crate::`, `super::` and private modules) is not part of the API:
    // moving an item between modules must not show as a change.
    let own_crate = ["crate::", "super::", "self::"]
        .iter()
        .any(|prefix| name.starts_with(prefix));
    if own_crate {
        name = name.rsplit("::").next().unwrap_or(name);
    }
    format!("{name}{}", args(&p["args"]))
}

fn args(a: &Value) -> String {
    if let Some(angle) = a.get("angle_bracketed") {
        let mut shown: Vec<String> = angle["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|arg| {
                if let Some(t) = arg.get("type") {
                    ty(t)
                } else if let Some(l) = arg.get("lifetime") {
                    l.as_str().unwrap_or("'_").to_string()
                } else {
                    compact(arg)
                }
            })
            .collect();
        for c in angle["constraints"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("_");
            let binding = &c["binding"];
            shown.push(match binding.get("equality") {
                Some(eq) => format!(
                    "{name} = {}",
                    eq.get("type").map_or_else(|| compact(eq), ty)
                ),
                None => format!("{name}: {}", bounds(&binding["constraint"])),
            });
        }
        if shown.is_empty() {
            return String::new();
        }
        return format!("<{}>", shown.join(", "));
    }
    if let Some(paren) = a.get("parenthesized") {
        let inputs: Vec<String> = paren["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(ty)
            .collect();
        let out = if paren["output"].is_null() {
            String::new()
        } else {
            format!(" -> {}", ty(&paren["output"]))
        };
        return format!("({}){out}", inputs.join(", "));
    }
    String::new()
}

/// A type as Rust writes it.
fn ty(t: &Value) -> String {
    let Some((kind, v)) = t.as_object().and_then(|o| o.iter().next()) else {
        return compact(t);
    };
    match kind.as_str() {
        "primitive" | "generic" => v.as_str().unwrap_or("_").to_string(),
        "resolved_path" => path(v),
        "borrowed_ref" => {
            let lt = v["lifetime"]
                .as_str()
                .map(|l| format!("{l} "))
                .unwrap_or_default();
            let m = if v["is_mutable"] == true { "mut " } else { "" };
            format!("&{lt}{m}{}", ty(&v["type"]))
        }
        "raw_pointer" => {
            let m = if v["is_mutable"] == true {
                "mut"
            } else {
                "const"
            };
            format!("*{m} {}", ty(&v["type"]))
        }
        "slice" => format!("[{}]", ty(v)),
        "array" => format!("[{}; {}]", ty(&v["type"]), v["len"].as_str().unwrap_or("_")),
        "tuple" => {
            let parts: Vec<String> = v.as_array().into_iter().flatten().map(ty).collect();
            format!("({})", parts.join(", "))
        }
        "impl_trait" => format!("impl {}", bounds(v)),
        "dyn_trait" => {
            let mut parts: Vec<String> = v["traits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| path(&t["trait"]))
                .collect();
            if let Some(l) = v["lifetime"].as_str() {
                parts.push(l.to_string());
            }
            format!("dyn {}", parts.join(" + "))
        }
        "qualified_path" => {
            let name = v["name"].as_str().unwrap_or("_");
            let self_ty = ty(&v["self_type"]);
            // `Self::Object` comes as a qualified path with an empty trait.
            if v["trait"].is_null() || v["trait"]["path"] == "" {
                format!("{self_ty}::{name}")
            } else {
                format!("<{self_ty} as {}>::{name}", path(&v["trait"]))
            }
        }
        "function_pointer" => {
            let inputs: Vec<String> = v["sig"]["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| ty(&i[1]))
                .collect();
            let out = if v["sig"]["output"].is_null() {
                String::new()
            } else {
                format!(" -> {}", ty(&v["sig"]["output"]))
            };
            format!("fn({}){out}", inputs.join(", "))
        }
        "infer" => "_".into(),
        _ => compact(t),
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A hand-written rustdoc JSON of a crate with one struct (a public
    /// field, a method, a derive) and a re-exported function.
    fn doc() -> Value {
        let unit = json!({"primitive": "u64"});
        json!({
            "root": 0,
            "index": {
                "0": {"id": 0, "name": "demo", "visibility": "public", "attrs": [],
                      "inner": {"module": {"items": [1, 5]}}},
                "1": {"id": 1, "name": "Config", "visibility": "public", "attrs": ["non_exhaustive"],
                      "inner": {"struct": {"generics": {"params": [], "where_predicates": []},
                                           "kind": {"plain": {"fields": [2, 6]}},
                                           "impls": [3, 7]}}},
                "2": {"id": 2, "name": "size", "visibility": "public", "attrs": [],
                      "inner": {"struct_field": unit}},
                "6": {"id": 6, "name": "secret", "visibility": "default", "attrs": [],
                      "inner": {"struct_field": unit}},
                "3": {"id": 3, "name": null, "visibility": "default", "attrs": [],
                      "inner": {"impl": {"trait": null, "for": {"generic": "Config"}, "items": [4],
                                         "generics": {"params": [], "where_predicates": []},
                                         "is_synthetic": false, "blanket_impl": null}}},
                "7": {"id": 7, "name": null, "visibility": "default", "attrs": [],
                      "inner": {"impl": {"trait": {"path": "Clone", "args": null},
                                         "for": {"resolved_path": {"path": "Config", "args": null}},
                                         "items": [], "generics": {"params": [], "where_predicates": []},
                                         "is_synthetic": false, "blanket_impl": null}}},
                "4": {"id": 4, "name": "size", "visibility": "public", "attrs": [],
                      "inner": {"function": {
                          "sig": {"inputs": [["self", {"borrowed_ref": {"lifetime": null, "is_mutable": false, "type": {"generic": "Self"}}}]],
                                  "output": unit},
                          "generics": {"params": [], "where_predicates": []},
                          "header": {"is_const": false, "is_async": false, "is_unsafe": false}}}},
                "5": {"id": 5, "name": null, "visibility": "public", "attrs": [],
                      "inner": {"use": {"source": "inner::open", "name": "open", "id": 8, "is_glob": false}}},
                "8": {"id": 8, "name": "open", "visibility": "public", "attrs": [],
                      "inner": {"function": {
                          "sig": {"inputs": [["path", {"impl_trait": [{"trait_bound": {"trait": {"path": "AsRef", "args": {"angle_bracketed": {"args": [{"type": {"resolved_path": {"path": "Path", "args": null}}}], "constraints": []}}}, "modifier": "none"}}]}]],
                                  "output": {"resolved_path": {"path": "Result", "args": {"angle_bracketed": {"args": [{"type": {"generic": "Config"}}], "constraints": []}}}}},
                          "generics": {"params": [{"name": "impl AsRef<Path>", "kind": {"type": {"bounds": [], "is_synthetic": true}}}], "where_predicates": []},
                          "header": {"is_const": false, "is_async": true, "is_unsafe": false}}}}
            }
        })
    }

    #[test]
    fn every_public_item_has_its_line_and_private_ones_none() {
        let api = public_api(&doc());
        assert_eq!(
            api,
            [
                "impl Clone for Config",
                "pub async fn demo::open(path: impl AsRef<Path>) -> Result<Config>",
                "pub fn demo::Config::size(&self) -> u64",
                "pub mod demo",
                "pub struct demo::Config #[non_exhaustive]",
                "pub demo::Config::size: u64",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_changed_signature_changes_its_line() {
        let mut changed = doc();
        changed["index"]["4"]["inner"]["function"]["sig"]["output"] = json!({"primitive": "u32"});
        let before = public_api(&doc());
        let after = public_api(&changed);
        assert_ne!(before, after);
        assert!(after.contains(&"pub fn demo::Config::size(&self) -> u32".to_string()));
    }
}
