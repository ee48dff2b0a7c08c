//! timeouts: the read, write and idle timeouts of a server block's TCP listeners, and how many
//! queries one connection may send, as CoreDNS's timeouts does. UDP has no connections and is
//! not affected. Setup only: it fills the block's `ServerOptions` and adds no handler.

use std::time::Duration;

use crate::plugin::prelude::*;
use crate::plugin::parse_duration;

/// `timeouts { read DURATION; write DURATION; idle DURATION; maxtcpqueries MAXIMUM }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    /// Queries per TCP connection; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxtcpqueries: Option<i64>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    let mut c = Config::default();
    for line in d.lines() {
        let key = line.key();
        let arg = &line.nargs(1, 1)?[0];
        let slot = match key.as_str() {
            "read" => &mut c.read,
            "write" => &mut c.write,
            "idle" => &mut c.idle,
            "maxtcpqueries" => {
                let n: i64 = arg.parse("a number of queries, or -1 for no limit")?;
                check_max(n).map_err(|m| arg.err(m))?;
                if c.maxtcpqueries.replace(n).is_some() {
                    return Err(key.err("\"maxtcpqueries\" is given twice"));
                }
                continue;
            }
            _ => return Err(line.unknown()),
        };
        check(&arg.text).map_err(|m| arg.err(m))?;
        if slot.replace(arg.text.clone()).is_some() {
            return Err(key.err(format!("{:?} is given twice", key.as_str())));
        }
    }
    if c == Config::default() {
        return Err(d.err("at least one timeout is expected; leave timeouts out to keep the defaults"));
    }
    Ok(c)
}

/// A timeout between 1 second and 24 hours, as CoreDNS takes.
fn check(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).ok_or_else(|| format!("expected a duration such as 5s or 1m, got {s:?}"))?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err(format!("timeout {s} must be between 1s and 24h"));
    }
    Ok(d)
}

fn check_max(n: i64) -> Result<(), String> {
    if n == -1 || n > 0 {
        Ok(())
    } else {
        Err(format!("maxtcpqueries must be a positive number or -1 (no limit), got {n}"))
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = SetupError::new;
    if let Some(t) = &c.read {
        ctx.server.tcp_read_timeout = check(t).map_err(err)?;
    }
    if let Some(t) = &c.write {
        ctx.server.tcp_write_timeout = check(t).map_err(err)?;
    }
    if let Some(t) = &c.idle {
        ctx.server.tcp_idle_timeout = check(t).map_err(err)?;
    }
    if let Some(n) = c.maxtcpqueries {
        check_max(n).map_err(err)?;
        // 0 is "no limit" in ServerOptions.
        ctx.server.tcp_max_queries = usize::try_from(n).unwrap_or(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
