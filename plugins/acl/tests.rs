use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::name::Name;

use super::*;
use crate::message::Edns;
use crate::plugin::{Directive, Plugin, ServerOptions, SetupCtx};
use crate::testing::{capture_counters, check_contract, query, record_calls, serve, setup as setup_one, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "acl",
        config: "acl {\n    block net 192.0.2.0/24\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

/// Several acl directives in one block serving `zones`.
fn block(lines: &[&str], zones: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let zones: Vec<Name<Bytes>> = zones.iter().map(|z| Name::from_str(z).expect("zone")).collect();
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&zones, std::env::temp_dir(), &mut opts);
    for l in lines {
        let c = parse(&Directive::from_text(l).expect("well-formed")).unwrap_or_else(|e| panic!("{l}: {e}"));
        super::setup(&c, &mut ctx).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    ctx.into_handlers()
}

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Passed,
    Refused,
    Filtered,
    Dropped,
}

/// What the chain does with a query for `name`/`qtype` from `client`.
fn ask(chain: &[Arc<dyn Plugin>], name: &str, qtype: Rtype, client: &str) -> Got {
    let rec = record_calls();
    let mut c = chain.to_vec();
    c.push(rec.clone());
    let mut req = query(name, qtype);
    req.client = SocketAddr::new(client.parse().expect("address"), 5353);
    match serve(&c, &mut req) {
        Err(e) if e.drop => Got::Dropped,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) if rec.count() == 1 => Got::Passed,
        Ok(r) if r.rcode.rcode() == Rcode::REFUSED && r.is_empty() => Got::Refused,
        Ok(r) if r.rcode.rcode() == Rcode::NOERROR && r.is_empty() => Got::Filtered,
        Ok(r) => panic!("unexpected reply {r:?}"),
    }
}

fn table(chain: &[Arc<dyn Plugin>], cases: &[(&str, Rtype, &str, Got)]) {
    for (name, qtype, client, want) in cases {
        assert_eq!(&ask(chain, name, *qtype, client), want, "{name} {qtype} from {client}");
    }
}

#[test]
fn readme_examples() {
    use Got::*;
    let c = block(&["acl {\n    block type A net 192.168.0.0/16\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::A, "192.168.7.1", Refused),
            ("example.org.", Rtype::AAAA, "192.168.7.1", Passed),
            ("example.org.", Rtype::A, "10.0.0.1", Passed),
            ("example.org.", Rtype::A, "2001:db8::1", Passed),
        ],
    );
    let c = block(&["acl {\n    filter type A net 192.168.0.0/16\n}"], &["."]);
    table(&c, &[("example.org.", Rtype::A, "192.168.7.1", Filtered), ("example.org.", Rtype::MX, "192.168.7.1", Passed)]);
    let c = block(&["acl {\n    allow net 192.168.1.0/24\n    block net 192.168.0.0/16\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::A, "192.168.1.9", Passed),
            ("example.org.", Rtype::A, "192.168.2.9", Refused),
            ("example.org.", Rtype::A, "172.16.0.1", Passed),
        ],
    );
    let c = block(&["acl {\n    allow net 192.168.0.0/24 192.168.1.0/24\n    block\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::A, "192.168.0.1", Passed),
            ("example.org.", Rtype::A, "192.168.1.1", Passed),
            ("example.org.", Rtype::A, "192.168.2.1", Refused),
            ("example.org.", Rtype::A, "::1", Refused),
        ],
    );
    let c = block(&["acl a.example.org {\n    block net 192.168.1.0/24\n}"], &["example.org."]);
    table(
        &c,
        &[
            ("a.example.org.", Rtype::A, "192.168.1.1", Refused),
            ("www.a.example.org.", Rtype::A, "192.168.1.1", Refused),
            ("b.example.org.", Rtype::A, "192.168.1.1", Passed),
        ],
    );
    let c = block(&["acl {\n    block type ANY\n    allow net 127.0.0.0/8 ::1 10.0.0.0/8\n    drop\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::ANY, "127.0.0.1", Refused),
            ("example.org.", Rtype::A, "127.0.0.1", Passed),
            ("example.org.", Rtype::A, "::1", Passed),
            ("example.org.", Rtype::A, "10.9.9.9", Passed),
            ("example.org.", Rtype::A, "192.0.2.1", Dropped),
            ("example.org.", Rtype::A, "2001:db8::1", Dropped),
        ],
    );
}

