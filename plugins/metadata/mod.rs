//! metadata: turns on metadata collection for queries in its zones, as CoreDNS's metadata does:
//! labels that plugins set on a query (`plugin/label`) are kept for others to read (log's
//! `{/label}`, template's `.Meta`, rewrite's EDNS0 data, view's `metadata()`). Without this
//! plugin, labels are not collected.
//!
//! `map` sets labels of its own from a field of the query (`{{ .IP }}`, `{{ .Type }}`, ...):
//! each input value has its label values, and a `default` gives values, or an rcode to answer
//! with, when no input matches. Labels are collected when the query is routed to the block,
//! before views are chosen, so view expressions can read them.

use std::net::IpAddr;
use std::str::FromStr;

use crate::plugin::prelude::*;
use crate::plugin::zone_text as zone;

/// `metadata [ZONES...] { map SOURCE LABELS... { INPUT VALUES...; default RCODE|VALUES... } }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Zones to collect metadata for; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<Map>,
}

/// One `map`: the source's value picks the values of the labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Map {
    /// A template of the query's fields, such as `{{ .IP }}`.
    pub source: String,
    /// Labels set, each as `metadata/LABEL`.
    pub labels: Vec<String>,
    /// (input, one value per label).
    #[serde(default)]
    pub entries: Vec<(String, Vec<String>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<MapDefault>,
}

/// What happens when no input matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapDefault {
    /// These values for the labels.
    Values(Vec<String>),
    /// The query is answered with this rcode (`SERVFAIL`, ...).
    Rcode(String),
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        c.zones.push(zone(&t.text).map_err(|m| t.err(m))?);
    }
    for line in d.lines() {
        if line.key().as_str() != "map" {
            return Err(line.unknown());
        }
        let args = line.args();
        if args.len() < 2 {
            return Err(line.err("map needs a source and at least one label, such as `map {{ .IP }} vrf { ... }`"));
        }
        Source::parse(&args[0].text).map_err(|m| args[0].err(m))?;
        let labels: Vec<String> = args[1..].iter().map(|t| t.text.clone()).collect();
        let mut m = Map { source: args[0].text.clone(), labels, entries: Vec::new(), default: None };
        let Some(block) = &line.block else {
            return Err(line.err("map needs a block of INPUT VALUES... lines"));
        };
        for entry in block {
            entry.no_block()?;
            let values: Vec<String> = entry.args().iter().map(|t| t.text.clone()).collect();
            if entry.key().as_str() == "default" {
                if m.default.is_some() {
                    return Err(entry.err("default is given twice"));
                }
                m.default = Some(match values.as_slice() {
                    [one] if rcode(one).is_some() => MapDefault::Rcode(one.clone()),
                    _ => {
                        count(&m.labels, &values).map_err(|e| entry.err(e))?;
                        MapDefault::Values(values)
                    }
                });
            } else {
                count(&m.labels, &values).map_err(|e| entry.err(e))?;
                m.entries.push((entry.key().text.clone(), values));
            }
        }
        c.maps.push(m);
    }
    Ok(c)
}

fn count(labels: &[String], values: &[String]) -> Result<(), String> {
    if labels.len() == values.len() {
        Ok(())
    } else {
        Err(format!("{} value(s) for {} label(s): give one value per label", values.len(), labels.len()))
    }
}


fn rcode(s: &str) -> Option<Rcode> {
    Rcode::from_str(&s.to_ascii_uppercase()).ok()
}

/// The request fields a `map` source may use, as CoreDNS's `request.Request` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Ip,
    Port,
    Name,
    QName,
    Type,
    Class,
    Proto,
    Family,
    Do,
    Size,
}

