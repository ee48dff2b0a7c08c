use domain::base::iana::{Class, Rcode, Rtype};

use crate::message::Proto;
use crate::testing::{check_contract, query, serve, setup, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "whoami", config: "whoami", passes: None });
}

#[test]
fn answers_with_client_address_and_port() {
    let chain = setup("whoami", &["."]).expect("sets up");
    let case = Case {
        qname: "Example.ORG.",
        qtype: Rtype::A,
        additional: &["example.org. 0 IN A 127.0.0.1", "_udp.example.org. 0 IN SRV 0 0 53000 ."],
        ..Case::EMPTY
    };
    let reply = serve(&chain, &mut case.request()).expect("answers");
    case.check(&reply).expect("matches");
    assert!(reply.header.aa());
    assert!(reply.answer.is_empty());
    assert_eq!(reply.question.as_ref().map(|q| q.qname().to_string()), Some("Example.ORG".to_string()));
}

#[test]
fn ipv6_and_tcp_clients() {
    let chain = setup("whoami", &["."]).expect("sets up");
    let mut req = query("example.org.", Rtype::AAAA);
    req.client = "[2001:db8::1]:4242".parse().expect("addr");
    req.proto = Proto::Tcp;
    req.qclass = Class::CH;
    let reply = serve(&chain, &mut req).expect("answers");
    assert_eq!(reply.rcode.rcode(), Rcode::NOERROR);
    let got: Vec<String> = reply.additional.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, ["example.org. 0 CH AAAA 2001:db8::1", "_tcp.example.org. 0 CH SRV 0 0 4242 ."]);
}

#[test]
fn rejects_arguments() {
    let e = setup("whoami extra", &["."]).map(|_| ()).expect_err("no args");
    assert!(e.to_string().contains("unexpected argument \"extra\""), "{e}");
}
