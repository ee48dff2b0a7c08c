//! The query parser and the reply writer: any packet is dropped, rejected with a reply that
//! parses, or becomes a request whose reply fits the client's size and parses. Any message that
//! parses as a reply is written again into one that parses.
#![no_main]

use bytes::Bytes;
use ferrite::message::{finish_reply, parse_query, Proto, Rejected, Reply, Request};
use libfuzzer_sys::fuzz_target;

fn answer(req: &Request) {
    let mut reply = Reply::for_request(req);
    finish_reply(req, &mut reply);
    let out = reply.to_wire(req.max_reply_size());
    assert!(out.len() <= req.max_reply_size(), "reply larger than the client takes");
    let back = Reply::from_wire(&out).expect("our reply parses");
    assert_eq!(back.header.id(), req.header.id());
    assert_eq!(back.edns.is_some(), req.edns.is_some(), "OPT in the reply iff in the query");
}

fuzz_target!(|data: &[u8]| {
    let wire = Bytes::copy_from_slice(data);
    let client = "127.0.0.1:5353".parse().expect("address");
    for proto in [Proto::Udp, Proto::Tcp] {
        match parse_query(wire.clone(), client, proto) {
            Ok(req) => answer(&req),
            Err(Rejected::CookieOnly(req)) => answer(&req),
            Err(Rejected::Reply(b)) => {
                let r = Reply::from_wire(&b).expect("an early reply parses");
                assert_eq!(&b[..2], &data[..2], "the early reply has the query's ID");
                assert!(r.header.qr());
            }
            Err(Rejected::Drop) => {}
        }
    }
    if let Ok(r) = Reply::from_wire(data) {
        let out = r.to_wire(65535);
        Reply::from_wire(&out).expect("a re-encoded message parses");
    }
});
