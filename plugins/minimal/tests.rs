use domain::base::iana::{Class, Rcode, Rtype};

use crate::response::{typify, ResponseType};
use domain::rdata::dnssec::Timestamp;

fn is_success(r: &Reply, dnssec_ok: bool, now: u32) -> bool {
    typify(r, dnssec_ok, Timestamp::from(now)) == ResponseType::NoError
}
use crate::message::{Edns, EdnsOption};
use crate::plugin::prelude::*;
use crate::testing::{check_contract, fail_with, query, rr, run_cases, serve, setup, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "minimal", config: "minimal", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

/// A `next` that answers with fixed sections and rcode, and an OPT record with one option.
struct Canned {
    rcode: Rcode,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

impl Plugin for Canned {
    fn name(&self) -> &'static str {
        "canned"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let mut r = Reply::error(req, self.rcode);
        r.answer = self.answer.iter().map(|t| rr(t)).collect();
        r.authority = self.authority.iter().map(|t| rr(t)).collect();
        r.additional = self.additional.iter().map(|t| rr(t)).collect();
        r.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![EdnsOption { code: 3, data: Bytes::from_static(b"x") }] });
        Box::pin(std::future::ready(Ok(r)))
    }
}

fn chain(next: Canned) -> Vec<Arc<dyn Plugin>> {
    let mut c = setup("minimal", &["."]).expect("sets up");
    c.push(Arc::new(next));
    c
}

const NS: &str = "example.org. 300 IN NS ns.example.org.";
const GLUE: &str = "ns.example.org. 300 IN A 192.0.2.53";
const SOA: &str = "example.org. 300 IN SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 300";
const A: &str = "www.example.org. 300 IN A 192.0.2.1";

#[test]
fn success_is_trimmed() {
    let c = chain(Canned { rcode: Rcode::NOERROR, answer: &[A], authority: &[NS], additional: &[GLUE] });
    run_cases(&c, &[Case { qname: "www.example.org.", answer: &[A], ..Case::EMPTY }]);
    let reply = serve(&c, &mut query("www.example.org.", Rtype::A)).expect("answers");
    assert_eq!(reply.edns.map(|e| e.options.len()), Some(1), "the OPT record and its options stay");
}

#[test]
fn noerror_without_soa_or_ns_is_trimmed() {
    // CoreDNS classifies an empty NOERROR without SOA or NS as NOERROR too (whoami's replies).
    let c = chain(Canned { rcode: Rcode::NOERROR, answer: &[], authority: &[], additional: &[GLUE] });
    run_cases(&c, &[Case { qname: "www.example.org.", ..Case::EMPTY }]);
}

#[test]
fn denials_and_delegations_are_kept() {
    let cases: [(Canned, Case); 4] = [
        // NXDOMAIN
        (
            Canned { rcode: Rcode::NXDOMAIN, answer: &[], authority: &[SOA], additional: &[] },
            Case { qname: "nx.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
        ),
        // NODATA
        (
            Canned { rcode: Rcode::NOERROR, answer: &[], authority: &[SOA], additional: &[GLUE] },
            Case { qname: "www.example.org.", qtype: Rtype::MX, authority: &[SOA], additional: &[GLUE], ..Case::EMPTY },
        ),
        // Delegation
        (
            Canned { rcode: Rcode::NOERROR, answer: &[], authority: &[NS], additional: &[GLUE] },
            Case { qname: "www.example.org.", authority: &[NS], additional: &[GLUE], ..Case::EMPTY },
        ),
        // An error with sections
        (
            Canned { rcode: Rcode::REFUSED, answer: &[A], authority: &[NS], additional: &[GLUE] },
            Case { qname: "www.example.org.", rcode: Rcode::REFUSED, answer: &[A], authority: &[NS], additional: &[GLUE], ..Case::EMPTY },
        ),
    ];
    for (next, case) in cases {
        run_cases(&chain(next), &[case]);
    }
}

#[test]
fn transfers_are_kept() {
    let c = chain(Canned { rcode: Rcode::NOERROR, answer: &[SOA], authority: &[NS], additional: &[GLUE] });
    run_cases(&c, &[Case { qname: "example.org.", qtype: Rtype::AXFR, answer: &[SOA], authority: &[NS], additional: &[GLUE], ..Case::EMPTY }]);
}

const SIG_VALID: &str = "www.example.org. 300 IN RRSIG A 8 3 300 2500000000 1500000000 12345 example.org. AAAA";
const SIG_EXPIRED: &str = "www.example.org. 300 IN RRSIG A 8 3 300 1600000000 1500000000 12345 example.org. AAAA";

#[test]
fn expired_signatures_keep_a_do_reply_whole() {
    let expired = || Canned { rcode: Rcode::NOERROR, answer: &[A, SIG_EXPIRED], authority: &[NS], additional: &[GLUE] };
    run_cases(
        &chain(expired()),
        &[Case { qname: "www.example.org.", dnssec_ok: true, answer: &[A, SIG_EXPIRED], authority: &[NS], additional: &[GLUE], ..Case::EMPTY }],
    );
    // Without DO the signatures do not matter.
    run_cases(&chain(expired()), &[Case { qname: "www.example.org.", answer: &[A, SIG_EXPIRED], ..Case::EMPTY }]);
    let valid = Canned { rcode: Rcode::NOERROR, answer: &[A, SIG_VALID], authority: &[NS], additional: &[GLUE] };
    run_cases(&chain(valid), &[Case { qname: "www.example.org.", dnssec_ok: true, answer: &[A, SIG_VALID], ..Case::EMPTY }]);
}

#[test]
fn signature_times_use_serial_arithmetic() {
    let mut r = Reply::for_request(&query("www.example.org.", Rtype::A));
    r.answer = vec![rr(A), rr("www.example.org. 300 IN RRSIG A 8 3 300 100 4294967000 12345 example.org. AAAA")];
    // Inception just before the 2^32 wrap, expiration just after: valid across the wrap.
    assert!(is_success(&r, true, 4294967200));
    assert!(is_success(&r, true, 50));
    assert!(!is_success(&r, true, 200), "expired after the wrap");
    assert!(!is_success(&r, true, 4294966000), "not yet valid");
}

#[test]
fn errors_from_next_pass_through() {
    let mut c = setup("minimal", &["."]).expect("sets up");
    c.push(fail_with(Rcode::SERVFAIL, "upstream down"));
    let e = serve(&c, &mut query("example.org.", Rtype::A)).expect_err("fails");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
}

#[test]
fn rejects_arguments() {
    assert!(setup("minimal yes", &["."]).is_err());
}
