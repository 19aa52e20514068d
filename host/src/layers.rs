//! The layer check: every module of this crate uses only the layers below its own, and the
//! SQLite backend's files form a hierarchy (no two import each other). It reads the sources,
//! so it fails the test run the moment someone writes an import that points up.
//!
//! What counts as an import: every `crate::<module>` path (in `use` lines or inline, grouped
//! `crate::{a, b}` too) and every `super::` path that climbs to the crate root. Comments and
//! test code (`#[cfg(test)] mod …` to the end of a file, `tests.rs` files and this file) are
//! left out: tests may reach across layers to set things up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first. A module may use the modules of the layers below its own and,
/// where listed, its own layer's modules before it.
const LAYERS: &[&[&str]] = &[
    // The domain: types and small pure helpers every layer speaks.
    &["model", "metrics", "tokens", "secrets", "telemetry"],
    &["store"],
    // The mapping contract, then the plugins that implement it.
    &["mapping"],
    &["plugins"],
    &["service"],
    &["http", "config"],
    &["server"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a file without comments and without its test module(s).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if rest.starts_with("/*") {
            rest = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else if rest.starts_with('"') {
            // Strings hold SQL and messages, never paths: skip them whole.
            let mut end = 1;
            let bytes = rest.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            rest = rest.get(end + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first names of the paths a `{…}` group starts with (`{a, b::c, d::{e}}` -> a, b, d).
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let (mut depth, mut expect) = (0, true);
    let mut i = 0;
    while i < s.len() {
        let c = s.as_bytes()[i];
        match c {
            b'{' => {
                depth += 1;
                expect = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect = true,
            _ if expect && depth == 1 && (c.is_ascii_alphabetic() || c == b'_') => {
                let id = ident_at(&s[i..]);
                heads.push(id);
                i += id.len();
                expect = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// The names a piece of code reaches after `prefix` (`crate::`, or a `super::` chain).
fn heads_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        // `super::super::x` is not `super::x` seen from the second `super`.
        if prefix.starts_with("super") && code[..i].ends_with("super::") {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if rest.starts_with('{') {
            out.extend(group_heads(rest));
        } else {
            out.push(ident_at(rest));
        }
    }
    out.into_iter().filter(|h| !h.is_empty() && *h != "super" && *h != "self").collect()
}

/// A source file's module path below the crate root (`store/sqlite/users.rs` -> store, sqlite, users).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem);
        }
    }
    parts
}

/// The crate-level modules a file uses (through `crate::` or `super::` chains to the root).
fn crate_imports(path: &[String], code: &str) -> BTreeSet<String> {
    let mut used: BTreeSet<String> = heads_after(code, "crate::").into_iter().map(str::to_string).collect();
    // `super` from a file `a/b.rs` is `a`; from `a/mod.rs` (path [a]) it is the root.
    let depth = path.len();
    for n in 1..=depth {
        let chain = "super::".repeat(n);
        if n == depth {
            used.extend(heads_after(code, &chain).into_iter().map(str::to_string));
        }
    }
    used
}

/// Every upward import among `files` ((path below src, contents)), as messages.
fn upward_imports(files: &[(String, String)]) -> Vec<String> {
    let mut errors = Vec::new();
    for (rel, text) in files {
        let path = module_path(Path::new(rel));
        let Some(top) = path.first() else { continue };
        let Some(own) = rank(top) else {
            errors.push(format!("{rel}: module `{top}` has no layer in layers.rs"));
            continue;
        };
        for used in crate_imports(&path, &code(text)) {
            if used == *top || used == "scim" {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => errors.push(format!("{rel}: `{top}` imports `{used}`, which is not below it")),
                None => errors.push(format!("{rel}: `{top}` imports `{used}`, which has no layer in layers.rs")),
            }
        }
    }
    errors
}

/// Among the files directly in one folder (name -> contents), who imports whom through
/// `super::` (siblings only).
fn sibling_graph(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    files
        .iter()
        .map(|(name, text)| {
            let uses = heads_after(&code(text), "super::").into_iter().filter(|h| files.contains_key(*h) && *h != name).map(str::to_string).collect();
            (name.clone(), uses)
        })
        .collect()
}

/// A cycle of the graph, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, base, out);
        } else if p.extension().is_some_and(|e| e == "rs") && p.file_name().is_some_and(|n| n != "tests.rs" && n != "layers.rs") {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    assert!(files.len() > 50, "read the sources");
    let errors = upward_imports(&files);
    assert!(errors.is_empty(), "imports that point up (see ARCHITECTURE.md, Layers):\n{}", errors.join("\n"));
}

#[test]
fn the_store_logic_files_form_a_hierarchy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/logic");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let text = if p.is_dir() { std::fs::read_to_string(p.join("mod.rs")).unwrap() } else { std::fs::read_to_string(&p).unwrap() };
        if name != "mod" {
            files.insert(name, text);
        }
    }
    assert!(files.len() > 10);
    let graph = sibling_graph(&files);
    assert!(graph["users"].contains("entries"), "the graph sees sibling imports: {graph:?}");
    assert_eq!(cycle(&graph), None, "files of store/logic import each other");
}

#[test]
fn the_check_catches_an_upward_import_and_a_cycle() {
    let f = |rel: &str, text: &str| (rel.to_string(), text.to_string());
    let files = [
        f("store/sqlite/users.rs", "use crate::model::Owner;\nuse crate::{scim::eval, service::Service};\n"),
        f("plugins/chain.rs", "// crate::service::mapping in a comment is fine\nfn f() { crate::metrics::get(); let s = \"crate::http\"; }\n"),
        f("service/admin.rs", "use super::super::http::AppState;\n"),
        f("mapping.rs", "use super::model::Decision;\nuse super::{plugins::chain, model};\n"),
        f("model/mod.rs", "pub mod owner;\n#[cfg(test)]\nmod tests { use crate::cli::Cli; }\n"),
    ];
    let errors = upward_imports(&files);
    assert_eq!(
        errors,
        [
            "store/sqlite/users.rs: `store` imports `service`, which is not below it",
            "service/admin.rs: `service` imports `http`, which is not below it",
            "mapping.rs: `mapping` imports `plugins`, which is not below it",
        ]
    );
    let sqlite: BTreeMap<String, String> = [("users", "use super::{audit, entries};"), ("audit", "use super::entries::by_id;"), ("entries", "fn f() { super::users::get(); }")]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(cycle(&sibling_graph(&sqlite)), Some(vec!["audit".into(), "entries".into(), "users".into(), "audit".into()]));
}
