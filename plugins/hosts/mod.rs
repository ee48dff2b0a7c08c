//! hosts: answers A, AAAA and PTR queries from a hosts(5) file and from entries written inline in
//! the Corefile, as CoreDNS's hosts does. The file is read at setup into maps keyed by the
//! lower-case wire form of each name; a background thread re-reads it when its modification time
//! or size changes and swaps the table atomically, so the query path makes no system call.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use domain::base::name::ToName;
use domain::rdata::{Aaaa, Ptr, A};

use crate::plugin::prelude::*;
use crate::plugin::zone_name as zone;

const DEFAULT_FILE: &str = "/etc/hosts";
const DEFAULT_TTL: u32 = 3600;
const DEFAULT_RELOAD: Duration = Duration::from_secs(5);

/// `hosts [FILE [ZONES...]] { INLINE...; ttl SECONDS; no_reverse; reload DURATION; fallthrough [ZONES...] }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The hosts file; /etc/hosts when absent. Relative paths are taken from `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Zones the plugin answers for; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Lines in hosts-file format written in the Corefile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_reverse: bool,
    /// How often the file is checked for changes; zero turns checking off. 5s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::plugin::serde_opt_duration")]
    pub reload: Option<Duration>,
    /// `None`: no fallthrough; `Some([])`: for every name; else for names in these zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
}



pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    if let Some(f) = d.args.first() {
        c.file = Some(f.text.clone());
    }
    for t in d.args.iter().skip(1) {
        for z in t.text.split_whitespace() {
            zone(z).map_err(|m| t.err(m))?;
            c.zones.push(z.to_string());
        }
    }
    for line in d.lines() {
        match line.key().as_str() {
            "ttl" => {
                let t = &line.nargs(1, 1)?[0];
                let ttl: u32 = t.parse("a TTL in seconds")?;
                if ttl == 0 || ttl > 65535 {
                    return Err(t.err(format!("ttl must be in range [1, 65535]: {ttl}")));
                }
                c.ttl = Some(ttl);
            }
            "no_reverse" => {
                line.nargs(0, 0)?;
                c.no_reverse = true;
            }
            "reload" => {
                let t = &line.nargs(1, 1)?[0];
                c.reload = Some(t.duration()?);
            }
            "fallthrough" => c.fallthrough = Some(crate::plugin::parse_fallthrough(line)?),
            key => {
                // A line that starts with an IP address is an inline hosts entry (CoreDNS: any
                // line before the options whose first word parses as an address).
                let addr = key.split('%').next().unwrap_or(key);
                if IpAddr::from_str(addr).is_err() {
                    return Err(line.unknown());
                }
                line.no_block()?;
                let text: Vec<&str> = line.tokens.iter().map(|t| t.text.as_str()).collect();
                c.inline.push(text.join(" "));
            }
        }
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let zones = ctx.zones_or(&c.zones)?;
    let fallthrough = crate::plugin::fallthrough_names(&c.fallthrough)?;
    let path = ctx.path(c.file.as_deref().unwrap_or(DEFAULT_FILE));
    let inline = c.inline.join("\n");
    let ttl = Ttl::from_secs(c.ttl.unwrap_or(DEFAULT_TTL));
    let shared = Arc::new(Shared { path, inline, zones: zones.clone(), table: ArcSwap::from_pointee(Table::default()) });
    let stamp = shared.load();
    let plugin = Hosts { shared: shared.clone(), zones, fallthrough, ttl, no_reverse: c.no_reverse };
    let every = c.reload.unwrap_or(DEFAULT_RELOAD);
    if !every.is_zero() {
        watch(Arc::downgrade(&shared), every, stamp);
    }
    ctx.add_handler(Arc::new(plugin));
    Ok(())
}

/// What we remember of the file to tell whether it changed: (modified, length).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls the file's stamp every `every` on a thread of its own, and reloads when it changes.
/// The thread ends when the plugin is dropped (a config reload builds a new one).
fn watch(shared: std::sync::Weak<Shared>, every: Duration, mut last: Stamp) {
    let spawned = std::thread::Builder::new().name("hosts-reload".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(s) = shared.upgrade() else { return };
        let now = stamp(&s.path);
        if now != last {
            last = s.load();
            log::info!(target: "plugin/hosts", "reloaded {}", s.path.display());
        }
    });
    if let Err(e) = spawned {
        log::warn!(target: "plugin/hosts", "cannot watch for changes: {e}");
    }
}

/// The state shared between the handler and its watcher.
struct Shared {
    path: PathBuf,
    inline: String,
    zones: Vec<Name<Bytes>>,
    table: ArcSwap<Table>,
}

impl Shared {
    /// Reads the file (a missing file serves the inline entries only, as CoreDNS) and swaps in
    /// the new table; returns the stamp of what was read.
    fn load(&self) -> Stamp {
        let before = stamp(&self.path);
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                log::warn!(target: "plugin/hosts", "{}: {e}", self.path.display());
                String::new()
            }
        };
        let mut t = Table::default();
        // Inline entries first: their addresses come first in answers.
        t.add_text(&self.inline, &self.zones);
        t.add_text(&text, &self.zones);
        self.table.store(Arc::new(t));
        before
    }
}

