//! Requests and replies as the plugin chain sees them, and their wire format.
//!
//! A query is parsed once, at the edge, into a [`Request`]; a plugin answers with a [`Reply`], an
//! owned message that later plugins may change before the server encodes it. Encoding truncates to
//! the client's size and writes our own OPT record, so EDNS is handled in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::base::message::Message;
use domain::base::message_builder::MessageBuilder;
use domain::base::name::{FlattenInto, Name, ParsedName, ToName};
use domain::base::rdata::UnknownRecordData;
use domain::base::question::Question;
use domain::base::record::Record;
use domain::base::Header;
use domain::rdata::ZoneRecordData;

/// A resource record with an owned name and data, as plugins build and keep them.
pub type Rr = Record<Name<Bytes>, ZoneRecordData<Bytes, Name<Bytes>>>;

/// The UDP payload size we advertise in our OPT record (DNS flag day 2020).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;

/// EDNS option codes the core knows by number.
pub mod opt_code {
    pub const NSID: u16 = 3;
    pub const COOKIE: u16 = 10;
}

/// The transport a query came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// One EDNS option, undecoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdnsOption {
    pub code: u16,
    pub data: Bytes,
}

/// The EDNS part of a query (RFC 6891), or of a reply we are about to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub options: Vec<EdnsOption>,
}

impl Edns {
    pub fn option(&self, code: u16) -> Option<&EdnsOption> {
        self.options.iter().find(|o| o.code == code)
    }
}

/// Labels and values a query collects on its way through the chain, as CoreDNS's metadata:
/// plugins write `plugin/label` values, others read them (log's `{/label}`, template's
/// `.Meta`, view's `metadata()`). Collection is off until the `metadata` plugin enables it for a
/// query, so a server without it does no work for labels nobody reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    enabled: bool,
    /// Few labels per query: a list is smaller and faster than a map.
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// Turns collection on for this query (the `metadata` plugin does).
    pub fn enable(&mut self) {
        self.enabled = true;
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Sets `label` to `value`, replacing an earlier value; nothing happens while collection is
    /// off. An empty value means "no metadata", as in CoreDNS.
    pub fn set(&mut self, label: impl Into<String>, value: impl Into<String>) {
        if !self.enabled {
            return;
        }
        let (label, value) = (label.into(), value.into());
        match self.entries.iter_mut().find(|(l, _)| *l == label) {
            Some(e) => e.1 = value,
            None => self.entries.push((label, value)),
        }
    }

    /// The value of `label`; `None` when unset or empty.
    pub fn get(&self, label: &str) -> Option<&str> {
        self.entries.iter().find(|(l, _)| l == label).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(l, v)| (l.as_str(), v.as_str()))
    }
}

/// A parsed query with its context. Plugins may change it before passing it on.
#[derive(Clone, Debug)]
pub struct Request {
    /// The query's header as received (ID, flags, opcode).
    pub header: Header,
    /// The question name, with the client's case.
    pub qname: Name<Bytes>,
    pub qtype: Rtype,
    pub qclass: Class,
    pub edns: Option<Edns>,
    pub client: SocketAddr,
    pub proto: Proto,
    /// The zone of the server block this query was routed to.
    pub zone: Name<Bytes>,
    /// The server block's address as CoreDNS writes it, e.g. `dns://:53`.
    pub server: Arc<str>,
    /// The query's size in bytes as received.
    pub size: usize,
    pub received: Instant,
    /// The plugin now serving the request (set by the chain); a reply made with
    /// `Reply::for_request` is credited to it in `coredns_dns_responses_total{plugin}`.
    pub plugin: &'static str,
    /// Labels plugins set for this query.
    pub metadata: Metadata,
    /// The view of the server block that took the query (`view` plugin); empty without one.
    pub view: Arc<str>,
    /// What the query's DNS cookie proved, set when the query is routed (before any plugin
    /// runs): `Valid` means the client has shown it receives replies at its address.
    pub cookie: crate::cookie::CookieState,
    /// The COOKIE option the reply carries (client cookie and our server cookie), set with
    /// `cookie`.
    pub cookie_reply: Option<[u8; crate::cookie::REPLY_LEN]>,
    /// The most bytes the reply may take on the wire, set by a plugin that bounds amplification
    /// (`ratelimit`'s `max_amplification`): a larger reply leaves truncated (TC=1, no records),
    /// checked on the final wire form, OPT record and all.
    pub reply_cap: Option<usize>,
    /// No plugin before the one serving now reads the records of the replies it gets from the
    /// rest of the chain (`Plugin::reads_replies`): a plugin that relays an upstream's reply may
    /// keep its records in wire form ([`Reply::pass_through`]). Set by the server for a query
    /// from a client; cleared as the chain reaches a plugin that reads replies.
    pub pass_through: bool,
}

impl Request {
    /// The largest reply the client accepts over this transport.
    pub fn max_reply_size(&self) -> usize {
        match self.proto {
            Proto::Tcp => 65535,
            // RFC 6891 §6.2.5: values below 512 are treated as 512.
            Proto::Udp => self.edns.as_ref().map_or(512, |e| e.udp_size.max(512) as usize),
        }
    }

    pub fn dnssec_ok(&self) -> bool {
        self.edns.as_ref().is_some_and(|e| e.dnssec_ok)
    }

    /// The question name in lower case with a trailing dot, as CoreDNS's `{name}` prints it.
    pub fn name_lower(&self) -> String {
        let mut s = self.qname.fmt_with_dot().to_string();
        s.make_ascii_lowercase();
        s
    }

