//! k8s_external: answers names under extra zones (`svc.ns.example.org.`) with the external
//! addresses of Kubernetes services (`spec.externalIPs` and LoadBalancer ingress IPs) and, with
//! `headless`, the endpoints of headless services, as CoreDNS's k8s_external does. The records
//! come from the kubernetes plugin of the same server block, through the `External` link of the
//! plugin contract; the zone's apex has its own SOA and NS, and `APEX.ZONE` holds the name
//! servers (`ns1.dns.ZONE`).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::OnceLock;

use domain::base::Serial;
use domain::rdata::{Aaaa, Ns, Ptr, Soa, Srv, A};

use crate::plugin::prelude::*;
use crate::plugin::{zone_text, External, ExternalHit, Links};

pub const DEFAULT_TTL: u32 = 5;
pub const DEFAULT_APEX: &str = "dns";

/// `k8s_external [ZONES...] { apex APEX; ttl TTL; headless; fallthrough [ZONES...] }`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zones served; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// The label below each zone that holds the name server records (`dns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headless: bool,
    /// `None`: no fallthrough; `Some([])`: for every name; else for names in these zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        zone_text(&t.text).map_err(|m| t.err(m))?;
        c.zones.push(t.text.clone());
    }
    for line in d.lines() {
        match line.key().text.as_str() {
            "apex" => {
                let t = &line.nargs(1, 1)?[0];
                let ok = !t.text.is_empty() && t.text.len() <= 63 && t.text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(t.err(format!("apex must be one DNS label, got {:?}", t.text)));
                }
                c.apex = Some(t.text.to_ascii_lowercase());
            }
            "ttl" => {
                let t = &line.nargs(1, 1)?[0];
                let ttl: u32 = t.parse("a TTL in seconds")?;
                // CoreDNS: 1 to 3600 seconds.
                if !(1..=3600).contains(&ttl) {
                    return Err(t.err(format!("ttl must be in range [1, 3600]: {ttl}")));
                }
                c.ttl = Some(ttl);
            }
            "headless" => {
                line.nargs(0, 0)?;
                c.headless = true;
            }
            "fallthrough" => c.fallthrough = Some(crate::plugin::parse_fallthrough(line)?),
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let zones: Vec<String> = if c.zones.is_empty() {
        ctx.zones.iter().map(|z| z.fmt_with_dot().to_string().to_ascii_lowercase()).collect()
    } else {
        c.zones.iter().map(|z| zone_text(z)).collect::<Result<_, _>>().map_err(SetupError::new)?
    };
    let fallthrough = c.fallthrough.as_ref().map(|zs| zs.iter().map(|z| zone_text(z)).collect::<Result<Vec<_>, _>>()).transpose().map_err(SetupError::new)?;
    let source = ctx.state::<Links<dyn External>>().slot("kubernetes");
    let check = source.clone();
    ctx.on_startup(move |_| {
        if check.get().is_none() {
            log::warn!(target: "plugin/k8s_external", "no kubernetes plugin in this server block: queries pass unchanged");
        }
    });
    ctx.add_handler(Arc::new(K8sExternal {
        zones,
        apex: c.apex.clone().unwrap_or_else(|| DEFAULT_APEX.to_string()),
        ttl: c.ttl.unwrap_or(DEFAULT_TTL),
        headless: c.headless,
        fallthrough,
        source,
    }));
    Ok(())
}

pub struct K8sExternal {
    /// Lower case, fully qualified.
    zones: Vec<String>,
    apex: String,
    ttl: u32,
    headless: bool,
    fallthrough: Option<Vec<String>>,
    source: Arc<OnceLock<Arc<dyn External>>>,
}

