//! health: serves `/health` over HTTP (200 `OK` while the process runs), and sets the lameduck
//! period of a shutdown: on SIGTERM `/ready` fails at once, DNS goes on answering for the
//! lameduck period, then the listeners close and queries in flight finish.

use std::time::Duration;

use crate::plugin::listen_addr;
use crate::plugin::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `/health` is served; default `:8080`.
    #[serde(default = "default_addr")]
    pub addr: std::net::SocketAddr,
    /// How long to keep answering after SIGTERM, e.g. "5s".
    #[serde(default, with = "crate::plugin::serde_duration")]
    pub lameduck: Duration,
}

fn default_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0u16; 8], 8080))
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(1)?;
    let addr = match d.args.first() {
        Some(t) => listen_addr(t)?,
        None => default_addr(),
    };
    let mut lameduck = Duration::ZERO;
    for line in d.lines() {
        match line.key().as_str() {
            "lameduck" => lameduck = line.nargs(1, 1)?[0].duration()?,
            _ => return Err(line.unknown()),
        }
    }
    Ok(Config { addr, lameduck })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.server.health = Some((c.addr, c.lameduck));
    Ok(())
}

#[cfg(test)]
mod tests;