    /// A query for `qname`/`qtype` as a client on 127.0.0.1 would send it over UDP: for tests and
    /// for plugins that build a request of their own (loop detection, health probes).
    pub fn new_query(qname: Name<Bytes>, qtype: Rtype, qclass: Class) -> Request {
        let mut header = Header::new();
        header.set_rd(true);
        Request {
            header,
            qname,
            qtype,
            qclass,
            edns: None,
            client: SocketAddr::from(([127, 0, 0, 1], 53000)),
            proto: Proto::Udp,
            zone: Name::root_bytes(),
            server: Arc::from("dns://:53"),
            size: 0,
            received: Instant::now(),
            plugin: "",
            metadata: Metadata::default(),
            view: Arc::from(""),
            cookie: crate::cookie::CookieState::None,
            cookie_reply: None,
            reply_cap: None,
            pass_through: false,
        }
    }
}

/// Whether `name` is `zone` or below it, ASCII case ignored: `Name::ends_with` without walking
/// labels from the end (which an uncompressed name can only do by starting over from its front
/// for each label). Both are absolute names in wire form.
pub fn is_within(name: &Name<Bytes>, zone: &Name<Bytes>) -> bool {
    let (name, zone) = (name.as_slice(), zone.as_slice());
    let mut at = 0;
    // Label lengths are below 64, outside the letters that case folding changes.
    while name.len() - at > zone.len() {
        at += 1 + name[at] as usize;
    }
    name.len() - at == zone.len() && name[at..].eq_ignore_ascii_case(zone)
}

