//! log: one line on standard output for every query it sees answered, written after the rest of
//! the chain has replied, as CoreDNS's log plugin does. Lines use CoreDNS's placeholders and its
//! Common Log Format by default; `format json` in the block writes each line as one JSON object
//! instead. NAMES limit logging to queries in those zones, and `class` to replies of a kind
//! (success, denial, error), classified as CoreDNS's `response.Typify`/`Classify` do.
//!
//! The format is parsed into parts once at setup; per query only the parts are rendered, and the
//! reply is encoded (for `{rsize}` and `{>rflags}`) only when the format uses them.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use domain::rdata::dnssec::Timestamp;

pub use crate::response::{typify, ResponseType};
use tokio::time::Instant;

use crate::plugin::prelude::*;
use crate::plugin::{parse_duration, Edns};

/// CoreDNS's Common Log Format, the default (`{common}`).
pub const COMMON_LOG_FORMAT: &str = r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}"#;
/// The Common Log Format with the query's opcode (`{combined}`).
pub const COMBINED_LOG_FORMAT: &str = r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration} "{>opcode}""#;
/// What `minDuration` without an argument means, as in CoreDNS.
pub const DEFAULT_MIN_DURATION: &str = "100ms";

/// How the Corefile's `log [NAMES...] [FORMAT] { class ...; minDuration ...; format ... }` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Zones whose queries are logged, fully qualified; `.` (everything) by default.
    #[serde(default = "default_names")]
    pub names: Vec<String>,
    /// The line's format with placeholders; `{common}` and `{combined}` stand for CoreDNS's.
    #[serde(default = "default_format")]
    pub format: String,
    /// Kinds of reply that are logged; empty means all.
    #[serde(default)]
    pub classes: Vec<ResponseClass>,
    /// Replies slower than this are logged whatever their class (`minDuration`), e.g. `"1s"`.
    #[serde(default)]
    pub min_duration: Option<String>,
    /// One JSON object per line instead of text (`format json` in the Corefile block).
    #[serde(default)]
    pub json: bool,
}

fn default_names() -> Vec<String> {
    vec![".".to_string()]
}

fn default_format() -> String {
    "{common}".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            names: default_names(),
            format: default_format(),
            classes: Vec::new(),
            min_duration: None,
            json: false,
        }
    }
}

/// CoreDNS's classes of replies (`plugin/pkg/response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseClass {
    All,
    Success,
    Denial,
    Error,
}

impl FromStr for ResponseClass {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "all" => Ok(ResponseClass::All),
            "success" => Ok(ResponseClass::Success),
            "denial" => Ok(ResponseClass::Denial),
            "error" => Ok(ResponseClass::Error),
            _ => Err(()),
        }
    }
}

