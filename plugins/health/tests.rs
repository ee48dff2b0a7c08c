use std::time::Duration;

use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "health", config: "health 127.0.0.1:0", passes: None });
}

#[test]
fn address_and_lameduck() {
    let (h, o) = setup_with_options("health", &["."]).expect("sets up");
    assert!(h.is_empty(), "setup-only");
    assert_eq!(o.health, Some(("[::]:8080".parse().expect("addr"), Duration::ZERO)));
    let (_, o) = setup_with_options("health localhost:8091 {\n    lameduck 5s\n}", &["."]).expect("sets up");
    assert_eq!(o.health, Some(("127.0.0.1:8091".parse().expect("addr"), Duration::from_secs(5))));
    let (_, o) = setup_with_options("health 169.254.20.10:8080", &["."]).expect("sets up");
    assert_eq!(o.health.map(|h| h.0.to_string()), Some("169.254.20.10:8080".into()));
}

#[test]
fn errors_have_locations() {
    for (text, want) in [
        ("health nohost", "expected HOST:PORT"),
        ("health :http", "invalid port"),
        ("health {\n    lameduck soon\n}", "expected a duration"),
        ("health :8080 :8081", "takes at most 1"),
    ] {
        let e = setup_with_options(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}");
    }
}
