//! local: answers the names that must never leave the host (RFC 6761 §6.3, RFC 6303), as
//! CoreDNS's local does: `localhost.` and the names below it, `localhost.<domain>`, and the
//! reverse zones `0.in-addr.arpa.`, `127.in-addr.arpa.` and `255.in-addr.arpa.`, plus the reverse
//! name of `::1`. Every other query goes to the next plugin. The records are built once at setup.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use domain::base::Serial;
use domain::rdata::{Aaaa, Ns, Ptr, Soa, A};

use crate::plugin::prelude::*;

/// CoreDNS's metric name.
pub const LOCALHOST_REQUESTS_TOTAL: &str = "coredns_local_localhost_requests_total";

/// The TTL of every record, as CoreDNS's (one week).
const TTL: u32 = 604_800;
const REVERSE_ZONES: [&str; 3] = ["0.in-addr.arpa.", "127.in-addr.arpa.", "255.in-addr.arpa."];
const V6_LOOPBACK_PTR: &str = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.";

/// `local`: no options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

pub fn setup(_: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.add_handler(Arc::new(Local));
    Ok(())
}

pub struct Local;

fn name(s: &str) -> Name<Bytes> {
    Name::from_str(s).expect("a valid constant name")
}

fn rr(owner: &Name<Bytes>, data: ZoneRecordData<Bytes, Name<Bytes>>) -> Rr {
    Record::new(owner.clone(), Class::IN, Ttl::from_secs(TTL), data)
}

fn soa(origin: &Name<Bytes>) -> Rr {
    let t = Ttl::ZERO;
    rr(origin, ZoneRecordData::Soa(Soa::new(name("localhost."), name("root.localhost."), Serial(1), t, t, t, Ttl::from_secs(TTL))))
}

/// The loopback address for an address query, or NODATA with an SOA of `origin`.
fn loopback(reply: &mut Reply, qname: &Name<Bytes>, qtype: Rtype, origin: &Name<Bytes>) {
    match qtype {
        Rtype::A => reply.answer.push(rr(qname, ZoneRecordData::A(A::new(Ipv4Addr::LOCALHOST)))),
        Rtype::AAAA => reply.answer.push(rr(qname, ZoneRecordData::Aaaa(Aaaa::new(Ipv6Addr::LOCALHOST)))),
        _ => reply.authority.push(soa(origin)),
    }
}

impl Plugin for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let lower = req.name_lower();
        let mut reply = Reply::for_request(req);
        let qname = req.qname.clone();
        if lower == "localhost." {
            match req.qtype {
                Rtype::SOA => reply.answer.push(soa(&qname)),
                Rtype::NS => reply.answer.push(rr(&qname, ZoneRecordData::Ns(Ns::new(name("localhost."))))),
                t => loopback(&mut reply, &qname, t, &qname),
            }
        } else if lower.ends_with(".localhost.") {
            // RFC 6761 §6.3: every name below localhost. is the loopback host. (CoreDNS answers
            // these NXDOMAIN.)
            loopback(&mut reply, &qname, req.qtype, &name("localhost."));
        } else if lower.starts_with("localhost.") {
            // `localhost.<domain>`: a resolver's search list appended to "localhost"; answer it
            // here rather than let it escape to the internet, and count it.
            metrics::counter!(LOCALHOST_REQUESTS_TOTAL).increment(1);
            ::log::debug!(target: "plugin/local", "intercepting localhost query for {lower:?} {} from {}", req.qtype, req.client.ip());
            loopback(&mut reply, &qname, req.qtype, &qname);
        } else if lower == V6_LOOPBACK_PTR || lower == "1.0.0.127.in-addr.arpa." {
            match req.qtype {
                Rtype::PTR => reply.answer.push(rr(&qname, ZoneRecordData::Ptr(Ptr::new(name("localhost."))))),
                _ => reply.authority.push(soa(&qname)),
            }
        } else if let Some(zone) = REVERSE_ZONES.iter().find(|z| lower == **z || lower.ends_with(&format!(".{z}"))) {
            // RFC 6303 §4.2: the zones exist, but hold only their apex.
            let origin = Name::<Bytes>::from_str(zone).expect("a valid constant name");
            if lower == *zone {
                match req.qtype {
                    Rtype::SOA => reply.answer.push(soa(&qname)),
                    Rtype::NS => reply.answer.push(rr(&qname, ZoneRecordData::Ns(Ns::new(name("localhost."))))),
                    _ => reply.authority.push(soa(&qname)),
                }
            } else {
                reply.rcode = Rcode::NXDOMAIN.into();
                reply.authority.push(soa(&origin));
            }
        } else {
            return next.serve(req);
        }
        Box::pin(std::future::ready(Ok(reply)))
    }
}

#[cfg(test)]
mod tests;
