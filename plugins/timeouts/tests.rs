use std::time::Duration;

use crate::plugin::ServerOptions;
use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "timeouts", config: "timeouts {\n    read 10s\n}", passes: None });
}

fn options(text: &str) -> ServerOptions {
    let (handlers, opts) = setup_with_options(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(handlers.is_empty(), "setup only");
    opts
}

#[test]
fn readme_examples() {
    let d = ServerOptions::default();
    let o = options("timeouts {\n    read 15s\n    write 30s\n}");
    assert_eq!((o.tcp_read_timeout, o.tcp_write_timeout, o.tcp_idle_timeout), (Duration::from_secs(15), Duration::from_secs(30), d.tcp_idle_timeout));
    let o = options("timeouts {\n    idle 1m\n}");
    assert_eq!((o.tcp_idle_timeout, o.tcp_read_timeout), (Duration::from_secs(60), d.tcp_read_timeout));
    assert_eq!(options("timeouts {\n    maxtcpqueries 128\n}").tcp_max_queries, 128);
    assert_eq!(options("timeouts {\n    maxtcpqueries -1\n}").tcp_max_queries, 0, "no limit");
}

#[test]
fn rejects_bad_values() {
    for (text, want) in [
        ("timeouts", "at least one timeout"),
        ("timeouts 5s", "unexpected argument"),
        ("timeouts {\n    read 500ms\n}", "between 1s and 24h"),
        ("timeouts {\n    idle 25h\n}", "between 1s and 24h"),
        ("timeouts {\n    write soon\n}", "expected a duration"),
        ("timeouts {\n    read 5s\n    read 6s\n}", "given twice"),
        ("timeouts {\n    maxtcpqueries 0\n}", "positive number or -1"),
        ("timeouts {\n    maxtcpqueries many\n}", "expected a number of queries"),
        ("timeouts {\n    connect 5s\n}", "unknown property \"connect\""),
    ] {
        let e = setup_with_options(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
