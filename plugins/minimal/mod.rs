//! minimal: trims successful replies to their answer, as CoreDNS's minimal does (and BIND's
//! `minimal-responses`). After the rest of the chain answers, a reply classified NOERROR loses
//! its authority and additional sections; the OPT record is kept. Denials (NXDOMAIN, NODATA),
//! delegations, errors and transfers are left whole, since there the authority section is the
//! answer.

use domain::rdata::dnssec::Timestamp;

use crate::plugin::prelude::*;
use crate::response::{typify, ResponseType};

/// minimal takes no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

pub fn setup(_: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.add_handler(Arc::new(Minimal));
    Ok(())
}

pub struct Minimal;

impl Plugin for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(async move {
            let mut reply = next.serve(req).await?;
            if typify(&reply, req.dnssec_ok(), Timestamp::now()) == ResponseType::NoError {
                reply.authority.clear();
                reply.additional.clear();
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
