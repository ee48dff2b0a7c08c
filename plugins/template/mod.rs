//! template: answers queries from records written as templates, as CoreDNS's template does.
//! A template applies to a class, a type and zones; its `match` regexes are tried on the
//! question's name and the first that matches fills the records' placeholders (`{{ .Name }}`,
//! named groups as `{{ .Group.x }}`, ...). A query in the zones that no regex matches gets
//! NXDOMAIN, unless `fallthrough` passes it to the next plugin.
//!
//! Regexes and templates are compiled at setup (`engine.rs` holds the template language); per
//! query the records are rendered and parsed as zone-file text.

mod engine;

use std::str::FromStr;

use regex::Regex;

use crate::plugin::prelude::*;
use crate::plugin::zone_text as zone;
use crate::plugin::{parse_rr, CounterVec, Edns, EdnsOption};
use engine::{Data, Template};

/// CoreDNS's metric names.
pub const MATCHES_TOTAL: &str = "coredns_template_matches_total";
pub const TEMPLATE_FAILURES_TOTAL: &str = "coredns_template_template_failures_total";
pub const RR_FAILURES_TOTAL: &str = "coredns_template_rr_failures_total";

/// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
const EDE: u16 = 15;
/// The TTL of a templated record that gives none, as CoreDNS's record parser uses.
const DEFAULT_TTL: u32 = 3600;

/// `template CLASS TYPE [ZONE...] { match REGEX...; answer|additional|authority RR...;
/// rcode CODE; ederror CODE [REASON]; fallthrough [ZONE...]; upstream }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub class: String,
    #[serde(rename = "type")]
    pub qtype: String,
    /// Zones the template answers for; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Regexes tried on the question's name (lower case, trailing dot); `.*` when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answer: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authority: Vec<String>,
    /// The reply's rcode by name; NOERROR when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ederror: Option<ExtendedError>,
    /// `None`: no fallthrough; `Some([])`: for every name; else for names in these zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
    /// Look up the targets of templated CNAMEs (for A and AAAA queries) with the next plugins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream: bool,
}

/// An Extended DNS Error (RFC 8914) added to the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendedError {
    pub code: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let (Some(class), Some(qtype)) = (d.args.first(), d.args.get(1)) else {
        return Err(d.err("template needs a class and a type, such as `template IN A example.org`"));
    };
    parse_class(&class.text).ok_or_else(|| class.err(format!("invalid query class {:?}", class.text)))?;
    parse_type(&qtype.text).ok_or_else(|| qtype.err(format!("invalid query type {:?}", qtype.text)))?;
    let mut c = Config {
        class: class.text.clone(),
        qtype: qtype.text.clone(),
        zones: Vec::new(),
        matches: Vec::new(),
        answer: Vec::new(),
        additional: Vec::new(),
        authority: Vec::new(),
        rcode: None,
        ederror: None,
        fallthrough: None,
        upstream: false,
    };
    // As CoreDNS, a quoted argument may hold several zones separated by spaces.
    for t in &d.args[2..] {
        for z in t.text.split_whitespace() {
            c.zones.push(zone(z).map_err(|m| t.err(m))?);
        }
    }
    for line in d.lines() {
        let key = line.key().as_str();
        match key {
            "match" => {
                for t in line.nargs(1, usize::MAX)? {
                    Regex::new(&t.text).map_err(|e| t.err(format!("could not parse regex {:?}: {e}", t.text)))?;
                    c.matches.push(t.text.clone());
                }
            }
            "answer" | "additional" | "authority" => {
                for t in line.nargs(1, usize::MAX)? {
                    Template::parse(&t.text).map_err(|e| t.err(format!("could not compile template: {e}")))?;
                    let list = match key {
                        "answer" => &mut c.answer,
                        "additional" => &mut c.additional,
                        _ => &mut c.authority,
                    };
                    list.push(t.text.clone());
                }
            }
            "rcode" => {
                let t = &line.nargs(1, 1)?[0];
                parse_rcode(&t.text).ok_or_else(|| t.err(format!("unknown rcode {:?}", t.text)))?;
                c.rcode = Some(t.text.clone());
            }
            "ederror" => {
                let args = line.nargs(1, usize::MAX)?;
                let code = args[0].parse("an extended error code (0 to 65535)")?;
                let reason = args[1..].iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
                c.ederror = Some(ExtendedError { code, reason });
            }
            "fallthrough" => {
                line.no_block()?;
                let zones = line.args().iter().map(|t| zone(&t.text).map_err(|m| t.err(m))).collect::<Result<_, _>>()?;
                c.fallthrough = Some(zones);
            }
            "upstream" => {
                // CoreDNS takes and ignores arguments here (it once named the upstreams).
                line.no_block()?;
                c.upstream = true;
            }
            _ => return Err(line.unknown()),
        }
    }
    check(&c).map_err(|m| d.err(m))?;
    Ok(c)
}

