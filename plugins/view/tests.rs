use std::net::SocketAddr;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, corefile_router, query, serve_routed, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "view",
        config: "view v {\n    expr type() == 'A'\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

/// The answer (first record, or the rcode) a server on `corefile` gives `name`/`qtype` from
/// `client`.
fn ask(router: &crate::server::chain::Router, name: &str, qtype: Rtype, client: &str) -> String {
    let mut req = query(name, qtype);
    req.client = SocketAddr::new(client.parse().expect("ip"), 4000);
    let reply = serve_routed(router, &mut req).expect("a reply");
    match reply.answer.first() {
        Some(r) => r.to_string(),
        None => reply.rcode.to_string(),
    }
}

fn readme(n: usize) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/view/README.md")).expect("README");
    crate::testing::readme_examples(&text).swap_remove(n)
}

#[test]
fn readme_split_dns_by_network() {
    let r = corefile_router(&readme(0));
    assert_eq!(ask(&r, "test.", Rtype::A, "127.0.0.9"), "test. 3600 IN A 192.0.2.1");
    assert_eq!(ask(&r, "test.", Rtype::A, "192.168.4.4"), "test. 3600 IN A 192.0.2.2");
    assert_eq!(ask(&r, "test.", Rtype::A, "10.0.0.1"), "test. 3600 IN A 192.0.2.3");
    assert_eq!(ask(&r, "test.", Rtype::A, "::1"), "test. 3600 IN A 192.0.2.3");
}

#[test]
fn readme_by_type_regex_and_metadata() {
    let r = corefile_router(&readme(1));
    assert_eq!(ask(&r, "example.org.", Rtype::A, "192.0.2.1"), "NOERROR", "whoami block: its answer is in additional");
    assert_eq!(ask(&r, "version.bind.", Rtype::TXT, "192.0.2.1"), "SERVFAIL", "TXT goes to the chaos block (IN class: not chaos's)");
    let r = corefile_router(&readme(2));
    assert_eq!(ask(&r, "abc.x.y.example.com.", Rtype::MX, "192.0.2.1"), "NOERROR", "whoami block");
    assert_eq!(ask(&r, "abd.example.com.", Rtype::ANY, "192.0.2.1"), "abd.example.com. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\"");
    let r = corefile_router(&readme(3));
    assert_eq!(ask(&r, "x.example.", Rtype::A, "127.0.0.1"), "NOERROR", "whoami: answer in additional");
    assert_eq!(ask(&r, "x.example.", Rtype::A, "127.0.0.2"), "SERVFAIL", "chaos block");
}

#[test]
fn view_name_is_metadata_and_views_alone_refuse_the_rest() {
    let corefile = ". {\n    metadata\n    view inside {\n        expr incidr(client_ip(), '10.0.0.0/8')\n        expr type() != 'MX'\n    }\n    template ANY ANY {\n        answer \"{{ .Name }} 0 IN TXT \\\"{{ .Meta \\\"view/name\\\" }}\\\"\"\n    }\n}\n";
    let r = corefile_router(corefile);
    assert_eq!(ask(&r, "a.example.", Rtype::TXT, "10.1.1.1"), "a.example. 0 IN TXT \"inside\"");
    // Both expressions must hold.
    assert_eq!(ask(&r, "a.example.", Rtype::MX, "10.1.1.1"), Rcode::REFUSED.to_string());
    assert_eq!(ask(&r, "a.example.", Rtype::TXT, "192.0.2.1"), Rcode::REFUSED.to_string());
}

#[test]
fn a_block_without_view_must_come_last() {
    let cfg = crate::config::from_corefile_str(". {\n    whoami\n}\n. {\n    view v {\n        expr true\n    }\n    whoami\n}\n", "t").expect("parses");
    let e = crate::server::setup::build(&cfg, 53).map(|_| ()).expect_err("unreachable view");
    assert!(e[0].to_string().contains("must come last"), "{}", e[0]);
}

#[test]
fn rejects_bad_views() {
    for (text, want) in [
        ("view", "needs a name"),
        ("view a b {\n    expr true\n}", "unexpected argument"),
        ("view a", "at least one expr"),
        ("view a {\n    expr type() ==\n}", "invalid expression"),
        ("view a {\n    expr type()\n}", "gives a string"),
        ("view a {\n    when true\n}", "unknown property \"when\""),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