/// Parses one record in zone-file text with absolute names (a name without a trailing dot is
/// taken as absolute, as CoreDNS's `dns.NewRR` does); a record without a TTL gets `default_ttl`,
/// one without a class IN. For plugins that build records from text at run time (template).
pub fn parse_rr(text: &str, default_ttl: u32) -> Result<Rr, String> {
    use domain::zonefile::inplace::{Entry, Zonefile};
    unclosed_paren(text).map_err(|line| format!("{line}: '(' is never closed"))?;
    // NOTE: allow_invalid only lifts the one-class-per-file rule, which the default class
    // would otherwise impose on a record of class CH.
    let mut z = Zonefile::new().allow_invalid();
    z.set_default_class(Class::IN);
    z.extend_from_slice(format!("$TTL {default_ttl}\n").as_bytes());
    z.extend_from_slice(text.as_bytes());
    z.extend_from_slice(b"\n");
    z.set_origin(Name::root_bytes());
    match z.next_entry() {
        Ok(Some(Entry::Record(r))) => Ok(r.flatten_into()),
        Ok(_) => Err("not a record".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The line of an opening parenthesis that zone-file text never closes, outside quotes and
/// comments. domain 0.12's zone file scanner panics (an index out of bounds) on a character
/// string that runs to the end of the text inside parentheses, as in `x. TXT ( a`; text that
/// a query name can shape (template's `{{ .Name }}`, which does not escape `(`) or a zone file
/// must be checked before it gets there.
pub fn unclosed_paren(text: &str) -> Result<(), usize> {
    let (mut line, mut open_line, mut depth) = (1, 0, 0u32);
    let (mut quoted, mut comment, mut escaped) = (false, false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
        }
        if comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => comment = true,
            '(' if !quoted => {
                if depth == 0 {
                    open_line = line;
                }
                depth += 1;
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if depth > 0 {
        Err(open_line)
    } else {
        Ok(())
    }
}

/// A reply under construction. `Reply::for_request` starts one with the client's ID, flags and
/// question; plugins fill in sections and the rcode.
#[derive(Clone, Debug)]
pub struct Reply {
    pub header: Header,
    pub rcode: OptRcode,
    pub question: Option<Question<Name<Bytes>>>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    /// The OPT record to send. The server fills it from the request when a plugin leaves it
    /// `None` and the query had EDNS; plugins add options (NSID, cookies) here.
    pub edns: Option<Edns>,
    /// The plugin that wrote this reply, for metrics.
    pub plugin: &'static str,
    /// An upstream's reply whose records go to the client as they came (see
    /// [`Reply::pass_through`]); the three sections above are then empty.
    pub raw: Option<RawSections>,
}

/// The records of an upstream's reply in wire form: its answer, authority and additional
/// sections without its OPT record, checked as [`Reply::from_bytes`] checks them.
#[derive(Clone, Debug)]
pub struct RawSections {
    wire: Bytes,
    /// Where the question ends: the records start here.
    start: usize,
    /// Where the records end: the start of the OPT record (the last), or the end of the last record.
    end: usize,
    /// Records in the answer, authority and additional sections, OPT not counted.
    counts: [u16; 3],
}

impl Reply {
    /// An empty NOERROR reply to `req`: its ID, opcode, RD and CD bits and question.
    pub fn for_request(req: &Request) -> Reply {
        let mut header = Header::new();
        header.set_id(req.header.id());
        header.set_qr(true);
        header.set_opcode(req.header.opcode());
        header.set_rd(req.header.rd());
        header.set_cd(req.header.cd());
        Reply {
            header,
            rcode: OptRcode::NOERROR,
            question: Some(Question::new(req.qname.clone(), req.qtype, req.qclass)),
            answer: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            edns: None,
            plugin: req.plugin,
            raw: None,
        }
    }

    /// A reply to `req` with only an rcode.
    pub fn error(req: &Request, rcode: Rcode) -> Reply {
        let mut r = Reply::for_request(req);
        r.rcode = rcode.into();
        r
    }

    /// Parses a whole message (from an upstream or a test) into an owned reply.
    pub fn from_wire(wire: &[u8]) -> Result<Reply, WireError> {
        Self::from_bytes(Bytes::copy_from_slice(wire))
    }

    /// As [`Reply::from_wire`], for a message already in `Bytes` (not copied again).
    pub fn from_bytes(wire: Bytes) -> Result<Reply, WireError> {
        let msg = Message::from_octets(wire).map_err(|_| WireError("short message"))?;
        let header = msg.header();
        let mut question = None;
        let mut sections = msg.question();
        for q in &mut sections {
            let q = q.map_err(|_| WireError("bad question"))?;
            let name: Name<Bytes> = q.qname().to_name();
            question = Some(Question::new(name, q.qtype(), q.qclass()));
        }
        let mut section = sections.answer().map_err(|_| WireError("bad question section"))?;
        let mut out: [Vec<Rr>; 3] = Default::default();
        let mut edns = None;
        let mut ext_rcode = 0u8;
        for (i, part) in out.iter_mut().enumerate() {
            for rec in &mut section {
                let rec = rec.map_err(|_| WireError("bad record"))?;
                if rec.rtype() == Rtype::OPT {
                    if let Ok(Some(r)) = rec.to_record::<UnknownRecordData<Bytes>>() {
                        let ttl = r.ttl().as_secs();
                        ext_rcode = (ttl >> 24) as u8;
                        edns = Some(Edns {
                            udp_size: r.class().to_int(),
                            version: (ttl >> 16) as u8,
                            dnssec_ok: ttl & 0x8000 != 0,
                            options: parse_options(r.data().data()).unwrap_or_default(),
                        });
                    }
                    continue;
                }
                let rec = rec
                    .to_record::<ZoneRecordData<Bytes, ParsedName<Bytes>>>()
                    .map_err(|_| WireError("bad record data"))?
                    .ok_or(WireError("unsupported record type"))?;
                part.push(rec.flatten_into());
            }
            if i < 2 {
                section = match section.next_section() {
                    Ok(Some(s)) => s,
                    _ => return Err(WireError("bad section")),
                };
            }
        }
        let [answer, authority, additional] = out;
        let rcode = OptRcode::from_parts(header.rcode(), ext_rcode);
        Ok(Reply { header, rcode, question, answer, authority, additional, edns, plugin: "", raw: None })
    }

    /// An upstream's reply to `question` kept in wire form, for a chain in which no plugin reads
    /// the records of replies (`Request::pass_through`): the header and rcode (the extended one
    /// too) are read and every record is checked as [`Reply::from_bytes`] checks it, but no
    /// record is copied out. The wire back when the reply is not one to pass on this way
    /// (malformed, not exactly one question, an OPT record before the last): parse it fully. The
    /// reply carries `question`, the client's, which must be the upstream's (its case aside);
    /// the upstream's OPT record is left out, as the server writes our own.
    pub fn pass_through(wire: Bytes, question: Question<Name<Bytes>>) -> Result<Reply, Bytes> {
        match Self::walk(&wire) {
            Some((header, rcode, start, end, counts)) => Ok(Reply {
                header,
                rcode,
                question: Some(question),
                answer: Vec::new(),
                authority: Vec::new(),
                additional: Vec::new(),
                edns: None,
                plugin: "",
                raw: Some(RawSections { wire, start, end, counts }),
            }),
            None => Err(wire),
        }
    }

    /// For `pass_through`: the header, rcode, where the records start and end (before the OPT
    /// record) and the records in each section (OPT not counted).
    fn walk(wire: &Bytes) -> Option<(Header, OptRcode, usize, usize, [u16; 3])> {
        use octseq::parse::Parser;
        let msg = Message::from_octets(wire.as_ref()).ok()?;
        let header = msg.header();
        let c = msg.header_counts();
        if c.qdcount() != 1 {
            return None;
        }
        let counts = [c.ancount(), c.nscount(), c.arcount()];
        let total: usize = counts.iter().map(|&n| n as usize).sum();
        let mut p = Parser::from_ref(wire.as_ref());
        p.advance(12).ok()?;
        domain::base::question::Question::<ParsedName<&[u8]>>::parse(&mut p).ok()?;
        let start = p.pos();
        let (mut opt_at, mut ext_rcode) = (None, 0u8);
        for i in 0..total {
            let at = p.pos();
            let rec = domain::base::record::ParsedRecord::parse(&mut p).ok()?;
            if rec.rtype() == Rtype::OPT {
                // The last record, and in the additional section.
                if i + 1 != total || counts[2] == 0 {
                    return None;
                }
                // As from_bytes: an OPT whose data does not parse is passed over, not an error.
                if let Ok(Some(r)) = rec.to_record::<UnknownRecordData<&[u8]>>() {
                    ext_rcode = (r.ttl().as_secs() >> 24) as u8;
                }
                opt_at = Some(at);
            } else {
                rec.to_record::<ZoneRecordData<&[u8], ParsedName<&[u8]>>>().ok()??;
            }
        }
        let end = opt_at.unwrap_or(p.pos());
        let mut counts = counts;
        if opt_at.is_some() {
            counts[2] -= 1;
        }
        Some((header, OptRcode::from_parts(header.rcode(), ext_rcode), start, end, counts))
    }

    /// True when every section is empty.
    pub fn is_empty(&self) -> bool {
        self.answer.is_empty()
            && self.authority.is_empty()
            && self.additional.is_empty()
            && self.raw.as_ref().is_none_or(|r| r.counts == [0; 3])
    }

    /// The reply with the records of `raw` parsed into its sections, for the cases the wire form
    /// cannot take as it is.
    fn parsed(&self) -> Reply {
        let mut r = Reply { raw: None, ..self.clone() };
        if let Some(raw) = &self.raw {
            // Checked when kept (pass_through): this parses.
            if let Ok(p) = Reply::from_bytes(raw.wire.clone()) {
                (r.answer, r.authority, r.additional) = (p.answer, p.authority, p.additional);
            }
        }
        r
    }

    /// The wire form of a reply kept as an upstream sent it: our header and the client's question,
    /// then the upstream's records as they are. The question must take as many bytes as the
    /// upstream's did, for the records' compression pointers to land where they did; `None` if
    /// it does not, or if the reply would not fit in `limit`.
    fn raw_wire(&self, raw: &RawSections, header: Header, opt: Option<&[u8]>, limit: usize) -> Option<Vec<u8>> {
        let q = self.question.as_ref()?;
        let qname = q.qname().as_slice();
        if 12 + qname.len() + 4 != raw.start {
            return None;
        }
        let body = raw.wire.get(raw.start..raw.end)?;
        let opt = opt.unwrap_or_default();
        let len = raw.start + body.len() + opt.len();
        if len > limit {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(header.as_slice());
        let ar = raw.counts[2] + u16::from(!opt.is_empty());
        for n in [1, raw.counts[0], raw.counts[1], ar] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(qname);
        out.extend_from_slice(&q.qtype().to_int().to_be_bytes());
        out.extend_from_slice(&q.qclass().to_int().to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(opt);
        Some(out)
    }

    /// Encodes the reply to at most `limit` bytes (never less than 512).
    ///
    /// If the answer or authority section does not fit, every record is dropped and TC is set, as
    /// Knot DNS and NSD do: a resolver then asks again over TCP and never caches a partial RRset.
    /// Additional records that do not fit are left out without TC (RFC 2181 §9).
    pub fn to_wire(&self, limit: usize) -> Vec<u8> {
        let limit = limit.max(512);
        let opt = self.edns.as_ref().map(|e| encode_opt(e, self.rcode));
        let opt_len = opt.as_ref().map_or(0, Vec::len);
        let mut header = self.header;
        header.set_qr(true);
        header.set_rcode(self.rcode.rcode());
        if let Some(raw) = &self.raw {
            return match self.raw_wire(raw, header, opt.as_deref(), limit) {
                Some(out) => out,
                // Too large for the client, or a question of another length: as any other reply.
                None => self.parsed().to_wire(limit),
            };
        }
        let (mut out, tc) = match self.encode(header, limit - opt_len) {
            Some(out) => (out, false),
            None => {
                let mut h = header;
                h.set_tc(true);
                let q = Reply { answer: Vec::new(), authority: Vec::new(), additional: Vec::new(), raw: None, ..self.clone() };
                (q.encode(h, limit - opt_len).unwrap_or_else(|| header_only(h)), true)
            }
        };
        debug_assert!(!tc || Header::for_message_slice(&out).tc());
        if let Some(opt) = opt {
            out.extend_from_slice(&opt);
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        out
    }

    /// Encodes with a push limit; `None` when the answer or authority section does not fit.
    fn encode(&self, header: Header, limit: usize) -> Option<Vec<u8>> {
        let mut b = MessageBuilder::from_target(crate::compress::Compressor::with_capacity(512))
            .expect("an empty Vec takes a header");
        b.set_push_limit(limit);
        *b.header_mut() = header;
        let mut q = b.question();
        if let Some(question) = &self.question {
            q.push(question).ok()?;
        }
        let mut a = q.answer();
        for r in &self.answer {
            a.push(r).ok()?;
        }
        let mut ns = a.authority();
        for r in &self.authority {
            ns.push(r).ok()?;
        }
        let mut ad = ns.additional();
        for r in &self.additional {
            if ad.push(r).is_err() {
                break;
            }
        }
        Some(ad.finish().into_target())
    }
}

fn header_only(h: Header) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[..4].copy_from_slice(h.as_slice());
    out
}

/// A message that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// Our OPT record: root owner, type 41, class = UDP size, TTL = extended rcode, version 0, DO.
fn encode_opt(e: &Edns, rcode: OptRcode) -> Vec<u8> {
    let rdlen: usize = e.options.iter().map(|o| 4 + o.data.len()).sum();
    let mut v = Vec::with_capacity(11 + rdlen);
    v.push(0);
    v.extend_from_slice(&41u16.to_be_bytes());
    v.extend_from_slice(&e.udp_size.to_be_bytes());
    v.push(rcode.ext());
    v.push(e.version);
    v.extend_from_slice(&(if e.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    v.extend_from_slice(&(rdlen as u16).to_be_bytes());
    for o in &e.options {
        v.extend_from_slice(&o.code.to_be_bytes());
        v.extend_from_slice(&(o.data.len() as u16).to_be_bytes());
        v.extend_from_slice(&o.data);
    }
    v
}

/// Splits OPT RDATA into options; `None` if an option runs past the end (a FORMERR).
pub fn parse_options(mut data: &[u8]) -> Option<Vec<EdnsOption>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return None;
        }
        let code = u16::from_be_bytes([data[0], data[1]]);
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        if data.len() < 4 + len {
            return None;
        }
        out.push(EdnsOption { code, data: Bytes::copy_from_slice(&data[4..4 + len]) });
        data = &data[4 + len..];
    }
    Some(out)
}

/// Why a packet did not become a [`Request`] for the chain.
#[derive(Debug)]
pub enum Rejected {
    /// No reply at all: too short for a header, or a response (QR=1).
    Drop,
    /// Answer at once with this message (FORMERR, NOTIMP, BADVERS).
    Reply(Vec<u8>),
    /// A query with no question and a COOKIE option (RFC 7873 §5.4): the client asks only for a
    /// server cookie. The request carries the root name and the client's EDNS, for routing to
    /// the block whose secret answers it.
    CookieOnly(Box<Request>),
}

/// An error reply made before a query reaches any chain: the client's ID, opcode and RD, the
/// question if there was one, and an OPT record if the query had a well-formed one (RFC 6891 §7).
fn early_reply(header: &Header, rcode: OptRcode, question: Option<&Question<Name<Bytes>>>, edns: Option<&Edns>) -> Vec<u8> {
    let mut h = Header::new();
    h.set_id(header.id());
    h.set_qr(true);
    h.set_opcode(header.opcode());
    h.set_rd(header.rd());
    let r = Reply {
        header: h,
        rcode,
        question: question.cloned(),
        answer: vec![],
        authority: vec![],
        additional: vec![],
        edns: edns.map(|e| Edns { udp_size: ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: e.dnssec_ok, options: vec![] }),
        plugin: "",
        raw: None,
    };
    r.to_wire(512)
}

/// Reads the OPT record of a message whose other parts may not be for us to parse (an unknown
/// opcode's), for echoing EDNS in the reply; `None` on any doubt.
fn find_opt(msg: &Message<&[u8]>) -> Option<Edns> {
    let opt = msg.opt()?;
    Some(Edns { udp_size: opt.udp_payload_size(), version: opt.version(), dnssec_ok: opt.dnssec_ok(), options: vec![] })
}

/// Parses and checks one query. Everything a plugin can rely on is checked here.
pub fn parse_query(wire: &[u8], client: SocketAddr, proto: Proto) -> Result<Request, Rejected> {
    // An IPv4 client on the dual-stack IPv6 socket shows up as ::ffff:a.b.c.d; it is IPv4.
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    if wire.len() < 12 {
        return Err(Rejected::Drop);
    }
    let header = *Header::for_message_slice(wire);
    // RFC 1035 §4.1.1: QR=1 is a response; answering it could start a loop between two servers.
    if header.qr() {
        return Err(Rejected::Drop);
    }
    let msg = Message::from_octets(wire).map_err(|_| Rejected::Drop)?;
    let counts = msg.header_counts();
    let err = |rcode: Rcode, q: Option<&Question<Name<Bytes>>>, e: Option<&Edns>| Rejected::Reply(early_reply(&header, rcode.into(), q, e));
    // Parse the question first so error replies can echo it.
    let mut qs = msg.question();
    let question = match qs.next() {
        Some(Ok(q)) => Some(Question::new(q.qname().to_name::<Bytes>(), q.qtype(), q.qclass())),
        Some(Err(_)) => return Err(err(Rcode::FORMERR, None, None)),
        None => None,
    };
    if header.opcode() != Opcode::QUERY {
        // RFC 1035 §4.1.1: opcodes we do not implement get NOTIMP (RFC 8906 §3.1.4), with
        // EDNS if the query had it.
        return Err(err(Rcode::NOTIMP, question.as_ref(), find_opt(&msg).as_ref()));
    }
    // RFC 9619: at most one question (none only for a cookie query, below).
    if counts.qdcount() > 1 {
        return Err(err(Rcode::FORMERR, None, find_opt(&msg).as_ref()));
    }
    // Every record must parse; OPT may only appear once, in the additional section, at the root.
    let mut edns = None;
    let mut section = match qs.answer() {
        Ok(s) => s,
        Err(_) => return Err(err(Rcode::FORMERR, question.as_ref(), None)),
    };
    for i in 0..3 {
        for rec in &mut section {
            let Ok(rec) = rec else { return Err(err(Rcode::FORMERR, question.as_ref(), None)) };
            if rec.rtype() != Rtype::OPT {
                continue;
            }
            // RFC 6891 §6.1.1: more than one OPT, or one elsewhere, is FORMERR.
            let ok_place = i == 2 && edns.is_none() && rec.owner().is_root();
            let options = rec.to_record::<UnknownRecordData<&[u8]>>().ok().flatten().and_then(|r| parse_options(r.data().data()));
            match (ok_place, options) {
                (true, Some(options)) => {
                    let ttl = rec.ttl().as_secs();
                    edns = Some(Edns {
                        udp_size: rec.class().to_int(),
                        version: (ttl >> 16) as u8,
                        dnssec_ok: ttl & 0x8000 != 0,
                        options,
                    });
                }
                _ => return Err(err(Rcode::FORMERR, question.as_ref(), None)),
            }
        }
        if i < 2 {
            section = match section.next_section() {
                Ok(Some(s)) => s,
                _ => return Err(err(Rcode::FORMERR, question.as_ref(), None)),
            };
        }
    }
    if let Some(e) = &edns {
        if e.version > 0 {
            // RFC 6891 §6.1.3: a version we do not implement gets BADVERS, with our version 0.
            let mut h = Header::new();
            h.set_id(header.id());
            h.set_qr(true);
            h.set_rd(header.rd());
            let r = Reply {
                header: h,
                rcode: OptRcode::BADVERS,
                question,
                answer: vec![],
                authority: vec![],
                additional: vec![],
                edns: Some(Edns { udp_size: ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: e.dnssec_ok, options: vec![] }),
                plugin: "",
                raw: None,
            };
            return Err(Rejected::Reply(r.to_wire(512)));
        }
    }
    let cookie = edns.as_ref().and_then(|e| e.option(opt_code::COOKIE));
    // RFC 7873 §5.2.2: a COOKIE option of a length that cannot hold a client cookie (and a
    // server cookie of 8 to 32 bytes) is FORMERR.
    if cookie.is_some_and(|c| crate::cookie::split(&c.data).is_none()) {
        return Err(err(Rcode::FORMERR, question.as_ref(), edns.as_ref()));
    }
    let has_cookie = cookie.is_some();
    let question = match question {
        Some(q) => q,
        None if has_cookie => Question::new(Name::root_bytes(), Rtype::NULL, Class::IN),
        // RFC 9619: exactly one question.
        None => return Err(err(Rcode::FORMERR, None, edns.as_ref())),
    };
    let (qtype, qclass) = (question.qtype(), question.qclass());
    let req = Request {
        header,
        // NOTE: moved out, not cloned: the first clone of a name just built allocates (its buffer
        // becomes a shared one), so it is left to a plugin that needs a second handle.
        qname: question.into_qname(),
        qtype,
        qclass,
        edns,
        client,
        proto,
        zone: Name::root_bytes(),
        server: no_server(),
        size: wire.len(),
        received: Instant::now(),
        plugin: "",
        metadata: Metadata::default(),
        view: no_server(),
        cookie: crate::cookie::CookieState::None,
        cookie_reply: None,
        reply_cap: None,
        pass_through: false,
    };
    if counts.qdcount() == 0 {
        return Err(Rejected::CookieOnly(Box::new(req)));
    }
    Ok(req)
}

/// The empty server and view labels of a request not yet routed; shared so parsing allocates no
/// string.
fn no_server() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// Fills in what every reply gets at the edge: QR, the client's ID, and the OPT record
/// (RFC 6891 §7: a reply carries OPT only if the query did; DO is echoed, unknown flags cleared)
/// with our COOKIE option when the query had one (RFC 7873 §5.2); a COOKIE option a plugin copied
/// from elsewhere (an upstream's) never reaches the client.
pub fn finish_reply(req: &Request, reply: &mut Reply) {
    reply.header.set_id(req.header.id());
    reply.header.set_qr(true);
    match (&req.edns, &mut reply.edns) {
        (None, e) => *e = None,
        (Some(q), Some(e)) => {
            e.udp_size = ADVERTISED_UDP_SIZE;
            e.version = 0;
            e.dnssec_ok = q.dnssec_ok;
        }
        (Some(q), e @ None) => {
            *e = Some(Edns { udp_size: ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: q.dnssec_ok, options: vec![] })
        }
    }
    if let Some(e) = &mut reply.edns {
        e.options.retain(|o| o.code != opt_code::COOKIE);
        if let Some(c) = &req.cookie_reply {
            e.options.push(EdnsOption { code: opt_code::COOKIE, data: Bytes::copy_from_slice(c) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{query, rr};

    fn big_reply(n: usize) -> Reply {
        let req = query("big.example.", Rtype::TXT);
        let mut r = Reply::for_request(&req);
        for i in 0..n {
            r.answer.push(rr(&format!("big.example. 60 IN TXT \"{i:0>60}\"")));
        }
        r
    }

    #[test]
    fn is_within_is_ends_with() {
        let n = |s: &str| -> Name<Bytes> { s.parse().expect("name") };
        for (name, zone) in [
            ("a.Example.org.", "example.ORG."), ("example.org.", "example.org."), ("x.y.example.org.", "."),
            (".", "."), ("example.org.", "a.example.org."), ("aexample.org.", "example.org."), ("a.example.org.", "org.example."),
            ("a.b.c.", "b.c."), ("a.bb.c.", "b.c."), ("b.c.", "a.b.c."),
        ] {
            assert_eq!(is_within(&n(name), &n(zone)), n(name).ends_with(&n(zone)), "{name} in {zone}");
        }
    }

    /// An upstream's reply to `qname`/`qtype` with `records` (zone-file text; a line starting
    /// `NS:` or `AR:` goes to the authority or additional section), as our encoder writes it:
    /// names compressed, OPT last with the extended part of `rcode`.
    fn upstream(qname: &str, qtype: Rtype, rcode: OptRcode, records: &[&str]) -> Vec<u8> {
        let mut r = Reply::for_request(&query(qname, qtype));
        r.header.set_aa(true);
        r.rcode = rcode;
        for line in records {
            match line.split_once(':') {
                Some(("NS", t)) => r.authority.push(rr(t)),
                Some(("AR", t)) => r.additional.push(rr(t)),
                _ => r.answer.push(rr(line)),
            }
        }
        r.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![] });
        r.to_wire(65535)
    }

    /// The client's view of an upstream reply relayed both ways: parsed and encoded again, and
    /// passed through; each encoded for `limit` and read back.
    fn relayed(wire: &[u8], client_qname: &str, qtype: Rtype, limit: usize) -> (Reply, Reply, Vec<u8>) {
        let req = query(client_qname, qtype);
        let q = Question::new(req.qname.clone(), qtype, Class::IN);
        // Our OPT, as the server writes it for a client that sent one.
        let ours = Some(Edns { udp_size: ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: false, options: vec![] });
        let mut parsed = Reply::from_wire(wire).expect("the upstream's reply parses");
        parsed.question = Some(q.clone());
        parsed.edns = ours.clone();
        let mut kept = Reply::pass_through(Bytes::copy_from_slice(wire), q).expect("passes through");
        assert!(kept.answer.is_empty() && kept.raw.is_some() && kept.edns.is_none());
        kept.edns = ours;
        let out = kept.to_wire(limit);
        let back = Reply::from_wire(&out).expect("what we send parses");
        (Reply::from_wire(&parsed.to_wire(limit)).expect("parses"), back, out)
    }

    #[test]
    fn passed_through_replies_say_what_parsed_ones_do() {
        let cases: &[(&str, Rtype, OptRcode, &[&str])] = &[
            ("www.example.org.", Rtype::A, OptRcode::NOERROR, &[
                "www.example.org. 300 IN CNAME web.example.org.",
                "web.example.org. 300 IN A 192.0.2.1",
                "web.example.org. 300 IN A 192.0.2.2",
                "NS:example.org. 3600 IN NS ns1.example.org.",
                "AR:ns1.example.org. 3600 IN A 192.0.2.53",
                "AR:ns1.example.org. 3600 IN AAAA 2001:db8::53",
            ]),
            ("nothing.example.org.", Rtype::AAAA, OptRcode::NXDOMAIN, &[
                "NS:example.org. 900 IN SOA ns1.example.org. admin.example.org. 1 7200 3600 1209600 900",
            ]),
            ("example.org.", Rtype::MX, OptRcode::NOERROR, &[
                "example.org. 60 IN MX 10 mail.example.org.",
                "example.org. 60 IN MX 20 mail.example.net.",
            ]),
            ("empty.example.org.", Rtype::TXT, OptRcode::NOERROR, &[]),
            ("cookie.example.org.", Rtype::A, OptRcode::BADCOOKIE, &[]),
        ];
        for (qname, qtype, rcode, records) in cases {
            let wire = upstream(qname, *qtype, *rcode, records);
            // The client asked in other case: its question goes back as it asked.
            let asked = qname.to_uppercase();
            let (parsed, kept, out) = relayed(&wire, &asked, *qtype, 1232);
            assert_eq!(kept.rcode, *rcode, "{qname}");
            assert_eq!(kept.rcode, parsed.rcode, "{qname}");
            assert_eq!(kept.header.aa(), parsed.header.aa(), "{qname}");
            assert_eq!(kept.answer, parsed.answer, "{qname}");
            assert_eq!(kept.authority, parsed.authority, "{qname}");
            assert_eq!(kept.additional, parsed.additional, "{qname}");
            assert_eq!(kept.question, parsed.question, "{qname}");
            let asked_wire: Name<Bytes> = asked.parse().expect("name");
            assert_eq!(&out[12..12 + asked_wire.as_slice().len()], asked_wire.as_slice(), "{qname}: the client's case");
            // One OPT record, ours: the upstream's stays behind.
            assert_eq!(kept.edns.map(|e| e.udp_size), Some(ADVERTISED_UDP_SIZE), "{qname}");
            assert_eq!(Message::from_octets(&out[..]).expect("parses").header_counts().arcount() as usize, kept.additional.len() + 1);
        }
    }

    #[test]
    fn a_reply_passed_through_keeps_our_opt_and_rcode() {
        let wire = upstream("x.example.", Rtype::A, OptRcode::BADCOOKIE, &["x.example. 60 IN A 192.0.2.9"]);
        let req = query("x.example.", Rtype::A);
        let mut kept = Reply::pass_through(Bytes::from(wire), Question::new(req.qname.clone(), Rtype::A, Class::IN)).expect("kept");
        kept.edns = Some(Edns { udp_size: ADVERTISED_UDP_SIZE, version: 0, dnssec_ok: true, options: vec![] });
        let back = Reply::from_wire(&kept.to_wire(1232)).expect("parses");
        assert_eq!(back.rcode, OptRcode::BADCOOKIE);
        assert_eq!(back.answer.len(), 1);
        assert!(back.edns.is_some_and(|e| e.dnssec_ok && e.udp_size == ADVERTISED_UDP_SIZE));
        assert!(!kept.is_empty());
    }

    #[test]
    fn replies_that_cannot_pass_through_are_handed_back() {
        let q = || Question::new("x.example.".parse::<Name<Bytes>>().expect("name"), Rtype::A, Class::IN);
        let good = upstream("x.example.", Rtype::A, OptRcode::NOERROR, &["x.example. 60 IN A 192.0.2.9"]);
        // An A record's data cut to three bytes: not well-formed, and parsing says so too.
        let mut bad_rdata = good.clone();
        let at = bad_rdata.len() - 11 - 4;
        bad_rdata[at - 2..at].copy_from_slice(&3u16.to_be_bytes());
        bad_rdata.remove(at);
        // An OPT record before another record: ours to parse, not to copy.
        let mut opt_first = MessageBuilder::new_vec();
        opt_first.header_mut().set_qr(true);
        let mut b = opt_first.question();
        b.push(q()).expect("fits");
        let mut b = b.additional();
        b.opt(|_| Ok(())).expect("fits");
        b.push(rr("x.example. 60 IN A 192.0.2.9")).expect("fits");
        let opt_first = b.finish();
        // An OPT record as the last record of the authority section.
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_qr(true);
        let mut b = b.question();
        b.push(q()).expect("fits");
        let mut b = b.authority();
        b.push(rr("x.example. 60 IN A 192.0.2.9")).expect("fits");
        b.push(domain::base::Record::new(Name::root_bytes(), Class::from_int(1232), domain::base::Ttl::ZERO, UnknownRecordData::from_octets(Rtype::OPT, Bytes::new()).expect("empty data"))).expect("fits");
        let opt_in_authority = b.finish();
        // No question.
        let mut none = good.clone();
        none[4..6].copy_from_slice(&0u16.to_be_bytes());
        for (what, wire, parses) in [
            ("cut rdata", bad_rdata, false),
            ("cut short", good[..good.len() - 3].to_vec(), false),
            ("OPT before a record", opt_first, true),
            ("OPT in the authority section", opt_in_authority, true),
            ("no question", none, false),
        ] {
            let back = Reply::pass_through(Bytes::from(wire.clone()), q()).expect_err(what);
            assert_eq!(back.as_ref(), &wire[..], "{what}: the wire comes back unchanged");
            assert_eq!(Reply::from_wire(&wire).is_ok(), parses, "{what}");
        }
    }

    #[test]
    fn damaged_replies_pass_through_only_when_they_would_parse() {
        let good = upstream("www.example.org.", Rtype::A, OptRcode::NOERROR, &[
            "www.example.org. 300 IN CNAME web.example.org.",
            "web.example.org. 300 IN A 192.0.2.1",
            "NS:example.org. 3600 IN NS ns1.example.org.",
            "AR:ns1.example.org. 3600 IN A 192.0.2.53",
        ]);
        let q = || Question::new("www.example.org.".parse::<Name<Bytes>>().expect("name"), Rtype::A, Class::IN);
        // xorshift64 with a fixed seed: one to three bytes of the reply changed at random.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut kept, mut handed_back) = (0, 0);
        for _ in 0..5000 {
            let mut wire = good.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % wire.len() as u64) as usize;
                wire[at] = next() as u8;
            }
            match Reply::pass_through(Bytes::from(wire.clone()), q()) {
                Ok(r) => {
                    kept += 1;
                    assert!(Reply::from_wire(&wire).is_ok(), "kept only what parses: {wire:?}");
                    let out = r.to_wire(1232);
                    assert!(Reply::from_wire(&out).is_ok(), "what we send parses: {wire:?}");
                }
                Err(back) => {
                    handed_back += 1;
                    assert_eq!(back.as_ref(), &wire[..]);
                }
            }
        }
        assert!(kept > 100 && handed_back > 100, "{kept} kept, {handed_back} handed back");
    }

    #[test]
    fn a_passed_through_reply_too_large_is_truncated_as_any_other() {
        let records: Vec<String> = (0..40).map(|i| format!("big.example. 60 IN TXT \"{i:0>60}\"")).collect();
        let records: Vec<&str> = records.iter().map(String::as_str).collect();
        let wire = upstream("big.example.", Rtype::TXT, OptRcode::NOERROR, &records);
        let (parsed, kept, out) = relayed(&wire, "big.example.", Rtype::TXT, 512);
        assert!(out.len() <= 512);
        assert!(kept.header.tc() && parsed.header.tc());
        assert!(kept.answer.is_empty() && kept.question.is_some());
        let (_, all, _) = relayed(&wire, "big.example.", Rtype::TXT, 65535);
        assert_eq!(all.answer.len(), 40);
    }

    #[test]
    fn truncation_sets_tc_and_drops_records() {
        let r = big_reply(40);
        let full = r.to_wire(65535);
        assert!(full.len() > 1232);
        let back = Reply::from_wire(&full).expect("parses");
        assert_eq!(back.answer.len(), 40);
        assert!(!back.header.tc());
        let cut = r.to_wire(512);
        assert!(cut.len() <= 512);
        let back = Reply::from_wire(&cut).expect("parses");
        assert!(back.header.tc());
        assert!(back.answer.is_empty());
        assert!(back.question.is_some());
    }

    #[test]
    fn opt_fits_within_the_limit_and_additional_is_trimmed_silently() {
        let mut r = big_reply(0);
        for i in 0..40 {
            r.additional.push(rr(&format!("big.example. 60 IN TXT \"{i:0>60}\"")));
        }
        r.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true, options: vec![] });
        let w = r.to_wire(1232);
        assert!(w.len() <= 1232);
        let back = Reply::from_wire(&w).expect("parses");
        assert!(!back.header.tc());
        assert!(back.additional.len() < 40 && !back.additional.is_empty());
        assert!(back.edns.expect("OPT kept").dnssec_ok);
    }

    #[test]
    fn metadata_is_collected_only_once_enabled() {
        let mut m = Metadata::default();
        m.set("a/b", "1");
        assert_eq!(m.get("a/b"), None, "off by default");
        m.enable();
        m.set("a/b", "1");
        m.set("a/b", "2");
        m.set("a/empty", "");
        assert_eq!((m.get("a/b"), m.get("a/empty"), m.get("x/y")), (Some("2"), None, None));
        assert_eq!(m.iter().count(), 2);
    }

    /// Found by fuzzing (fuzz/ chain target, through template's `{{ .Name }}` with a query
    /// name that begins with `(`): domain's scanner panicked on an unclosed parenthesis.
    #[test]
    fn an_unclosed_parenthesis_is_an_error_not_a_panic() {
        for t in ["(x. 60 IN TXT TXT", "x. 60 IN TXT ( TXT", "x. 60 IN TXT (TXT", "x. 60 IN TXT ( a\n b"] {
            let e = parse_rr(t, 60).expect_err(t);
            assert!(e.contains("never closed"), "{t}: {e}");
        }
        for t in ["x. 60 IN TXT ( a b )", "x. 60 IN TXT \"(\"", "x. 60 IN TXT \\( ; (", "x. 60 IN TXT a ; ( comment"] {
            assert!(parse_rr(t, 60).is_ok(), "{t}");
        }
        assert_eq!(unclosed_paren("a\nb (\n(c)"), Err(2));
    }

    #[test]
    fn extended_rcode_goes_into_opt() {
        let mut r = big_reply(0);
        r.rcode = OptRcode::BADVERS;
        r.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![] });
        let back = Reply::from_wire(&r.to_wire(512)).expect("parses");
        assert_eq!(back.rcode, OptRcode::BADVERS);
    }
}
