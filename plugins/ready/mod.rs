//! ready: serves `/ready` over HTTP: 200 `OK` once every plugin of every server block that
//! reports readiness is ready, else 503 with the names of those that are not. After the first
//! success it stays ready (`monitor until-ready`, the default) unless `monitor continuously`.
//! During a shutdown it answers 503 from the first moment, so load balancers stop sending first.

use crate::plugin::listen_addr;
use crate::plugin::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `/ready` is served; default `:8181`.
    #[serde(default = "default_addr")]
    pub addr: std::net::SocketAddr,
    /// Keep checking readiness after the first success.
    #[serde(default)]
    pub continuously: bool,
}

fn default_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0u16; 8], 8181))
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(1)?;
    let addr = match d.args.first() {
        Some(t) => listen_addr(t)?,
        None => default_addr(),
    };
    let mut continuously = false;
    for line in d.lines() {
        match line.key().as_str() {
            "monitor" => {
                let a = line.nargs(1, 1)?;
                continuously = match a[0].as_str() {
                    "until-ready" => false,
                    "continuously" => true,
                    other => return Err(a[0].err(format!("expected until-ready or continuously, got {other:?}"))),
                };
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(Config { addr, continuously })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.server.ready = Some((c.addr, c.continuously));
    Ok(())
}

#[cfg(test)]
mod tests;
