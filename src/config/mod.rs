//! The configuration model and its two front ends: the Corefile and RON.
//!
//! Both produce [`Config`]: server blocks, each with its keys and one typed `PluginConfig` per
//! directive. A Corefile directive is handed to its plugin's `parse`; RON names the same
//! configurations directly (`("whoami", ...)` is written `whoami(())`).

pub mod corefile;
pub mod directive;
pub mod keys;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugin::{Loc, SetupError};
use crate::plugins::{PluginConfig, KNOWN, REGISTRY};

/// A whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub servers: Vec<ServerBlock>,
    /// Directory relative paths are taken from.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The files this configuration was read from (a Corefile and its imports), for reload.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,
}

/// One server block: the zones and ports it serves, and its plugins as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub keys: Vec<String>,
    pub plugins: Vec<PluginConfig>,
    /// Where each key and plugin was written, when read from a Corefile.
    #[serde(skip)]
    pub key_locs: Vec<Option<Loc>>,
    #[serde(skip)]
    pub plugin_locs: Vec<Option<Loc>>,
}

/// A reason a configuration cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub error: SetupError,
    /// True when the configuration is well-formed but names something this build lacks
    /// (a CoreDNS plugin ferrite does not have, or a transport not built yet).
    pub unavailable: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl From<SetupError> for Problem {
    fn from(error: SetupError) -> Self {
        Problem { error, unavailable: false }
    }
}

/// CoreDNS's plugins, for telling "not available in ferrite" from "misspelled".
pub const COREDNS_PLUGINS: &[&str] = &[
    "acl", "any", "auto", "autopath", "azure", "bind", "bufsize", "cache", "cancel", "chaos", "clouddns",
    "debug", "dns64", "dnssec", "dnstap", "erratic", "errors", "etcd", "file", "forward", "geoip", "grpc",
    "grpc_server", "header", "health", "hosts", "k8s_external", "kubernetes", "loadbalance", "local", "log",
    "loop", "metadata", "minimal", "multisocket", "nomad", "nsid", "on", "pprof", "predicate", "prometheus",
    "quic", "ready", "reload", "rewrite", "root", "route53", "secondary", "sign", "template", "timeouts",
    "tls", "trace", "transfer", "tsig", "view", "whoami",
];

/// Reads a configuration: `*.ron` as RON, anything else as a Corefile.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if path.extension().is_some_and(|e| e == "ron") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Problem::from(SetupError::new(format!("{}: cannot read: {e}", path.display())))])?;
        return from_ron(&text, &path.display().to_string()).map(|mut c| {
            c.dir = dir;
            c.sources = vec![path.to_path_buf()];
            c
        });
    }
    let (blocks, sources) = corefile::parse_file_with_sources(path).map_err(|e| vec![Problem::from(e)])?;
    from_blocks(blocks, dir).map(|mut c| {
        c.sources = sources;
        c
    })
}

/// A fingerprint of the files a configuration came from: reload compares these.
pub fn fingerprint(sources: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in sources {
        p.hash(&mut h);
        std::fs::read(p).ok().hash(&mut h);
    }
    h.finish()
}

/// Parses Corefile text (imports relative to the current directory).
pub fn from_corefile_str(text: &str, name: &str) -> Result<Config, Vec<Problem>> {
    let blocks = corefile::parse_str(text, name).map_err(|e| vec![Problem::from(e)])?;
    from_blocks(blocks, PathBuf::from("."))
}

/// Parses RON text.
pub fn from_ron(text: &str, name: &str) -> Result<Config, Vec<Problem>> {
    ron_options().from_str::<Config>(text).map_err(|e| {
        let loc = Loc { file: name.into(), line: e.position.line as u32, col: e.position.col as u32 };
        vec![Problem::from(SetupError::at(&loc, e.code.to_string()))]
    })
}

/// Prints a configuration as RON.
pub fn to_ron(c: &Config) -> String {
    let pretty = ron::ser::PrettyConfig::new().indentor("    ".to_string()).struct_names(false);
    ron_options().to_string_pretty(c, pretty).expect("every plugin config serialises")
}

/// RON as ferrite reads and writes it: optional settings are written bare, without `Some(...)`.
fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

