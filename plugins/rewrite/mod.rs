//! rewrite: changes a query before the rest of the chain sees it, and the reply on its way back,
//! as CoreDNS's rewrite does. Rules rewrite the question's name (exact, prefix, suffix, substring
//! or regex match), type or class, set EDNS0 options, and change the TTLs, rcode or CNAME targets
//! of the reply. The client always gets back the question it asked; with `answer auto` (implied
//! for exact name rules), `answer name` or `answer value` the records of the reply are mapped
//! back to the client's names as well.
//!
//! Every `rewrite` directive of a server block is one rule of one handler, in the order written;
//! a rule that applies and has mode `stop` (the default) ends the evaluation. Rules are compiled
//! once at setup (`handler.rs`); a query no rule applies to goes on untouched.

mod handler;

use std::str::FromStr;

use crate::plugin::prelude::*;

pub use handler::Rewrite;

/// `rewrite [continue|stop] FIELD ...`: one rule per directive. RON may list several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rules: Vec<Rule>,
}

/// What happens after a rule that applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Later rules are not evaluated (CoreDNS's default).
    #[default]
    Stop,
    /// Later rules are evaluated too, on the query as this rule left it.
    Continue,
}

/// How a rule's name pattern is compared with the question's name (lower case, trailing dot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    #[default]
    Exact,
    Prefix,
    Suffix,
    Substring,
    Regex,
}

impl FromStr for Match {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "exact" => Match::Exact,
            "prefix" => Match::Prefix,
            "suffix" => Match::Suffix,
            "substring" => Match::Substring,
            "regex" => Match::Regex,
            _ => return Err(()),
        })
    }
}

/// How the names of a reply are mapped back after a name rule applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// The name rule run backwards, on owner names and on names inside records.
    Auto,
    /// A regex on owner names, with `{N}` groups in the replacement.
    Name { from: String, to: String },
    /// A regex on names inside records (CNAME, DNAME, NS, MX, SRV, NAPTR, SOA).
    Value { from: String, to: String },
}

/// What an EDNS0 rule does with an option of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replace the option, or add it if the query has none.
    Set,
    /// Add the option only if the query has none.
    Append,
    /// Replace the option only if the query has one.
    Replace,
    /// Remove the option.
    Unset,
}

impl FromStr for Action {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "set" => Action::Set,
            "append" => Action::Append,
            "replace" => Action::Replace,
            "unset" => Action::Unset,
            _ => return Err(()),
        })
    }
}