/// `name` (lower case, trailing dot) is `zone` or below it.
fn in_zone(name: &str, zone: &str) -> bool {
    zone == "." || name == zone || (name.len() > zone.len() && name.ends_with(zone) && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

fn name(s: &str) -> Option<Name<Bytes>> {
    Name::<Bytes>::from_str(s).ok()
}

fn rr(owner: &Name<Bytes>, ttl: u32, data: ZoneRecordData<Bytes, Name<Bytes>>) -> Rr {
    Record::new(owner.clone(), Class::IN, Ttl::from_secs(ttl), data)
}

fn address(owner: &Name<Bytes>, ttl: u32, ip: IpAddr) -> Rr {
    match ip {
        IpAddr::V4(a) => rr(owner, ttl, ZoneRecordData::A(A::new(a))),
        IpAddr::V6(a) => rr(owner, ttl, ZoneRecordData::Aaaa(Aaaa::new(a))),
    }
}

impl K8sExternal {
    /// The longest of our zones that `lower` is in.
    fn zone_of(&self, lower: &str) -> Option<&str> {
        self.zones.iter().filter(|z| in_zone(lower, z)).max_by_key(|z| z.len()).map(|z| z.as_str())
    }

    fn falls_through(&self, lower: &str) -> bool {
        self.fallthrough.as_ref().is_some_and(|zs| zs.is_empty() || zs.iter().any(|z| in_zone(lower, z)))
    }

    /// CoreDNS's k8s_external SOA: `ns1.APEX.ZONE. hostmaster.APEX.ZONE.`, the kubernetes
    /// plugin's serial, minimum TTL the configured TTL.
    fn soa(&self, zone: &str, serial: u32) -> Option<Rr> {
        let owner = name(zone)?;
        let mname = name(&self.join("ns1", zone))?;
        let rname = name(&self.join("hostmaster", zone))?;
        let soa = Soa::new(mname, rname, Serial(serial), Ttl::from_secs(7200), Ttl::from_secs(1800), Ttl::from_secs(86400), Ttl::from_secs(self.ttl));
        Some(rr(&owner, self.ttl, ZoneRecordData::Soa(soa)))
    }

    /// `label.APEX.zone`.
    fn join(&self, label: &str, zone: &str) -> String {
        if zone == "." {
            format!("{label}.{}.", self.apex)
        } else {
            format!("{label}.{}.{zone}", self.apex)
        }
    }

    fn answer(&self, src: &dyn External, req: &Request, lower: &str, zone: &str) -> Option<Reply> {
        let mut reply = Reply::for_request(req);
        reply.header.set_aa(true);
        let serial = src.external_serial();
        let soa = self.soa(zone, serial);
        let nodata = |reply: &mut Reply| reply.authority.extend(soa.clone());
        let ttl = self.ttl;
        let owner = req.qname.clone();
        // The apex: SOA and NS.
        if lower == zone {
            let ns_name = name(&self.join("ns1", zone));
            match (req.qtype, ns_name) {
                (Rtype::SOA, _) => reply.answer.extend(soa.clone()),
                (Rtype::NS, Some(ns)) => {
                    reply.answer.push(rr(&owner, ttl, ZoneRecordData::Ns(Ns::new(ns.clone()))));
                    reply.additional.extend(src.external_ns_addrs().into_iter().map(|ip| address(&ns, ttl, ip)));
                }
                _ => nodata(&mut reply),
            }
            return Some(reply);
        }
        let base = if zone == "." { &lower[..lower.len() - 1] } else { &lower[..lower.len() - zone.len() - 1] };
        // The name servers' subdomain: APEX is an empty non-terminal, ns1.APEX has addresses.
        if base == self.apex || base.ends_with(&format!(".{}", self.apex)) {
            match base.strip_suffix(&self.apex).map(|s| s.trim_end_matches('.')) {
                Some("") => nodata(&mut reply),
                Some("ns1") => {
                    for ip in src.external_ns_addrs() {
                        if matches!((ip, req.qtype), (IpAddr::V4(_), Rtype::A) | (IpAddr::V6(_), Rtype::AAAA)) {
                            reply.answer.push(address(&owner, ttl, ip));
                        }
                    }
                    if reply.answer.is_empty() {
                        nodata(&mut reply);
                    }
                }
                _ => {
                    reply.rcode = Rcode::NXDOMAIN.into();
                    nodata(&mut reply);
                }
            }
            return Some(reply);
        }
        // PTR of an external address: the service's name under the first zone.
        if req.qtype == Rtype::PTR {
            if let Some(ip) = crate::cidr::reverse_name_ip(lower) {
                let names = src.external_reverse(ip);
                if names.is_empty() {
                    if self.falls_through(lower) {
                        return None;
                    }
                    reply.rcode = Rcode::NXDOMAIN.into();
                    nodata(&mut reply);
                }
                let first = self.zones.first().map_or(".", |z| z.as_str());
                for n in names {
                    let target = if first == "." { format!("{n}.") } else { format!("{n}.{first}") };
                    if let Some(t) = name(&target) {
                        reply.answer.push(rr(&owner, ttl, ZoneRecordData::Ptr(Ptr::new(t))));
                    }
                }
                return Some(reply);
            }
        }
        let hits = match src.external(base, self.headless) {
            Err(()) => {
                if self.falls_through(lower) {
                    return None;
                }
                reply.rcode = Rcode::NXDOMAIN.into();
                nodata(&mut reply);
                return Some(reply);
            }
            Ok(h) => h,
        };
        match req.qtype {
            Rtype::A | Rtype::AAAA => {
                let mut seen: Vec<IpAddr> = Vec::new();
                for h in &hits {
                    let fits = matches!((h.ip, req.qtype), (IpAddr::V4(_), Rtype::A) | (IpAddr::V6(_), Rtype::AAAA));
                    if fits && !seen.contains(&h.ip) {
                        seen.push(h.ip);
                        reply.answer.push(address(&owner, ttl, h.ip));
                    }
                }
            }
            Rtype::SRV => self.srv(&hits, &owner, zone, &mut reply),
            _ => {}
        }
        if reply.answer.is_empty() {
            nodata(&mut reply);
        }
        Some(reply)
    }

    /// CoreDNS's `srv`: one SRV per (target, port), weights sharing 100 among the hits, and the
    /// targets' addresses in the additional section. Hits without a port make no SRV.
    fn srv(&self, hits: &[ExternalHit], owner: &Name<Bytes>, zone: &str, reply: &mut Reply) {
        let total = 100.0 * hits.len().max(1) as f64;
        let weight = ((100.0 / total) * 100.0).floor().max(1.0) as u16;
        let mut dup_srv: Vec<(String, i32)> = Vec::new();
        let mut dup_addr: Vec<(String, IpAddr)> = Vec::new();
        for h in hits {
            if h.port < 0 {
                continue;
            }
            let target = if zone == "." { format!("{}.", h.target) } else { format!("{}.{zone}", h.target) };
            let Some(t) = name(&target) else { continue };
            if !dup_srv.contains(&(target.clone(), h.port)) {
                dup_srv.push((target.clone(), h.port));
                reply.answer.push(rr(owner, self.ttl, ZoneRecordData::Srv(Srv::new(0, weight, h.port as u16, t.clone()))));
            }
            if !dup_addr.contains(&(target.clone(), h.ip)) {
                dup_addr.push((target, h.ip));
                reply.additional.push(address(&t, self.ttl, h.ip));
            }
        }
    }
}

impl Plugin for K8sExternal {
    fn name(&self) -> &'static str {
        "k8s_external"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let Some(src) = self.source.get() else { return next.serve(req) };
        if req.qclass != Class::IN {
            return next.serve(req);
        }
        let lower = req.name_lower();
        let Some(zone) = self.zone_of(&lower) else { return next.serve(req) };
        if !src.external_ready() {
            return Box::pin(std::future::ready(Err(ServeError::servfail("k8s_external", "not yet synced with the API server"))));
        }
        match self.answer(src.as_ref(), req, &lower, zone) {
            Some(reply) => Box::pin(std::future::ready(Ok(reply))),
            None => next.serve(req),
        }
    }
}

#[cfg(test)]
mod tests;
