//! reload: checks the configuration (the Corefile and every file it imports) for changes every
//! INTERVAL plus up to JITTER, and reloads it when it changed. SIGUSR1 reloads at once, with or
//! without this plugin. A new configuration is parsed and set up completely before it replaces
//! the old one; a broken one is logged with its location, counted in
//! `coredns_reload_failed_total`, and the old one keeps serving.

use std::time::Duration;

use crate::plugin::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "crate::plugin::serde_duration")]
    pub interval: Duration,
    #[serde(default = "default_jitter", with = "crate::plugin::serde_duration")]
    pub jitter: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_jitter() -> Duration {
    Duration::from_secs(15)
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(2)?;
    d.no_block()?;
    let interval = match d.args.first() {
        Some(t) => t.duration()?,
        None => default_interval(),
    };
    let jitter = match d.args.get(1) {
        Some(t) => t.duration()?,
        None if d.args.is_empty() => default_jitter(),
        // As CoreDNS: a given interval without jitter gets half the interval at most.
        None => (interval / 2).min(default_jitter()),
    };
    let c = Config { interval, jitter };
    check(&c).map_err(|m| d.err(m))?;
    Ok(c)
}

/// CoreDNS's bounds: an interval of at least 2s, a jitter of at least 1s and below half the
/// interval.
fn check(c: &Config) -> Result<(), String> {
    if c.interval < Duration::from_secs(2) {
        return Err(format!("interval value must be greater or equal to 2s, got {:?}", c.interval));
    }
    if c.jitter < Duration::from_secs(1) {
        return Err(format!("jitter value must be greater or equal to 1s, got {:?}", c.jitter));
    }
    if c.jitter > c.interval / 2 {
        return Err(format!("jitter value must be smaller than half the interval, got {:?}", c.jitter));
    }
    Ok(())
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    check(c).map_err(SetupError::new)?;
    ctx.server.reload = Some((c.interval, c.jitter));
    Ok(())
}

#[cfg(test)]
mod tests;
