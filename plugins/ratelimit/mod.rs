//! ratelimit: response rate limiting over UDP in the manner of BIND's RRL, a limit on the
//! queries of one client network, and a bound on how much larger than its query a UDP reply
//! may be. All three blunt reflection attacks, where spoofed queries make a server flood the
//! address they claim to come from.
//!
//! Responses are counted per client network (a /24 or /56 by default) and per answer, grouped
//! as BIND groups them: answers by name and type, NODATA by name, NXDOMAIN by zone (so random
//! subdomains share one bucket), errors all together. A response over its rate is dropped, or
//! every `slip`th one is sent truncated (TC=1, no records) so a real client asks again over TCP,
//! which a spoofer cannot. TCP is never limited: its clients have shown their address.
//!
//! The plugin sits near the top of the chain (see plugin.cfg): it must see the final reply of
//! everything that answers, the cache's and acl's refusals included.

mod table;

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::time::Instant;

use crate::plugin::prelude::*;
use crate::plugin::{Cidr, CounterVec, Proto};

use self::table::{Table, Verdict};

/// Responses (and queries) not sent, by reason: `responses`, `nxdomains`, `errors`, `requests`.
pub const DROPPED_TOTAL: &str = "coredns_ratelimit_dropped_total";
/// Limited responses sent truncated instead (`slip`).
pub const SLIPPED_TOTAL: &str = "coredns_ratelimit_slipped_total";
/// Replies sent truncated because they were more than `max_amplification` times their query.
pub const TRUNCATED_TOTAL: &str = "coredns_ratelimit_amplification_truncated_total";
/// Table entries given up for new ones (the table is full).
pub const EVICTIONS_TOTAL: &str = "coredns_ratelimit_evictions_total";

/// BIND's defaults.
const DEFAULT_WINDOW: u32 = 15;
const DEFAULT_SLIP: u32 = 2;
const DEFAULT_IPV4_PREFIX: u8 = 24;
const DEFAULT_IPV6_PREFIX: u8 = 56;
/// Buckets kept at most: 5.4 MB with the index (see the README).
const DEFAULT_TABLE_SIZE: usize = 100_000;

/// `ratelimit [RESPONSES] { responses_per_second N; nxdomains_per_second N; errors_per_second N;
/// requests_per_second N; window SECONDS; slip N; ipv4_prefix_length N; ipv6_prefix_length N;
/// exempt CIDR...; max_amplification RATIO; table_size N }`. A rate of 0 does not limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub responses_per_second: u32,
    /// `None`: as `responses_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nxdomains_per_second: Option<u32>,
    /// `None`: as `responses_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_per_second: Option<u32>,
    #[serde(default)]
    pub requests_per_second: u32,
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default = "default_slip")]
    pub slip: u32,
    #[serde(default = "default_v4")]
    pub ipv4_prefix_length: u8,
    #[serde(default = "default_v6")]
    pub ipv6_prefix_length: u8,
    /// Client networks never limited (`192.0.2.0/24`, `2001:db8::1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
    /// A UDP reply larger than this many times its query is sent truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amplification: Option<f64>,
    #[serde(default = "default_table_size")]
    pub table_size: usize,
}

fn default_window() -> u32 {
    DEFAULT_WINDOW
}
fn default_slip() -> u32 {
    DEFAULT_SLIP
}
fn default_v4() -> u8 {
    DEFAULT_IPV4_PREFIX
}
fn default_v6() -> u8 {
    DEFAULT_IPV6_PREFIX
}
fn default_table_size() -> usize {
    DEFAULT_TABLE_SIZE
}

