//! view: lets a server block take only the queries its expressions accept, as CoreDNS's view
//! does. Blocks serving the same zone are tried in the order they are written, and the first
//! whose view accepts a query answers it; a block without a view, written last, takes the rest.
//! This is split DNS: the same name answered differently by client network, type or metadata.
//!
//! Setup only: view gives the block a filter and a name (for metrics, and the `view/name`
//! metadata label) and adds no handler. Expressions (`expr.rs`) are parsed and checked at setup.

mod expr;

use crate::plugin::prelude::*;
use expr::Expr;

/// `view NAME { expr EXPRESSION... }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    /// All must hold for the block to take a query.
    pub exprs: Vec<String>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let Some(name) = d.args.first() else {
        return Err(d.err("view needs a name, such as `view internal { expr ... }`"));
    };
    d.max_args(1)?;
    let mut c = Config { name: name.text.clone(), exprs: Vec::new() };
    for line in d.lines() {
        if line.key().as_str() != "expr" {
            return Err(line.unknown());
        }
        // The expression is the rest of the line; the Corefile splits it at spaces.
        let text = line.nargs(1, usize::MAX)?.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        Expr::parse(&text).map_err(|e| line.args()[0].err(format!("invalid expression {text:?}: {e}")))?;
        c.exprs.push(text);
    }
    if c.exprs.is_empty() {
        return Err(d.err("view needs at least one expr"));
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    if c.exprs.is_empty() {
        return Err(SetupError::new("view needs at least one expr"));
    }
    let exprs = c
        .exprs
        .iter()
        .map(|e| Expr::parse(e).map_err(|m| SetupError::new(format!("invalid expression {e:?}: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.set_view(&c.name)?;
    for e in exprs {
        ctx.add_filter(Arc::new(move |req: &Request| e.matches(req)));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