/// Addresses by name and names by reverse name, keyed by lower-case wire-format names.
#[derive(Default)]
struct Table {
    v4: HashMap<Box<[u8]>, Vec<Ipv4Addr>>,
    v6: HashMap<Box<[u8]>, Vec<Ipv6Addr>>,
    ptr: HashMap<Box<[u8]>, Vec<Name<Bytes>>>,
}

fn key(name: &impl ToName) -> Box<[u8]> {
    let mut v = Vec::with_capacity(64);
    for l in name.iter_labels() {
        v.push(l.len() as u8);
        v.extend(l.as_slice().iter().map(u8::to_ascii_lowercase));
    }
    v.into_boxed_slice()
}

/// The lower-case wire form of `name` in `buf`, without allocating.
fn key_into<'b>(name: &Name<Bytes>, buf: &'b mut [u8; 255]) -> &'b [u8] {
    let s = name.as_slice();
    let n = s.len().min(255);
    for (d, c) in buf.iter_mut().zip(&s[..n]) {
        *d = c.to_ascii_lowercase();
    }
    &buf[..n]
}

/// The reverse-lookup name of an address (RFC 1035 §3.5, RFC 3596 §2.5).
fn reverse(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(73);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

impl Table {
    /// Adds the entries of hosts-file text: `ADDRESS NAME [ALIAS...]`, `#` comments.
    fn add_text(&mut self, text: &str, zones: &[Name<Bytes>]) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(addr) = words.next() else { continue };
            // A link-local address may carry a zone (`fe80::1%eth0`); the zone is not DNS data.
            let Ok(ip) = IpAddr::from_str(addr.split('%').next().unwrap_or(addr)) else { continue };
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            for word in words {
                let mut fq = word.to_ascii_lowercase();
                if !fq.ends_with('.') {
                    fq.push('.');
                }
                let Ok(name) = Name::<Bytes>::from_str(&fq) else { continue };
                if !zones.iter().any(|z| name.ends_with(z)) {
                    continue;
                }
                let k = key(&name);
                match ip {
                    IpAddr::V4(a) => push_once(self.v4.entry(k).or_default(), a),
                    IpAddr::V6(a) => push_once(self.v6.entry(k).or_default(), a),
                }
                let r = Name::<Bytes>::from_str(&reverse(ip)).expect("a reverse name is valid");
                push_once(self.ptr.entry(key(&r)).or_default(), name);
            }
        }
    }
}

fn push_once<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

pub struct Hosts {
    shared: Arc<Shared>,
    zones: Vec<Name<Bytes>>,
    fallthrough: Option<Vec<Name<Bytes>>>,
    ttl: Ttl,
    no_reverse: bool,
}

impl Hosts {
    fn falls_through(&self, name: &Name<Bytes>) -> bool {
        match &self.fallthrough {
            None => false,
            Some(zs) => zs.is_empty() || zs.iter().any(|z| name.ends_with(z)),
        }
    }

    fn answer(&self, req: &Request) -> Option<Result<Reply, ServeError>> {
        let in_zone = self.zones.iter().any(|z| req.qname.ends_with(z));
        // As CoreDNS: PTR queries are answered whatever the zones say.
        if !in_zone && req.qtype != Rtype::PTR {
            return None;
        }
        let table = self.shared.table.load();
        let mut buf = [0u8; 255];
        let k = key_into(&req.qname, &mut buf);
        let mut reply = Reply::for_request(req);
        let rr = |d: ZoneRecordData<Bytes, Name<Bytes>>| Record::new(req.qname.clone(), Class::IN, self.ttl, d);
        match req.qtype {
            Rtype::A => {
                reply.answer = table.v4.get(k).into_iter().flatten().map(|a| rr(ZoneRecordData::A(A::new(*a)))).collect();
            }
            Rtype::AAAA => {
                reply.answer = table.v6.get(k).into_iter().flatten().map(|a| rr(ZoneRecordData::Aaaa(Aaaa::new(*a)))).collect();
            }
            Rtype::PTR => {
                let names = if self.no_reverse { None } else { table.ptr.get(k) };
                // As CoreDNS: an unknown reverse name goes on, whatever fallthrough says.
                let names = names?;
                reply.answer = names.iter().map(|n| rr(ZoneRecordData::Ptr(Ptr::new(n.clone())))).collect();
            }
            _ => {}
        }
        if reply.answer.is_empty() && !table.v4.contains_key(k) && !table.v6.contains_key(k) {
            if self.falls_through(&req.qname) {
                return None;
            }
            // As CoreDNS: without a SOA there is no proper NXDOMAIN to give, so SERVFAIL says
            // the name cannot be resolved here.
            return Some(Ok(Reply::error(req, Rcode::SERVFAIL)));
        }
        reply.header.set_aa(true);
        Some(Ok(reply))
    }
}

impl Plugin for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if req.qclass != Class::IN {
            return next.serve(req);
        }
        match self.answer(req) {
            Some(r) => Box::pin(std::future::ready(r)),
            None => next.serve(req),
        }
    }
}

#[cfg(test)]
mod tests;
