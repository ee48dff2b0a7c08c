//! The expression language of view: the part of the expr language CoreDNS's view uses.
//!
//! ```text
//! incidr(client_ip(), '10.0.0.0/8') && type() in ['A', 'AAAA'] || !(name() matches '^x\.')
//! ```
//!
//! Literals are strings ('...' or "..."), integers, `true`/`false` and lists `[...]`; operators
//! are `||` (`or`), `&&` (`and`), `!` (`not`), `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
//! `matches`, `contains`, `startsWith`, `endsWith`; functions are the query's fields and
//! `incidr`, `metadata`. Expressions are parsed and type-checked at setup.

use std::net::IpAddr;

use regex::Regex;

use crate::plugin::{Cidr, Request};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::List(_) => "list",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Bufsize,
    Class,
    ClientIp,
    Do,
    Id,
    Name,
    Opcode,
    Port,
    Proto,
    ServerIp,
    ServerPort,
    Size,
    Type,
    Incidr,
    Metadata,
}

impl Func {
    fn by_name(s: &str) -> Option<(Func, usize)> {
        Some(match s {
            "bufsize" => (Func::Bufsize, 0),
            "class" => (Func::Class, 0),
            "client_ip" => (Func::ClientIp, 0),
            "do" => (Func::Do, 0),
            "id" => (Func::Id, 0),
            "name" => (Func::Name, 0),
            "opcode" => (Func::Opcode, 0),
            "port" => (Func::Port, 0),
            "proto" => (Func::Proto, 0),
            "server_ip" => (Func::ServerIp, 0),
            "server_port" => (Func::ServerPort, 0),
            "size" => (Func::Size, 0),
            "type" => (Func::Type, 0),
            "incidr" => (Func::Incidr, 2),
            "metadata" => (Func::Metadata, 1),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Value),
    List(Vec<Node>),
    Call(Func, Vec<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Op, Box<Node>, Box<Node>),
    /// `matches` with a literal pattern, compiled once.
    Regex(Box<Node>, Regex),
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Int(i64),
    Ident(String),
    Sym(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string in {s:?}")),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            Some(&e) => v.push(e),
                            None => return Err(format!("unterminated string in {s:?}")),
                        }
                    }
                    Some(&x) => v.push(x),
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(v));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push(Tok::Int(n.parse().map_err(|_| format!("number {n} is too large"))?));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = ["==", "!=", "<=", ">=", "&&", "||"].into_iter().find(|t| *t == two);
        if let Some(t) = sym {
            out.push(Tok::Sym(t));
            i += 2;
            continue;
        }
        let one = ["(", ")", "[", "]", ",", "!", "<", ">"].into_iter().find(|t| t.starts_with(c));
        match one {
            Some(t) => out.push(Tok::Sym(t)),
            None => return Err(format!("unexpected {c:?} in {s:?}")),
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(t)) if *t == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(t)) if t == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), String> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(format!("expected {s:?}, found {}", self.found()))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end".into(),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Int(n)) => n.to_string(),
            Some(Tok::Ident(s)) => format!("{s:?}"),
            Some(Tok::Sym(s)) => format!("{s:?}"),
        }
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut l = self.and()?;
        while self.eat_sym("||") || self.eat_word("or") {
            l = Node::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut l = self.not()?;
        while self.eat_sym("&&") || self.eat_word("and") {
            l = Node::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Node, String> {
        if self.eat_sym("!") || self.eat_word("not") {
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, String> {
        let l = self.primary()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Ident(w)) => match w.as_str() {
                "in" => Op::In,
                "matches" => Op::Matches,
                "contains" => Op::Contains,
                "startsWith" => Op::StartsWith,
                "endsWith" => Op::EndsWith,
                "not" => {
                    // `x not in [...]`
                    self.pos += 1;
                    if !self.eat_word("in") {
                        return Err(format!("expected \"in\" after \"not\", found {}", self.found()));
                    }
                    let r = self.primary()?;
                    return Ok(Node::Not(Box::new(Node::Cmp(Op::In, Box::new(l), Box::new(r)))));
                }
                _ => return Ok(l),
            },
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.primary()?;
        if op == Op::Matches {
            if let Node::Lit(Value::Str(p)) = &r {
                let re = Regex::new(p).map_err(|e| format!("invalid regex '{p}': {e}"))?;
                return Ok(Node::Regex(Box::new(l), re));
            }
        }
        Ok(Node::Cmp(op, Box::new(l), Box::new(r)))
    }

    fn primary(&mut self) -> Result<Node, String> {
        let t = self.peek().cloned().ok_or_else(|| "unexpected end of expression".to_string())?;
        self.pos += 1;
        match t {
            Tok::Str(s) => Ok(Node::Lit(Value::Str(s))),
            Tok::Int(n) => Ok(Node::Lit(Value::Int(n))),
            Tok::Sym("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat_sym("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Node::List(items))
            }
            Tok::Ident(w) if w == "true" || w == "false" => Ok(Node::Lit(Value::Bool(w == "true"))),
            Tok::Ident(w) => {
                let (f, arity) = Func::by_name(&w).ok_or_else(|| format!("unknown function {w:?}"))?;
                self.expect("(")?;
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        args.push(self.or()?);
                        if self.eat_sym(")") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                if args.len() != arity {
                    return Err(format!("{w}() takes {arity} argument(s), got {}", args.len()));
                }
                Ok(Node::Call(f, args))
            }
            Tok::Sym(s) => Err(format!("unexpected {s:?}")),
        }
    }
}

impl Expr {
    /// Parses and type-checks an expression; it must give a boolean.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser { toks: lex(s)?, pos: 0 };
        let root = p.or()?;
        if p.pos != p.toks.len() {
            return Err(format!("unexpected {} after the expression", p.found()));
        }
        let e = Expr { root };
        // Function results have fixed types, so evaluating every branch once on any query finds
        // type errors now rather than per query.
        let probe = Request::new_query(domain::base::name::Name::root_bytes(), domain::base::iana::Rtype::A, domain::base::iana::Class::IN);
        match eval(&e.root, &probe, true)? {
            Value::Bool(_) => Ok(e),
            v => Err(format!("the expression gives a {}, not a boolean", v.kind())),
        }
    }

    /// True when the query satisfies the expression; an error (a bad address given to incidr)
    /// is false.
    pub fn matches(&self, req: &Request) -> bool {
        matches!(eval(&self.root, req, false), Ok(Value::Bool(true)))
    }
}

