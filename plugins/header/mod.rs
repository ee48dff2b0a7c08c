//! header: sets or clears header flags of queries before the chain sees them and of replies
//! before the client does, as CoreDNS's header plugin does. Rules apply in the order written,
//! so a later rule wins over an earlier one for the same flag. The client's RD and CD bits come
//! back in the reply as it sent them unless a `response` rule changes them.

use std::str::FromStr;

use domain::base::Header;

use crate::plugin::prelude::*;

/// `header { [query|response] set|clear FLAGS... }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which message the rule changes; `response` when a Corefile line names none.
    pub selector: Selector,
    pub action: Action,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    Query,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Set,
    Clear,
}

/// The header flags a rule may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flag {
    Aa,
    Ra,
    Rd,
    Cd,
    Ad,
}

impl FromStr for Flag {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "aa" => Flag::Aa,
            "ra" => Flag::Ra,
            "rd" => Flag::Rd,
            "cd" => Flag::Cd,
            "ad" => Flag::Ad,
            _ => return Err(()),
        })
    }
}

impl Flag {
    fn apply(self, h: &mut Header, on: bool) {
        match self {
            Flag::Aa => h.set_aa(on),
            Flag::Ra => h.set_ra(on),
            Flag::Rd => h.set_rd(on),
            Flag::Cd => h.set_cd(on),
            Flag::Ad => h.set_ad(on),
        }
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    let mut c = Config::default();
    for line in d.lines() {
        line.no_block()?;
        let mut words = line.tokens.as_slice();
        let selector = match words[0].as_str().to_ascii_lowercase().as_str() {
            "query" => Some(Selector::Query),
            "response" => Some(Selector::Response),
            _ => None,
        };
        if selector.is_some() {
            words = &words[1..];
        }
        let Some((action, flags)) = words.split_first() else {
            return Err(line.err("expected set or clear after the selector"));
        };
        let action = match action.as_str().to_ascii_lowercase().as_str() {
            "set" => Action::Set,
            "clear" => Action::Clear,
            other => return Err(action.err(format!("unknown action {other:?}: expected query, response, set or clear"))),
        };
        if flags.is_empty() {
            return Err(line.err("at least one flag is expected (aa, ra, rd, cd, ad)"));
        }
        let flags = flags
            .iter()
            .map(|t| t.as_str().parse().map_err(|_| t.err(format!("unknown flag {:?}: expected aa, ra, rd, cd or ad", t.text))))
            .collect::<Result<_, _>>()?;
        c.rules.push(Rule { selector: selector.unwrap_or(Selector::Response), action, flags });
    }
    if c.rules.is_empty() {
        return Err(d.err("header needs at least one rule, such as `header { response set ra }`"));
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    if c.rules.is_empty() {
        return Err(SetupError::new("header needs at least one rule"));
    }
    let pick = |s: Selector| -> Vec<(Flag, bool)> {
        c.rules.iter().filter(|r| r.selector == s).flat_map(|r| r.flags.iter().map(move |f| (*f, r.action == Action::Set))).collect()
    };
    ctx.add_handler(Arc::new(HeaderPlugin { query: pick(Selector::Query), response: pick(Selector::Response) }));
    Ok(())
}

pub struct HeaderPlugin {
    query: Vec<(Flag, bool)>,
    response: Vec<(Flag, bool)>,
}

impl Plugin for HeaderPlugin {
    fn name(&self) -> &'static str {
        "header"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let client = req.header;
        for (f, on) in &self.query {
            f.apply(&mut req.header, *on);
        }
        Box::pin(async move {
            let result = next.serve(req).await;
            req.header = client;
            let mut reply = result?;
            if !self.query.is_empty() {
                // The client's own bits come back as it sent them (RFC 1035 §4.1.1: RD is copied
                // into the response), whatever the chain was asked.
                reply.header.set_rd(client.rd());
                reply.header.set_cd(client.cd());
            }
            for (f, on) in &self.response {
                f.apply(&mut reply.header, *on);
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
