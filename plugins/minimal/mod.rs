//! minimal: trims successful replies to their answer, as CoreDNS's minimal does (and BIND's
//! `minimal-responses`). After the rest of the chain answers, a reply classified NOERROR loses
//! its authority and additional sections; the OPT record is kept. Denials (NXDOMAIN, NODATA),
//! delegations, errors and transfers are left whole, since there the authority section is the
//! answer.

use std::time::{SystemTime, UNIX_EPOCH};

use domain::base::iana::Opcode;

use crate::plugin::prelude::*;

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
            if is_success(&reply, req.dnssec_ok(), unix_now()) {
                reply.authority.clear();
                reply.additional.clear();
            }
            Ok(reply)
        })
    }
}

/// True for what CoreDNS's response classifier calls NOERROR: a NOERROR reply that is not a
/// NODATA (SOA in authority), not a delegation (NS in authority), not an update, notify or zone
/// transfer, and, for a DO query, carries no signature outside its validity period.
fn is_success(reply: &Reply, dnssec_ok: bool, now: u32) -> bool {
    if reply.rcode != OptRcode::NOERROR {
        return false;
    }
    if matches!(reply.header.opcode(), Opcode::UPDATE | Opcode::NOTIFY) {
        return false;
    }
    if reply.question.as_ref().is_some_and(|q| matches!(q.qtype(), Rtype::AXFR | Rtype::IXFR)) {
        return false;
    }
    if dnssec_ok && has_expired_signature(reply, now) {
        return false;
    }
    if !reply.answer.is_empty() {
        return true;
    }
    !reply.authority.iter().any(|r| matches!(r.rtype(), Rtype::SOA | Rtype::NS))
}

/// True when an RRSIG in any section is not valid at `now` (RFC 4034 §3.1.5: the times are
/// serial numbers, compared with RFC 1982 arithmetic).
fn has_expired_signature(reply: &Reply, now: u32) -> bool {
    let not_after = |a: u32, b: u32| b.wrapping_sub(a) as i32 >= 0; // a <= b in serial arithmetic
    reply.answer.iter().chain(&reply.authority).chain(&reply.additional).any(|r| match r.data() {
        ZoneRecordData::Rrsig(sig) => {
            !(not_after(sig.inception().into_int(), now) && not_after(now, sig.expiration().into_int()))
        }
        _ => false,
    })
}

fn unix_now() -> u32 {
    // Truncation is intended: RRSIG times are seconds modulo 2^32.
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

#[cfg(test)]
mod tests;