/// What every configuration must have, however it was written.
fn check(c: &Config) -> Result<(), String> {
    let noerror = c.rcode.as_deref().and_then(parse_rcode).is_none_or(|r| r == Rcode::NOERROR);
    if c.answer.is_empty() && c.authority.is_empty() && noerror {
        return Err("a template needs an answer, an authority or an rcode other than NOERROR".into());
    }
    Ok(())
}


fn parse_class(s: &str) -> Option<Class> {
    if s.eq_ignore_ascii_case("ANY") {
        return Some(Class::ANY);
    }
    Class::from_str(s).ok()
}

fn parse_type(s: &str) -> Option<Rtype> {
    Rtype::from_str(s).ok()
}

/// An rcode by name, as CoreDNS takes it (`SUCCESS` is NOERROR, as its README calls it).
fn parse_rcode(s: &str) -> Option<Rcode> {
    let s = s.to_ascii_uppercase();
    if s == "SUCCESS" {
        return Some(Rcode::NOERROR);
    }
    Rcode::from_str(&s).ok()
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    check(c).map_err(SetupError::new)?;
    let err = |m: String| SetupError::new(m);
    let zones = if c.zones.is_empty() {
        ctx.zones.iter().map(|z| zone(&z.to_string())).collect::<Result<Vec<_>, _>>().map_err(err)?
    } else {
        c.zones.iter().map(|z| zone(z)).collect::<Result<Vec<_>, _>>().map_err(err)?
    };
    let regexes = if c.matches.is_empty() { vec![".*".to_string()] } else { c.matches.clone() };
    let templates = |list: &[String]| -> Result<Vec<(String, Template)>, SetupError> {
        list.iter().map(|t| Template::parse(t).map(|p| (t.clone(), p)).map_err(|e| SetupError::new(format!("could not compile template: {e}")))).collect()
    };
    let t = TemplatePlugin {
        class: parse_class(&c.class).ok_or_else(|| err(format!("invalid query class {:?}", c.class)))?,
        qtype: parse_type(&c.qtype).ok_or_else(|| err(format!("invalid query type {:?}", c.qtype)))?,
        zones,
        regexes: regexes.iter().map(|r| Regex::new(r).map_err(|e| err(format!("could not parse regex {r:?}: {e}")))).collect::<Result<_, _>>()?,
        answer: templates(&c.answer)?,
        additional: templates(&c.additional)?,
        authority: templates(&c.authority)?,
        rcode: c.rcode.as_deref().map(|r| parse_rcode(r).ok_or_else(|| err(format!("unknown rcode {r:?}")))).transpose()?.unwrap_or(Rcode::NOERROR),
        ederror: c.ederror.as_ref().map(|e| {
            let mut data = e.code.to_be_bytes().to_vec();
            data.extend_from_slice(e.reason.as_bytes());
            EdnsOption { code: EDE, data: Bytes::from(data) }
        }),
        fallthrough: c.fallthrough.as_ref().map(|zs| zs.iter().map(|z| zone(z)).collect::<Result<Vec<_>, _>>()).transpose().map_err(err)?,
        upstream: c.upstream,
        matched: CounterVec::new(MATCHES_TOTAL, &["server", "zone", "view", "class", "type"]),
        template_failures: CounterVec::new(TEMPLATE_FAILURES_TOTAL, FAILURE_LABELS),
        rr_failures: CounterVec::new(RR_FAILURES_TOTAL, FAILURE_LABELS),
    };
    ctx.add_handler(Arc::new(t));
    Ok(())
}

