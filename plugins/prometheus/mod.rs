//! prometheus: serves `/metrics` in Prometheus's text format, with CoreDNS's metric names and
//! labels, and counts the queries of its server block (`coredns_dns_*`). Blocks that name the
//! same address share one listener; `health` and `ready` may share it too.

use crate::plugin::listen_addr;
use crate::plugin::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `/metrics` is served; default `localhost:9153`.
    #[serde(default = "default_addr")]
    pub addr: std::net::SocketAddr,
}

fn default_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9153))
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(1)?;
    d.no_block()?;
    let addr = match d.args.first() {
        Some(t) => listen_addr(t)?,
        None => default_addr(),
    };
    Ok(Config { addr })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    crate::metrics::install();
    ctx.server.metrics = Some(c.addr);
    Ok(())
}

#[cfg(test)]
mod tests;
