use std::time::Duration;

use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "reload", config: "reload", passes: None });
}

#[test]
fn intervals() {
    let s = |n| Duration::from_secs(n);
    for (text, want) in [("reload", (s(30), s(15))), ("reload 10s", (s(10), s(5))), ("reload 1m 20s", (s(60), s(20)))] {
        let (h, o) = setup_with_options(text, &["."]).expect(text);
        assert!(h.is_empty());
        assert_eq!(o.reload, Some(want), "{text}");
    }
    for (text, want) in [
        ("reload 1s", "greater or equal to 2s"),
        ("reload 10s 500ms", "greater or equal to 1s"),
        ("reload 10s 6s", "smaller than half"),
        ("reload soon", "expected a duration"),
    ] {
        let e = setup_with_options(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
