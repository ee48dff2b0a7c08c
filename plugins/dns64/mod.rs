//! dns64: synthesizes AAAA records from A records for IPv6-only clients behind NAT64 (RFC 6147),
//! as CoreDNS's dns64 does. An AAAA query (class IN, from an IPv6 client unless `allow_ipv4`)
//! whose answer has no AAAA record (or any answer, with `translate_all`) is asked again as A, and
//! each A record becomes an AAAA record inside the prefix (RFC 6052 §2.2). NXDOMAIN is passed on
//! as it is (RFC 6147 §5.1.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use domain::rdata::dnssec::Timestamp;
use domain::rdata::Aaaa;

use crate::plugin::prelude::*;
use crate::plugin::{Cidr, CounterVec};
use crate::response::{typify, ResponseType};

/// CoreDNS's metric name.
pub const TRANSLATED_TOTAL: &str = "coredns_dns64_requests_translated_total";

/// The well-known prefix (RFC 6052 §2.1).
pub const WELL_KNOWN_PREFIX: &str = "64:ff9b::/96";

/// `dns64 [PREFIX] { prefix PREFIX; translate_all; allow_ipv4 }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The NAT64 prefix; the well-known `64:ff9b::/96` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Translate even answers that have AAAA records (against RFC 6147 §5.1.1).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub translate_all: bool,
    /// Translate for IPv4 clients too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_ipv4: bool,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(1)?;
    let mut c = Config::default();
    if let Some(t) = d.args.first() {
        prefix(&t.text).map_err(|m| t.err(m))?;
        c.prefix = Some(t.text.clone());
    }
    for line in d.lines() {
        match line.key().as_str() {
            "prefix" => {
                let t = &line.nargs(1, 1)?[0];
                if c.prefix.is_some() {
                    return Err(t.err("the prefix is given twice"));
                }
                prefix(&t.text).map_err(|m| t.err(m))?;
                c.prefix = Some(t.text.clone());
            }
            "translate_all" => {
                line.nargs(0, 0)?;
                c.translate_all = true;
            }
            "allow_ipv4" => {
                line.nargs(0, 0)?;
                c.allow_ipv4 = true;
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

/// An IPv6 prefix of a length RFC 6052 §2.2 allows.
fn prefix(s: &str) -> Result<Cidr, String> {
    let p = s.parse::<Cidr>().map_err(|e| e.to_string())?;
    if !p.addr().is_ipv6() {
        return Err(format!("{s:?} is not an IPv6 prefix"));
    }
    if ![32, 40, 48, 56, 64, 96].contains(&p.prefix_len()) {
        return Err(format!("invalid prefix length {} in {s:?}: RFC 6052 allows 32, 40, 48, 56, 64 or 96", p.prefix_len()));
    }
    Ok(p)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let p = prefix(c.prefix.as_deref().unwrap_or(WELL_KNOWN_PREFIX)).map_err(SetupError::new)?;
    let translated = CounterVec::new(TRANSLATED_TOTAL, &["server"]);
    ctx.add_handler(Arc::new(Dns64 { prefix: p, translate_all: c.translate_all, allow_ipv4: c.allow_ipv4, translated }));
    Ok(())
}

pub struct Dns64 {
    prefix: Cidr,
    translate_all: bool,
    allow_ipv4: bool,
    translated: CounterVec,
}

/// The IPv4 address embedded in `prefix` as RFC 6052 §2.2 lays it out: around the reserved
/// octet 8 (bits 64 to 71), which stays zero.
pub fn embed(prefix: &Cidr, v4: Ipv4Addr) -> Ipv6Addr {
    let IpAddr::V6(p) = prefix.addr() else { unreachable!("dns64 prefixes are IPv6, checked at setup") };
    let mut out = p.octets();
    let mut i = usize::from(prefix.prefix_len() / 8);
    for b in v4.octets() {
        if i == 8 {
            i += 1;
        }
        out[i] = b;
        i += 1;
    }
    Ipv6Addr::from(out)
}

impl Dns64 {
    /// RFC 6147 §5.1: answers that need a synthesis.
    fn needs_synthesis(&self, req: &Request, reply: &Reply) -> bool {
        // §5.1.2: a name that does not exist does not get an AAAA record made up.
        if typify(reply, req.dnssec_ok(), Timestamp::now()) == ResponseType::NameError {
            return false;
        }
        self.translate_all || !reply.answer.iter().any(|r| r.rtype() == Rtype::AAAA)
    }

    fn synthesize(&self, req: &Request, first: &Reply, a: Reply) -> Reply {
        let mut out = Reply::for_request(req);
        out.rcode = a.rcode;
        out.header.set_aa(a.header.aa());
        out.header.set_ra(a.header.ra());
        // §5.3.2: the other sections come from the A answer unchanged.
        out.authority = a.authority;
        out.additional = a.additional;
        // §5.1.7: the TTL is at most the SOA's of the first answer, 600 s if it has none.
        let soa_ttl = first.authority.iter().find(|r| r.rtype() == Rtype::SOA).map_or(600, |r| r.ttl().as_secs());
        out.answer = a
            .answer
            .into_iter()
            .map(|r| match r.data() {
                ZoneRecordData::A(a) => {
                    let ttl = Ttl::from_secs(r.ttl().as_secs().min(soa_ttl));
                    Record::new(r.owner().clone(), r.class(), ttl, ZoneRecordData::Aaaa(Aaaa::new(embed(&self.prefix, a.addr()))))
                }
                // §5.3.3: other records (a CNAME chain) are returned unchanged.
                _ => r,
            })
            .collect();
        out
    }
}

impl Plugin for Dns64 {
    fn name(&self) -> &'static str {
        "dns64"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        // §5.1: only AAAA queries of class IN; and only for IPv6 clients unless told otherwise.
        let v4 = req.client.ip().is_ipv4();
        if req.qtype != Rtype::AAAA || req.qclass != Class::IN || (v4 && !self.allow_ipv4) {
            return next.serve(req);
        }
        Box::pin(async move {
            let first = match next.serve(req).await {
                Ok(r) => r,
                Err(e) if e.drop => return Err(e),
                // §5.1.2: an rcode other than NOERROR and NXDOMAIN counts as an answer without
                // AAAA records.
                Err(e) => Reply::error(req, e.rcode),
            };
            if !self.needs_synthesis(req, &first) {
                return Ok(first);
            }
            let mut a = req.clone();
            a.qtype = Rtype::A;
            let answer = next.serve(&mut a).await?;
            self.translated.inc(&[&req.server]);
            Ok(self.synthesize(req, &first, answer))
        })
    }
}

#[cfg(test)]
mod tests;
