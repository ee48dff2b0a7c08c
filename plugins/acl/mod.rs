//! acl: access control on the client's address and the query's type, as CoreDNS's acl does.
//! Each `acl` directive is a rule for its zones holding policies `allow|block|filter|drop [type
//! QTYPE...] [net SOURCE...]`; within a rule the first policy that matches decides. `allow` ends
//! the evaluation, `block` answers REFUSED, `filter` an empty NOERROR (both with an Extended DNS
//! Error, RFC 8914), `drop` sends nothing. A query no policy matches goes on to the next rule,
//! and past the last one to the next plugin.
//!
//! Every `acl` directive of a server block is one rule of one handler, in the order written.
//! Networks and types are parsed at setup; per query only comparisons are made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::plugin::prelude::*;
use crate::plugin::zone_text as zone;
use crate::plugin::{Cidr, CounterVec, Edns, EdnsOption};

/// CoreDNS's metric names.
pub const BLOCKED_TOTAL: &str = "coredns_acl_blocked_requests_total";
pub const FILTERED_TOTAL: &str = "coredns_acl_filtered_requests_total";
pub const ALLOWED_TOTAL: &str = "coredns_acl_allowed_requests_total";
pub const DROPPED_TOTAL: &str = "coredns_acl_dropped_requests_total";

/// Extended DNS Error codes (RFC 8914 §4.16, §4.18) and the option carrying them.
const EDE: u16 = 15;
const EDE_BLOCKED: u16 = 15;
const EDE_FILTERED: u16 = 17;

/// `acl [ZONES...] { ACTION [type QTYPE...] [net SOURCE...] }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Zones the rule applies to; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// One line of the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub action: Action,
    /// Query types (`A`, `*`); every type when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Source addresses or networks (`192.0.2.0/24`, `*`); every source when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Block,
    Filter,
    Drop,
}

impl FromStr for Action {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "allow" => Action::Allow,
            "block" => Action::Block,
            "filter" => Action::Filter,
            "drop" => Action::Drop,
            _ => return Err(()),
        })
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        c.zones.push(zone(&t.text).map_err(|m| t.err(m))?);
    }
    for line in d.lines() {
        line.no_block()?;
        let action = line.key().as_str().parse().map_err(|_| {
            line.err(format!("unknown action {:?}: expected allow, block, filter or drop", line.key().text))
        })?;
        let mut p = Policy { action, types: Vec::new(), nets: Vec::new() };
        let mut section: Option<&str> = None;
        for t in line.args() {
            match t.as_str().to_ascii_lowercase().as_str() {
                "type" => section = Some("type"),
                "net" => section = Some("net"),
                _ => match section {
                    Some("type") => {
                        qtype(&t.text).map_err(|m| t.err(m))?;
                        p.types.push(t.text.clone());
                    }
                    Some(_) => {
                        net(&t.text).map_err(|m| t.err(m))?;
                        p.nets.push(t.text.clone());
                    }
                    None => return Err(t.err(format!("unexpected {:?}: expected type or net", t.text))),
                },
            }
        }
        c.policies.push(p);
    }
    Ok(c)
}


/// A query type, or `None` for `*` (every type).
fn qtype(s: &str) -> Result<Option<Rtype>, String> {
    if s == "*" {
        return Ok(None);
    }
    Rtype::from_str(s).map(Some).map_err(|_| format!("invalid query type {s:?}"))
}

