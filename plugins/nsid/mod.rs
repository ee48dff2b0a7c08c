//! nsid: identifies this server in replies (RFC 5001). When a query's OPT record carries an
//! empty NSID option, the reply's OPT record gets an NSID option with the configured data (by
//! default the host name), as CoreDNS's nsid does. Useful behind anycast to see which instance
//! answered.

use crate::message::opt_code::NSID;
use crate::message::{Edns, EdnsOption, ADVERTISED_UDP_SIZE};
use crate::plugin::prelude::*;

/// `nsid [DATA]`: the words of DATA joined with one space; none means the host name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    let words: Vec<&str> = d.args.iter().map(Token::as_str).collect();
    Ok(Config { data: (!words.is_empty()).then(|| words.join(" ")) })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let data = c.data.clone().unwrap_or_else(crate::plugin::hostname);
    // The option length is a 16-bit field; keep room for the rest of the OPT record.
    if data.len() > usize::from(u16::MAX) - 64 {
        return Err(SetupError::new(format!("nsid data is {} bytes, too long for an EDNS option", data.len())));
    }
    ctx.add_handler(Arc::new(Nsid { option: EdnsOption { code: NSID, data: Bytes::from(data) } }));
    Ok(())
}

pub struct Nsid {
    option: EdnsOption,
}

impl Plugin for Nsid {
    fn name(&self) -> &'static str {
        "nsid"
    }

    /// Adds an EDNS option; the records are not its business.
    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        // RFC 5001 §2.1: a server answers with NSID only when the query asked for it.
        let asked = req.edns.as_ref().is_some_and(|e| e.option(NSID).is_some());
        if !asked {
            return next.serve(req);
        }
        Box::pin(async move {
            let mut reply = next.serve(req).await?;
            // The server fills in size, version and DO of an OPT record a plugin adds.
            let edns = reply.edns.get_or_insert_with(|| Edns {
                udp_size: ADVERTISED_UDP_SIZE,
                version: 0,
                dnssec_ok: false,
                options: Vec::new(),
            });
            // One NSID option, ours, even if a plugin further down (or a second nsid) set one.
            edns.options.retain(|o| o.code != NSID);
            edns.options.push(self.option.clone());
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
