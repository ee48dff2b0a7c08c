//! The part of Go's text/template that CoreDNS's template records use: `{{ .Name }}`,
//! `{{ .Group.a }}`, `{{ index .Match 1 }}`, `{{ index .Group "a" }}`, `{{ .Meta "label" }}`,
//! `{{ .Zone }}`, `{{ .Class }}`, `{{ .Type }}`, `{{ .Message }}`, `{{ .Question }}`,
//! `{{ .Remote }}`, `{{ .Regex }}`, comments `{{/* ... */}}` and the `{{-`/`-}}` trim markers.
//! A template is parsed once at setup; anything outside this subset is a setup error.

use std::fmt::Write as _;

/// A field of the data a template sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    Zone,
    Class,
    Type,
    Message,
    Question,
    Remote,
    Regex,
    Match,
    /// `.Group` (the whole map) or `.Group.key`.
    Group(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
    /// `index .Match N`
    MatchIndex(usize),
    /// `index .Group "key"`
    GroupIndex(String),
    /// `.Meta "label"`
    Meta(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What one query gives a template.
pub struct Data<'a> {
    pub zone: &'a str,
    pub name: &'a str,
    pub class: &'a str,
    pub qtype: &'a str,
    pub regex: &'a str,
    pub matches: &'a [Option<&'a str>],
    /// Named groups, and every group by its number, as CoreDNS fills `.Group`.
    pub groups: &'a [(String, String)],
    pub remote: &'a str,
    pub message: &'a dyn Fn() -> String,
    pub question: &'a dyn Fn() -> String,
    pub meta: &'a dyn Fn(&str) -> Option<String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut lit = &rest[..open];
            if trim_next {
                lit = lit.trim_start();
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("unclosed action in {text:?}"))?;
            let mut action = &after[..close];
            // `{{- ` trims the whitespace before the action, ` -}}` the whitespace after it.
            if let Some(a) = action.strip_prefix("- ") {
                lit = lit.trim_end();
                action = a;
            }
            trim_next = false;
            if let Some(a) = action.strip_suffix(" -") {
                trim_next = true;
                action = a;
            }
            if !lit.is_empty() {
                parts.push(Part::Text(lit.to_string()));
            }
            if let Some(p) = parse_action(action.trim())? {
                parts.push(p);
            }
            rest = &after[close + 2..];
        }
        let lit = if trim_next { rest.trim_start() } else { rest };
        if lit.contains("}}") {
            return Err(format!("unexpected \"}}}}\" in {text:?}"));
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit.to_string()));
        }
        Ok(Template { parts })
    }

    /// The template applied to `d`; an error for an index out of range, as Go's.
    pub fn render(&self, d: &Data) -> Result<String, String> {
        let mut out = String::with_capacity(64);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => write_field(&mut out, f, d),
                Part::MatchIndex(i) => match d.matches.get(*i) {
                    Some(m) => out.push_str(m.unwrap_or("")),
                    None => return Err(format!("index {i} out of range: .Match has {} entries", d.matches.len())),
                },
                // `index` of a missing map key is the zero value, the empty string.
                Part::GroupIndex(k) => out.push_str(group(d, k).unwrap_or("")),
                Part::Meta(label) => out.push_str(&(d.meta)(label).unwrap_or_default()),
            }
        }
        Ok(out)
    }
}

fn group<'a>(d: &'a Data, key: &str) -> Option<&'a str> {
    d.groups.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn write_field(out: &mut String, f: &Field, d: &Data) {
    match f {
        Field::Name => out.push_str(d.name),
        Field::Zone => out.push_str(d.zone),
        Field::Class => out.push_str(d.class),
        Field::Type => out.push_str(d.qtype),
        Field::Regex => out.push_str(d.regex),
        Field::Remote => out.push_str(d.remote),
        Field::Message => out.push_str(&(d.message)()),
        Field::Question => out.push_str(&(d.question)()),
        // Go prints a []string as `[a b c]`.
        Field::Match => {
            out.push('[');
            for (i, m) in d.matches.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(m.unwrap_or(""));
            }
            out.push(']');
        }
        // A missing key prints as Go's text/template prints it.
        Field::Group(Some(k)) => out.push_str(group(d, k).unwrap_or("<no value>")),
        // Go prints a map as `map[k:v ...]` with its keys sorted.
        Field::Group(None) => {
            let mut kv: Vec<&(String, String)> = d.groups.iter().collect();
            kv.sort();
            out.push_str("map[");
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:{v}");
            }
            out.push(']');
        }
    }
}

