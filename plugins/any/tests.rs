use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, fixed_reply, query, record_calls, run_cases, serve, setup, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "any", config: "any", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

#[test]
fn any_gets_one_hinfo() {
    let mut chain = setup("any", &["."]).expect("sets up");
    chain.push(fixed_reply(&["example.org. 300 IN A 192.0.2.1", "example.org. 300 IN MX 10 mx.example.org."]));
    run_cases(
        &chain,
        &[
            Case {
                qname: "example.org.",
                qtype: Rtype::ANY,
                answer: &["example.org. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\""],
                ..Case::EMPTY
            },
            // Not ANY: next answers.
            Case {
                qname: "example.org.",
                qtype: Rtype::MX,
                answer: &["example.org. 300 IN A 192.0.2.1", "example.org. 300 IN MX 10 mx.example.org."],
                ..Case::EMPTY
            },
        ],
    );
}

#[test]
fn keeps_name_case_and_answers_in_class_in() {
    let chain = setup("any", &["."]).expect("sets up");
    let mut req = query("Example.ORG.", Rtype::ANY);
    req.qclass = Class::CH;
    let reply = serve(&chain, &mut req).expect("answers");
    assert_eq!(reply.rcode.rcode(), Rcode::NOERROR);
    let got: Vec<String> = reply.answer.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, ["Example.ORG. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\""]);
    assert!(reply.authority.is_empty() && reply.additional.is_empty());
}

#[test]
fn any_never_reaches_next() {
    let rec = record_calls();
    let mut chain = setup("any", &["."]).expect("sets up");
    chain.push(rec.clone());
    serve(&chain, &mut query("example.org.", Rtype::ANY)).expect("answers");
    assert_eq!(rec.count(), 0);
    serve(&chain, &mut query("example.org.", Rtype::AAAA)).expect("answers");
    assert_eq!(rec.count(), 1);
}

#[test]
fn rejects_arguments() {
    assert!(setup("any all", &["."]).is_err());
}
