//! chaos: answers TXT queries in the CHAOS class for the server's version (`version.bind`,
//! `version.server`), its authors (`authors.bind`) and its host name (`hostname.bind`,
//! `id.server`), as CoreDNS's chaos does. Every other query, including other CH names, goes to
//! the next plugin. The answers are built once at setup.

use crate::plugin::prelude::*;
use domain::rdata::Txt;

/// `chaos [VERSION] [AUTHORS...]`. Empty means the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    let mut args = d.args.iter().map(|t| t.text.clone());
    Ok(Config { version: args.next(), authors: args.collect() })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let version = c.version.clone().unwrap_or_else(|| crate::VERSION.to_string());
    // As CoreDNS: each author once, in sorted order.
    let mut authors = if c.authors.is_empty() { default_authors() } else { c.authors.clone() };
    authors.sort();
    authors.dedup();
    let hostname = crate::plugin::hostname();
    let chaos = Chaos {
        version: txt(&version)?,
        authors: authors.iter().map(|a| txt(a)).collect::<Result<_, _>>()?,
        hostname: txt(&hostname)?,
    };
    ctx.add_handler(Arc::new(chaos));
    Ok(())
}

/// The authors `authors.bind` names when the Corefile gives none: Cargo.toml's, else one line.
fn default_authors() -> Vec<String> {
    let listed: Vec<String> =
        env!("CARGO_PKG_AUTHORS").split(':').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    if listed.is_empty() {
        vec!["ferrite maintainers".to_string()]
    } else {
        listed
    }
}

/// One TXT RDATA holding `text`; text longer than 255 octets becomes several character strings
/// (CoreDNS cuts it at 255 instead).
fn txt(text: &str) -> Result<Txt<Bytes>, SetupError> {
    Txt::build_from_slice(text.as_bytes()).map_err(|_| SetupError::new(format!("{text:?} does not fit in a TXT record")))
}

pub struct Chaos {
    version: Txt<Bytes>,
    authors: Vec<Txt<Bytes>>,
    hostname: Txt<Bytes>,
}

impl Chaos {
    /// The TXT data for a CH name we know, or `None` for every other name.
    fn lookup(&self, name: &str) -> Option<&[Txt<Bytes>]> {
        match name {
            "version.bind." | "version.server." => Some(std::slice::from_ref(&self.version)),
            "authors.bind." => Some(&self.authors),
            "hostname.bind." | "id.server." => Some(std::slice::from_ref(&self.hostname)),
            _ => None,
        }
    }
}

impl Plugin for Chaos {
    fn name(&self) -> &'static str {
        "chaos"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if req.qclass != Class::CH || req.qtype != Rtype::TXT {
            return next.serve(req);
        }
        let Some(data) = self.lookup(&req.name_lower()) else {
            return next.serve(req);
        };
        // CoreDNS answers with the question's name as written, TTL 0, and without AA.
        let mut reply = Reply::for_request(req);
        reply.answer = data
            .iter()
            .map(|t| Record::new(req.qname.clone(), Class::CH, Ttl::ZERO, ZoneRecordData::Txt(t.clone())))
            .collect();
        Box::pin(std::future::ready(Ok(reply)))
    }
}

#[cfg(test)]
mod tests;