/// One action between `{{` and `}}`; `None` for a comment.
fn parse_action(a: &str) -> Result<Option<Part>, String> {
    if a.starts_with("/*") {
        return if a.ends_with("*/") { Ok(None) } else { Err(format!("unclosed comment {{{{{a}}}}}")) };
    }
    let words = split_words(a)?;
    let unsupported = || format!("unsupported template action {{{{ {a} }}}}: ferrite supports fields such as .Name and .Group.x, index and .Meta");
    match words.as_slice() {
        [w] => field(w).map(|f| Some(Part::Field(f))).ok_or_else(unsupported),
        [f, arg] if f == ".Meta" => Ok(Some(Part::Meta(string_lit(arg).ok_or_else(unsupported)?))),
        [f, what, key] if f == "index" => match what.as_str() {
            ".Match" => key.parse().map(|i| Some(Part::MatchIndex(i))).map_err(|_| unsupported()),
            ".Group" => Ok(Some(Part::GroupIndex(string_lit(key).or_else(|| key.parse::<usize>().ok().map(|i| i.to_string())).ok_or_else(unsupported)?))),
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

fn field(w: &str) -> Option<Field> {
    Some(match w {
        ".Name" => Field::Name,
        ".Zone" => Field::Zone,
        ".Class" => Field::Class,
        ".Type" => Field::Type,
        ".Message" => Field::Message,
        ".Question" => Field::Question,
        ".Remote" => Field::Remote,
        ".Regex" => Field::Regex,
        ".Match" => Field::Match,
        ".Group" => Field::Group(None),
        _ => {
            let key = w.strip_prefix(".Group.")?;
            // Go reads `.Group.x` as a map key: any identifier, or digits for numbered groups.
            if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return None;
            }
            Field::Group(Some(key.to_string()))
        }
    })
}

/// A Go string literal, `"..."` with escapes or `` `...` `` raw.
fn string_lit(w: &str) -> Option<String> {
    if let Some(raw) = w.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Some(raw.to_string());
    }
    let inner = w.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Splits an action into words, keeping quoted strings whole.
fn split_words(a: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in a.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated string in {{{{ {a} }}}}"));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(matches: &'a [Option<&'a str>], groups: &'a [(String, String)]) -> Data<'a> {
        Data {
            zone: "example.",
            name: "ip-10-1-2-3.example.",
            class: "IN",
            qtype: "A",
            regex: "^ip-(?P<a>[0-9]+)",
            matches,
            groups,
            remote: "192.0.2.7",
            message: &|| "MSG".to_string(),
            question: &|| ";ip-10-1-2-3.example.\tIN\t A".to_string(),
            meta: &|l: &str| (l == "a/b").then(|| "v".to_string()),
        }
    }

    #[test]
    fn renders_coredns_templates() {
        let matches = [Some("ip-10"), Some("10"), None];
        let groups = vec![("0".to_string(), "ip-10".to_string()), ("1".to_string(), "10".to_string()), ("a".to_string(), "10".to_string())];
        let d = data(&matches, &groups);
        let cases = [
            ("{{ .Name }} 60 IN A {{ .Group.a }}.0.0.1", "ip-10-1-2-3.example. 60 IN A 10.0.0.1"),
            ("{{.Name}} {{ .Zone }} {{ .Class }} {{ .Type }} {{ .Remote }}", "ip-10-1-2-3.example. example. IN A 192.0.2.7"),
            ("{{ index .Match 1 }} {{ index .Group \"a\" }} {{ index .Group `a` }} {{ .Group.1 }}", "10 10 10 10"),
            ("{{ .Group.zz }}|{{ index .Group \"zz\" }}", "<no value>|"),
            ("{{ .Match }} {{ .Group }}", "[ip-10 10 ] map[0:ip-10 1:10 a:10]"),
            ("{{ .Meta \"a/b\" }}{{ .Meta \"c\" }}", "v"),
            ("a {{- /* note */ -}} b", "ab"),
            ("{{ .Question }}", ";ip-10-1-2-3.example.\tIN\t A"),
            ("{{ .Message }}", "MSG"),
            ("no actions", "no actions"),
        ];
        for (t, want) in cases {
            let got = Template::parse(t).unwrap_or_else(|e| panic!("{t}: {e}")).render(&d).expect("renders");
            assert_eq!(got, want, "{t}");
        }
        let e = Template::parse("{{ index .Match 7 }}").expect("parses").render(&d).expect_err("out of range");
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for t in ["{{ .Nope }}", "{{ if .Name }}x{{ end }}", "{{ .Name", "x }} y", "{{ printf \"%s\" .Name }}", "{{ index .Match x }}", "{{ .Meta }}", "{{ \"a }}"] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