impl Default for Config {
    fn default() -> Self {
        Config {
            responses_per_second: 0,
            nxdomains_per_second: None,
            errors_per_second: None,
            requests_per_second: 0,
            window: DEFAULT_WINDOW,
            slip: DEFAULT_SLIP,
            ipv4_prefix_length: DEFAULT_IPV4_PREFIX,
            ipv6_prefix_length: DEFAULT_IPV6_PREFIX,
            exempt: Vec::new(),
            max_amplification: None,
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    match d.args.as_slice() {
        [] => {}
        [n] => c.responses_per_second = n.parse("a number of responses per second")?,
        [_, extra, ..] => return Err(extra.err(format!("unexpected argument {:?}", extra.text))),
    }
    let mut seen: Vec<String> = Vec::new();
    for line in d.lines() {
        let key = line.key();
        // BIND's spellings (responses-per-second) are taken too.
        let name = key.as_str().replace('-', "_");
        if seen.contains(&name) {
            return Err(key.err(format!("{name:?} is given twice")));
        }
        seen.push(name.clone());
        if name == "exempt" {
            for t in line.nargs(1, usize::MAX)? {
                t.text.parse::<Cidr>().map_err(|e| t.err(e.to_string()))?;
                c.exempt.push(t.text.clone());
            }
            continue;
        }
        let arg = &line.nargs(1, 1)?[0];
        match name.as_str() {
            "responses_per_second" => c.responses_per_second = arg.parse("a number of responses per second")?,
            "nxdomains_per_second" => c.nxdomains_per_second = Some(arg.parse("a number of responses per second")?),
            "errors_per_second" => c.errors_per_second = Some(arg.parse("a number of responses per second")?),
            "requests_per_second" => c.requests_per_second = arg.parse("a number of queries per second")?,
            "window" => c.window = arg.parse("a number of seconds")?,
            "slip" => c.slip = arg.parse("a number from 0 to 10")?,
            "ipv4_prefix_length" => c.ipv4_prefix_length = arg.parse("a prefix length")?,
            "ipv6_prefix_length" => c.ipv6_prefix_length = arg.parse("a prefix length")?,
            "max_amplification" => c.max_amplification = Some(arg.parse("a ratio such as 5 or 2.5")?),
            "table_size" => c.table_size = arg.parse("a number of entries")?,
            _ => return Err(line.unknown()),
        }
        check_values(&c).map_err(|m| arg.err(m))?;
    }
    check(&c).map_err(|m| d.err(m))?;
    Ok(c)
}

/// The checks both front ends share.
fn check(c: &Config) -> Result<(), String> {
    check_values(c)?;
    let rates = [Some(c.responses_per_second), c.nxdomains_per_second, c.errors_per_second, Some(c.requests_per_second)];
    if rates.iter().all(|r| r.is_none_or(|r| r == 0)) && c.max_amplification.is_none() {
        return Err("nothing to limit: give responses_per_second, another rate, or max_amplification".into());
    }
    Ok(())
}

/// Each value within its range (checked after each line, so the error points at the value).
fn check_values(c: &Config) -> Result<(), String> {
    if !(1..=3600).contains(&c.window) {
        return Err(format!("window must be between 1 and 3600 seconds, got {}", c.window));
    }
    // BIND's range: beyond 10 a slipped reply is too rare to help real clients.
    if c.slip > 10 {
        return Err(format!("slip must be between 0 and 10, got {}", c.slip));
    }
    if c.ipv4_prefix_length > 32 {
        return Err(format!("ipv4_prefix_length must be at most 32, got {}", c.ipv4_prefix_length));
    }
    if c.ipv6_prefix_length > 128 {
        return Err(format!("ipv6_prefix_length must be at most 128, got {}", c.ipv6_prefix_length));
    }
    if let Some(r) = c.max_amplification {
        if !(r.is_finite() && r >= 1.0) {
            return Err(format!("max_amplification must be a ratio of at least 1, got {r}"));
        }
    }
    if c.table_size == 0 {
        return Err("table_size must be at least 1".into());
    }
    Ok(())
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    // Checked again here for configurations written in RON.
    check(c).map_err(SetupError::new)?;
    let exempt = c.exempt.iter().map(|t| t.parse::<Cidr>().map_err(|e| SetupError::new(e.to_string()))).collect::<Result<_, _>>()?;
    ctx.add_handler(Arc::new(RateLimit::new(c, exempt, Clock::Real(Instant::now()))));
    Ok(())
}

/// Where time comes from: the real clock, or one a test moves.
enum Clock {
    Real(Instant),
    #[cfg(test)]
    Fake(Arc<std::sync::atomic::AtomicU64>),
}

impl Clock {
    fn now_ms(&self) -> u64 {
        match self {
            Clock::Real(epoch) => epoch.elapsed().as_millis() as u64,
            #[cfg(test)]
            Clock::Fake(ms) => ms.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

/// What a reply is counted as, and the rate that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Request,
    Answer,
    Nodata,
    Nxdomain,
    Error,
}

impl Kind {
    fn reason(self) -> &'static str {
        match self {
            Kind::Request => "requests",
            Kind::Answer | Kind::Nodata => "responses",
            Kind::Nxdomain => "nxdomains",
            Kind::Error => "errors",
        }
    }
}

pub struct RateLimit {
    responses: u32,
    nxdomains: u32,
    errors: u32,
    requests: u32,
    window: u32,
    slip: u32,
    v4_prefix: u8,
    v6_prefix: u8,
    exempt: Vec<Cidr>,
    max_amplification: Option<f64>,
    table: Table,
    /// Keys are hashed with per-process random keys, so a client cannot aim its queries at
    /// one bucket of someone else's.
    hasher: std::collections::hash_map::RandomState,
    clock: Clock,
    dropped: CounterVec,
    slipped: CounterVec,
    truncated: CounterVec,
    evictions: CounterVec,
}

/// What to do with a reply over its rate.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Send,
    Slip,
    Drop,
}

impl RateLimit {
    fn new(c: &Config, exempt: Vec<Cidr>, clock: Clock) -> RateLimit {
        RateLimit {
            responses: c.responses_per_second,
            nxdomains: c.nxdomains_per_second.unwrap_or(c.responses_per_second),
            errors: c.errors_per_second.unwrap_or(c.responses_per_second),
            requests: c.requests_per_second,
            window: c.window,
            slip: c.slip,
            v4_prefix: c.ipv4_prefix_length,
            v6_prefix: c.ipv6_prefix_length,
            exempt,
            max_amplification: c.max_amplification,
            table: Table::new(c.table_size),
            hasher: std::collections::hash_map::RandomState::new(),
            clock,
            dropped: CounterVec::new(DROPPED_TOTAL, &["server", "reason"]),
            slipped: CounterVec::new(SLIPPED_TOTAL, &["server"]),
            truncated: CounterVec::new(TRUNCATED_TOTAL, &["server"]),
            evictions: CounterVec::new(EVICTIONS_TOTAL, &["server"]),
        }
    }

    /// True for a query that is never limited: from an exempt network, or carrying a valid
    /// server cookie (RFC 7873 §5.3, RFC 9018). A valid server cookie proves the client is at the
    /// address it claims, so its replies cannot be reflected at a victim; BIND exempts such
    /// clients from RRL too. This one check covers the response limits, the request limit and
    /// `max_amplification`.
    fn exempt(&self, req: &Request) -> bool {
        if req.cookie.is_valid() {
            return true;
        }
        let ip = client_ip(req);
        self.exempt.iter().any(|c| c.contains(ip))
    }

    /// The client's network, as the prefix lengths configured group clients.
    fn prefix(&self, ip: IpAddr) -> Cidr {
        let len = if ip.is_ipv4() { self.v4_prefix } else { self.v6_prefix };
        Cidr::new(ip, len).expect("prefix lengths are checked at setup")
    }

    /// The bucket key of `kind` for the client's network and `name`/`qtype` (lower case).
    fn key(&self, net: &Cidr, kind: Kind, name: Option<&Name<Bytes>>, qtype: Option<Rtype>) -> u64 {
        let mut h = self.hasher.build_hasher();
        net.hash(&mut h);
        kind.hash(&mut h);
        if let Some(n) = name {
            // The wire form: label lengths (below 64) are not letters, so only letters change.
            for b in n.as_slice() {
                h.write_u8(b.to_ascii_lowercase());
            }
        }
        qtype.map(|t| t.to_int()).hash(&mut h);
        h.finish()
    }

    /// Debits the bucket and decides; counts what it did.
    fn decide(&self, server: &str, key: u64, rate: u32, kind: Kind) -> Action {
        if rate == 0 {
            return Action::Send;
        }
        let (verdict, evicted) = self.table.debit(key, rate, self.window, self.clock.now_ms());
        if evicted {
            self.evictions.inc(&[server]);
        }
        match verdict {
            Verdict::Allowed => Action::Send,
            // Queries over their rate are always dropped: there is no reply yet to slip.
            Verdict::Limited(_) if kind == Kind::Request => {
                self.dropped.inc(&[server, kind.reason()]);
                Action::Drop
            }
            Verdict::Limited(n) if self.slip > 0 && n % self.slip == 0 => {
                self.slipped.inc(&[server]);
                Action::Slip
            }
            Verdict::Limited(_) => {
                self.dropped.inc(&[server, kind.reason()]);
                Action::Drop
            }
        }
    }

    /// The bucket a reply falls in, as BIND groups responses, and its rate.
    fn classify(&self, net: &Cidr, req: &Request, reply: &Result<Reply, ServeError>) -> (u64, u32, Kind) {
        let rcode = match reply {
            Ok(r) => r.rcode.rcode(),
            Err(e) => e.rcode,
        };
        match (reply, rcode) {
            (Ok(r), Rcode::NOERROR) if !r.answer.is_empty() => {
                (self.key(net, Kind::Answer, Some(&req.qname), Some(req.qtype)), self.responses, Kind::Answer)
            }
            (Ok(_), Rcode::NOERROR) => (self.key(net, Kind::Nodata, Some(&req.qname), None), self.responses, Kind::Nodata),
            (Ok(r), Rcode::NXDOMAIN) => {
                // The zone that denies the name: the SOA's owner, else the block's zone.
                let zone = r.authority.iter().find(|rr| rr.rtype() == Rtype::SOA).map(|rr| rr.owner()).unwrap_or(&req.zone);
                (self.key(net, Kind::Nxdomain, Some(zone), None), self.nxdomains, Kind::Nxdomain)
            }
            _ => (self.key(net, Kind::Error, None, None), self.errors, Kind::Error),
        }
    }
}

/// The client's address, an IPv4-mapped IPv6 address as the IPv4 address it is.
fn client_ip(req: &Request) -> IpAddr {
    match req.client.ip() {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    }
}

/// A reply with TC set and no records: the client asks again over TCP (RFC 7766 §5).
fn truncated(req: &Request, rcode: OptRcode, plugin: &'static str) -> Reply {
    let mut r = Reply::for_request(req);
    r.header.set_tc(true);
    r.rcode = rcode;
    r.plugin = plugin;
    r
}

impl Plugin for RateLimit {
    fn name(&self) -> &'static str {
        "ratelimit"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        // TCP cannot be spoofed: its clients are never limited.
        if req.proto != Proto::Udp || self.exempt(req) {
            return next.serve(req);
        }
        let net = self.prefix(client_ip(req));
        if self.requests > 0 {
            let key = self.key(&net, Kind::Request, None, None);
            if self.decide(&req.server, key, self.requests, Kind::Request) == Action::Drop {
                return Box::pin(std::future::ready(Err(ServeError::dropped("ratelimit", "over requests_per_second"))));
            }
        }
        Box::pin(async move {
            let reply = next.serve(req).await;
            if matches!(&reply, Err(e) if e.drop) {
                return reply;
            }
            let (key, rate, kind) = self.classify(&net, req, &reply);
            let rcode = match &reply {
                Ok(r) => r.rcode,
                Err(e) => e.rcode.into(),
            };
            match self.decide(&req.server, key, rate, kind) {
                Action::Drop => return Err(ServeError::dropped("ratelimit", format!("over the {} rate", kind.reason()))),
                Action::Slip => return Ok(truncated(req, rcode, "ratelimit")),
                Action::Send => {}
            }
            let reply = reply?;
            if let Some(ratio) = self.max_amplification {
                let limit = (req.size as f64 * ratio) as usize;
                // The reply as the plugins below built it: over the cap, truncated here and
                // counted. The edge checks the final wire form against the same cap, so the OPT
                // record it adds, or options of plugins above (nsid), cannot take it over either.
                req.reply_cap = Some(limit);
                if !reply.header.tc() && reply.to_wire(req.max_reply_size()).len() > limit {
                    self.truncated.inc(&[&req.server]);
                    return Ok(truncated(req, reply.rcode, reply.plugin));
                }
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests;
