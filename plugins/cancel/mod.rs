//! cancel: gives up on a query the rest of the chain has not answered within a time limit, as
//! CoreDNS's cancel does by canceling the query's context. Here the rest of the chain's future is
//! dropped at the deadline (plugins must be cancel-safe at every `.await`, see the plugin
//! contract) and the client gets SERVFAIL.

use std::time::Duration;

use crate::plugin::parse_duration;
use crate::plugin::prelude::*;

/// CoreDNS's default: just over five seconds, so a plugin's own five-second timeout fires first.
pub const DEFAULT_TIMEOUT: &str = "5001ms";

/// `cancel [TIMEOUT]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    d.max_args(1)?;
    let timeout = d.args.first().map(|t| check(&t.text).map(|_| t.text.clone()).map_err(|m| t.err(m))).transpose()?;
    Ok(Config { timeout })
}

fn check(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err("the timeout must be longer than 0s".into()),
        None => Err(format!("expected a duration such as 5s or 100ms, got {s:?}")),
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let timeout = check(c.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT)).map_err(SetupError::new)?;
    ctx.add_handler(Arc::new(Cancel { timeout }));
    Ok(())
}

pub struct Cancel {
    timeout: Duration,
}

impl Plugin for Cancel {
    fn name(&self) -> &'static str {
        "cancel"
    }

    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, next.serve(req)).await {
                Ok(result) => result,
                Err(_) => Err(ServeError::servfail("cancel", format!("no answer within {:?}, canceled", self.timeout))),
            }
        })
    }
}

#[cfg(test)]
mod tests;
