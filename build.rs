//! Reads plugin.cfg and writes the plugin registry to $OUT_DIR/registry.rs.
//!
//! plugin.cfg holds one plugin name per line (`#` starts a comment); its order is the execution
//! order of every chain. Each name needs `plugins/<name>/mod.rs`, `plugins/<name>/README.md` and a
//! `plugin-<name>` feature in Cargo.toml. Anything else fails the build as `plugin.cfg:LINE: message`.
//!
//! `FERRITE_PLUGIN_CFG=FILE` builds the registry from another file in the same format (a custom
//! build's selection and order, see `scripts/build --plugin-cfg`); its names must be plugins of
//! this tree. The repository's plugin.cfg is checked either way.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs, process};

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);
    println!("cargo:rerun-if-changed=plugin.cfg");
    println!("cargo:rerun-if-changed=plugins");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=FERRITE_PLUGIN_CFG");
    let cargo = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml is readable");
    let repo = read_plugin_cfg(root, &root.join("plugin.cfg"), &cargo);
    // The execution order: the repository's plugin.cfg, or the custom file.
    let order = match env::var_os("FERRITE_PLUGIN_CFG").filter(|v| !v.is_empty()) {
        None => repo.clone(),
        Some(custom) => {
            let custom = root.join(PathBuf::from(custom));
            println!("cargo:rerun-if-changed={}", custom.display());
            let order = read_plugin_cfg(root, &custom, &cargo);
            for name in repo.iter().filter(|n| !order.contains(n)) {
                let feature = format!("CARGO_FEATURE_PLUGIN_{}", name.to_uppercase());
                if env::var_os(feature).is_some() {
                    println!("cargo:warning=feature plugin-{name} is on, but {} does not list {name}: it is not compiled in", custom.display());
                }
            }
            order
        }
    };
    // Every plugin of this tree, for "not compiled in" messages: the order's, then the rest.
    let mut known = order.clone();
    known.extend(repo.into_iter().filter(|n| !order.contains(n)));
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("registry.rs");
    fs::write(out, write_registry(root, &order, &known)).expect("OUT_DIR is writable");
    build_info(root);
}

