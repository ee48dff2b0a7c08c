//! Checks over every compiled-in plugin: its README's examples set up, and its tests run the
//! shared contract test.

use std::path::Path;

use ferrite::config::from_corefile_str;
use ferrite::plugins::{KNOWN, REGISTRY};
use ferrite::server::setup::build;
use ferrite::testing::readme_examples;

fn plugin_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins").join(name)
}

#[test]
fn every_readme_example_parses_and_sets_up() {
    let mut failures = Vec::new();
    for r in REGISTRY {
        let readme = std::fs::read_to_string(plugin_dir(r.name).join("README.md")).expect("README.md");
        for section in ["## Name", "## Description", "## Syntax", "## Examples"] {
            if !readme.contains(section) {
                failures.push(format!("{}: README has no {section}", r.name));
            }
        }
        let examples = readme_examples(&readme);
        if examples.is_empty() {
            failures.push(format!("{}: README has no ```corefile example", r.name));
        }
        for (i, ex) in examples.iter().enumerate() {
            let name = format!("{}/README.md example {}", r.name, i + 1);
            match from_corefile_str(ex, &name) {
                Ok(cfg) => {
                    if let Err(p) = build(&cfg, 53) {
                        failures.extend(p.iter().map(|p| p.to_string()));
                    }
                }
                Err(p) => failures.extend(p.iter().map(|p| p.to_string())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_plugin_runs_the_contract_test() {
    for name in KNOWN {
        let tests = std::fs::read_to_string(plugin_dir(name).join("tests.rs")).unwrap_or_default();
        assert!(tests.contains("check_contract("), "plugins/{name}/tests.rs must run the shared contract test");
    }
}
