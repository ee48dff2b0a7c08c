//! bufsize: caps the EDNS UDP payload size of queries before the rest of the chain sees them, as
//! CoreDNS's bufsize does. The lowered size is what the server truncates the reply to and what a
//! forwarder advertises upstream, which keeps replies below the path MTU and so unfragmented
//! (DNS flag day 2020).

use crate::plugin::prelude::*;

/// The default size, from DNS flag day 2020: fits an IPv6 packet on a 1280-byte MTU path.
pub const DEFAULT_SIZE: u16 = 1232;

/// `bufsize [SIZE]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_size")]
    pub size: u16,
}

fn default_size() -> u16 {
    DEFAULT_SIZE
}

/// RFC 6891 §6.2.5: below 512 means 512; CoreDNS also refuses sizes above 4096.
const VALID: std::ops::RangeInclusive<u16> = 512..=4096;

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    d.max_args(1)?;
    let Some(t) = d.args.first() else { return Ok(Config { size: DEFAULT_SIZE }) };
    let size = t.text.parse::<u16>().ok().filter(|s| VALID.contains(s));
    let size = size.ok_or_else(|| t.err(format!("expected a size from 512 to 4096, got {:?}", t.text)))?;
    Ok(Config { size })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    if !VALID.contains(&c.size) {
        return Err(SetupError::new(format!("size {} is outside 512 to 4096", c.size)));
    }
    ctx.add_handler(Arc::new(Bufsize { size: c.size }));
    Ok(())
}

pub struct Bufsize {
    size: u16,
}

impl Plugin for Bufsize {
    fn name(&self) -> &'static str {
        "bufsize"
    }

    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if let Some(e) = req.edns.as_mut() {
            // Only ever lowered: a client that offers less gets no more than it offered.
            e.udp_size = e.udp_size.min(self.size);
        }
        next.serve(req)
    }
}

#[cfg(test)]
mod tests;
