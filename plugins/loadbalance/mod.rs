//! loadbalance: shuffles the address records of every successful answer, as CoreDNS's
//! loadbalance does: `round_robin` puts CNAMEs first (some stub resolvers, glibc's among them,
//! want them there) and shuffles A, AAAA and MX records; `weighted FILE` picks the first address
//! of a listed name by weight and leaves the rest in place. `limit_answers` keeps the first N
//! records after that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use arc_swap::ArcSwap;
use domain::base::iana::Opcode;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::plugin::prelude::*;
use crate::plugin::parse_duration;

/// `loadbalance [round_robin | weighted FILE] { reload DURATION; limit_answers N }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The weight file of the `weighted` policy; `round_robin` when absent.
    #[serde(default)]
    pub weighted: Option<String>,
    /// How often the weight file is read again (default 30s; 0s: never).
    #[serde(default)]
    pub reload: Option<String>,
    #[serde(default)]
    pub limit_answers: Option<usize>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    match d.args.first().map(|t| t.as_str()) {
        None | Some("round_robin") => d.max_args(1)?,
        Some("weighted") => {
            let file = d.args.get(1).ok_or_else(|| d.args[0].err("weighted needs a weight file"))?;
            d.max_args(2)?;
            c.weighted = Some(file.text.clone());
        }
        Some(other) => return Err(d.args[0].err(format!("unknown policy {other:?}: expected round_robin or weighted"))),
    }
    for line in d.lines() {
        match line.key().as_str() {
            "reload" => {
                let t = &line.nargs(1, 1)?[0];
                t.duration()?;
                if c.weighted.is_none() {
                    return Err(line.err("reload applies to the weighted policy only"));
                }
                c.reload = Some(t.text.clone());
            }
            "limit_answers" => {
                let n: usize = line.nargs(1, 1)?[0].parse("a number of records")?;
                if n == 0 {
                    return Err(line.args()[0].err("limit_answers must be above zero"));
                }
                c.limit_answers = Some(n);
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

/// Weights by lower-case name (with the trailing dot), then by address.
pub type Weights = HashMap<String, HashMap<IpAddr, u8>>;

/// Reads a weight file: a name on a line of its own, then `ADDRESS WEIGHT` lines (1..=255) for it.
pub fn parse_weights(text: &str) -> Result<Weights, String> {
    let mut out: Weights = HashMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name] => {
                let mut n = name.to_ascii_lowercase();
                if !n.ends_with('.') {
                    n.push('.');
                }
                Name::<Bytes>::from_str(&n).map_err(|e| format!("line {}: invalid name {name:?}: {e}", i + 1))?;
                out.entry(n.clone()).or_default();
                current = Some(n);
            }
            [addr, weight] => {
                let name = current.as_ref().ok_or_else(|| format!("line {}: an address before any name", i + 1))?;
                let ip = IpAddr::from_str(addr).map_err(|_| format!("line {}: invalid address {addr:?}", i + 1))?;
                let w: u8 = weight.parse().ok().filter(|w| *w > 0).ok_or_else(|| format!("line {}: weight must be 1..255, got {weight:?}", i + 1))?;
                out.entry(name.clone()).or_default().insert(ip, w);
            }
            _ => return Err(format!("line {}: expected a name, or an address and a weight", i + 1)),
        }
    }
    Ok(out)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let policy = match &c.weighted {
        None => Policy::RoundRobin,
        Some(file) => {
            let path = ctx.path(file);
            let text = std::fs::read_to_string(&path).map_err(|e| SetupError::new(format!("cannot read {}: {e}", path.display())))?;
            let weights = parse_weights(&text).map_err(|e| SetupError::new(format!("{}: {e}", path.display())))?;
            let weights = Arc::new(ArcSwap::from_pointee(weights));
            let every = match &c.reload {
                Some(r) => parse_duration(r).ok_or_else(|| SetupError::new(format!("invalid reload {r:?}")))?,
                None => Duration::from_secs(30),
            };
            if !every.is_zero() {
                watch(path, Arc::downgrade(&weights), every);
            }
            Policy::Weighted(weights)
        }
    };
    ctx.add_handler(Arc::new(LoadBalance { policy, limit: c.limit_answers }));
    Ok(())
}

