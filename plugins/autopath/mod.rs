//! autopath: server-side search path completion, as CoreDNS's autopath does. A pod with
//! `ndots:5` asks `name.NS.svc.cluster.local.` first and walks its search list on NXDOMAIN;
//! autopath walks the same list in the server on the first query and answers with the first
//! name that exists, behind a CNAME from the name asked, saving the client the round trips.
//! The search path comes from a resolv.conf file or, with `@kubernetes`, from the kubernetes
//! plugin, which knows the namespace of the pod that asks (`pods verified`).

use std::sync::OnceLock;

use domain::rdata::Cname;

use crate::plugin::prelude::*;
use crate::plugin::{zone_text, AutoPath as Provider, CounterVec, Links};

/// CoreDNS's metric name.
pub const SUCCESS_TOTAL: &str = "coredns_autopath_success_total";

/// `autopath [ZONES...] RESOLV-CONF`: RESOLV-CONF is a file or `@PLUGIN`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zones whose names are completed; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// A resolv.conf whose search list is the path, or `@NAME` for the plugin NAME's.
    pub resolv_conf: String,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    let Some((last, zones)) = d.args.split_last() else {
        return Err(d.err("no resolv-conf specified"));
    };
    let mut c = Config { resolv_conf: last.text.clone(), ..Config::default() };
    if last.text == "@" {
        return Err(last.err("@ needs a plugin name, as in @kubernetes"));
    }
    for t in zones {
        zone_text(&t.text).map_err(|m| t.err(m))?;
        c.zones.push(t.text.clone());
    }
    Ok(c)
}

/// Where the search path comes from.
enum Source {
    /// From a resolv.conf, with the empty sentinel at the end.
    Fixed(Vec<String>),
    /// From the named plugin, once it has set up (empty when the block has none).
    Plugin(Arc<OnceLock<Arc<dyn Provider>>>),
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let zones: Vec<String> = if c.zones.is_empty() {
        ctx.zones.iter().map(|z| z.fmt_with_dot().to_string().to_ascii_lowercase()).collect()
    } else {
        c.zones.iter().map(|z| zone_text(z)).collect::<Result<_, _>>().map_err(SetupError::new)?
    };
    let source = match c.resolv_conf.strip_prefix('@') {
        Some(name) => {
            let slot = ctx.state::<Links<dyn Provider>>().slot(name);
            let (name, check) = (name.to_string(), slot.clone());
            // As CoreDNS: a block without that plugin serves without completion; say so once.
            ctx.on_startup(move |_| {
                if check.get().is_none() {
                    log::warn!(target: "plugin/autopath", "no plugin {name:?} that provides a search path in this server block: queries pass unchanged");
                }
            });
            Source::Plugin(slot)
        }
        None => {
            let path = ctx.path(&c.resolv_conf);
            let text = std::fs::read_to_string(&path).map_err(|e| SetupError::new(format!("failed to parse {}: {e}", path.display())))?;
            let mut search = crate::plugin::resolv_conf_search(&text);
            search.push(String::new());
            Source::Fixed(search)
        }
    };
    let success = CounterVec::new(SUCCESS_TOTAL, &["server"]);
    ctx.add_handler(Arc::new(AutoPath { zones, source, success }));
    Ok(())
}

pub struct AutoPath {
    zones: Vec<String>,
    source: Source,
    success: CounterVec,
}

/// `name` (lower case, trailing dot) is `zone` or below it.
fn in_zone(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || (name.len() > zone.len() && name.ends_with(zone) && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// `base` completed with one element of the search path; the empty element (and the root) is
/// the name as asked.
fn complete(base: &str, suffix: &str) -> String {
    if suffix.is_empty() || suffix == "." {
        format!("{base}.")
    } else {
        format!("{base}.{suffix}")
    }
}

/// CoreDNS's `cnamer`: a CNAME from the name asked to the owner of the first answer record
/// that is not that name, first in the answer section; and the question as asked.
fn cnamer(reply: &mut Reply, req: &Request) {
    let original = &req.qname;
    if let Some(rr) = reply.answer.iter().find(|r| r.owner() != original) {
        let cname = Record::new(original.clone(), Class::IN, rr.ttl(), ZoneRecordData::Cname(Cname::new(rr.owner().clone())));
        reply.answer.insert(0, cname);
    }
    reply.question = Reply::for_request(req).question;
}

impl Plugin for AutoPath {
    fn name(&self) -> &'static str {
        "autopath"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let lower = req.name_lower();
        if !self.zones.iter().any(|z| in_zone(&lower, z)) {
            return next.serve(req);
        }
        let search: Vec<String> = match &self.source {
            Source::Fixed(s) => s.clone(),
            Source::Plugin(slot) => match slot.get().and_then(|p| p.search_path(req)) {
                Some(s) => s,
                None => return next.serve(req),
            },
        };
        let Some(first) = search.first() else { return next.serve(req) };
        // Only a name in the first element of the path is the start of a client's walk. The
        // first element itself has no name to complete (CoreDNS answers it SERVFAIL); it passes.
        if first.is_empty() || lower == *first || !in_zone(&lower, first) {
            return next.serve(req);
        }
        let base = if first == "." { lower[..lower.len() - 1].to_string() } else { lower[..lower.len() - first.len() - 1].to_string() };
        Box::pin(async move {
            let mut first_reply: Option<Reply> = None;
            for suffix in &search {
                let Ok(qname) = complete(&base, suffix).parse::<Name<Bytes>>() else { continue };
                let mut sub = req.clone();
                sub.qname = qname;
                // An error ends the walk, as in CoreDNS: the client gets it and walks its list itself.
                let mut reply = next.serve(&mut sub).await?;
                let rcode = reply.rcode.rcode();
                // CoreDNS goes on past NXDOMAIN and past the rcodes its plugins return without
                // writing a reply (SERVFAIL, REFUSED, FORMERR, NOTIMP: `plugin.ClientWrite`).
                let go_on = matches!(rcode, Rcode::NXDOMAIN | Rcode::SERVFAIL | Rcode::REFUSED | Rcode::FORMERR | Rcode::NOTIMP);
                if go_on {
                    first_reply.get_or_insert(reply);
                    continue;
                }
                cnamer(&mut reply, req);
                self.success.inc(&[&req.server]);
                return Ok(reply);
            }
            match first_reply {
                Some(mut r) => {
                    r.question = Reply::for_request(req).question;
                    Ok(r)
                }
                None => next.serve(req).await,
            }
        })
    }
}

#[cfg(test)]
mod tests;