/// The EDNS0 option an `edns0` rule writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edns0 {
    /// A local option (RFC 6891 §6.1.2): CODE and DATA, where DATA is `0x` hex, a string, or a
    /// `{variable}`.
    Local { code: u16, #[serde(default)] data: String },
    /// An empty NSID option (RFC 5001).
    Nsid,
    /// EDNS Client Subnet (RFC 7871) from the client's address, cut to these prefix lengths.
    Subnet { v4: u8, v6: u8 },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Rule {
    Name {
        #[serde(default)]
        mode: Mode,
        #[serde(default, rename = "match")]
        matching: Match,
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answer: Vec<Answer>,
    },
    Type {
        #[serde(default)]
        mode: Mode,
        from: String,
        to: String,
    },
    Class {
        #[serde(default)]
        mode: Mode,
        from: String,
        to: String,
    },
    Edns0 {
        #[serde(default)]
        mode: Mode,
        action: Action,
        option: Edns0,
    },
    Ttl {
        #[serde(default)]
        mode: Mode,
        #[serde(default, rename = "match")]
        matching: Match,
        name: String,
        /// Seconds, or a range `MIN-MAX` (either end may be left out) the TTLs are clamped to.
        ttl: String,
    },
    Cname {
        #[serde(default)]
        mode: Mode,
        #[serde(default, rename = "match")]
        matching: Match,
        from: String,
        to: String,
    },
    Rcode {
        #[serde(default)]
        mode: Mode,
        #[serde(default, rename = "match")]
        matching: Match,
        name: String,
        from: String,
        to: String,
    },
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut args: &[Token] = &d.args;
    let mut mode = Mode::Stop;
    if let Some(first) = args.first() {
        let m = first.as_str().to_ascii_lowercase();
        if m == "continue" || m == "stop" {
            mode = if m == "continue" { Mode::Continue } else { Mode::Stop };
            args = &args[1..];
        }
    }
    let mut rules = Vec::new();
    if !args.is_empty() {
        d.no_block()?;
        rules.push(parse_rule(mode, args)?);
    } else {
        // A block: one rule per line; an `answer` line belongs to the name rule above it, so
        // CoreDNS's two-line form (`name regex ...` then `answer name ...`) reads the same.
        for line in d.lines() {
            line.no_block()?;
            if line.key().as_str().eq_ignore_ascii_case("answer") {
                match rules.last_mut() {
                    Some(Rule::Name { answer, .. }) => answer.extend(parse_answers(&line.tokens)?),
                    _ => return Err(line.err("an answer rewrite must follow a name rule")),
                }
            } else {
                rules.push(parse_rule(mode, &line.tokens)?);
            }
        }
        if rules.is_empty() {
            return Err(d.err("a rewrite rule is expected, such as `rewrite name example.net example.org`"));
        }
    }
    for r in &rules {
        check(r).map_err(|m| d.err(m))?;
    }
    Ok(Config { rules })
}

/// The optional match type in front of a rule's arguments, when there are `n` of them without it.
fn match_type<'t>(field: &Token, rest: &'t [Token], n: usize) -> Result<(Match, &'t [Token]), SetupError> {
    if rest.len() > n {
        let m = rest[0]
            .as_str()
            .parse()
            .map_err(|_| rest[0].err(format!("unknown match type {:?}: expected exact, prefix, suffix, substring or regex", rest[0].text)))?;
        return Ok((m, &rest[1..]));
    }
    if rest.len() < n {
        return Err(field.err(format!("a {} rule needs {n} arguments after the match type, got {}", field.text, rest.len())));
    }
    Ok((Match::Exact, rest))
}

fn parse_rule(mode: Mode, tokens: &[Token]) -> Result<Rule, SetupError> {
    let field = &tokens[0];
    let rest = &tokens[1..];
    let text = |t: &Token| t.text.clone();
    let need = |n: usize| -> Result<(), SetupError> {
        if rest.len() == n {
            Ok(())
        } else {
            Err(field.err(format!("a {} rule takes {n} arguments, got {}", field.text, rest.len())))
        }
    };
    Ok(match field.as_str().to_ascii_lowercase().as_str() {
        "name" => {
            // `name FROM TO`, or `name MATCH FROM TO [answer ...]`.
            let (matching, rest) = if rest.len() == 2 {
                (Match::Exact, rest)
            } else if rest.len() >= 3 {
                let m = rest[0].as_str().parse().map_err(|_| {
                    rest[0].err(format!("unknown match type {:?}: expected exact, prefix, suffix, substring or regex", rest[0].text))
                })?;
                (m, &rest[1..])
            } else {
                return Err(field.err(format!("a name rule needs FROM and TO, got {} argument(s)", rest.len())));
            };
            let answer = if rest.len() > 2 { parse_answers(&rest[2..])? } else { Vec::new() };
            Rule::Name { mode, matching, from: text(&rest[0]), to: text(&rest[1]), answer }
        }
        "type" => {
            need(2)?;
            for t in rest {
                rtype(&t.text).ok_or_else(|| t.err(format!("invalid record type {:?}", t.text)))?;
            }
            Rule::Type { mode, from: text(&rest[0]), to: text(&rest[1]) }
        }
        "class" => {
            need(2)?;
            for t in rest {
                class(&t.text).ok_or_else(|| t.err(format!("invalid class {:?}: expected IN, CH, HS or a number", t.text)))?;
            }
            Rule::Class { mode, from: text(&rest[0]), to: text(&rest[1]) }
        }
        "edns0" => parse_edns0(mode, field, rest)?,
        "ttl" => {
            let (matching, rest) = match_type(field, rest, 2)?;
            if rest.len() != 2 {
                return Err(field.err("a ttl rule takes [MATCH] NAME TTL"));
            }
            ttl_range(&rest[1].text).ok_or_else(|| rest[1].err(format!("invalid TTL {:?}: expected seconds or MIN-MAX", rest[1].text)))?;
            Rule::Ttl { mode, matching, name: text(&rest[0]), ttl: text(&rest[1]) }
        }
        "cname" => {
            let (matching, rest) = match_type(field, rest, 2)?;
            if rest.len() != 2 {
                return Err(field.err("a cname rule takes [MATCH] FROM TO"));
            }
            Rule::Cname { mode, matching, from: text(&rest[0]), to: text(&rest[1]) }
        }
        "rcode" => {
            let (matching, rest) = match_type(field, rest, 3)?;
            if rest.len() != 3 {
                return Err(field.err("an rcode rule takes [MATCH] NAME FROM TO"));
            }
            for t in &rest[1..] {
                rcode(&t.text).ok_or_else(|| t.err(format!("invalid rcode {:?}", t.text)))?;
            }
            Rule::Rcode { mode, matching, name: text(&rest[0]), from: text(&rest[1]), to: text(&rest[2]) }
        }
        "answer" => return Err(field.err("response rewrites must begin with a name rule")),
        other => {
            return Err(field.err(format!(
                "invalid rule type {other:?}: expected name, type, class, edns0, ttl, cname or rcode"
            )))
        }
    })
}