/// An address as the view functions print it: IPv6 in brackets, as CoreDNS's.
fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// Evaluates `n`; with `all`, every branch is evaluated (type checking).
fn eval(n: &Node, req: &Request, all: bool) -> Result<Value, String> {
    let boolean = |n: &Node| -> Result<bool, String> {
        match eval(n, req, all)? {
            Value::Bool(b) => Ok(b),
            v => Err(format!("expected a boolean, got a {}", v.kind())),
        }
    };
    Ok(match n {
        Node::Lit(v) => v.clone(),
        Node::List(items) => Value::List(items.iter().map(|i| eval(i, req, all)).collect::<Result<_, _>>()?),
        Node::Not(x) => Value::Bool(!boolean(x)?),
        Node::And(a, b) => {
            let l = boolean(a)?;
            Value::Bool(if l || all { boolean(b)? && l } else { false })
        }
        Node::Or(a, b) => {
            let l = boolean(a)?;
            Value::Bool(if !l || all { boolean(b)? || l } else { true })
        }
        Node::Regex(x, re) => match eval(x, req, all)? {
            Value::Str(s) => Value::Bool(re.is_match(&s)),
            v => return Err(format!("matches needs a string, got a {}", v.kind())),
        },
        Node::Cmp(op, a, b) => compare(*op, eval(a, req, all)?, eval(b, req, all)?, all)?,
        Node::Call(f, args) => call(*f, args, req, all)?,
    })
}

fn compare(op: Op, l: Value, r: Value, all: bool) -> Result<Value, String> {
    use Value::*;
    let b = Value::Bool;
    Ok(match (op, &l, &r) {
        (Op::Eq, _, _) if l.kind() == r.kind() => b(l == r),
        (Op::Ne, _, _) if l.kind() == r.kind() => b(l != r),
        (Op::Lt, Int(x), Int(y)) => b(x < y),
        (Op::Le, Int(x), Int(y)) => b(x <= y),
        (Op::Gt, Int(x), Int(y)) => b(x > y),
        (Op::Ge, Int(x), Int(y)) => b(x >= y),
        (Op::Lt, Str(x), Str(y)) => b(x < y),
        (Op::Le, Str(x), Str(y)) => b(x <= y),
        (Op::Gt, Str(x), Str(y)) => b(x > y),
        (Op::Ge, Str(x), Str(y)) => b(x >= y),
        (Op::In, _, List(items)) => b(items.contains(&l)),
        (Op::Contains, Str(x), Str(y)) => b(x.contains(y.as_str())),
        (Op::StartsWith, Str(x), Str(y)) => b(x.starts_with(y.as_str())),
        (Op::EndsWith, Str(x), Str(y)) => b(x.ends_with(y.as_str())),
        (Op::Matches, Str(x), Str(y)) => match Regex::new(y) {
            Ok(re) => b(re.is_match(x)),
            // A pattern made at run time that does not compile matches nothing.
            Err(_) if !all => b(false),
            Err(e) => return Err(e.to_string()),
        },
        _ => return Err(format!("cannot apply {op:?} to a {} and a {}", l.kind(), r.kind())),
    })
}

