use std::time::Duration;

use crate::plugin::ServerOptions;
use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "limits", config: "limits {\n    tcp_connections 10\n}", passes: None });
}

fn options(text: &str) -> ServerOptions {
    let (handlers, opts) = setup_with_options(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(handlers.is_empty(), "setup only");
    opts
}

#[test]
fn defaults_are_kept() {
    let o = options("limits");
    assert_eq!(o, ServerOptions::default());
    assert_eq!(o.tcp_max_connections, 1000);
    assert_eq!(o.tcp_max_queries, 0);
    assert_eq!(o.tcp_idle_timeout, Duration::from_secs(10));
    assert_eq!(o.max_in_flight, 5000);
}

#[test]
fn sets_each_limit() {
    let o = options("limits {\n    tcp_connections 50\n    tcp_queries 100\n    tcp_idle_timeout 2m30s\n}");
    assert_eq!(o.tcp_max_connections, 50);
    assert_eq!(o.tcp_max_queries, 100);
    assert_eq!(o.tcp_idle_timeout, Duration::from_secs(150));
    // Only what is given changes.
    let o = options("limits {\n    tcp_idle_timeout 500ms\n}");
    assert_eq!(o.tcp_idle_timeout, Duration::from_millis(500));
    assert_eq!(o.tcp_max_connections, 1000);
    let o = options("limits {\n    tcp_queries 0\n}");
    assert_eq!(o.tcp_max_queries, 0);
    let o = options("limits {\n    in_flight 200\n}");
    assert_eq!((o.max_in_flight, o.tcp_max_connections), (200, 1000));
}

#[test]
fn rejects_bad_values_with_locations() {
    let table: &[(&str, &str)] = &[
        ("limits 5", "unexpected argument \"5\""),
        ("limits {\n    tcp_connections 0\n}", "tcp_connections must be at least 1"),
        ("limits {\n    in_flight 0\n}", "in_flight must be at least 1"),
        ("limits {\n    tcp_connections many\n}", "expected a number of connections, got \"many\""),
        ("limits {\n    tcp_queries -1\n}", "expected a number of queries"),
        ("limits {\n    tcp_idle_timeout 0s\n}", "longer than 0s"),
        ("limits {\n    tcp_idle_timeout soon\n}", "expected a duration"),
        ("limits {\n    tcp_idle_timeout\n}", "needs at least 1 argument"),
        ("limits {\n    tcp_queries 1 2\n}", "takes at most 1 argument"),
        ("limits {\n    tcp_queries 1\n    tcp_queries 2\n}", "\"tcp_queries\" is given twice"),
        ("limits {\n    udp_size 512\n}", "unknown property \"udp_size\""),
    ];
    for &(text, want) in table {
        let e = setup_with_options(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}

#[test]
fn ron_values_are_checked_at_setup() {
    for (ron, ok) in [
        ("limits((tcp_connections: Some(5), tcp_idle_timeout: Some(\"3s\")))", true),
        ("limits((tcp_connections: 5, tcp_idle_timeout: \"3s\"))", true),
        ("limits(())", true),
        ("limits((tcp_connections: Some(0)))", false),
        ("limits((in_flight: Some(0)))", false),
        ("limits((in_flight: Some(10)))", true),
        ("limits((tcp_idle_timeout: Some(\"never\")))", false),
    ] {
        let text = format!("(servers: [(keys: [\".\"], plugins: [{ron}])])");
        let cfg = crate::config::from_ron(&text, "t.ron").expect("well-formed");
        assert_eq!(crate::server::setup::build(&cfg, 0).is_ok(), ok, "{ron}");
    }
}