pub struct TemplatePlugin {
    class: Class,
    qtype: Rtype,
    zones: Vec<String>,
    regexes: Vec<Regex>,
    /// (text as written, parsed) for each record of a section.
    answer: Vec<(String, Template)>,
    additional: Vec<(String, Template)>,
    authority: Vec<(String, Template)>,
    rcode: Rcode,
    ederror: Option<EdnsOption>,
    fallthrough: Option<Vec<String>>,
    upstream: bool,
    matched: CounterVec,
    template_failures: CounterVec,
    rr_failures: CounterVec,
}

const FAILURE_LABELS: &[&str] = &["server", "zone", "view", "class", "type", "section", "template"];

/// The longest of `zones` that `name` is in.
fn matched_zone<'z>(zones: &'z [String], name: &str) -> Option<&'z str> {
    zones
        .iter()
        .filter(|z| z.as_str() == "." || name == z.as_str() || name.ends_with(&format!(".{z}")))
        .max_by_key(|z| z.len())
        .map(String::as_str)
}

impl TemplatePlugin {
    fn falls_through(&self, name: &str) -> bool {
        match &self.fallthrough {
            None => false,
            Some(zs) if zs.is_empty() => true,
            Some(zs) => matched_zone(zs, name).is_some(),
        }
    }

    /// Renders one section; the error is for the client (SERVFAIL) and the log.
    fn render(&self, req: &Request, section: &'static str, list: &[(String, Template)], d: &Data) -> Result<Vec<Rr>, ServeError> {
        let mut out = Vec::with_capacity(list.len());
        for (text, t) in list {
            let labels = |c: &CounterVec| c.inc(&[&req.server, d.zone, &req.view, d.class, d.qtype, section, text]);
            let rendered = t.render(d).map_err(|e| {
                labels(&self.template_failures);
                ServeError::servfail("template", format!("{section} template {text:?}: {e}"))
            })?;
            let rr = parse_rr(&rendered, DEFAULT_TTL).map_err(|e| {
                labels(&self.rr_failures);
                ServeError::servfail("template", format!("{section} record {rendered:?}: {e}"))
            })?;
            out.push(rr);
        }
        Ok(out)
    }
}

