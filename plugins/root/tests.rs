use std::path::{Path, PathBuf};

use crate::config::directive::Directive;
use crate::plugin::{ServerOptions, SetupCtx, SetupError};
use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "root", config: "root /tmp", passes: None });
}

/// The root a block ends up with when its Corefile lives in `dir`.
fn root_after(text: &str, dir: &Path) -> Result<PathBuf, SetupError> {
    let cfg = super::parse(&Directive::from_text(text)?)?;
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&[], dir.to_path_buf(), &mut opts);
    super::setup(&cfg, &mut ctx)?;
    let root = ctx.root.clone();
    assert!(ctx.into_handlers().is_empty(), "setup only");
    Ok(root)
}

#[test]
fn absolute_and_relative_paths() {
    let base = std::env::temp_dir().join(format!("ferrite-root-test-{}", std::process::id()));
    std::fs::create_dir_all(base.join("zones")).expect("temp dir");
    assert_eq!(root_after("root /tmp", &base).expect("ok"), PathBuf::from("/tmp"));
    assert_eq!(root_after("root zones", &base).expect("ok"), base.join("zones"));
    // A later plugin's relative path is taken from the new root.
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&[], base.clone(), &mut opts);
    super::setup(&super::Config { path: "zones".into() }, &mut ctx).expect("sets up");
    assert_eq!(ctx.path("db.example.org"), base.join("zones/db.example.org"));
    assert_eq!(ctx.path("/etc/hosts"), PathBuf::from("/etc/hosts"));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn missing_directory_is_a_warning_not_an_error() {
    let dir = std::env::temp_dir();
    assert_eq!(root_after("root does-not-exist-xyz", &dir).expect("ok"), dir.join("does-not-exist-xyz"));
}

#[test]
fn a_file_is_an_error() {
    let file = std::env::temp_dir().join(format!("ferrite-root-file-{}", std::process::id()));
    std::fs::write(&file, b"").expect("temp file");
    let e = root_after(&format!("root {}", file.display()), Path::new("/")).expect_err("not a directory");
    assert!(e.to_string().contains("is not a directory"), "{e}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn syntax_errors_have_locations() {
    for text in ["root", "root /a /b", "root /tmp {\n    path /a\n}"] {
        let e = Directive::from_text(text).and_then(|d| super::parse(&d)).map(|_| ()).expect_err(text);
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}

#[test]
fn sets_no_server_options() {
    let (handlers, opts) = setup_with_options("root /tmp", &["."]).expect("sets up");
    assert!(handlers.is_empty());
    assert_eq!(opts, ServerOptions::default());
}
