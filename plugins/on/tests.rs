use super::{parse, Config, Event};
use crate::plugin::Directive;
use crate::testing::{check_contract, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "on", config: "on startup true", passes: None });
}

fn parsed(text: &str) -> Config {
    parse(&Directive::from_text(text).expect("well-formed")).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn readme_forms() {
    assert_eq!(parsed("on startup echo ferrite is up"), Config { event: Event::Startup, command: vec!["echo".into(), "ferrite".into(), "is".into(), "up".into()] });
    assert_eq!(parsed("on shutdown echo \"going down\""), Config { event: Event::Shutdown, command: vec!["echo".into(), "going down".into()] });
    assert_eq!(parsed("on startup /usr/local/bin/announce-dns &").command, ["/usr/local/bin/announce-dns", "&"]);
}

#[test]
fn hooks_run_once_per_line_and_only_when_asked() {
    let dir = crate::testing::temp_dir_for("on");
    let file = dir.join("started");
    let text = format!("example.org:53 example.net:53 {{\n    on startup touch {}\n    whoami\n}}\n", file.display());
    let cfg = crate::config::from_corefile_str(&text, "t").expect("parses");
    let hooks = crate::server::setup::build(&cfg, 53).expect("sets up").hooks;
    assert!(!file.exists(), "setting up runs nothing");
    assert_eq!((hooks.startup.len(), hooks.shutdown.len()), (1, 0), "once for a block of two keys");
    for (_, addr, h) in &hooks.startup {
        h(*addr);
    }
    assert!(file.exists(), "the blocking command has run");
    // A command that cannot start is logged, not fatal.
    let cfg = crate::config::from_corefile_str(". {\n    on shutdown /no/such/program-xyz\n    whoami\n}\n", "t").expect("parses");
    let hooks = crate::server::setup::build(&cfg, 53).expect("sets up").hooks;
    let (_, addr, h) = &hooks.shutdown[0];
    h(*addr);
}

#[test]
fn rejects_bad_lines() {
    for (text, want) in [
        ("on", "needs an event"),
        ("on startup", "needs a command"),
        ("on startup &", "needs a command"),
        ("on restart echo x", "unknown event \"restart\""),
        ("on startup echo {\n    x\n}", "unknown property"),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
