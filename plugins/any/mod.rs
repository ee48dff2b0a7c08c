//! any: answers every query of type ANY with one small HINFO record, as RFC 8482 §4.2 describes,
//! so an ANY query can no longer pull every record of a name (and amplify a reflection attack).
//! Other queries pass to the next plugin.

use domain::base::CharStr;
use domain::rdata::Hinfo;

use crate::plugin::prelude::*;

/// any takes no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

pub fn setup(_: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    // The same text as CoreDNS's any, so tools that look for it keep working (RFC 8482 §4.2
    // leaves the contents to the implementation).
    let cpu = CharStr::from_octets(Bytes::from_static(b"ANY obsoleted")).expect("13 octets fit a character string");
    let os = CharStr::from_octets(Bytes::from_static(b"See RFC 8482")).expect("12 octets fit a character string");
    ctx.add_handler(Arc::new(Any { hinfo: Hinfo::new(cpu, os) }));
    Ok(())
}

/// TTL of the HINFO answer, as CoreDNS: long enough to be cached, a nod to the RFC number.
const TTL: u32 = 8482;

pub struct Any {
    hinfo: Hinfo<Bytes>,
}

impl Plugin for Any {
    fn name(&self) -> &'static str {
        "any"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if req.qtype != Rtype::ANY {
            return next.serve(req);
        }
        let mut reply = Reply::for_request(req);
        let data = ZoneRecordData::Hinfo(self.hinfo.clone());
        // Class IN whatever the query's class, as CoreDNS.
        reply.answer.push(Record::new(req.qname.clone(), Class::IN, Ttl::from_secs(TTL), data));
        Box::pin(std::future::ready(Ok(reply)))
    }
}

#[cfg(test)]
mod tests;