/// The networks of a source: `*` is every IPv4 and IPv6 address.
fn net(s: &str) -> Result<Vec<Cidr>, String> {
    if s == "*" {
        let v4 = Cidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("a /0 is valid");
        let v6 = Cidr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("a /0 is valid");
        return Ok(vec![v4, v6]);
    }
    s.parse::<Cidr>().map(|c| vec![c]).map_err(|e| e.to_string())
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = SetupError::new;
    let zones = ctx.zones_or(&c.zones)?;
    let mut policies = Vec::new();
    for p in &c.policies {
        let mut types = Vec::new();
        let mut all_types = p.types.is_empty();
        for t in &p.types {
            match qtype(t).map_err(err)? {
                Some(t) => types.push(t),
                None => all_types = true,
            }
        }
        let mut nets = Vec::new();
        for n in &p.nets {
            nets.extend(net(n).map_err(err)?);
        }
        policies.push(Compiled { action: p.action, types: (!all_types).then_some(types), nets: (!p.nets.is_empty()).then_some(nets) });
    }
    // Every acl directive of the block is a rule of one handler, so an allow ends them all.
    let rules = ctx.state::<Vec<Rule>>();
    let zones = zones.into_iter().map(|z: Name<Bytes>| {
        let text = z.fmt_with_dot().to_string();
        (text, z)
    });
    let zones = zones.collect();
    rules.push(Rule { zones, policies });
    let rules = rules.clone();
    ctx.replace_handler(Arc::new(Acl::new(rules)));
    Ok(())
}

#[derive(Clone, Debug)]
struct Compiled {
    action: Action,
    /// `None`: every type.
    types: Option<Vec<Rtype>>,
    /// `None`: every source.
    nets: Option<Vec<Cidr>>,
}

impl Compiled {
    fn matches(&self, qtype: Rtype, ip: IpAddr) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&qtype)) && self.nets.as_ref().is_none_or(|n| n.iter().any(|c| c.contains(ip)))
    }
}

#[derive(Clone, Debug)]
struct Rule {
    /// Each zone with its text, the metrics' `zone` label.
    zones: Vec<(String, Name<Bytes>)>,
    policies: Vec<Compiled>,
}

pub struct Acl {
    rules: Vec<Rule>,
    blocked: CounterVec,
    filtered: CounterVec,
    dropped: CounterVec,
    allowed: CounterVec,
}

impl Acl {
    fn new(rules: Vec<Rule>) -> Acl {
        let zoned = &["server", "zone", "view"];
        Acl {
            rules,
            blocked: CounterVec::new(BLOCKED_TOTAL, zoned),
            filtered: CounterVec::new(FILTERED_TOTAL, zoned),
            dropped: CounterVec::new(DROPPED_TOTAL, zoned),
            allowed: CounterVec::new(ALLOWED_TOTAL, &["server", "view"]),
        }
    }
}

/// A reply with an Extended DNS Error; the server sends the option only to EDNS clients.
fn with_ede(req: &Request, rcode: Rcode, info: u16) -> Reply {
    let mut r = Reply::error(req, rcode);
    r.edns = Some(Edns {
        udp_size: crate::message::ADVERTISED_UDP_SIZE,
        version: 0,
        dnssec_ok: false,
        options: vec![EdnsOption { code: EDE, data: Bytes::copy_from_slice(&info.to_be_bytes()) }],
    });
    r
}

impl Plugin for Acl {
    fn name(&self) -> &'static str {
        "acl"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let ip = req.client.ip();
        for rule in &self.rules {
            // The longest of the rule's zones the name is in, for the metrics' zone label.
            let Some((zone, _)) = rule.zones.iter().filter(|(_, z)| req.qname.ends_with(z)).max_by_key(|(_, z)| z.label_count()) else {
                continue;
            };
            let Some(p) = rule.policies.iter().find(|p| p.matches(req.qtype, ip)) else { continue };
            let count = |c: &CounterVec| c.inc(&[&req.server, zone, &req.view]);
            let reply = match p.action {
                Action::Allow => break,
                Action::Block => {
                    count(&self.blocked);
                    Ok(with_ede(req, Rcode::REFUSED, EDE_BLOCKED))
                }
                Action::Filter => {
                    count(&self.filtered);
                    Ok(with_ede(req, Rcode::NOERROR, EDE_FILTERED))
                }
                Action::Drop => {
                    count(&self.dropped);
                    Err(ServeError::dropped("acl", "dropped by policy"))
                }
            };
            return Box::pin(std::future::ready(reply));
        }
        self.allowed.inc(&[&req.server, &req.view]);
        next.serve(req)
    }
}

#[cfg(test)]
mod tests;
