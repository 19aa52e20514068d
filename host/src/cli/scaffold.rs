//! `mapwright plugin new`: a plugin project in Rust, JavaScript or Python, copied from the
//! templates under `examples/plugins/` (compiled into the binary, so the copy is the one CI
//! builds and tests) under the author's name, with a passing test and its build command.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The languages a plugin project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust, with the plugin SDK (the smallest and fastest components).
    Rust,
    /// JavaScript, built with componentize-js (npm).
    Js,
    /// Python, built with componentize-py (PyPI).
    Python,
}

impl Lang {
    /// As `--lang` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }
}

/// The contract every template is built against.
const WIT: &str = include_str!("../../../plugin-sdk/wit/plugin.wit");

/// One template file: its path in the project, and its text.
type File = (&'static str, &'static str);

macro_rules! template {
    ($lang:literal: $($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../examples/plugins/", $lang, "/", $path)))),*]
    };
}

const JS: &[File] = template!("js": "package.json", "package-lock.json", "build.mjs", "plugin.js", "test/rules.test.js", "examples.json", "README.md");
const PYTHON: &[File] = template!("python": "requirements.txt", "rules.py", "app.py", "test_rules.py", "build.sh", "examples.json", "README.md");
const RUST: &[File] = template!("rust": "src/lib.rs", "examples.json", "README.md");

/// The template's own name in each file, and what replaces it.
fn renames(lang: Lang, name: &str) -> Vec<(&'static str, String)> {
    let wasm = format!("{name}.wasm");
    match lang {
        Lang::Js => vec![("mapwright-plugin-js-template", name.to_string()), ("acme-rules-js", name.to_string()), ("acme-rules.wasm", wasm)],
        Lang::Python => vec![("acme-rules-py", name.to_string()), ("acme-rules.wasm", wasm)],
        Lang::Rust => vec![("acme_rules", name.replace('-', "_")), ("acme-rules", name.to_string())],
    }
}

/// What was made, and how to go on.
#[derive(Debug, serde::Serialize)]
pub struct Project {
    /// Where.
    pub dir: PathBuf,
    /// Its language.
    pub lang: Lang,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    /// The commands that set it up, test it, build the component and run its examples, in
    /// order, from `dir`.
    pub next: Vec<String>,
}

/// Checks a plugin name: lower-case letters, digits and single hyphens (it becomes a package
/// name in every language and the name the audit trail records).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("'{name}' is not a plugin name: lower-case letters, digits and single hyphens, starting with a letter, at most 48 characters");
    }
    Ok(())
}

/// The SDK a Rust project depends on: `--sdk`, or the one beside this binary's sources.
fn sdk_path(sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = match sdk {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk"),
    };
    let manifest = candidate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|_| match sdk {
        Some(_) => anyhow::anyhow!("{} is not the plugin SDK (no Cargo.toml there)", candidate.display()),
        None => anyhow::anyhow!("the plugin SDK is not where this binary was built from; pass --sdk <the plugin-sdk directory of a Mapwright checkout>"),
    })?;
    if !text.contains("name = \"mapwright-plugin-sdk\"") {
        bail!("{} is not the plugin SDK (its Cargo.toml names another package)", candidate.display());
    }
    candidate.canonicalize().with_context(|| candidate.display().to_string())
}

/// A Rust project's manifest: a crate of its own (not a member of any enclosing workspace),
/// built as the server builds its first-party plugins.
fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "A Mapwright rule plugin"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: the native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
mapwright-plugin-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

# A project of its own, even inside another workspace's directory.
[workspace]

# Small, fast components: what the server's first-party plugins are built with.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true
"#,
        sdk = sdk.display().to_string()
    )
}

/// Writes a new plugin project named `name` into `dir` (which must not exist, or be empty).
pub fn create(name: &str, lang: Lang, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<Project> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).with_context(|| dir.display().to_string())?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let renames = renames(lang, name);
    let rename = |text: &str| renames.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to));
    let mut files: Vec<(String, String)> = match lang {
        Lang::Js => JS.iter().map(|(p, t)| (p.to_string(), rename(t))).collect(),
        Lang::Python => PYTHON.iter().map(|(p, t)| (p.to_string(), rename(t))).collect(),
        Lang::Rust => RUST.iter().map(|(p, t)| (p.to_string(), rename(t))).collect(),
    };
    let (ignore, next) = match lang {
        Lang::Js => {
            files.push(("wit/plugin.wit".into(), WIT.into()));
            ("node_modules/\n*.wasm\n", vec!["npm ci".to_string(), "npm test".into(), "npm run build".into(), format!("mapwright plugin test --plugin {name}.wasm --examples examples.json")])
        }
        Lang::Python => {
            files.push(("wit/plugin.wit".into(), WIT.into()));
            (
                "__pycache__/\n.venv/\n*.wasm\n",
                vec![
                    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt".to_string(),
                    "python -m unittest".into(),
                    "sh build.sh".into(),
                    format!("mapwright plugin test --plugin {name}.wasm --examples examples.json"),
                ],
            )
        }
        Lang::Rust => {
            files.push(("Cargo.toml".into(), cargo_toml(name, &sdk_path(sdk)?)));
            let wasm = format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
            (
                "target/\nCargo.lock\n",
                vec![
                    "rustup target add wasm32-wasip2".to_string(),
                    "cargo test".into(),
                    "cargo build --release --target wasm32-wasip2".into(),
                    format!("mapwright plugin test --plugin {wasm} --examples examples.json"),
                ],
            )
        }
    };
    files.push((".gitignore".into(), ignore.into()));
    for (path, text) in &files {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
        }
        std::fs::write(&to, text).with_context(|| to.display().to_string())?;
    }
    Ok(Project { dir: dir.to_path_buf(), lang, files: files.into_iter().map(|(p, _)| p).collect(), next })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_package_names_in_every_language() {
        for ok in ["acme", "acme-rules", "r2d2", "a-b-c"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "1acme", "acme-", "a--b", "acme_rules", "acme rules", "../x", &"a".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_project_carries_its_name_and_never_the_templates() {
        for lang in [Lang::Js, Lang::Python, Lang::Rust] {
            let dir = tempfile::tempdir().unwrap();
            let p = create("okta-rules", lang, &dir.path().join("p"), None).unwrap();
            for f in &p.files {
                let text = std::fs::read_to_string(p.dir.join(f)).unwrap();
                assert!(!text.contains("acme-rules") && !text.contains("acme_rules") && !text.contains("js-template"), "{lang:?} {f}");
            }
            assert!(p.next.last().unwrap().contains("--examples examples.json"));
            // Never over an existing project.
            let again = create("okta-rules", lang, &p.dir, None).unwrap_err().to_string();
            assert!(again.contains("not empty"), "{again}");
        }
    }

    #[test]
    fn a_rust_project_needs_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let err = create("x", Lang::Rust, &dir.path().join("p"), Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("is not the plugin SDK"), "{err}");
        assert!(!dir.path().join("p").exists(), "nothing written");
    }
}