/// Reads the weight file again every `every` while the plugin lives, and takes its weights when
/// its text changed; a file that no longer parses is logged and the weights in use stay.
fn watch(path: PathBuf, weights: std::sync::Weak<ArcSwap<Weights>>, every: Duration) {
    // NOTE: the text, not the modification time, tells a change: a file rewritten within the
    // filesystem's timestamp granularity would otherwise be missed.
    let mut last = std::fs::read_to_string(&path).ok();
    let _ = std::thread::Builder::new().name("loadbalance-reload".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(w) = weights.upgrade() else { return };
        let text = std::fs::read_to_string(&path).ok();
        if text == last {
            continue;
        }
        last = text.clone();
        match text.ok_or_else(|| "cannot read".to_string()).and_then(|t| parse_weights(&t)) {
            Ok(new) => w.store(Arc::new(new)),
            Err(e) => log::error!(target: "plugin/loadbalance", "{}: {e}; keeping the weights in use", path.display()),
        }
    });
}

pub enum Policy {
    RoundRobin,
    Weighted(Arc<ArcSwap<Weights>>),
}

pub struct LoadBalance {
    policy: Policy,
    limit: Option<usize>,
}

/// CoreDNS's round robin: CNAMEs, then other records, then the shuffled addresses, then the
/// shuffled MX records.
pub fn round_robin(records: &mut Vec<Rr>, rng: &mut impl Rng) {
    if records.len() < 2 {
        return;
    }
    let (mut cname, mut address, mut mx, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records.drain(..) {
        match r.rtype() {
            Rtype::CNAME => cname.push(r),
            Rtype::A | Rtype::AAAA => address.push(r),
            Rtype::MX => mx.push(r),
            _ => rest.push(r),
        }
    }
    address.shuffle(rng);
    mx.shuffle(rng);
    records.extend(cname);
    records.extend(rest);
    records.extend(address);
    records.extend(mx);
}

/// Moves one address record of `qname` to the first address position, chosen with the
/// probability of its weight (1 for an address the file does not list).
pub fn weighted(records: &mut [Rr], weights: &HashMap<IpAddr, u8>, rng: &mut impl Rng) {
    let addrs: Vec<(usize, u32)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let ip = match r.data() {
                ZoneRecordData::A(a) => IpAddr::V4(a.addr()),
                ZoneRecordData::Aaaa(a) => IpAddr::V6(a.addr()),
                _ => return None,
            };
            Some((i, u32::from(weights.get(&ip).copied().unwrap_or(1))))
        })
        .collect();
    if addrs.len() < 2 {
        return;
    }
    let total: u32 = addrs.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    let mut chosen = addrs[0].0;
    for (i, w) in &addrs {
        if pick < *w {
            chosen = *i;
            break;
        }
        pick -= w;
    }
    records.swap(addrs[0].0, chosen);
}

impl Plugin for LoadBalance {
    fn name(&self) -> &'static str {
        "loadbalance"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let fut = next.serve(req);
        // The reply is changed on its way back: a reply that was ready stays ready.
        Box::pin(futures_util::FutureExt::map(fut, move |result| {
            let mut reply = result?;
            self.balance(&mut reply);
            Ok(reply)
        }))
    }
}

impl LoadBalance {
    fn balance(&self, reply: &mut Reply) {
        if reply.rcode.rcode() != Rcode::NOERROR || reply.header.opcode() != Opcode::QUERY {
            return;
        }
        let Some(q) = &reply.question else { return };
        if q.qtype() == Rtype::AXFR || q.qtype() == Rtype::IXFR {
            return;
        }
        let mut rng = rand::rng();
        match &self.policy {
            Policy::RoundRobin => {
                round_robin(&mut reply.answer, &mut rng);
                round_robin(&mut reply.authority, &mut rng);
                round_robin(&mut reply.additional, &mut rng);
            }
            Policy::Weighted(w) => {
                if q.qtype() == Rtype::A || q.qtype() == Rtype::AAAA {
                    let weights = w.load();
                    let mut name = q.qname().fmt_with_dot().to_string();
                    name.make_ascii_lowercase();
                    if let Some(ws) = weights.get(&name) {
                        weighted(&mut reply.answer, ws, &mut rng);
                    }
                }
            }
        }
        if let Some(n) = self.limit {
            reply.answer.truncate(n);
        }
    }
}

#[cfg(test)]
mod tests;
