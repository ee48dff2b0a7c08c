//! erratic: answers every query, misbehaving on purpose, as CoreDNS's erratic does: every Nth
//! query is dropped, truncated or delayed, so clients and resolvers can be tested against an
//! unreliable server. A queries get 192.0.2.53, AAAA queries 2001:db8::53, AXFR a small zone;
//! other types SERVFAIL. Counting starts at the first query, which is query 0 and so is hit by
//! every rule.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::base::Serial;
use domain::rdata::{Aaaa, Ns, Soa, A};

use crate::plugin::parse_duration;
use crate::plugin::prelude::*;

/// `erratic { drop [AMOUNT]; truncate [AMOUNT]; delay [AMOUNT [DURATION]] }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Drop one query in this many; 0 never.
    #[serde(default)]
    pub drop: u64,
    /// Truncate one reply in this many; 0 never.
    #[serde(default)]
    pub truncate: u64,
    /// Delay one reply in this many by `duration`; 0 never.
    #[serde(default)]
    pub delay: u64,
    #[serde(default = "default_duration")]
    pub duration: String,
}

fn default_duration() -> String {
    "100ms".into()
}

impl Default for Config {
    /// `erratic` alone drops every second query.
    fn default() -> Self {
        Config { drop: 2, truncate: 0, delay: 0, duration: default_duration() }
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    let mut c = Config::default();
    let mut seen_drop = false;
    let amount = |t: Option<&Token>| -> Result<u64, SetupError> {
        match t {
            Some(t) => t.parse("an amount (0 or more)"),
            None => Ok(2),
        }
    };
    for line in d.lines() {
        match line.key().as_str() {
            "drop" => {
                c.drop = amount(line.nargs(0, 1)?.first())?;
                seen_drop = true;
            }
            "truncate" => c.truncate = amount(line.nargs(0, 1)?.first())?,
            "delay" => {
                let args = line.nargs(0, 2)?;
                c.delay = amount(args.first())?;
                if let Some(t) = args.get(1) {
                    t.duration()?;
                    c.duration = t.text.clone();
                }
            }
            _ => return Err(line.unknown()),
        }
    }
    // As CoreDNS: the default drop applies only when nothing else is asked for.
    if !seen_drop && (c.truncate > 0 || c.delay > 0) {
        c.drop = 0;
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let duration = parse_duration(&c.duration).ok_or_else(|| SetupError::new(format!("invalid delay duration {:?}", c.duration)))?;
    ctx.add_handler(Arc::new(Erratic { count: AtomicU64::new(0), drop: c.drop, truncate: c.truncate, delay: c.delay, duration }));
    Ok(())
}

pub struct Erratic {
    count: AtomicU64,
    drop: u64,
    truncate: u64,
    delay: u64,
    duration: Duration,
}

fn every(n: u64, nr: u64) -> bool {
    n > 0 && nr.is_multiple_of(n)
}

/// A small zone for AXFR: SOA, NS, A, AAAA and the SOA again (RFC 5936 §2.2).
fn zone(apex: &Name<Bytes>) -> Vec<Rr> {
    let name = |s: &str| Name::<Bytes>::from_str(s).expect("a valid constant name");
    let soa = Record::new(
        apex.clone(),
        Class::IN,
        Ttl::from_secs(3600),
        ZoneRecordData::Soa(Soa::new(name("ns.example.org."), name("hostmaster.example.org."), Serial(1), Ttl::from_secs(7200), Ttl::from_secs(3600), Ttl::from_secs(1_209_600), Ttl::from_secs(300))),
    );
    vec![
        soa.clone(),
        Record::new(apex.clone(), Class::IN, Ttl::from_secs(3600), ZoneRecordData::Ns(Ns::new(name("ns.example.org.")))),
        Record::new(apex.clone(), Class::IN, Ttl::from_secs(3600), ZoneRecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 53)))),
        Record::new(apex.clone(), Class::IN, Ttl::from_secs(3600), ZoneRecordData::Aaaa(Aaaa::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53)))),
        soa,
    ]
}

impl Plugin for Erratic {
    fn name(&self) -> &'static str {
        "erratic"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let nr = self.count.fetch_add(1, Ordering::Relaxed);
        let (drop, truncate, delay) = (every(self.drop, nr), every(self.truncate, nr), every(self.delay, nr));
        let mut reply = Reply::for_request(req);
        reply.header.set_aa(true);
        reply.header.set_tc(truncate);
        let ttl = Ttl::ZERO;
        let result = match req.qtype {
            Rtype::A => {
                reply.answer.push(Record::new(req.qname.clone(), Class::IN, ttl, ZoneRecordData::A(A::new(Ipv4Addr::new(192, 0, 2, 53)))));
                Ok(reply)
            }
            Rtype::AAAA => {
                let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
                reply.answer.push(Record::new(req.qname.clone(), Class::IN, ttl, ZoneRecordData::Aaaa(Aaaa::new(a))));
                Ok(reply)
            }
            Rtype::AXFR => {
                reply.answer = zone(&req.qname);
                Ok(reply)
            }
            _ => Err(ServeError::servfail("erratic", format!("no answer for type {}", req.qtype))),
        };
        if drop {
            return Box::pin(std::future::ready(Err(ServeError::dropped("erratic", format!("query {nr} dropped")))));
        }
        if !delay {
            return Box::pin(std::future::ready(result));
        }
        Box::pin(async move {
            tokio::time::sleep(self.duration).await;
            result
        })
    }
}

#[cfg(test)]
mod tests;