#[test]
fn the_shared_features_corefile_rule() {
    use Got::*;
    let c = block(&["acl {\n    block type ANY\n    allow net 127.0.0.0/8 192.0.2.0/24\n    block\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::ANY, "127.0.0.1", Refused),
            ("example.org.", Rtype::A, "127.0.0.1", Passed),
            ("example.org.", Rtype::A, "192.0.2.200", Passed),
            ("example.org.", Rtype::A, "198.51.100.1", Refused),
            ("example.org.", Rtype::A, "::1", Refused),
        ],
    );
}

#[test]
fn rules_of_several_directives_in_order() {
    use Got::*;
    // An allow in the first rule ends the evaluation: the second rule's block never runs.
    let c = block(&["acl {\n    allow net 10.0.0.0/8\n}", "acl {\n    block\n}"], &["."]);
    assert_eq!(c.len(), 1, "one handler for the block");
    table(&c, &[("example.org.", Rtype::A, "10.1.1.1", Passed), ("example.org.", Rtype::A, "192.0.2.1", Refused)]);
    // A rule that matches nothing (other zone) is skipped.
    let c = block(&["acl example.net {\n    allow\n}", "acl {\n    block type MX\n}"], &["."]);
    table(
        &c,
        &[
            ("example.net.", Rtype::MX, "192.0.2.1", Passed),
            ("example.org.", Rtype::MX, "192.0.2.1", Refused),
            ("example.org.", Rtype::A, "192.0.2.1", Passed),
        ],
    );
    // Types and nets in either order, `*` for all.
    let c = block(&["acl {\n    block net * type * \n}"], &["."]);
    table(&c, &[("example.org.", Rtype::TXT, "2001:db8::5", Refused)]);
    let c = block(&["acl {\n    block net 2001:db8::/32 type AAAA MX\n}"], &["."]);
    table(
        &c,
        &[
            ("example.org.", Rtype::MX, "2001:db8::5", Refused),
            ("example.org.", Rtype::A, "2001:db8::5", Passed),
            ("example.org.", Rtype::MX, "2001:db9::5", Passed),
        ],
    );
    // No policies: everything passes.
    table(&block(&["acl"], &["."]), &[("example.org.", Rtype::A, "192.0.2.1", Passed)]);
}

#[test]
fn blocked_and_filtered_replies_carry_an_extended_error() {
    let c = setup_one("acl {\n    block net 127.0.0.0/8 type A\n    filter net 127.0.0.0/8\n}", &["."]).expect("sets up");
    for (qtype, rcode, info) in [(Rtype::A, Rcode::REFUSED, 15u16), (Rtype::TXT, Rcode::NOERROR, 17)] {
        let mut req = query("example.org.", qtype);
        req.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![] });
        let reply = serve(&c, &mut req).expect("answers");
        assert_eq!(reply.rcode.rcode(), rcode);
        let o = &reply.edns.expect("OPT").options[0];
        assert_eq!((o.code, &o.data[..]), (15, &info.to_be_bytes()[..]));
    }
}

#[test]
fn rejects_bad_policies_with_their_place() {
    for (text, want) in [
        ("acl {\n    deny net 10.0.0.0/8\n}", "unknown action \"deny\""),
        ("acl {\n    block 10.0.0.0/8\n}", "expected type or net"),
        ("acl {\n    block net 10.0.0.0/33\n}", "invalid network"),
        ("acl {\n    block net example.org\n}", "invalid network"),
        ("acl {\n    block type BOGUS\n}", "invalid query type \"BOGUS\""),
        ("acl a..b", "invalid zone"),
    ] {
        let e = setup_one(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: no location in {e}");
    }
}

#[test]
fn metrics_count_each_action() {
    let c = block(&["acl example.org {\n    block type ANY\n    filter type MX\n    drop type TXT\n}"], &["."]);
    let ((), got) = capture_counters(|| {
        for (t, n) in [(Rtype::ANY, 2), (Rtype::MX, 1), (Rtype::TXT, 1), (Rtype::A, 3)] {
            for _ in 0..n {
                ask(&c, "www.example.org.", t, "192.0.2.1");
            }
        }
    });
    let want = [
        ("coredns_acl_allowed_requests_total{server=dns://:53,view=}", 3),
        ("coredns_acl_blocked_requests_total{server=dns://:53,view=,zone=example.org.}", 2),
        ("coredns_acl_dropped_requests_total{server=dns://:53,view=,zone=example.org.}", 1),
        ("coredns_acl_filtered_requests_total{server=dns://:53,view=,zone=example.org.}", 1),
    ];
    let got: Vec<(&str, u64)> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, want);
}