/// A parsed source: literal text and fields.
#[derive(Debug, Clone)]
struct Source(Vec<Result<String, Field>>);

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Ok(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
            let field = match after[..close].trim() {
                ".IP" => Field::Ip,
                ".Port" => Field::Port,
                ".Name" => Field::Name,
                ".QName" => Field::QName,
                ".Type" => Field::Type,
                ".Class" => Field::Class,
                ".Proto" => Field::Proto,
                ".Family" => Field::Family,
                ".Do" => Field::Do,
                ".Size" => Field::Size,
                other => {
                    return Err(format!(
                        "unsupported field {other:?}: expected .IP, .Port, .Name, .QName, .Type, .Class, .Proto, .Family, .Do or .Size"
                    ))
                }
            };
            parts.push(Err(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Ok(rest.to_string()));
        }
        Ok(Source(parts))
    }

    fn render(&self, req: &Request) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Ok(text) => out.push_str(text),
                Err(f) => out.push_str(&match f {
                    Field::Ip => req.client.ip().to_string(),
                    Field::Port => req.client.port().to_string(),
                    Field::Name => req.name_lower(),
                    Field::QName => req.qname.fmt_with_dot().to_string(),
                    Field::Type => req.qtype.to_string(),
                    Field::Class => req.qclass.to_string(),
                    Field::Proto => req.proto.as_str().to_string(),
                    Field::Family => (if matches!(req.client.ip(), IpAddr::V4(_)) { "1" } else { "2" }).to_string(),
                    Field::Do => req.dnssec_ok().to_string(),
                    Field::Size => req.size.to_string(),
                }),
            }
        }
        out
    }
}

struct CompiledMap {
    source: Source,
    labels: Vec<String>,
    entries: Vec<(String, Vec<String>)>,
    default_values: Option<Vec<String>>,
    default_rcode: Option<Rcode>,
}

impl CompiledMap {
    /// The values for this query's source, if an input or a default gives them.
    fn values(&self, req: &Request) -> Option<&[String]> {
        let key = self.source.render(req);
        self.entries.iter().find(|(input, _)| *input == key).map(|(_, v)| v.as_slice()).or(self.default_values.as_deref())
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = SetupError::new;
    let zones: Vec<Name<Bytes>> = ctx.zones_or(&c.zones)?;
    let mut maps = Vec::new();
    for m in &c.maps {
        let mut cm = CompiledMap {
            source: Source::parse(&m.source).map_err(err)?,
            labels: m.labels.iter().map(|l| format!("metadata/{l}")).collect(),
            entries: m.entries.clone(),
            default_values: None,
            default_rcode: None,
        };
        for (_, v) in &m.entries {
            count(&m.labels, v).map_err(err)?;
        }
        match &m.default {
            Some(MapDefault::Values(v)) => {
                count(&m.labels, v).map_err(err)?;
                cm.default_values = Some(v.clone());
            }
            Some(MapDefault::Rcode(r)) => cm.default_rcode = Some(rcode(r).ok_or_else(|| err(format!("unknown rcode {r:?}")))?),
            None => {}
        }
        maps.push(cm);
    }
    let collector = Arc::new(Collector { zones: zones.clone(), maps });
    let c2 = collector.clone();
    ctx.add_collector(Arc::new(move |req: &mut Request| c2.collect(req)));
    // A default rcode answers the query, which a collector cannot: a handler does that.
    if collector.maps.iter().any(|m| m.default_rcode.is_some()) {
        ctx.add_handler(Arc::new(MetadataPlugin(collector)));
    }
    Ok(())
}

struct Collector {
    zones: Vec<Name<Bytes>>,
    maps: Vec<CompiledMap>,
}

impl Collector {
    fn in_zones(&self, req: &Request) -> bool {
        self.zones.iter().any(|z| req.qname.ends_with(z))
    }

    fn collect(&self, req: &mut Request) {
        if !self.in_zones(req) {
            return;
        }
        req.metadata.enable();
        for m in &self.maps {
            if let Some(values) = m.values(req) {
                let values = values.to_vec();
                for (l, v) in m.labels.iter().zip(values) {
                    req.metadata.set(l.clone(), v);
                }
            }
        }
    }
}

/// Answers with a map's default rcode when none of its inputs matches.
pub struct MetadataPlugin(Arc<Collector>);

impl Plugin for MetadataPlugin {
    fn name(&self) -> &'static str {
        "metadata"
    }

    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if self.0.in_zones(req) {
            for m in &self.0.maps {
                if let Some(rc) = m.default_rcode {
                    if m.values(req).is_none() {
                        return Box::pin(std::future::ready(Ok(Reply::error(req, rc))));
                    }
                }
            }
        }
        next.serve(req)
    }
}

#[cfg(test)]
mod tests;
