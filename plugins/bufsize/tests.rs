use domain::base::iana::{Class, Rtype};

use crate::message::Edns;
use crate::testing::{check_contract, query, record_calls, serve, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "bufsize", config: "bufsize", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

/// The UDP size `next` sees for a query that offered `offered` (None: no EDNS).
fn seen(config: &str, offered: Option<u16>) -> Option<u16> {
    let rec = record_calls();
    let mut chain = setup(config, &["."]).expect("sets up");
    chain.push(rec.clone());
    let mut req = query("example.org.", Rtype::A);
    req.edns = offered.map(|udp_size| Edns { udp_size, version: 0, dnssec_ok: true, options: vec![] });
    serve(&chain, &mut req).expect("answers");
    assert_eq!(rec.count(), 1);
    let last = rec.last.lock().expect("not poisoned").clone().expect("a request");
    assert_eq!(last.dnssec_ok(), offered.is_some(), "DO is untouched");
    // The server truncates to what the request says after the chain ran.
    assert_eq!(req.max_reply_size(), last.max_reply_size());
    last.edns.map(|e| e.udp_size)
}

#[test]
fn lowers_larger_sizes_only() {
    let table: &[(&str, Option<u16>, Option<u16>)] = &[
        ("bufsize", Some(4096), Some(1232)),
        ("bufsize", Some(1232), Some(1232)),
        ("bufsize", Some(1000), Some(1000)),
        ("bufsize", Some(100), Some(100)),
        ("bufsize", None, None),
        ("bufsize 512", Some(4096), Some(512)),
        ("bufsize 4096", Some(65535), Some(4096)),
        ("bufsize 1400", Some(1200), Some(1200)),
    ];
    for &(config, offered, want) in table {
        assert_eq!(seen(config, offered), want, "{config} with {offered:?}");
    }
}

#[test]
fn rejects_bad_sizes() {
    for config in ["bufsize 511", "bufsize 4097", "bufsize -1", "bufsize big", "bufsize 1232 1232", "bufsize {\n    size 1232\n}"] {
        let e = setup(config, &["."]).map(|_| ()).expect_err(config);
        assert!(e.loc.is_some(), "{config}: error has a location: {e}");
    }
    let e = setup("bufsize 100", &["."]).map(|_| ()).expect_err("too small");
    assert!(e.to_string().contains("expected a size from 512 to 4096, got \"100\""), "{e}");
}

#[test]
fn ron_sizes_are_checked_at_setup() {
    let ron = "(servers: [(keys: [\".\"], plugins: [bufsize((size: 100))])])";
    let cfg = crate::config::from_ron(ron, "t.ron").expect("well-formed");
    assert!(crate::server::setup::build(&cfg, 0).is_err());
    let ron = "(servers: [(keys: [\".\"], plugins: [bufsize(())])])";
    let cfg = crate::config::from_ron(ron, "t.ron").expect("well-formed");
    match &cfg.servers[0].plugins[0] {
        crate::plugins::PluginConfig::Bufsize(c) => assert_eq!(c.size, 1232),
        #[allow(unreachable_patterns)]
        other => panic!("{other:?}"),
    }
}
