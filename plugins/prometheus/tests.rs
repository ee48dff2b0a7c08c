use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "prometheus", config: "prometheus 127.0.0.1:0", passes: None });
}

#[test]
fn addresses() {
    let (h, o) = setup_with_options("prometheus", &["."]).expect("sets up");
    assert!(h.is_empty(), "setup-only");
    assert_eq!(o.metrics, Some("127.0.0.1:9153".parse().expect("addr")));
    let (_, o) = setup_with_options("prometheus :9153", &["."]).expect("sets up");
    assert_eq!(o.metrics, Some("[::]:9153".parse().expect("addr")));
    assert!(setup_with_options("prometheus :9153 :9154", &["."]).is_err());
}
