use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "debug", config: "debug", passes: None });
}

#[test]
fn turns_debug_on() {
    let (h, o) = setup_with_options("debug", &["."]).expect("sets up");
    assert!(h.is_empty());
    assert!(o.debug);
    assert!(setup_with_options("debug on", &["."]).is_err());
}