/// `answer auto | answer name FROM TO | answer value FROM TO`, repeated; after the first, the
/// word `answer` may be left out.
fn parse_answers(tokens: &[Token]) -> Result<Vec<Answer>, SetupError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].as_str().eq_ignore_ascii_case("answer") {
            i += 1;
        } else if out.is_empty() {
            return Err(tokens[i].err(format!("unexpected {:?}: expected answer", tokens[i].text)));
        }
        let Some(kind) = tokens.get(i) else {
            return Err(tokens[i - 1].err("answer needs auto, name FROM TO or value FROM TO"));
        };
        match kind.as_str().to_ascii_lowercase().as_str() {
            "auto" => {
                out.push(Answer::Auto);
                i += 1;
            }
            k @ ("name" | "value") => {
                let (Some(from), Some(to)) = (tokens.get(i + 1), tokens.get(i + 2)) else {
                    return Err(kind.err(format!("answer {k} needs FROM and TO")));
                };
                regex::Regex::new(&from.text).map_err(|e| from.err(format!("invalid regex {:?}: {e}", from.text)))?;
                let (from, to) = (from.text.clone(), to.text.clone());
                out.push(if k == "name" { Answer::Name { from, to } } else { Answer::Value { from, to } });
                i += 3;
            }
            other => return Err(kind.err(format!("unknown answer rewrite {other:?}: expected auto, name or value"))),
        }
    }
    Ok(out)
}