impl ResponseClass {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    let mut names: &[Token] = &d.args;
    // As in CoreDNS, the last argument is the format when it has a placeholder in it. Unlike
    // CoreDNS, this holds for a lone argument too: `log "{name}"` is a format, not a zone.
    if let Some((last, rest)) = names.split_last() {
        if last.text.contains('{') {
            c.format = last.text.clone();
            names = rest;
        }
    }
    if !names.is_empty() {
        c.names = names.iter().map(zone_arg).collect::<Result<_, _>>()?;
    }
    for line in d.lines() {
        match line.key().as_str() {
            "class" => {
                for t in line.nargs(1, usize::MAX)? {
                    let class = t.text.parse().map_err(|_| {
                        t.err(format!("invalid class {:?}: expected all, success, denial or error", t.text))
                    })?;
                    if !c.classes.contains(&class) {
                        c.classes.push(class);
                    }
                }
            }
            "minDuration" => {
                let args = line.nargs(0, 1)?;
                c.min_duration = Some(match args.first() {
                    Some(t) => {
                        t.duration()?;
                        t.text.clone()
                    }
                    None => DEFAULT_MIN_DURATION.to_string(),
                });
            }
            "format" => {
                let t = &line.nargs(1, 1)?[0];
                c.json = match t.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(t.err(format!("unknown output format {other:?}: expected text or json"))),
                };
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

/// A zone argument, made fully qualified as CoreDNS's `dns.Fqdn` does.
fn zone_arg(t: &Token) -> Result<String, SetupError> {
    let text = if t.text.ends_with('.') { t.text.clone() } else { format!("{}.", t.text) };
    Name::<Bytes>::from_str(&text).map_err(|e| t.err(format!("invalid zone {:?}: {e}", t.text)))?;
    Ok(text)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.add_handler(Arc::new(Log::new(c, stdout_sink())?));
    Ok(())
}

/// Where finished lines go: standard output in production, a buffer in tests.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Prints `[INFO] <line>` on standard output, as CoreDNS's `clog.Infof` does (see
/// `src/logging.rs`: a target outside `plugin/` gets no plugin prefix).
fn stdout_sink() -> Sink {
    Arc::new(|line: &str| ::log::info!(target: "query", "{line}"))
}

pub struct Log {
    zones: Vec<Name<Bytes>>,
    format: Format,
    /// Bits of [`ResponseClass`]; `All` set means every reply.
    classes: u8,
    min_duration: Option<Duration>,
    sink: Sink,
}

impl Log {
    pub fn new(c: &Config, sink: Sink) -> Result<Log, SetupError> {
        let zones = c
            .names
            .iter()
            .map(|n| Name::from_str(n).map_err(|e| SetupError::new(format!("invalid zone {n:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let min_duration = match &c.min_duration {
            Some(s) => Some(parse_duration(s).ok_or_else(|| SetupError::new(format!("invalid minDuration {s:?}")))?),
            None => None,
        };
        let mut classes = c.classes.iter().fold(0, |bits, cl| bits | cl.bit());
        if classes == 0 {
            classes = ResponseClass::All.bit();
        }
        Ok(Log { zones, format: Format::parse(&c.format, c.json), classes, min_duration, sink })
    }

    /// Whether this reply is logged: its class is wanted, or it was slower than `minDuration`.
    fn wanted(&self, req: &Request, reply: &Reply, duration: Duration) -> bool {
        if self.classes & ResponseClass::All.bit() != 0 {
            return true;
        }
        let class = classify(typify(reply, req.dnssec_ok(), Timestamp::now()));
        self.classes & class.bit() != 0 || self.min_duration.is_some_and(|m| duration > m)
    }

    fn observe(&self, req: &Request, reply: &Reply, duration: Duration) {
        if self.wanted(req, reply, duration) {
            (self.sink)(&self.format.render(req, reply, duration));
        }
    }
}

impl Plugin for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    /// The reply is read through its encoding (`{rsize}`, `{>rflags}`), its header and rcode only.
    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        // A query outside NAMES is not logged, but still answered.
        if !self.zones.iter().any(|z| req.qname.ends_with(z)) {
            return next.serve(req);
        }
        Box::pin(async move {
            let start = Instant::now();
            let result = next.serve(req).await;
            let duration = start.elapsed();
            match &result {
                Ok(reply) => self.observe(req, reply, duration),
                // The chain runner answers an error with its rcode and nothing else; log that
                // reply, the one the client gets.
                Err(e) => self.observe(req, &Reply::error(req, e.rcode), duration),
            }
            result
        })
    }
}

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Type,
    Name,
    Class,
    Proto,
    Size,
    Remote,
    Port,
    Local,
    Id,
    Opcode,
    Do,
    Bufsize,
    Rcode,
    Rsize,
    Duration,
    Rflags,
    /// `{/label}`: a metadata value, `-` when the label is not set (as CoreDNS).
    Metadata(String),
}

impl Part {
    fn from_label(label: &str) -> Option<Part> {
        Some(match label {
            "{type}" => Part::Type,
            "{name}" => Part::Name,
            "{class}" => Part::Class,
            "{proto}" => Part::Proto,
            "{size}" => Part::Size,
            "{remote}" => Part::Remote,
            "{port}" => Part::Port,
            "{local}" => Part::Local,
            "{>id}" => Part::Id,
            "{>opcode}" => Part::Opcode,
            "{>do}" => Part::Do,
            "{>bufsize}" => Part::Bufsize,
            "{rcode}" => Part::Rcode,
            "{rsize}" => Part::Rsize,
            "{duration}" => Part::Duration,
            "{>rflags}" => Part::Rflags,
            _ => Part::Metadata(label.strip_prefix("{/")?.strip_suffix('}')?.to_string()),
        })
    }

    /// The field's name in JSON output.
    fn key(&self) -> &str {
        match self {
            Part::Literal(_) => "",
            Part::Type => "type",
            Part::Name => "name",
            Part::Class => "class",
            Part::Proto => "proto",
            Part::Size => "size",
            Part::Remote => "remote",
            Part::Port => "port",
            Part::Local => "local",
            Part::Id => "id",
            Part::Opcode => "opcode",
            Part::Do => "do",
            Part::Bufsize => "bufsize",
            Part::Rcode => "rcode",
            Part::Rsize => "rsize",
            Part::Duration => "duration",
            Part::Rflags => "rflags",
            Part::Metadata(l) => l,
        }
    }
}

/// A format parsed once at setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Text output: literals and placeholders in order. JSON output: the placeholders only,
    /// each once, in the order they first appear.
    pub parts: Vec<Part>,
    pub json: bool,
    /// `{rsize}` or `{>rflags}` is used, so the reply is encoded.
    needs_wire: bool,
}

impl Format {
    /// Parses `text` as CoreDNS's replacer does: a `{...}` that is not a known placeholder stays
    /// literal text. `{common}` and `{combined}` expand to CoreDNS's formats.
    pub fn parse(text: &str, json: bool) -> Format {
        let text = text.replace("{common}", COMMON_LOG_FORMAT).replace("{combined}", COMBINED_LOG_FORMAT);
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut s = text.as_str();
        // Find each `}` and take the nearest `{` before it, so "{ {name} }" holds one placeholder.
        while let Some(j) = s.find('}') {
            let label = s[..j].rfind('{').and_then(|i| Part::from_label(&s[i..=j]).map(|p| (i, p)));
            match label {
                Some((i, p)) => {
                    lit.push_str(&s[..i]);
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(p);
                }
                None => lit.push_str(&s[..=j]),
            }
            s = &s[j + 1..];
        }
        lit.push_str(s);
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        if json {
            let mut fields: Vec<Part> = Vec::new();
            for p in parts {
                if !matches!(p, Part::Literal(_)) && !fields.iter().any(|f| f.key() == p.key()) {
                    fields.push(p);
                }
            }
            parts = fields;
        }
        let needs_wire = parts.iter().any(|p| matches!(p, Part::Rsize | Part::Rflags));
        Format { parts, json, needs_wire }
    }

    /// The log line for `req` answered with `reply` after `duration`.
    pub fn render(&self, req: &Request, reply: &Reply, duration: Duration) -> String {
        let facts = Facts { req, reply, duration, wire: self.needs_wire.then(|| encoded(req, reply)) };
        let mut out = String::with_capacity(160);
        if self.json {
            out.push('{');
            for (i, p) in self.parts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(&mut out, p.key());
                out.push(':');
                facts.write_json(&mut out, p);
            }
            out.push('}');
        } else {
            for p in &self.parts {
                facts.write_text(&mut out, p);
            }
        }
        out
    }
}

/// What one line is rendered from.
struct Facts<'a> {
    req: &'a Request,
    reply: &'a Reply,
    duration: Duration,
    /// The encoded reply's size and header flag bytes, when the format needs them.
    wire: Option<(usize, [u8; 2])>,
}

