use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "cookie", config: "cookie", passes: None });
}

#[test]
fn secret_and_require() {
    let (h, o) = setup_with_options("cookie {\n secret e5e973e5a6b2a43f48e7dc849e37bfcf\n require\n}", &["."]).expect("sets up");
    assert!(h.is_empty(), "setup only");
    let c = o.cookies.expect("cookies set");
    assert!(c.require);
    assert_eq!(c.secret, crate::cookie::Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcf").expect("hex"));
    // Without a secret: the per-process one, not required.
    let (_, o) = setup_with_options("cookie", &["."]).expect("sets up");
    let c = o.cookies.expect("cookies set");
    assert_eq!((&c.secret, c.require), (crate::cookie::process_secret(), false));
}

#[test]
fn bad_config_is_rejected_with_its_place() {
    for (text, want) in [
        ("cookie {\n secret e5e9\n}", "32 hex digits"),
        ("cookie {\n secret zz5e973e5a6b2a43f48e7dc849e37bfc\n}", "32 hex digits"),
        ("cookie {\n secret\n}", "at least 1"),
        ("cookie {\n require yes\n}", "at most 0"),
        ("cookie {\n require\n require\n}", "twice"),
        ("cookie on", "unexpected argument"),
    ] {
        let Err(e) = setup_with_options(text, &["."]) else { panic!("{text}: accepted") };
        let e = e.to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.contains("<directive>:"), "{text}: names the place: {e}");
    }
}