fn parse_edns0(mode: Mode, field: &Token, rest: &[Token]) -> Result<Rule, SetupError> {
    let (Some(kind), Some(action)) = (rest.first(), rest.get(1)) else {
        return Err(field.err("an edns0 rule takes local|nsid|subnet and set|append|replace|unset"));
    };
    let act: Action = action
        .as_str()
        .parse()
        .map_err(|_| action.err(format!("unknown action {:?}: expected set, append, replace or unset", action.text)))?;
    let args = &rest[2..];
    let count = |n: usize| -> Result<(), SetupError> {
        match args.len() == n {
            true => Ok(()),
            false => Err(kind.err(format!("edns0 {} {} takes {n} more argument(s), got {}", kind.text, action.text, args.len()))),
        }
    };
    let option = match kind.as_str().to_ascii_lowercase().as_str() {
        "local" => {
            count(if act == Action::Unset { 1 } else { 2 })?;
            let code = option_code(&args[0].text).ok_or_else(|| args[0].err(format!("invalid option code {:?}", args[0].text)))?;
            let data = args.get(1).map(|t| t.text.clone()).unwrap_or_default();
            handler::LocalData::parse(&data).map_err(|m| args[1].err(m))?;
            Edns0::Local { code, data }
        }
        "nsid" => {
            count(0)?;
            Edns0::Nsid
        }
        "subnet" => {
            count(if act == Action::Unset { 0 } else { 2 })?;
            let (v4, v6) = match args {
                [v4, v6] => (
                    v4.parse::<u8>("an IPv4 prefix length").and_then(|n| if n <= 32 { Ok(n) } else { Err(v4.err("an IPv4 prefix length is at most 32")) })?,
                    v6.parse::<u8>("an IPv6 prefix length").and_then(|n| if n <= 128 { Ok(n) } else { Err(v6.err("an IPv6 prefix length is at most 128")) })?,
                ),
                _ => (0, 0),
            };
            Edns0::Subnet { v4, v6 }
        }
        other => return Err(kind.err(format!("unsupported EDNS0 option {other:?}: expected local, nsid or subnet"))),
    };
    Ok(Rule::Edns0 { mode, action: act, option })
}

/// `0xffee` or a decimal number.
fn option_code(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A record type by mnemonic (`AAAA`), `TYPEnnn` or number.
pub fn rtype(s: &str) -> Option<Rtype> {
    if let Ok(t) = Rtype::from_str(s) {
        return Some(t);
    }
    let n = s.strip_prefix("TYPE").or_else(|| s.strip_prefix("type")).unwrap_or(s);
    n.parse::<u16>().ok().map(Rtype::from_int)
}

/// A class by mnemonic (`IN`, `CH`, `HS`), `CLASSnnn` or number.
pub fn class(s: &str) -> Option<Class> {
    if let Ok(c) = Class::from_str(s) {
        return Some(c);
    }
    let n = s.strip_prefix("CLASS").or_else(|| s.strip_prefix("class")).unwrap_or(s);
    n.parse::<u16>().ok().map(Class::from_int)
}

/// An rcode by mnemonic (`SERVFAIL`) or number (0 to 23, as CoreDNS takes).
pub fn rcode(s: &str) -> Option<OptRcode> {
    if let Ok(n) = s.parse::<u16>() {
        // NOTE: not OptRcode::checked_from_int, which in domain 0.12 rejects every value but 0.
        return (n <= 23).then(|| OptRcode::masked_from_int(n));
    }
    OptRcode::from_str(&s.to_ascii_uppercase()).ok()
}

/// `N`, `MIN-MAX`, `MIN-` or `-MAX`: the bounds TTLs are clamped to.
pub fn ttl_range(s: &str) -> Option<(u32, u32)> {
    // RFC 2181 §8: a TTL is at most 2^31 - 1.
    let num = |t: &str| t.parse::<u32>().ok().filter(|&n| n <= i32::MAX as u32);
    match s.split_once('-') {
        None => num(s).map(|n| (n, n)),
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { num(lo)? };
            let hi = if hi.is_empty() { i32::MAX as u32 } else { num(hi)? };
            (lo <= hi && !s.trim_matches('-').is_empty()).then_some((lo, hi))
        }
    }
}

/// Checks what the Corefile parser cannot see token by token (also for RON).
fn check(r: &Rule) -> Result<(), String> {
    handler::compile(r).map(|_| ())
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let compiled: Vec<handler::Compiled> = c.rules.iter().map(handler::compile).collect::<Result<_, _>>().map_err(SetupError::new)?;
    // Every rewrite directive of the block is a rule of one handler, so `stop` ends them all.
    let rules = ctx.state::<Vec<handler::Compiled>>();
    rules.extend(compiled);
    let rules = rules.clone();
    ctx.replace_handler(Arc::new(Rewrite::new(rules)));
    Ok(())
}

#[cfg(test)]
mod tests;
