//! debug: debug logging for the whole process, and one line per query of its server block with
//! the answer's rcode, the plugin that wrote it and the time it took. Unlike CoreDNS's debug,
//! panics are still caught: a panicking plugin is logged and answered with SERVFAIL either way.

use crate::plugin::prelude::*;

/// debug takes no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

pub fn setup(_: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.server.debug = true;
    Ok(())
}

#[cfg(test)]
mod tests;
