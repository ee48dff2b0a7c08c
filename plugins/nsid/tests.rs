use domain::base::iana::{Class, Rcode, Rtype};

use crate::message::opt_code::NSID;
use crate::message::{Edns, EdnsOption};
use crate::plugin::prelude::*;
use crate::testing::{check_contract, fail_with, fixed_reply, query, record_calls, serve, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "nsid", config: "nsid", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn edns(options: Vec<EdnsOption>) -> Option<Edns> {
    Some(Edns { udp_size: 4096, version: 0, dnssec_ok: true, options })
}

fn nsid_query() -> Request {
    let mut req = query("example.org.", Rtype::A);
    req.edns = edns(vec![EdnsOption { code: NSID, data: Bytes::new() }]);
    req
}

fn nsid_of(reply: &Reply) -> Option<Vec<u8>> {
    let e = reply.edns.as_ref()?;
    assert!(e.options.iter().filter(|o| o.code == NSID).count() <= 1, "one NSID option at most");
    e.option(NSID).map(|o| o.data.to_vec())
}

#[test]
fn adds_configured_data_when_asked() {
    let mut chain = setup("nsid Use The Force", &["."]).expect("sets up");
    chain.push(fixed_reply(&["example.org. 300 IN A 192.0.2.1"]));
    let reply = serve(&chain, &mut nsid_query()).expect("answers");
    assert_eq!(nsid_of(&reply), Some(b"Use The Force".to_vec()));
    assert_eq!(reply.answer.len(), 1, "the answer is untouched");
}

#[test]
fn quoted_data_and_default_host_name() {
    let mut chain = setup("nsid \"tf 2\"", &["."]).expect("sets up");
    chain.push(fixed_reply(&[]));
    assert_eq!(nsid_of(&serve(&chain, &mut nsid_query()).expect("answers")), Some(b"tf 2".to_vec()));

    let mut chain = setup("nsid", &["."]).expect("sets up");
    chain.push(fixed_reply(&[]));
    let host = crate::plugin::hostname();
    assert_eq!(nsid_of(&serve(&chain, &mut nsid_query()).expect("answers")), Some(host.into_bytes()));
}

#[test]
fn not_asked_means_unchanged() {
    let mut chain = setup("nsid ps0", &["."]).expect("sets up");
    chain.push(fixed_reply(&[]));
    // No EDNS at all.
    let reply = serve(&chain, &mut query("example.org.", Rtype::A)).expect("answers");
    assert!(reply.edns.is_none());
    // EDNS with another option.
    let mut req = query("example.org.", Rtype::A);
    req.edns = edns(vec![EdnsOption { code: 10, data: Bytes::from_static(&[1; 8]) }]);
    let reply = serve(&chain, &mut req).expect("answers");
    assert_eq!(nsid_of(&reply), None);
}

/// A `next` that sets its own OPT record, with a cookie and a stale NSID.
struct WithOpt;

impl Plugin for WithOpt {
    fn name(&self) -> &'static str {
        "with_opt"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let mut r = Reply::for_request(req);
        r.edns = edns(vec![
            EdnsOption { code: 10, data: Bytes::from_static(&[2; 16]) },
            EdnsOption { code: NSID, data: Bytes::from_static(b"old") },
        ]);
        Box::pin(std::future::ready(Ok(r)))
    }
}

#[test]
fn keeps_other_options_and_replaces_nsid() {
    let mut chain = setup("nsid ps0", &["."]).expect("sets up");
    chain.push(Arc::new(WithOpt));
    let reply = serve(&chain, &mut nsid_query()).expect("answers");
    assert_eq!(nsid_of(&reply), Some(b"ps0".to_vec()));
    assert!(reply.edns.as_ref().is_some_and(|e| e.option(10).is_some()), "the cookie stays");
}

#[test]
fn reaches_next_and_passes_errors() {
    let rec = record_calls();
    let mut chain = setup("nsid", &["."]).expect("sets up");
    chain.push(rec.clone());
    serve(&chain, &mut nsid_query()).expect("answers");
    assert_eq!(rec.count(), 1);

    let mut chain = setup("nsid", &["."]).expect("sets up");
    chain.push(fail_with(Rcode::REFUSED, "no"));
    assert_eq!(serve(&chain, &mut nsid_query()).expect_err("fails").rcode, Rcode::REFUSED);
}

#[test]
fn through_the_wire() {
    // The option survives encoding: the server's OPT record carries it.
    let mut chain = setup("nsid ps0", &["."]).expect("sets up");
    chain.push(fixed_reply(&[]));
    let req = nsid_query();
    let mut reply = serve(&chain, &mut req.clone()).expect("answers");
    crate::message::finish_reply(&req, &mut reply);
    let back = Reply::from_wire(&reply.to_wire(req.max_reply_size())).expect("parses");
    assert_eq!(nsid_of(&back), Some(b"ps0".to_vec()));
}

#[test]
fn rejects_a_block() {
    assert!(setup("nsid {\n    data x\n}", &["."]).is_err());
}
