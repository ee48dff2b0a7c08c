//! cookie: ferrite's own setup-only plugin for DNS cookies (RFC 7873, RFC 9018 server cookies).
//! Every server block answers a client cookie with a server cookie; this plugin sets the block's
//! secret (shared by the servers of an anycast set) and can require a valid server cookie over
//! UDP. The checks run when a query is routed, before any plugin of the chain (src/cookie.rs).

use crate::cookie::{Cookies, Secret};
use crate::plugin::prelude::*;

/// `cookie { secret HEX; require }`; both optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// 32 hex digits; none means the per-process random secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require: bool,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    let mut c = Config::default();
    for line in d.lines() {
        let key = line.key();
        let dup = match key.as_str() {
            "secret" => {
                let arg = &line.nargs(1, 1)?[0];
                Secret::from_hex(arg.as_str()).map_err(|m| arg.err(m))?;
                c.secret.replace(arg.text.clone()).is_some()
            }
            "require" => {
                line.nargs(0, 0)?;
                std::mem::replace(&mut c.require, true)
            }
            _ => return Err(line.unknown()),
        };
        if dup {
            return Err(key.err(format!("{:?} is given twice", key.as_str())));
        }
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    // Checked again here for configurations written in RON.
    let secret = match &c.secret {
        Some(s) => Secret::from_hex(s).map_err(SetupError::new)?,
        None => crate::cookie::process_secret().clone(),
    };
    ctx.server.cookies = Some(Cookies { secret, require: c.require });
    Ok(())
}

#[cfg(test)]
mod tests;
