use std::sync::Arc;
use std::time::Duration;

use domain::base::iana::{Rcode, Rtype};

use crate::plugin::{Next, Plugin};
use crate::testing::{check_contract, query, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "erratic", config: "erratic", passes: None });
}

/// What happens to queries 0..n: 'd' dropped, 't' truncated, 'w' delayed (waited), '.' plain.
async fn pattern(text: &str, n: usize) -> String {
    let chain: Vec<Arc<dyn Plugin>> = setup(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut out = String::new();
    for _ in 0..n {
        let mut req = query("example.org.", Rtype::A);
        let start = tokio::time::Instant::now();
        match Next::new(&chain).serve(&mut req).await {
            Err(e) if e.drop => out.push('d'),
            Err(e) => panic!("{e}"),
            Ok(r) => {
                assert_eq!(r.answer[0].to_string(), "example.org. 0 IN A 192.0.2.53");
                let waited = start.elapsed() > Duration::ZERO;
                out.push(match (r.header.tc(), waited) {
                    (true, true) => 'T',
                    (true, false) => 't',
                    (false, true) => 'w',
                    (false, false) => '.',
                });
            }
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn readme_examples() {
    assert_eq!(pattern("erratic", 6).await, "d.d.d.");
    assert_eq!(pattern("erratic {\n    drop 2\n}", 6).await, "d.d.d.");
    assert_eq!(pattern("erratic {\n    delay 3 50ms\n}", 7).await, "w..w..w");
    assert_eq!(pattern("erratic {\n    delay 3 50ms\n    drop\n}", 7).await, "d.dwd.d");
    assert_eq!(pattern("erratic {\n    truncate 2\n}", 5).await, "t.t.t");
    assert_eq!(pattern("erratic {\n    drop 0\n}", 3).await, "...");
    assert_eq!(pattern("erratic {\n    delay\n    truncate 3\n}", 7).await, "T.wtw.T");
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_its_duration() {
    let chain: Vec<Arc<dyn Plugin>> = setup("erratic {\n    delay 1 250ms\n}", &["."]).expect("sets up");
    let start = tokio::time::Instant::now();
    Next::new(&chain).serve(&mut query("a.example.", Rtype::AAAA)).await.expect("answers");
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn types() {
    let chain: Vec<Arc<dyn Plugin>> = setup("erratic {\n    drop 0\n}", &["."]).expect("sets up");
    let r = Next::new(&chain).serve(&mut query("a.example.", Rtype::AAAA)).await.expect("answers");
    assert_eq!(r.answer[0].to_string(), "a.example. 0 IN AAAA 2001:db8::53");
    assert!(r.header.aa());
    let r = Next::new(&chain).serve(&mut query("example.org.", Rtype::AXFR)).await.expect("answers");
    let types: Vec<Rtype> = r.answer.iter().map(|r| r.rtype()).collect();
    assert_eq!(types, [Rtype::SOA, Rtype::NS, Rtype::A, Rtype::AAAA, Rtype::SOA]);
    let e = Next::new(&chain).serve(&mut query("a.example.", Rtype::MX)).await.expect_err("other types");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
}

#[test]
fn rejects_bad_settings() {
    for (text, want) in [
        ("erratic 2", "unexpected argument"),
        ("erratic {\n    drop -1\n}", "expected an amount"),
        ("erratic {\n    delay 2 soon\n}", "expected a duration"),
        ("erratic {\n    drop 1 2\n}", "takes at most 1"),
        ("erratic {\n    large\n}", "unknown property \"large\""),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}