/// The name as CoreDNS's `{{ .Name }}` (Go's miekg/dns) writes it: besides the space, dot and
/// backslash that every presentation escapes, `(`, `)`, `;`, `"`, `@` and `'` get a backslash,
/// so that record text made from a query name reads back as that name.
fn zone_escaped(name: String) -> String {
    if !name.contains(['(', ')', ';', '"', '@', '\'']) {
        return name;
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if matches!(c, '(' | ')' | ';' | '"' | '@' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The query as Go's `dns.Msg.String()` begins, for `{{ .Message }}`.
fn message_text(req: &Request) -> String {
    let h = &req.header;
    let mut flags = Vec::new();
    for (on, f) in [(h.rd(), "rd"), (h.cd(), "cd"), (h.ad(), "ad")] {
        if on {
            flags.push(f);
        }
    }
    format!(
        ";; opcode: {}, status: NOERROR, id: {}\n;; flags: {}; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: {}\n\n;; QUESTION SECTION:\n{}\n",
        h.opcode(),
        h.id(),
        flags.join(" "),
        u8::from(req.edns.is_some()),
        question_text(req)
    )
}

/// The question as Go's `dns.Question.String()` writes it, for `{{ .Question }}`.
fn question_text(req: &Request) -> String {
    format!(";{}\t{}\t {}", req.qname.fmt_with_dot(), req.qclass, req.qtype)
}

impl Plugin for TemplatePlugin {
    fn name(&self) -> &'static str {
        "template"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let name = zone_escaped(req.name_lower());
        let Some(zone) = matched_zone(&self.zones, &name) else { return next.serve(req) };
        // ANY on either side matches every class or type.
        if self.class != Class::ANY && req.qclass != Class::ANY && req.qclass != self.class {
            return next.serve(req);
        }
        if self.qtype != Rtype::ANY && req.qtype != Rtype::ANY && req.qtype != self.qtype {
            return next.serve(req);
        }
        let Some((re, caps)) = self.regexes.iter().find_map(|re| re.captures(&name).map(|c| (re, c))) else {
            if self.falls_through(&name) {
                return next.serve(req);
            }
            return Box::pin(std::future::ready(Ok(Reply::error(req, Rcode::NXDOMAIN))));
        };
        let class = if req.qclass == Class::ANY { self.class } else { req.qclass }.to_string();
        let qtype = if req.qtype == Rtype::ANY { self.qtype } else { req.qtype }.to_string();
        self.matched.inc(&[&req.server, zone, &req.view, &class, &qtype]);
        if self.rcode == Rcode::SERVFAIL {
            return Box::pin(std::future::ready(Ok(Reply::error(req, Rcode::SERVFAIL))));
        }
        let matches: Vec<Option<&str>> = caps.iter().map(|m| m.map(|m| m.as_str())).collect();
        let mut groups: Vec<(String, String)> =
            matches.iter().enumerate().map(|(i, m)| (i.to_string(), m.unwrap_or("").to_string())).collect();
        for (i, n) in re.capture_names().enumerate() {
            if let Some(n) = n {
                let v = matches.get(i).copied().flatten().unwrap_or("").to_string();
                match groups.iter_mut().find(|(k, _)| k == n) {
                    Some(g) => g.1 = v,
                    None => groups.push((n.to_string(), v)),
                }
            }
        }
        let remote = req.client.ip().to_string();
        let message = || message_text(req);
        let question = || question_text(req);
        let meta = |label: &str| req.metadata.get(label).map(str::to_string);
        let d = Data {
            zone,
            name: &name,
            class: &class,
            qtype: &qtype,
            regex: re.as_str(),
            matches: &matches,
            groups: &groups,
            remote: &remote,
            message: &message,
            question: &question,
            meta: &meta,
        };
        let sections = (|| {
            Ok::<_, ServeError>((
                self.render(req, "answer", &self.answer, &d)?,
                self.render(req, "additional", &self.additional, &d)?,
                self.render(req, "authority", &self.authority, &d)?,
            ))
        })();
        let (answer, additional, authority) = match sections {
            Ok(s) => s,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let mut reply = Reply::for_request(req);
        reply.header.set_aa(true);
        reply.rcode = self.rcode.into();
        reply.additional = additional;
        reply.authority = authority;
        if let Some(o) = &self.ederror {
            reply.edns = Some(Edns { udp_size: crate::message::ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: false, options: vec![o.clone()] });
        }
        let lookups = self.upstream && matches!(req.qtype, Rtype::A | Rtype::AAAA);
        if !lookups || !answer.iter().any(|r| r.rtype() == Rtype::CNAME) {
            reply.answer = answer;
            return Box::pin(std::future::ready(Ok(reply)));
        }
        Box::pin(async move {
            for rr in answer {
                let target = match rr.data() {
                    ZoneRecordData::Cname(c) => Some(c.cname().clone()),
                    _ => None,
                };
                reply.answer.push(rr);
                if let Some(target) = target {
                    let mut sub = req.clone();
                    sub.qname = target;
                    if let Ok(up) = next.serve(&mut sub).await {
                        reply.answer.extend(up.answer);
                    }
                }
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
