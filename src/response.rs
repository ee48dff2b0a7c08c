//! What kind of message a reply is, as CoreDNS's `response.Typify` decides it: the one
//! classification that log's `class`, minimal and the cache all use.

use domain::base::iana::{Opcode, OptRcode, Rtype};
use domain::rdata::dnssec::Timestamp;
use domain::rdata::ZoneRecordData;

use crate::message::{Reply, Rr};

/// CoreDNS's `response.Type`: what kind of message a reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    NoError,
    NameError,
    ServerError,
    NoData,
    Delegation,
    Meta,
    Update,
    OtherError,
}

/// CoreDNS's `response.Typify`, rule for rule.
pub fn typify(reply: &Reply, dnssec_ok: bool, now: Timestamp) -> ResponseType {
    let opcode = reply.header.opcode();
    if opcode == Opcode::UPDATE {
        return ResponseType::Update;
    }
    let qtype = reply.question.as_ref().map(|q| q.qtype());
    if opcode == Opcode::NOTIFY || qtype == Some(Rtype::AXFR) || qtype == Some(Rtype::IXFR) {
        return ResponseType::Meta;
    }
    // A client that asked for DNSSEC is not well served by signatures outside their validity.
    if dnssec_ok && [&reply.answer, &reply.authority, &reply.additional].into_iter().flatten().any(|r| expired(r, now))
    {
        return ResponseType::OtherError;
    }
    let noerror = reply.rcode == OptRcode::NOERROR;
    if let Some(qtype) = qtype {
        if !reply.answer.is_empty() && noerror && (qtype == Rtype::A || qtype == Rtype::AAAA) {
            // An address query answered without an address (a CNAME to nothing, say) is NODATA.
            return if reply.answer.iter().any(|r| r.rtype() == qtype) {
                ResponseType::NoError
            } else {
                ResponseType::NoData
            };
        }
    }
    if !reply.answer.is_empty() && noerror {
        return ResponseType::NoError;
    }
    let soa = reply.authority.iter().any(|r| r.rtype() == Rtype::SOA);
    let ns = reply.authority.iter().any(|r| r.rtype() == Rtype::NS);
    if soa && noerror {
        return ResponseType::NoData;
    }
    if soa && reply.rcode == OptRcode::NXDOMAIN {
        return ResponseType::NameError;
    }
    if reply.rcode == OptRcode::SERVFAIL || reply.rcode == OptRcode::NOTIMP {
        return ResponseType::ServerError;
    }
    if ns && noerror {
        return ResponseType::Delegation;
    }
    if noerror {
        return ResponseType::NoError;
    }
    ResponseType::OtherError
}

/// An RRSIG whose validity period does not hold `now` (RFC 4034 §3.1.5: the times are serial
/// numbers, compared with RFC 1982 arithmetic, so a period may span the 2^32 wrap).
fn expired(r: &Rr, now: Timestamp) -> bool {
    let not_after = |a: u32, b: u32| b.wrapping_sub(a) as i32 >= 0;
    let now = now.into_int();
    match r.data() {
        ZoneRecordData::Rrsig(sig) => {
            !(not_after(sig.inception().into_int(), now) && not_after(now, sig.expiration().into_int()))
        }
        _ => false,
    }
}

