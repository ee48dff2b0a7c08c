use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "ready", config: "ready 127.0.0.1:0", passes: None });
}

#[test]
fn address_and_monitor() {
    let (h, o) = setup_with_options("ready", &["."]).expect("sets up");
    assert!(h.is_empty(), "setup-only");
    assert_eq!(o.ready, Some(("[::]:8181".parse().expect("addr"), false)));
    let (_, o) = setup_with_options("ready :8182 {\n    monitor continuously\n}", &["."]).expect("sets up");
    assert_eq!(o.ready, Some(("[::]:8182".parse().expect("addr"), true)));
    let e = setup_with_options("ready {\n    monitor sometimes\n}", &["."]).map(|_| ()).expect_err("bad mode");
    assert!(e.to_string().contains("expected until-ready or continuously"), "{e}");
}
