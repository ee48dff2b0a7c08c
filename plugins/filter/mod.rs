//! filter: ferrite's own plugin to keep record types out of replies, first of all AAAA for
//! clients in IPv4-only networks (where an AAAA answer only makes them try a route that does
//! not exist). Queries for a filtered type get a NOERROR reply without records of that type,
//! and such records are removed from every other reply (ANY, glue in the additional section).
//! The rcode the next plugins answer is kept, so a name that does not exist is still NXDOMAIN;
//! with `immediate` the filtered queries are answered at once without asking them.
//!
//! CoreDNS users get part of this with `template ANY AAAA { rcode NXDOMAIN }`, which tells
//! resolvers the whole name does not exist; filter is the first-class way to do it.

use std::str::FromStr;

use crate::plugin::prelude::*;
use crate::plugin::zone_text as zone;
use crate::plugin::{Cidr, Edns, EdnsOption};

/// Extended DNS Error 17, Filtered (RFC 8914 §4.18), for replies answered with `immediate`.
const EDE: u16 = 15;
const EDE_FILTERED: u16 = 17;

/// `filter [ZONES...] { type QTYPE...; net CIDR...; immediate }`; `filter` alone filters AAAA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Zones whose names are filtered; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Record types removed; AAAA when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Clients filtered for; every client when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// Answer queries for a filtered type at once, NOERROR with no records, without asking the
    /// next plugins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immediate: bool,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        c.zones.push(zone(&t.text).map_err(|m| t.err(m))?);
    }
    for line in d.lines() {
        match line.key().as_str() {
            "aaaa" => {
                line.nargs(0, 0)?;
                c.types.push("AAAA".into());
            }
            "type" => {
                for t in line.nargs(1, usize::MAX)? {
                    rtype(&t.text).map_err(|m| t.err(m))?;
                    c.types.push(t.text.clone());
                }
            }
            "net" => {
                for t in line.nargs(1, usize::MAX)? {
                    t.text.parse::<Cidr>().map_err(|e| t.err(e.to_string()))?;
                    c.nets.push(t.text.clone());
                }
            }
            "immediate" => {
                line.nargs(0, 0)?;
                c.immediate = true;
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}


fn rtype(s: &str) -> Result<Rtype, String> {
    match Rtype::from_str(s) {
        Ok(t) if t != Rtype::ANY && t != Rtype::CNAME => Ok(t),
        Ok(t) => Err(format!("{t} cannot be filtered: it is not a record type of answers")),
        Err(_) => Err(format!("invalid record type {s:?}")),
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = SetupError::new;
    let zones: Vec<Name<Bytes>> = ctx.zones_or(&c.zones)?;
    let mut types = c.types.iter().map(|t| rtype(t)).collect::<Result<Vec<_>, _>>().map_err(err)?;
    if types.is_empty() {
        types.push(Rtype::AAAA);
    }
    let nets = c.nets.iter().map(|n| n.parse::<Cidr>().map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>().map_err(err)?;
    ctx.add_handler(Arc::new(Filter { zones, types, nets, immediate: c.immediate }));
    Ok(())
}

pub struct Filter {
    zones: Vec<Name<Bytes>>,
    types: Vec<Rtype>,
    nets: Vec<Cidr>,
    immediate: bool,
}

impl Filter {
    /// A record of a filtered type, or a signature over one.
    fn filtered(&self, r: &Rr) -> bool {
        match r.data() {
            ZoneRecordData::Rrsig(sig) => self.types.contains(&sig.type_covered()),
            _ => self.types.contains(&r.rtype()),
        }
    }
}

impl Plugin for Filter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let ip = req.client.ip();
        if !self.zones.iter().any(|z| req.qname.ends_with(z)) || (!self.nets.is_empty() && !self.nets.iter().any(|n| n.contains(ip))) {
            return next.serve(req);
        }
        if self.immediate && self.types.contains(&req.qtype) {
            let mut r = Reply::for_request(req);
            r.edns = Some(Edns {
                udp_size: crate::message::ADVERTISED_UDP_SIZE,
                version: 0,
                dnssec_ok: false,
                options: vec![EdnsOption { code: EDE, data: Bytes::copy_from_slice(&EDE_FILTERED.to_be_bytes()) }],
            });
            return Box::pin(std::future::ready(Ok(r)));
        }
        Box::pin(async move {
            let mut reply = next.serve(req).await?;
            for section in [&mut reply.answer, &mut reply.authority, &mut reply.additional] {
                section.retain(|r| !self.filtered(r));
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
