//! limits: ferrite's own setup-only plugin for the limits of a server block's listeners: how
//! many TCP connections are open at once, how many queries one connection may send, how long an
//! idle connection is kept (RFC 7766 §6.2), and how many queries may wait for an answer at once
//! before more are shed. CoreDNS has these as fixed values; here they can be tuned per listener.

use std::time::Duration;

use crate::plugin::prelude::*;

/// `limits { tcp_connections N; tcp_queries N; tcp_idle_timeout DURATION; in_flight N }`; a
/// missing property keeps the server's default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_queries: Option<usize>,
    /// A duration as the Corefile writes it: `10s`, `1m30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_idle_timeout: Option<String>,
    /// Queries waiting for an answer at once on one listener; more are answered REFUSED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    let mut c = Config::default();
    for line in d.lines() {
        let key = line.key();
        let arg = &line.nargs(1, 1)?[0];
        let dup = match key.as_str() {
            "tcp_connections" => {
                let n: usize = arg.parse("a number of connections")?;
                if n == 0 {
                    return Err(arg.err("tcp_connections must be at least 1"));
                }
                c.tcp_connections.replace(n).is_some()
            }
            "in_flight" => {
                let n: usize = arg.parse("a number of queries")?;
                if n == 0 {
                    return Err(arg.err("in_flight must be at least 1"));
                }
                c.in_flight.replace(n).is_some()
            }
            "tcp_queries" => c.tcp_queries.replace(arg.parse("a number of queries (0 is no limit)")?).is_some(),
            "tcp_idle_timeout" => {
                check_timeout(arg.duration()?).map_err(|m| arg.err(m))?;
                c.tcp_idle_timeout.replace(arg.text.clone()).is_some()
            }
            _ => return Err(line.unknown()),
        };
        if dup {
            return Err(key.err(format!("{:?} is given twice", key.as_str())));
        }
    }
    Ok(c)
}

fn check_timeout(t: Duration) -> Result<Duration, String> {
    if t.is_zero() {
        Err("tcp_idle_timeout must be longer than 0s".into())
    } else {
        Ok(t)
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    // Checked again here for configurations written in RON.
    if let Some(n) = c.tcp_connections {
        if n == 0 {
            return Err(SetupError::new("tcp_connections must be at least 1"));
        }
        ctx.server.tcp_max_connections = n;
    }
    if let Some(n) = c.in_flight {
        if n == 0 {
            return Err(SetupError::new("in_flight must be at least 1"));
        }
        ctx.server.max_in_flight = n;
    }
    if let Some(n) = c.tcp_queries {
        ctx.server.tcp_max_queries = n;
    }
    if let Some(t) = &c.tcp_idle_timeout {
        let d = crate::plugin::parse_duration(t)
            .ok_or_else(|| SetupError::new(format!("expected a duration such as 5s or 1m, got {t:?}")))?;
        ctx.server.tcp_idle_timeout = check_timeout(d).map_err(SetupError::new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