/// Version facts for `ferrite -version`.
fn build_info(root: &Path) {
    let run = |cmd: &str, args: &[&str]| {
        process::Command::new(cmd)
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!("cargo:rustc-env=FERRITE_RUSTC_VERSION={}", run(&rustc, &["-V"]).unwrap_or_else(|| "rustc unknown".into()));
    println!("cargo:rustc-env=FERRITE_TARGET={}", env::var("TARGET").unwrap_or_default());
    println!("cargo:rustc-env=FERRITE_PROFILE={}", env::var("PROFILE").unwrap_or_default());
    println!("cargo:rerun-if-env-changed=FERRITE_COMMIT");
    // Only this tree's own repository counts: an unpacked source tarball may sit inside another.
    let toplevel = run("git", &["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let in_git = toplevel.and_then(|t| t.canonicalize().ok()) == root.canonicalize().ok();
    if in_git {
        // HEAD, and the branch file a commit moves; `--git-path` finds both in a worktree too.
        let head_ref = run("git", &["symbolic-ref", "-q", "HEAD"]);
        for p in ["HEAD", "packed-refs", head_ref.as_deref().unwrap_or("HEAD")] {
            if let Some(path) = run("git", &["rev-parse", "--git-path", p]).map(|p| root.join(p)).filter(|p| p.exists()) {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    } else if root.join("COMMIT").is_file() {
        println!("cargo:rerun-if-changed=COMMIT");
    }
    // A source tarball (scripts/vendor) has no .git; it records its commit in COMMIT.
    let commit = env::var("FERRITE_COMMIT")
        .ok()
        .or_else(|| if in_git { run("git", &["rev-parse", "--short=12", "HEAD"]) } else { None })
        .or_else(|| fs::read_to_string(root.join("COMMIT")).ok().map(|s| s.trim().to_string()))
        .filter(|c| !c.is_empty());
    println!("cargo:rustc-env=FERRITE_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
}

fn fail(file: &str, line: usize, msg: &str) -> ! {
    eprintln!("{file}:{line}: {msg}");
    println!("cargo:warning={file}:{line}: {msg}");
    process::exit(1);
}

/// Reads and checks a plugin.cfg; returns its names in file order.
fn read_plugin_cfg(root: &Path, path: &Path, cargo: &str) -> Vec<String> {
    // The repository's file is named as plugin.cfg; a custom one by the path it was given as.
    let label = if path == root.join("plugin.cfg") { "plugin.cfg".to_string() } else { path.display().to_string() };
    let text = fs::read_to_string(path).unwrap_or_else(|e| fail(&label, 0, &format!("cannot read: {e}")));
    let names = parse_plugin_cfg(&label, &text);
    check_plugin_dirs(&label, root, &names, cargo);
    names.into_iter().map(|(_, n)| n).collect()
}

/// Returns (line number, name) for every plugin, in file order.
fn parse_plugin_cfg(file: &str, text: &str) -> Vec<(usize, String)> {
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let ok = line.starts_with(|c: char| c.is_ascii_lowercase())
            && line.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            fail(file, i + 1, &format!("malformed plugin name {line:?}: names match ^[a-z][a-z0-9_]*$"));
        }
        if !seen.insert(line.to_string()) {
            fail(file, i + 1, &format!("duplicate plugin {line:?}"));
        }
        names.push((i + 1, line.to_string()));
    }
    names
}

fn check_plugin_dirs(file: &str, root: &Path, names: &[(usize, String)], cargo: &str) {
    for (line, name) in names {
        if !root.join("plugins").join(name).is_dir() {
            let mut have: Vec<String> = fs::read_dir(root.join("plugins"))
                .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
                .unwrap_or_default();
            have.sort();
            fail(file, *line, &format!("unknown plugin {name:?}: there is no plugins/{name}/; plugins: {}", have.join(", ")));
        }
        for f in ["mod.rs", "README.md"] {
            if !root.join("plugins").join(name).join(f).is_file() {
                fail(file, *line, &format!("plugin {name:?} has no plugins/{name}/{f}"));
            }
        }
        if !cargo.lines().any(|l| l.trim_start().starts_with(&format!("plugin-{name} ="))) {
            fail(file, *line, &format!("plugin {name:?} has no feature \"plugin-{name}\" in Cargo.toml"));
        }
    }
}

/// The module name for a plugin: a Rust keyword (`loop`) is written as a raw identifier.
fn ident(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
        "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
        "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box",
        "do", "final", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
    ];
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

fn camel(name: &str) -> String {
    name.split('_').map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

fn write_registry(root: &Path, names: &[String], known: &[String]) -> String {
    let mut s = String::from("// @generated by build.rs from plugin.cfg. Do not edit.\n\n");
    for n in names {
        let path = root.join("plugins").join(n).join("mod.rs");
        let _ = writeln!(s, "#[cfg(feature = \"plugin-{n}\")]\n#[path = {:?}]\npub mod {};", path.display().to_string(), ident(n));
    }
    s.push_str("\n/// Every plugin of this tree, compiled in or not: those of the plugin.cfg in use in execution order, then the rest.\npub static KNOWN: &[&str] = &[");
    for n in known {
        let _ = write!(s, "{n:?}, ");
    }
    s.push_str("];\n\n/// The compiled-in plugins, in execution order.\npub static REGISTRY: &[crate::plugin::Registration] = &[\n");
    for n in names {
        let _ = writeln!(s, "    #[cfg(feature = \"plugin-{n}\")]\n    crate::plugin::Registration {{ name: {n:?}, parse: |d| {}::parse(d).map(PluginConfig::{}) }},", ident(n), camel(n));
    }
    s.push_str("];\n\n/// One plugin's typed configuration: what a Corefile directive parses to and what RON names.\n");
    s.push_str("#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]\npub enum PluginConfig {\n");
    for n in names {
        let _ = writeln!(s, "    #[cfg(feature = \"plugin-{n}\")]\n    #[serde(rename = {n:?})]\n    {}({}::Config),", camel(n), ident(n));
    }
    s.push_str("}\n\nimpl PluginConfig {\n    /// The plugin's name, as in plugin.cfg.\n    pub fn name(&self) -> &'static str {\n        match *self {\n");
    for n in names {
        let _ = writeln!(s, "            #[cfg(feature = \"plugin-{n}\")]\n            PluginConfig::{}(_) => {n:?},", camel(n));
    }
    s.push_str("        }\n    }\n\n    /// Runs the plugin's setup for one server block.\n    #[allow(unused_variables)] // a build without plugins has no arm that uses `ctx`\n    pub fn setup(&self, ctx: &mut crate::plugin::SetupCtx) -> Result<(), crate::plugin::SetupError> {\n        match *self {\n");
    for n in names {
        let _ = writeln!(s, "            #[cfg(feature = \"plugin-{n}\")]\n            PluginConfig::{}(ref c) => {}::setup(c, ctx),", camel(n), ident(n));
    }
    s.push_str("        }\n    }\n}\n");
    s
}