impl Facts<'_> {
    fn write_text(&self, out: &mut String, p: &Part) {
        let req = self.req;
        // NOTE: writing to a String cannot fail; the results are ignored for that reason.
        let _ = match p {
            Part::Literal(s) => {
                out.push_str(s);
                Ok(())
            }
            Part::Type => write!(out, "{}", req.qtype),
            Part::Name => write!(out, "{}", req.name_lower()),
            Part::Class => write!(out, "{}", req.qclass),
            Part::Proto => write!(out, "{}", req.proto.as_str()),
            Part::Size => write!(out, "{}", req.size),
            // As CoreDNS, an IPv6 address goes in brackets: `[::1]:53`.
            Part::Remote => match req.client.ip() {
                IpAddr::V4(a) => write!(out, "{a}"),
                IpAddr::V6(a) => write!(out, "[{a}]"),
            },
            Part::Port => write!(out, "{}", req.client.port()),
            // The request does not carry the listener's address yet.
            Part::Local => write!(out, "-"),
            Part::Metadata(l) => {
                out.push_str(req.metadata.get(l).unwrap_or("-"));
                Ok(())
            }
            Part::Id => write!(out, "{}", req.header.id()),
            Part::Opcode => write!(out, "{}", req.header.opcode().to_int()),
            Part::Do => write!(out, "{}", req.dnssec_ok()),
            Part::Bufsize => write!(out, "{}", req.max_reply_size()),
            Part::Rcode => write!(out, "{}", self.reply.rcode),
            Part::Rsize => match self.wire {
                Some((len, _)) => write!(out, "{len}"),
                None => write!(out, "-"),
            },
            // Go's strconv.FormatFloat(secs, 'f', -1): the shortest decimal that reads back,
            // never an exponent; Rust's Display for f64 prints the same digits.
            Part::Duration => write!(out, "{}s", self.duration.as_secs_f64()),
            Part::Rflags => match self.wire {
                Some((_, flags)) => {
                    write_flags(out, flags);
                    Ok(())
                }
                None => write!(out, "-"),
            },
        };
    }

    fn write_json(&self, out: &mut String, p: &Part) {
        let req = self.req;
        let _ = match p {
            Part::Literal(_) => Ok(()),
            Part::Name => {
                json_string(out, &req.name_lower());
                Ok(())
            }
            Part::Remote => {
                json_string(out, &req.client.ip().to_string());
                Ok(())
            }
            Part::Port | Part::Size | Part::Id | Part::Opcode | Part::Do | Part::Bufsize => {
                self.write_text(out, p);
                Ok(())
            }
            Part::Rsize => match self.wire {
                Some((len, _)) => write!(out, "{len}"),
                None => write!(out, "null"),
            },
            Part::Duration => write!(out, "{}", self.duration.as_secs_f64()),
            Part::Local => write!(out, "null"),
            Part::Metadata(l) => {
                match req.metadata.get(l) {
                    Some(v) => json_string(out, v),
                    None => out.push_str("null"),
                }
                Ok(())
            }
            // Mnemonics and flags: letters, digits and commas only, so no escaping needed.
            Part::Type | Part::Class | Part::Proto | Part::Rcode | Part::Rflags => {
                out.push('"');
                self.write_text(out, p);
                out.push('"');
                Ok(())
            }
        };
    }
}

