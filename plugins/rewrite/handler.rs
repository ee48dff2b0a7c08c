//! The rewrite handler: rules compiled at setup, applied to the query on the way down and to
//! the reply on the way back.

use std::net::IpAddr;
use std::str::FromStr;

use domain::base::question::Question;
use domain::rdata::{Cname, Dname, Mx, Naptr, Ns, Soa, Srv};
use regex::Regex;

use super::{class, rcode, rtype, ttl_range, Action, Answer, Edns0, Match, Mode, Rule};
use crate::plugin::prelude::*;
use crate::plugin::{Edns, EdnsOption};

/// EDNS option codes rewrite writes (RFC 5001, RFC 7871).
const NSID: u16 = 3;
const SUBNET: u16 = 8;

/// A name pattern, compiled. Names are compared in lower case with a trailing dot.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(Regex),
}

impl Matcher {
    pub fn new(m: Match, pattern: &str) -> Result<Matcher, String> {
        let lower = pattern.to_ascii_lowercase();
        Ok(match m {
            Match::Exact => Matcher::Exact(fqdn(lower)),
            Match::Prefix => Matcher::Prefix(lower),
            Match::Suffix => Matcher::Suffix(fqdn(lower)),
            Match::Substring => Matcher::Substring(lower),
            Match::Regex => Matcher::Regex(Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?}: {e}"))?),
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Exact(s) => name == s,
            Matcher::Prefix(s) => name.starts_with(s.as_str()),
            Matcher::Suffix(s) => name.ends_with(s.as_str()),
            Matcher::Substring(s) => name.contains(s.as_str()),
            Matcher::Regex(re) => re.is_match(name),
        }
    }

    /// `name` with the matched part replaced by `to` (for a regex, `to` with `{N}` replaced by
    /// group N), or `None` when it does not match.
    pub fn rewrite(&self, name: &str, to: &str) -> Option<String> {
        match self {
            Matcher::Exact(s) => (name == s).then(|| to.to_string()),
            Matcher::Prefix(s) => name.strip_prefix(s.as_str()).map(|rest| format!("{to}{rest}")),
            Matcher::Suffix(s) => name.strip_suffix(s.as_str()).map(|rest| format!("{rest}{to}")),
            Matcher::Substring(s) => name.contains(s.as_str()).then(|| name.replace(s.as_str(), to)),
            Matcher::Regex(re) => re.captures(name).map(|caps| expand(&caps, to)),
        }
    }
}

/// `to` with `{N}` replaced by capture group N (an unmatched group by nothing).
pub fn expand(caps: &regex::Captures, to: &str) -> String {
    let mut s = to.to_string();
    for i in 0..caps.len() {
        let key = format!("{{{i}}}");
        if s.contains(&key) {
            s = s.replace(&key, caps.get(i).map_or("", |m| m.as_str()));
        }
    }
    s
}

/// How many distinct `{N}` groups `to` uses, as CoreDNS counts them.
fn groups_used(to: &str) -> usize {
    (0..=100).filter(|i| to.contains(&format!("{{{i}}}"))).count()
}

fn fqdn(mut s: String) -> String {
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// What a reply's names are mapped with.
#[derive(Clone, Debug)]
enum AnswerOp {
    /// The name rule run backwards.
    Auto,
    /// A regex matcher on owner names, and its replacement.
    Name(Matcher, String),
    /// A regex matcher on names inside records, and its replacement.
    Value(Matcher, String),
}

/// The data of an EDNS0 local option: fixed bytes or a per-query variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalData {
    Fixed(Bytes),
    QName,
    QType,
    ClientIp,
    ClientPort,
    Protocol,
    ServerIp,
    ServerPort,
    /// A `{label}` read from the request's metadata.
    Metadata(String),
}

impl LocalData {
    pub fn parse(s: &str) -> Result<LocalData, String> {
        if let Some(var) = s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            return Ok(match var {
                "qname" => LocalData::QName,
                "qtype" => LocalData::QType,
                "client_ip" => LocalData::ClientIp,
                "client_port" => LocalData::ClientPort,
                "protocol" => LocalData::Protocol,
                "server_ip" => LocalData::ServerIp,
                "server_port" => LocalData::ServerPort,
                label if !label.is_empty() => LocalData::Metadata(label.to_string()),
                _ => return Err("empty variable {}".into()),
            });
        }
        if let Some(hex) = s.strip_prefix("0x") {
            if hex.len() % 2 != 0 {
                return Err(format!("hex data {s:?} has an odd number of digits"));
            }
            let bytes: Result<Vec<u8>, _> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect();
            return bytes.map(|b| LocalData::Fixed(Bytes::from(b))).map_err(|_| format!("invalid hex data {s:?}"));
        }
        Ok(LocalData::Fixed(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// The bytes for this query, as CoreDNS encodes them; `None` when not known.
    fn value(&self, req: &Request) -> Option<Bytes> {
        Some(match self {
            LocalData::Fixed(b) => b.clone(),
            LocalData::QName => Bytes::from(req.qname.fmt_with_dot().to_string()),
            LocalData::QType => Bytes::copy_from_slice(&req.qtype.to_int().to_be_bytes()),
            LocalData::ClientIp => match req.client.ip() {
                IpAddr::V4(a) => Bytes::copy_from_slice(&a.octets()),
                IpAddr::V6(a) => Bytes::copy_from_slice(&a.octets()),
            },
            LocalData::ClientPort => Bytes::copy_from_slice(&req.client.port().to_be_bytes()),
            LocalData::Protocol => Bytes::from_static(req.proto.as_str().as_bytes()),
            // The request does not carry the address it arrived on; a rule using it is skipped.
            LocalData::ServerIp => return None,
            LocalData::ServerPort => {
                let port: u16 = req.server.rsplit(':').next()?.parse().ok()?;
                Bytes::copy_from_slice(&port.to_be_bytes())
            }
            // A label nobody set skips the rule, as in CoreDNS.
            LocalData::Metadata(label) => Bytes::copy_from_slice(req.metadata.get(label)?.as_bytes()),
        })
    }
}

#[derive(Clone, Debug)]
enum EdnsOp {
    Local { code: u16, data: LocalData },
    Nsid,
    Subnet { v4: u8, v6: u8 },
}

#[derive(Clone, Debug)]
enum Kind {
    Name { m: Matcher, to: String, answers: Vec<AnswerOp>, reverse: Option<(Matcher, String)> },
    Type { from: Rtype, to: Rtype },
    Class { from: Class, to: Class },
    Edns0 { action: Action, op: EdnsOp },
    Ttl { m: Matcher, min: u32, max: u32 },
    Cname { m: Matcher, to: String },
    Rcode { m: Matcher, from: OptRcode, to: OptRcode },
}

/// One rule, ready to run.
#[derive(Clone, Debug)]
pub struct Compiled {
    stop: bool,
    kind: Kind,
}

/// Compiles a rule; the error says what is wrong with it.
pub fn compile(r: &Rule) -> Result<Compiled, String> {
    let (mode, kind) = match r {
        Rule::Name { mode, matching, from, to, answer } => {
            let m = Matcher::new(*matching, from)?;
            let to = match matching {
                Match::Regex => {
                    if let Matcher::Regex(re) = &m {
                        if groups_used(to) > re.captures_len() - 1 {
                            return Err(format!("the rewrite pattern {to:?} uses more groups than {from:?} has"));
                        }
                    }
                    to.to_ascii_lowercase()
                }
                Match::Exact | Match::Suffix => fqdn(to.to_ascii_lowercase()),
                _ => to.to_ascii_lowercase(),
            };
            if *matching == Match::Exact {
                Name::<Bytes>::from_str(&to).map_err(|e| format!("invalid name {to:?}: {e}"))?;
            }
            let mut answers = Vec::new();
            for a in answer {
                answers.push(match a {
                    Answer::Auto => AnswerOp::Auto,
                    Answer::Name { from, to } | Answer::Value { from, to } => {
                        let re = Regex::new(from).map_err(|e| format!("invalid regex {from:?}: {e}"))?;
                        if groups_used(to) > re.captures_len() - 1 {
                            return Err(format!("the answer pattern {to:?} uses more groups than {from:?} has"));
                        }
                        let to = fqdn(to.to_ascii_lowercase());
                        if matches!(a, Answer::Name { .. }) {
                            AnswerOp::Name(Matcher::Regex(re), to)
                        } else {
                            AnswerOp::Value(Matcher::Regex(re), to)
                        }
                    }
                });
            }
            // An exact rule always maps its answer back, as in CoreDNS.
            if *matching == Match::Exact && !answers.iter().any(|a| matches!(a, AnswerOp::Auto)) {
                answers.insert(0, AnswerOp::Auto);
            }
            // Run backwards: TO is matched the same way and replaced by FROM. A regex cannot be
            // inverted; its auto answer maps the rewritten name back per query.
            let reverse = match &m {
                Matcher::Exact(f) => Some((Matcher::Exact(to.clone()), f.clone())),
                Matcher::Prefix(f) => Some((Matcher::Prefix(to.clone()), f.clone())),
                Matcher::Suffix(f) => Some((Matcher::Suffix(to.clone()), f.clone())),
                Matcher::Substring(f) => Some((Matcher::Substring(to.clone()), f.clone())),
                Matcher::Regex(_) => None,
            };
            (mode, Kind::Name { m, to, answers, reverse })
        }
        Rule::Type { mode, from, to } => {
            let t = |s: &str| rtype(s).ok_or_else(|| format!("invalid record type {s:?}"));
            (mode, Kind::Type { from: t(from)?, to: t(to)? })
        }
        Rule::Class { mode, from, to } => {
            let c = |s: &str| class(s).ok_or_else(|| format!("invalid class {s:?}"));
            (mode, Kind::Class { from: c(from)?, to: c(to)? })
        }
        Rule::Edns0 { mode, action, option } => {
            let op = match option {
                Edns0::Local { code, data } => EdnsOp::Local { code: *code, data: LocalData::parse(data)? },
                Edns0::Nsid => EdnsOp::Nsid,
                Edns0::Subnet { v4, v6 } => {
                    if *v4 > 32 || *v6 > 128 {
                        return Err(format!("subnet prefix lengths {v4} and {v6} are too long (32 and 128 at most)"));
                    }
                    EdnsOp::Subnet { v4: *v4, v6: *v6 }
                }
            };
            (mode, Kind::Edns0 { action: *action, op })
        }
        Rule::Ttl { mode, matching, name, ttl } => {
            let (min, max) = ttl_range(ttl).ok_or_else(|| format!("invalid TTL {ttl:?}: expected seconds or MIN-MAX"))?;
            (mode, Kind::Ttl { m: Matcher::new(*matching, name)?, min, max })
        }
        Rule::Cname { mode, matching, from, to } => {
            let m = Matcher::new(*matching, from)?;
            let to = match matching {
                Match::Exact | Match::Suffix => fqdn(to.to_ascii_lowercase()),
                _ => to.to_ascii_lowercase(),
            };
            (mode, Kind::Cname { m, to })
        }
        Rule::Rcode { mode, matching, name, from, to } => {
            let rc = |s: &str| rcode(s).ok_or_else(|| format!("invalid rcode {s:?}"));
            (mode, Kind::Rcode { m: Matcher::new(*matching, name)?, from: rc(from)?, to: rc(to)? })
        }
    };
    Ok(Compiled { stop: *mode == Mode::Stop, kind })
}

/// A name map for the reply.
enum Map<'a> {
    Rule(&'a Matcher, &'a str),
    /// The rewritten question name back to the client's.
    Literal(String, String),
}

impl Map<'_> {
    fn apply(&self, name: &str) -> Option<String> {
        match self {
            Map::Rule(m, to) => m.rewrite(name, to),
            Map::Literal(from, to) => (name == from).then(|| to.clone()),
        }
    }
}

/// What a rule that applied does to the reply.
enum Op<'a> {
    Owner(Map<'a>),
    Value(Map<'a>),
    Ttl(u32, u32),
    Rcode(OptRcode, OptRcode),
    Cname(&'a Matcher, &'a str),
}

pub struct Rewrite {
    rules: Vec<Compiled>,
}

impl Rewrite {
    pub fn new(rules: Vec<Compiled>) -> Rewrite {
        Rewrite { rules }
    }

    /// Applies the rules to `req`; returns what to do to the reply, or an error for a name
    /// that a rule made invalid.
    fn rewrite_request(&self, req: &mut Request) -> Result<(bool, Vec<Op<'_>>), ServeError> {
        let mut ops = Vec::new();
        let mut applied = false;
        for rule in &self.rules {
            let name = req.name_lower();
            let done = match &rule.kind {
                Kind::Name { m, to, answers, reverse } => match m.rewrite(&name, to) {
                    Some(new) => {
                        req.qname = Name::from_str(&new).map_err(|e| {
                            ServeError::servfail("rewrite", format!("invalid name after rewrite: {new:?}: {e}"))
                        })?;
                        for a in answers {
                            match a {
                                AnswerOp::Auto => match reverse {
                                    Some((m, from)) => {
                                        ops.push(Op::Owner(Map::Rule(m, from)));
                                        ops.push(Op::Value(Map::Rule(m, from)));
                                    }
                                    None => {
                                        let new = fqdn(new.to_ascii_lowercase());
                                        ops.push(Op::Owner(Map::Literal(new.clone(), name.clone())));
                                        ops.push(Op::Value(Map::Literal(new, name.clone())));
                                    }
                                },
                                AnswerOp::Name(m, to) => ops.push(Op::Owner(Map::Rule(m, to))),
                                AnswerOp::Value(m, to) => ops.push(Op::Value(Map::Rule(m, to))),
                            }
                        }
                        true
                    }
                    None => false,
                },
                Kind::Type { from, to } => {
                    let hit = req.qtype == *from;
                    if hit {
                        req.qtype = *to;
                    }
                    hit
                }
                Kind::Class { from, to } => {
                    let hit = req.qclass == *from;
                    if hit {
                        req.qclass = *to;
                    }
                    hit
                }
                Kind::Edns0 { action, op } => edns0(req, *action, op),
                Kind::Ttl { m, min, max } => {
                    let hit = m.is_match(&name);
                    if hit {
                        ops.push(Op::Ttl(*min, *max));
                    }
                    hit
                }
                // As in CoreDNS, a CNAME rule applies to every query; it acts on the reply.
                Kind::Cname { m, to } => {
                    ops.push(Op::Cname(m, to));
                    true
                }
                Kind::Rcode { m, from, to } => {
                    let hit = m.is_match(&name);
                    if hit {
                        ops.push(Op::Rcode(*from, *to));
                    }
                    hit
                }
            };
            applied |= done;
            if done && rule.stop {
                break;
            }
        }
        Ok((applied, ops))
    }
}

/// Applies one EDNS0 rule; true when it changed the query.
fn edns0(req: &mut Request, action: Action, op: &EdnsOp) -> bool {
    let code = match op {
        EdnsOp::Local { code, .. } => *code,
        EdnsOp::Nsid => NSID,
        EdnsOp::Subnet { .. } => SUBNET,
    };
    let present = req.edns.as_ref().is_some_and(|e| e.option(code).is_some());
    let write = match action {
        Action::Set => true,
        Action::Append => !present,
        Action::Replace => present,
        Action::Unset => {
            if let Some(e) = req.edns.as_mut() {
                e.options.retain(|o| o.code != code);
            }
            return present;
        }
    };
    if !write {
        return false;
    }
    let data = match op {
        EdnsOp::Local { data, .. } => match data.value(req) {
            Some(d) => d,
            None => return false,
        },
        EdnsOp::Nsid => Bytes::new(),
        EdnsOp::Subnet { v4, v6 } => subnet(req.client.ip(), *v4, *v6),
    };
    // As CoreDNS: a query without EDNS gets an OPT record (4096 bytes) to carry the option.
    let e = req.edns.get_or_insert_with(|| Edns { udp_size: 4096, version: 0, dnssec_ok: false, options: Vec::new() });
    match e.options.iter_mut().find(|o| o.code == code) {
        Some(o) => o.data = data,
        None => e.options.push(EdnsOption { code, data }),
    }
    true
}

/// An ECS option's data (RFC 7871 §6): family, source prefix length, scope 0, and the address
/// cut to the prefix, in as few octets as hold it.
fn subnet(ip: IpAddr, v4: u8, v6: u8) -> Bytes {
    let (family, bits, octets): (u16, u8, Vec<u8>) = match ip {
        IpAddr::V4(a) => (1, v4, a.octets().to_vec()),
        IpAddr::V6(a) => (2, v6, a.octets().to_vec()),
    };
    let len = usize::from(bits).div_ceil(8);
    let mut addr = octets[..len].to_vec();
    if bits % 8 != 0 {
        if let Some(last) = addr.last_mut() {
            *last &= 0xffu8 << (8 - bits % 8);
        }
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&family.to_be_bytes());
    out.push(bits);
    out.push(0);
    out.extend_from_slice(&addr);
    Bytes::from(out)
}

/// Lower case with a trailing dot, as rules compare names.
fn lower(n: &Name<Bytes>) -> String {
    let mut s = n.fmt_with_dot().to_string();
    s.make_ascii_lowercase();
    s
}

/// `name` through every map of `maps` in turn; `None` when none changed it.
fn map_name<'m>(name: &Name<Bytes>, maps: impl Iterator<Item = &'m Map<'m>>) -> Option<Name<Bytes>> {
    let mut s = lower(name);
    let mut changed = false;
    for m in maps {
        if let Some(new) = m.apply(&s) {
            s = new;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    Name::from_str(&fqdn(s)).ok()
}

/// The name inside a record that `answer value` rewrites.
fn target(data: &ZoneRecordData<Bytes, Name<Bytes>>) -> Option<&Name<Bytes>> {
    Some(match data {
        ZoneRecordData::Cname(d) => d.cname(),
        ZoneRecordData::Dname(d) => d.dname(),
        ZoneRecordData::Ns(d) => d.nsdname(),
        ZoneRecordData::Mx(d) => d.exchange(),
        ZoneRecordData::Srv(d) => d.target(),
        ZoneRecordData::Naptr(d) => d.replacement(),
        ZoneRecordData::Soa(d) => d.mname(),
        _ => return None,
    })
}

fn with_target(data: &ZoneRecordData<Bytes, Name<Bytes>>, n: Name<Bytes>) -> ZoneRecordData<Bytes, Name<Bytes>> {
    match data {
        ZoneRecordData::Cname(_) => ZoneRecordData::Cname(Cname::new(n)),
        ZoneRecordData::Dname(_) => ZoneRecordData::Dname(Dname::new(n)),
        ZoneRecordData::Ns(_) => ZoneRecordData::Ns(Ns::new(n)),
        ZoneRecordData::Mx(d) => ZoneRecordData::Mx(Mx::new(d.preference(), n)),
        ZoneRecordData::Srv(d) => ZoneRecordData::Srv(Srv::new(d.priority(), d.weight(), d.port(), n)),
        ZoneRecordData::Naptr(d) => ZoneRecordData::Naptr(Naptr::new(
            d.order(),
            d.preference(),
            d.flags().clone(),
            d.services().clone(),
            d.regexp().clone(),
            n,
        )),
        ZoneRecordData::Soa(d) => ZoneRecordData::Soa(Soa::new(
            n,
            d.rname().clone(),
            d.serial(),
            d.refresh(),
            d.retry(),
            d.expire(),
            d.minimum(),
        )),
        other => other.clone(),
    }
}

/// Applies the name, value and TTL maps to one record.
fn rewrite_record(r: &Rr, ops: &[Op]) -> Rr {
    let owners = ops.iter().filter_map(|o| if let Op::Owner(m) = o { Some(m) } else { None });
    let values = ops.iter().filter_map(|o| if let Op::Value(m) = o { Some(m) } else { None });
    let owner = map_name(r.owner(), owners).unwrap_or_else(|| r.owner().clone());
    let data = match target(r.data()).and_then(|t| map_name(t, values)) {
        Some(t) => with_target(r.data(), t),
        None => r.data().clone(),
    };
    let mut ttl = r.ttl().as_secs();
    for o in ops {
        if let Op::Ttl(min, max) = o {
            ttl = ttl.clamp(*min, *max);
        }
    }
    Record::new(owner, r.class(), Ttl::from_secs(ttl), data)
}

impl Plugin for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let saved = (req.qname.clone(), req.qtype, req.qclass, req.edns.clone());
        let (applied, ops) = match self.rewrite_request(req) {
            Ok(x) => x,
            Err(e) => {
                (req.qname, req.qtype, req.qclass, req.edns) = saved;
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        if !applied {
            return next.serve(req);
        }
        Box::pin(async move {
            let result = next.serve(req).await;
            let mut reply = match result {
                Ok(r) => r,
                Err(e) => {
                    (req.qname, req.qtype, req.qclass, req.edns) = saved;
                    return Err(e);
                }
            };
            for op in &ops {
                if let Op::Cname(m, to) = op {
                    follow_cname(req, next, &mut reply, m, to).await;
                }
            }
            // The client gets back the question it asked (the query as it came in).
            (req.qname, req.qtype, req.qclass, req.edns) = saved;
            reply.question = Some(Question::new(req.qname.clone(), req.qtype, req.qclass));
            let records = ops.iter().any(|o| matches!(o, Op::Owner(_) | Op::Value(_) | Op::Ttl(..)));
            if records {
                for section in [&mut reply.answer, &mut reply.authority, &mut reply.additional] {
                    for r in section.iter_mut() {
                        *r = rewrite_record(r, &ops);
                    }
                }
            }
            for op in &ops {
                if let Op::Rcode(from, to) = op {
                    if reply.rcode == *from {
                        reply.rcode = *to;
                    }
                }
            }
            Ok(reply)
        })
    }
}

/// A CNAME whose target the rule matches gets the new target, and the new target is looked up
/// with the rest of the chain in place of the old one's records.
async fn follow_cname(req: &Request, next: Next<'_>, reply: &mut Reply, m: &Matcher, to: &str) {
    let Some(i) = reply.answer.iter().position(|r| matches!(r.data(), ZoneRecordData::Cname(c) if m.is_match(&lower(c.cname())))) else {
        return;
    };
    let ZoneRecordData::Cname(c) = reply.answer[i].data() else { return };
    let Some(new) = m.rewrite(&lower(c.cname()), to).and_then(|s| Name::<Bytes>::from_str(&fqdn(s)).ok()) else {
        return;
    };
    let old = &reply.answer[i];
    let cname = Record::new(old.owner().clone(), old.class(), old.ttl(), ZoneRecordData::Cname(Cname::new(new.clone())));
    reply.answer.truncate(i);
    reply.answer.push(cname);
    let mut sub = req.clone();
    sub.qname = new;
    match next.serve(&mut sub).await {
        Ok(r) => reply.answer.extend(r.answer),
        Err(e) => ::log::error!(target: "plugin/rewrite", "looking up rewritten CNAME target {}: {e}", sub.name_lower()),
    }
}
