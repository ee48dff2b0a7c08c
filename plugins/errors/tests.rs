use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::base::iana::{Class, Rcode, Rtype};

use super::*;
use crate::plugin::{Directive, Next, Plugin};
use crate::testing::{check_contract, fail_with, query, rcode_reply, serve, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "errors", config: "errors", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn parsed(text: &str) -> Result<Config, SetupError> {
    parse(&Directive::from_text(text)?)
}

fn pattern(duration: &str, regexp: &str, level: Level, show_first: bool) -> Consolidate {
    Consolidate { duration: duration.into(), regexp: regexp.into(), level, show_first }
}

#[test]
fn parses_corefile_syntax() {
    let cases: Vec<(&str, Config)> = vec![
        ("errors", Config::default()),
        ("errors stdout", Config::default()),
        ("errors {\n stacktrace\n}", Config { stacktrace: true, ..Config::default() }),
        (
            "errors {\n consolidate 5m \".* i/o timeout$\"\n}",
            Config { consolidate: vec![pattern("5m", ".* i/o timeout$", Level::Error, false)], ..Config::default() },
        ),
        (
            "errors stdout {\n consolidate 30s ^a warning\n consolidate 1m ^b info show_first\n consolidate 1s ^c show_first\n consolidate 2s ^d warn\n consolidate 3s ^e debug\n}",
            Config {
                consolidate: vec![
                    pattern("30s", "^a", Level::Warning, false),
                    pattern("1m", "^b", Level::Info, true),
                    pattern("1s", "^c", Level::Error, true),
                    pattern("2s", "^d", Level::Warning, false),
                    pattern("3s", "^e", Level::Debug, false),
                ],
                ..Config::default()
            },
        ),
    ];
    for (text, want) in cases {
        let got = parsed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn rejects_bad_config_with_its_location() {
    let long = format!("errors {{\n    consolidate 1m {}\n}}", "a".repeat(MAX_REGEXP_LEN + 1));
    // (directive, line, column, message part); the directive's first line is line 2.
    let cases = [
        ("errors stderr", 2, 8, "invalid log file \"stderr\": only stdout is supported"),
        ("errors stdout more", 2, 15, "unexpected argument \"more\""),
        ("errors {\n    consolidate 5m\n}", 3, 5, "needs at least 2 argument"),
        ("errors {\n    consolidate 1m a b c d\n}", 3, 26, "takes at most 4"),
        ("errors {\n    consolidate soon ^a\n}", 3, 17, "expected a duration"),
        ("errors {\n    consolidate 0s ^a\n}", 3, 17, "above zero"),
        ("errors {\n    consolidate 1m \"(\"\n}", 3, 20, "invalid regexp \"(\": found open group without closing ')'"),
        // regex-lite has no Unicode classes: refused at start-up, not silently matched otherwise.
        ("errors {\n    consolidate 1m \\pL\n}", 3, 20, "Unicode character classes are not supported"),
        (long.as_str(), 3, 20, "the limit is 10000"),
        ("errors {\n    consolidate 1m ^a loud\n}", 3, 23, "unknown log level \"loud\""),
        ("errors {\n    consolidate 1m ^a error twice\n}", 3, 29, "unexpected argument \"twice\""),
        ("errors {\n    consolidate 1m ^a show_first error\n}", 3, 34, "show_first comes last"),
        ("errors {\n    stacktrace yes\n}", 3, 16, "takes at most 0"),
        ("errors {\n    panicRecoveryStacktrace\n}", 3, 5, "unknown property"),
    ];
    for (text, line, col, msg) in cases {
        let e = parsed(text).expect_err(text);
        assert!(!e.message.contains('\n'), "{text:?}: one line: {e}");
        let loc = e.loc.as_ref().unwrap_or_else(|| panic!("{text:?}: no location in {e}"));
        assert_eq!((loc.line, loc.col), (line, col), "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
}

#[test]
fn ron_config_is_checked_at_setup() {
    for bad in [pattern("soon", "a", Level::Error, false), pattern("1m", "(", Level::Error, false)] {
        let c = Config { consolidate: vec![bad.clone()], ..Config::default() };
        assert!(Errors::new(&c, Arc::new(|_, _: &str| {})).is_err(), "{bad:?}");
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// An errors handler from directive text whose lines go to the returned buffer as `[LEVEL] msg`.
fn capturing(text: &str) -> (Arc<dyn Plugin>, Lines) {
    let lines: Lines = Arc::default();
    let sink_lines = lines.clone();
    let cfg = parsed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let sink: Sink = Arc::new(move |level, msg: &str| {
        sink_lines.lock().expect("not poisoned").push(format!("[{}] {msg}", level.as_str().to_uppercase()))
    });
    (Arc::new(Errors::new(&cfg, sink).expect("sets up")), lines)
}

fn take(lines: &Lines) -> Vec<String> {
    std::mem::take(&mut *lines.lock().expect("not poisoned"))
}

#[test]
fn logs_an_error_and_passes_it_on() {
    let (errors, lines) = capturing("errors");
    let chain = [errors, fail_with(Rcode::SERVFAIL, "no healthy upstream")];
    let e = serve(&chain, &mut query("WWW.Example.org.", Rtype::AAAA)).expect_err("the error passes through");
    assert_eq!(e, ServeError::new("fail_with", Rcode::SERVFAIL, "no healthy upstream"));
    assert_eq!(take(&lines), ["[ERROR] 2 www.example.org. AAAA: plugin/fail_with: no healthy upstream"]);

    let (errors, lines) = capturing("errors");
    let chain = [errors.clone(), fail_with(Rcode::REFUSED, "not here")];
    serve(&chain, &mut query("example.org.", Rtype::MX)).expect_err("fails");
    assert_eq!(take(&lines), ["[ERROR] 5 example.org. MX: plugin/fail_with: not here"]);

    // A reply is not an error, whatever its rcode.
    let chain = [errors, rcode_reply(Rcode::SERVFAIL)];
    let reply = serve(&chain, &mut query("example.org.", Rtype::A)).expect("a reply");
    assert_eq!(reply.rcode.rcode(), Rcode::SERVFAIL);
    assert!(take(&lines).is_empty());
}

/// Runs one query that `next` fails with `message`, on the test's runtime.
async fn fail(errors: &Arc<dyn Plugin>, message: &'static str) {
    let chain = [errors.clone(), fail_with(Rcode::SERVFAIL, message)];
    Next::new(&chain).serve(&mut query("example.org.", Rtype::A)).await.expect_err("fails");
}

#[tokio::test(start_paused = true)]
async fn consolidates_matching_errors_once_per_period() {
    let (errors, lines) = capturing("errors {\n consolidate 30s \"timeout$\" warning\n}");
    for _ in 0..3 {
        fail(&errors, "read udp: i/o timeout").await;
    }
    fail(&errors, "no healthy upstream").await;
    assert_eq!(
        take(&lines),
        ["[ERROR] 2 example.org. A: plugin/fail_with: no healthy upstream"],
        "only the other error"
    );

    tokio::time::sleep(Duration::from_secs(29)).await;
    fail(&errors, "dial: timeout").await;
    assert!(take(&lines).is_empty(), "the period runs from the first error");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(take(&lines), ["[WARN] 4 errors like 'timeout$' occurred in last 30s"]);

    // A new period starts with the next matching error, and a quiet period prints nothing.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(take(&lines).is_empty());
    fail(&errors, "again a timeout").await;
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(take(&lines), ["[WARN] 1 errors like 'timeout$' occurred in last 30s"]);
}

#[tokio::test(start_paused = true)]
async fn show_first_logs_the_first_error_of_a_period() {
    let (errors, lines) = capturing("errors {\n consolidate 1m ^plugin/fail_with info show_first\n}");
    fail(&errors, "one").await;
    fail(&errors, "two").await;
    assert_eq!(take(&lines), ["[INFO] 2 example.org. A: plugin/fail_with: one"]);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(take(&lines), ["[INFO] 2 errors like '^plugin/fail_with' occurred in last 1m0s"]);
    // Alone in its period, the first error is not summed up again.
    fail(&errors, "three").await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(take(&lines), ["[INFO] 2 example.org. A: plugin/fail_with: three"]);
}

#[tokio::test(start_paused = true)]
async fn the_first_matching_pattern_counts() {
    let (errors, lines) = capturing("errors {\n consolidate 10s ab$\n consolidate 20s b$\n}");
    fail(&errors, "ab").await;
    fail(&errors, "b").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        take(&lines),
        ["[ERROR] 1 errors like 'ab$' occurred in last 10s", "[ERROR] 1 errors like 'b$' occurred in last 20s"]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_plugin_prints_a_running_count() {
    let (errors, lines) = capturing("errors {\n consolidate 5m x\n}");
    fail(&errors, "x").await;
    fail(&errors, "x").await;
    drop(errors);
    assert_eq!(take(&lines), ["[ERROR] 2 errors like 'x' occurred in last 5m0s"]);
    // The timer finds the plugin gone and prints nothing more.
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert!(take(&lines).is_empty());
}

#[test]
fn without_a_runtime_errors_are_logged_one_by_one() {
    let (errors, lines) = capturing("errors {\n consolidate 5m x\n}");
    let chain = [errors, fail_with(Rcode::SERVFAIL, "x")];
    let mut req = query("example.org.", Rtype::A);
    futures_util::FutureExt::now_or_never(Next::new(&chain).serve(&mut req)).expect("ready").expect_err("fails");
    assert_eq!(take(&lines), ["[ERROR] 2 example.org. A: plugin/fail_with: x"]);
}

#[test]
fn formats_durations_as_go() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(5), "5ns"),
        (Duration::from_micros(1500), "1.5ms"),
        (Duration::from_millis(20), "20ms"),
        (Duration::from_nanos(2_500), "2.5µs"),
        (Duration::from_secs(30), "30s"),
        (Duration::from_millis(1500), "1.5s"),
        (Duration::from_secs(90), "1m30s"),
        (Duration::from_secs(300), "5m0s"),
        (Duration::from_secs(3600), "1h0m0s"),
        (Duration::from_millis(7_384_500), "2h3m4.5s"),
    ];
    for (d, want) in cases {
        assert_eq!(go_duration(d), want, "{d:?}");
    }
}