fn call(f: Func, args: &[Node], req: &Request, all: bool) -> Result<Value, String> {
    use Value::*;
    let string = |n: &Node| -> Result<String, String> {
        match eval(n, req, all)? {
            Str(s) => Ok(s),
            v => Err(format!("expected a string argument, got a {}", v.kind())),
        }
    };
    Ok(match f {
        Func::Bufsize => Int(req.edns.as_ref().map_or(512, |e| i64::from(e.udp_size))),
        Func::Class => Str(req.qclass.to_string()),
        Func::ClientIp => Str(bracketed(req.client.ip())),
        Func::Do => Bool(req.dnssec_ok()),
        Func::Id => Int(i64::from(req.header.id())),
        Func::Name => Str(req.name_lower()),
        Func::Opcode => Int(i64::from(req.header.opcode().to_int())),
        Func::Port => Str(req.client.port().to_string()),
        Func::Proto => Str(req.proto.as_str().to_string()),
        // The request does not carry the address it arrived on; the listener's port is known.
        Func::ServerIp => Str(String::new()),
        Func::ServerPort => Str(req.server.rsplit(':').next().unwrap_or("").to_string()),
        Func::Size => Int(req.size as i64),
        Func::Type => Str(req.qtype.to_string()),
        Func::Metadata => Str(req.metadata.get(&string(&args[0])?).unwrap_or("").to_string()),
        Func::Incidr => {
            let ip = string(&args[0])?;
            let net = string(&args[1])?;
            let ip: Option<IpAddr> = ip.trim_start_matches('[').trim_end_matches(']').parse().ok();
            let net: Option<Cidr> = net.parse().ok();
            match (ip, net) {
                (Some(ip), Some(net)) => Bool(net.contains(ip)),
                _ if all => Bool(false),
                _ => return Err("incidr needs an address and a network".into()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::query;

    fn req(name: &str, t: domain::base::iana::Rtype, client: &str) -> Request {
        let mut r = query(name, t);
        r.client = std::net::SocketAddr::new(client.parse().expect("ip"), 4242);
        r
    }

    #[test]
    fn evaluates_coredns_expressions() {
        use domain::base::iana::Rtype;
        let a = req("www.Example.com.", Rtype::A, "10.1.2.3");
        let v6 = req("abc.x.example.com.", Rtype::AAAA, "2001:db8::1");
        let cases: &[(&str, &Request, bool)] = &[
            ("incidr(client_ip(), '10.0.0.0/8')", &a, true),
            ("incidr(client_ip(), '192.168.0.0/16')", &a, false),
            ("incidr(client_ip(), '2001:db8::/32')", &v6, true),
            ("client_ip() == '[2001:db8::1]'", &v6, true),
            ("name() == 'www.example.com.'", &a, true),
            ("type() == 'A'", &a, true),
            ("type() in ['A', 'AAAA']", &v6, true),
            ("type() not in ['A', 'AAAA']", &v6, false),
            ("(type() == 'A' && name() == 'example.com.') || client_ip() == '10.1.2.3'", &a, true),
            ("name() matches '^abc\\\\..*\\\\.example\\\\.com\\\\.$'", &v6, true),
            ("name() matches '^abc\\\\..*\\\\.example\\\\.com\\\\.$'", &a, false),
            ("!(type() == 'A') and not false", &v6, true),
            ("port() == '4242' && proto() == 'udp' && class() == 'IN' && !do()", &a, true),
            ("bufsize() >= 512 && size() == 0 && opcode() == 0 && id() < 65536", &a, true),
            ("metadata('metadata/vrf') == ''", &a, true),
            ("name() endsWith 'example.com.' && name() startsWith 'www' && name() contains 'example'", &a, true),
            ("server_port() == '53'", &a, true),
        ];
        for (text, r, want) in cases {
            let e = Expr::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(e.matches(r), *want, "{text}");
        }
        let mut m = a.clone();
        m.metadata.enable();
        m.metadata.set("metadata/vrf", "VRF1");
        assert!(Expr::parse("metadata('metadata/vrf') == 'VRF1'").expect("parses").matches(&m));
    }

    #[test]
    fn rejects_bad_expressions_at_setup() {
        for (text, want) in [
            ("type()", "gives a string"),
            ("type() == 1", "cannot apply"),
            ("nosuch()", "unknown function"),
            ("incidr(client_ip())", "takes 2 argument"),
            ("name() matches '('", "invalid regex"),
            ("type() == 'A' &&", "unexpected end"),
            ("(type() == 'A'", "expected \")\""),
            ("type() == 'A' type()", "after the expression"),
            ("'abc", "unterminated string"),
            ("type() = 'A'", "unexpected '='"),
            ("1 && true", "expected a boolean"),
        ] {
            let e = Expr::parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