/// Encodes the reply as the server will send it, for its size and header flags.
fn encoded(req: &Request, reply: &Reply) -> (usize, [u8; 2]) {
    let wire = reply.to_wire(req.max_reply_size());
    let flags = match wire.get(2..4) {
        Some(&[a, b]) => [a, b],
        _ => [0, 0],
    };
    // NOTE: the server adds its OPT record after the chain (RFC 6891 §7: only when the query had
    // one, with no options unless a plugin set some), so count it as it will be sent.
    let opt_len = |e: &Edns| 11 + e.options.iter().map(|o| 4 + o.data.len()).sum::<usize>();
    let len = match (&req.edns, &reply.edns) {
        (Some(_), None) => wire.len() + 11,
        (None, Some(e)) => wire.len().saturating_sub(opt_len(e)),
        _ => wire.len(),
    };
    (len, flags)
}

/// The set header flags as CoreDNS writes them: `qr,aa,tc,rd,ra,z,ad,cd` order, comma separated.
fn write_flags(out: &mut String, [a, b]: [u8; 2]) {
    let flags = [
        (a & 0x80, "qr"),
        (a & 0x04, "aa"),
        (a & 0x02, "tc"),
        (a & 0x01, "rd"),
        (b & 0x80, "ra"),
        (b & 0x40, "z"),
        (b & 0x20, "ad"),
        (b & 0x10, "cd"),
    ];
    let mut first = true;
    for (set, name) in flags {
        if set != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

/// Writes `s` as a JSON string (RFC 8259 §7).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// CoreDNS's `response.Classify`.
pub fn classify(t: ResponseType) -> ResponseClass {
    match t {
        ResponseType::NoError | ResponseType::Delegation => ResponseClass::Success,
        ResponseType::NameError | ResponseType::NoData => ResponseClass::Denial,
        _ => ResponseClass::Error,
    }
}

#[cfg(test)]
mod tests;