fn from_blocks(blocks: Vec<corefile::RawBlock>, dir: PathBuf) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut servers = Vec::new();
    for b in blocks {
        for k in &b.keys {
            if let Err(e) = keys::parse_key(k, 53) {
                problems.push(Problem::from(e));
            }
        }
        let mut plugins = Vec::new();
        let mut plugin_locs = Vec::new();
        for d in &b.directives {
            let name = d.name.text.as_str();
            match REGISTRY.iter().find(|r| r.name == name) {
                Some(r) => match (r.parse)(d) {
                    Ok(c) => {
                        plugins.push(c);
                        plugin_locs.push(Some(d.loc().clone()));
                    }
                    Err(e) => problems.push(Problem::from(locate(e, d.loc()).plugin(name))),
                },
                None => problems.push(unknown_plugin(&d.name)),
            }
        }
        servers.push(ServerBlock {
            keys: b.keys.iter().map(|k| k.text.clone()).collect(),
            key_locs: b.keys.iter().map(|k| Some(k.loc.clone())).collect(),
            plugins,
            plugin_locs,
        });
    }
    if problems.is_empty() {
        Ok(Config { servers, dir, sources: Vec::new() })
    } else {
        Err(problems)
    }
}

/// Gives an error without a location the directive's.
pub fn locate(mut e: SetupError, loc: &Loc) -> SetupError {
    if e.loc.is_none() {
        e.loc = Some(loc.clone());
    }
    e
}

fn unknown_plugin(t: &directive::Token) -> Problem {
    let compiled: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
    let (message, unavailable) = explain_unknown(&t.text, &compiled, KNOWN);
    Problem { error: t.err(message), unavailable }
}

/// Why `name` has no plugin in this build: not compiled in (which feature to enable), a CoreDNS
/// plugin ferrite lacks, or unknown (with the known names).
fn explain_unknown(name: &str, compiled: &[&str], known: &[&str]) -> (String, bool) {
    if known.contains(&name) {
        return (format!("plugin {name:?} is not compiled in: build with --features plugin-{name}"), true);
    }
    if COREDNS_PLUGINS.contains(&name) {
        return (format!("plugin {name:?} is a CoreDNS plugin that this version of ferrite does not provide yet"), true);
    }
    (format!("unknown plugin {name:?}; known plugins: {}", compiled.join(", ")), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unavailable_plugins() {
        let e = from_corefile_str(". {\n  nosuchplugin\n  etcd skydns.local\n}\n", "Corefile").expect_err("fails");
        assert_eq!(e.len(), 2);
        assert!(!e[0].unavailable);
        assert!(e[0].to_string().starts_with("Corefile:2:3: unknown plugin \"nosuchplugin\"; known plugins: "), "{}", e[0]);
        assert!(e[1].unavailable);
        assert!(e[1].to_string().contains("does not provide yet"), "{}", e[1]);
    }

    #[test]
    fn plugin_in_plugin_cfg_but_not_compiled_names_its_feature() {
        let (m, unavailable) = explain_unknown("chaos", &["whoami"], &["chaos", "whoami"]);
        assert_eq!(m, "plugin \"chaos\" is not compiled in: build with --features plugin-chaos");
        assert!(unavailable);
        let (m, unavailable) = explain_unknown("chaoss", &["whoami"], &["chaos", "whoami"]);
        assert_eq!(m, "unknown plugin \"chaoss\"; known plugins: whoami");
        assert!(!unavailable);
    }

    #[cfg(feature = "plugin-whoami")]
    #[test]
    fn ron_round_trip() {
        let c = from_corefile_str(".:1053 {\n whoami\n}\n", "Corefile").expect("parses");
        let ron = to_ron(&c);
        let back = from_ron(&ron, "x.ron").expect("reads back");
        assert_eq!(back.servers[0].keys, [".:1053"]);
        assert_eq!(back.servers[0].plugins.len(), 1);
        let e = from_ron("(servers: [(keys: [\".\"], plugins: [], bogus: 1)])", "x.ron").expect_err("unknown field");
        assert!(e[0].to_string().starts_with("x.ron:1:"), "{}", e[0]);
    }
}
