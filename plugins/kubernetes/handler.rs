//! The answers: the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0) as
//! CoreDNS's kubernetes plugin answers it, rule for rule (its `parseRequest`, `Records`,
//! `findServices`, `findPods`, `Reverse`, and the `plugin.A/SRV/PTR/NS/SOA` helpers it uses).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use domain::base::Serial;
use domain::rdata::{Aaaa, Cname, Ns, Ptr, Soa, Srv, Txt, A};

use super::store::{key, Port, Store};
use crate::plugin::prelude::*;

/// The schema version `dns-version.ZONE` answers (spec §2.3.1).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";

/// How pod names `a-b-c-d.ns.pod.zone` are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodMode {
    #[default]
    Disabled,
    Insecure,
    Verified,
}

/// Options the answers depend on.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Zones served, lower case with a trailing dot; the first is the primary (PTR targets).
    pub zones: Vec<String>,
    /// `namespaces`: when not empty, only these are exposed.
    pub namespaces: Vec<String>,
    pub pods: PodMode,
    pub endpoint_pod_names: bool,
    pub ignore_empty_service: bool,
    pub ttl: u32,
    /// `None`: no fallthrough; `Some([])`: every name; else names in these zones (lower case, dot).
    pub fallthrough: Option<Vec<String>>,
    /// Addresses of this server, for the NS records of the zone (CoreDNS's `localIPs`).
    pub local_ips: Vec<IpAddr>,
    pub startup_timeout: Duration,
    /// The host's resolv.conf search list, after the cluster's own in autopath's search path.
    pub autopath_search: Vec<String>,
}

/// State shared between the handler and the watchers.
pub struct Shared {
    pub store: RwLock<Store>,
    /// Every watcher has completed its first list.
    pub synced: AtomicBool,
    pub started: Instant,
}

impl Shared {
    pub fn new(synced: bool) -> Shared {
        Shared { store: RwLock::new(Store::default()), synced: AtomicBool::new(synced), started: Instant::now() }
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

pub struct Kubernetes {
    pub shared: Arc<Shared>,
    pub opts: Options,
    /// Dropping this stops the watchers (a reload builds a new plugin).
    pub _watch: Option<super::watch::Handle>,
}

/// CoreDNS's errors that make NXDOMAIN: errNoItems, errNsNotExposed, errInvalidRequest.
struct NameError;

/// CoreDNS's `recordRequest`.
#[derive(Default, Debug)]
struct Parsed<'a> {
    port: &'a str,
    protocol: &'a str,
    endpoint: &'a str,
    service: &'a str,
    namespace: &'a str,
    pod_or_svc: &'a str,
}

/// CoreDNS's `parseRequest`: `_port._proto.service.namespace.(svc|pod)`, `endpoint.service...`,
/// `service.namespace...`, `namespace.(svc|pod)`; anything longer or otherwise is invalid.
fn parse_request(base: &str) -> Result<Parsed<'_>, NameError> {
    let mut r = Parsed::default();
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(r);
    }
    let segs: Vec<&str> = base.split('.').collect();
    let mut last = segs.len() as isize - 1;
    let at = |i: isize| segs[i as usize];
    r.pod_or_svc = at(last);
    if r.pod_or_svc != "pod" && r.pod_or_svc != "svc" {
        return Err(NameError);
    }
    last -= 1;
    if last < 0 {
        return Ok(r);
    }
    r.namespace = at(last);
    last -= 1;
    if last < 0 {
        return Ok(r);
    }
    r.service = at(last);
    last -= 1;
    if last < 0 {
        return Ok(r);
    }
    match last {
        0 => r.endpoint = at(0),
        1 => {
            r.protocol = at(1).strip_prefix('_').unwrap_or(at(1));
            r.port = at(0).strip_prefix('_').unwrap_or(at(0));
        }
        _ => return Err(NameError),
    }
    Ok(r)
}

/// An empty request field matches anything; otherwise names compare case-insensitively.
fn matches(want: &str, have: &str) -> bool {
    want.is_empty() || want.eq_ignore_ascii_case(have)
}

/// CoreDNS's `msg.Service`: an address or a name, with the name that SRV targets and NS
/// records use (`key`, CoreDNS's path turned back into a domain).
#[derive(Debug, Clone)]
struct Hit {
    host: Host,
    port: i32,
    key: String,
    ttl: u32,
}

#[derive(Debug, Clone)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// CoreDNS's `endpointHostname`.
fn endpoint_hostname(a: &super::store::EndpointAddr, pod_names: bool) -> String {
    if let Some(h) = &a.hostname {
        return h.to_string();
    }
    if pod_names {
        if let Some(t) = &a.target {
            return t.to_string();
        }
    }
    match a.ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn name(s: &str) -> Option<Name<Bytes>> {
    Name::<Bytes>::from_str(s).ok()
}

fn rr(owner: &Name<Bytes>, ttl: u32, data: ZoneRecordData<Bytes, Name<Bytes>>) -> crate::plugin::Rr {
    Record::new(owner.clone(), Class::IN, Ttl::from_secs(ttl), data)
}

/// The outcome of one lookup before it becomes a reply.
#[derive(Default)]
struct Answer {
    records: Vec<crate::plugin::Rr>,
    extra: Vec<crate::plugin::Rr>,
    /// An ExternalName target outside our zones, to be resolved by the rest of the chain.
    resolve: Option<Name<Bytes>>,
}

impl Kubernetes {
    /// The longest of our zones that `lower` (lower case, trailing dot) is in.
    fn zone_of(&self, lower: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, z) in self.opts.zones.iter().enumerate() {
            let inside = z == "." || lower == z || (lower.len() > z.len() && lower.ends_with(z.as_str()) && lower.as_bytes()[lower.len() - z.len() - 1] == b'.');
            if inside && best.is_none_or(|b| self.opts.zones[b].len() < z.len()) {
                best = Some(i);
            }
        }
        best
    }

    fn configured_namespace(&self, ns: &str) -> bool {
        self.opts.namespaces.is_empty() || self.opts.namespaces.iter().any(|n| n == ns)
    }

    /// CoreDNS's `namespaceExposed`: configured, and existing (after `namespace_labels`).
    fn namespace_exposed(&self, store: &Store, ns: &str) -> bool {
        self.configured_namespace(ns) && store.has_namespace(ns)
    }

    fn falls_through(&self, lower: &str) -> bool {
        match &self.opts.fallthrough {
            None => false,
            Some(zs) => zs.is_empty() || zs.iter().any(|z| z == "." || lower == z || lower.ends_with(&format!(".{z}"))),
        }
    }

    /// CoreDNS's `Records`: the hits of a service or pod name.
    fn records(&self, store: &Store, base: &str, zone: &str, lower: &str) -> Result<Vec<Hit>, NameError> {
        let r = parse_request(base)?;
        if r.pod_or_svc.is_empty() {
            return Ok(Vec::new());
        }
        if lower.ends_with(".in-addr.arpa.") || lower.ends_with(".ip6.arpa.") {
            return Err(NameError);
        }
        if !self.namespace_exposed(store, r.namespace) {
            return Err(NameError);
        }
        if r.pod_or_svc == "pod" {
            return self.find_pods(store, &r, zone);
        }
        self.find_services(store, &r, zone)
    }

    fn find_pods(&self, store: &Store, r: &Parsed, zone: &str) -> Result<Vec<Hit>, NameError> {
        if self.opts.pods == PodMode::Disabled {
            return Err(NameError);
        }
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let podname = r.service;
        let text = if podname.matches('-').count() == 3 && !podname.contains("--") {
            podname.replace('-', ".")
        } else {
            podname.replace('-', ":")
        };
        let Ok(ip) = IpAddr::from_str(&text) else { return Err(NameError) };
        let hit = Hit { host: Host::Ip(ip), port: 0, key: format!("{podname}.{}.pod.{zone}", r.namespace), ttl: self.opts.ttl };
        match self.opts.pods {
            PodMode::Insecure => Ok(vec![hit]),
            _ => {
                if store.pod_namespaces(&ip).iter().any(|(ns, _)| matches(r.namespace, ns)) {
                    Ok(vec![hit])
                } else {
                    Err(NameError)
                }
            }
        }
    }

    fn find_services(&self, store: &Store, r: &Parsed, zone: &str) -> Result<Vec<Hit>, NameError> {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let k = key(r.service, r.namespace);
        let Some(svc) = store.service_by_key(&k) else { return Err(NameError) };
        let ttl = self.opts.ttl;
        let svc_name = format!("{}.{}.svc.{zone}", r.service, r.namespace);
        let mut out = Vec::new();
        let mut found = false;
        if self.opts.ignore_empty_service && svc.external_name.is_none() && !svc.headless && store.slices(&k).all(|s| s.addrs.is_empty()) {
            return Err(NameError);
        }
        if let Some(ext) = &svc.external_name {
            // ExternalName services have no endpoints (CoreDNS does not look at the port and
            // protocol labels here: `_p._tcp.ext.ns.svc.ZONE` is the CNAME too).
            if !r.endpoint.is_empty() {
                return Err(NameError);
            }
            // CoreDNS: only a host name (not an address) makes a CNAME.
            if IpAddr::from_str(ext).is_err() {
                let mut target = ext.to_string();
                if !target.ends_with('.') {
                    target.push('.');
                }
                return Ok(vec![Hit { host: Host::Name(target), port: 0, key: svc_name, ttl }]);
            }
            return Err(NameError);
        }
        if svc.headless || !r.endpoint.is_empty() {
            for slice in store.slices(&k) {
                for a in &slice.addrs {
                    let host = endpoint_hostname(a, self.opts.endpoint_pod_names);
                    if !matches(r.endpoint, &host) {
                        continue;
                    }
                    let sentinel = [Port::new("", "", -1)];
                    let ports = if slice.ports.is_empty() { &sentinel[..] } else { &slice.ports[..] };
                    for p in ports {
                        if !(matches(r.port, &p.name) && matches(r.protocol, p.protocol.as_str())) {
                            continue;
                        }
                        found = true;
                        out.push(Hit { host: Host::Ip(a.ip), port: p.port, key: format!("{host}.{svc_name}"), ttl });
                    }
                }
            }
        } else {
            let sentinel = [Port::new("", "", -1)];
            let ports = if svc.ports.is_empty() { &sentinel[..] } else { &svc.ports[..] };
            for p in ports {
                if !(matches(r.port, &p.name) && matches(r.protocol, p.protocol.as_str())) {
                    continue;
                }
                found = true;
                for ip in &svc.cluster_ips {
                    out.push(Hit { host: Host::Ip(*ip), port: p.port, key: svc_name.clone(), ttl });
                }
            }
        }
        if found {
            Ok(out)
        } else {
            Err(NameError)
        }
    }

    /// CoreDNS's `nsAddrs`: the services whose endpoints are this server, by their ClusterIPs
    /// (a headless one by those endpoints' addresses, named after them); with `external`, their
    /// external addresses (`k8s_external`). When no endpoint is this server: this server's
    /// addresses, named `ns.dns.ZONE`.
    fn ns_addrs_for(&self, store: &Store, zone: &str, external: bool) -> Vec<(String, IpAddr)> {
        let mut out = Vec::new();
        let mut found = false;
        for ip in &self.opts.local_ips {
            for sk in store.endpoint_services_for_ip(ip) {
                found = true;
                let Some(svc) = store.service_by_key(sk) else { continue };
                if external {
                    out.extend(svc.external_ips.iter().map(|eip| (format!("{sk}.{zone}"), *eip)));
                } else if svc.headless {
                    for slice in store.slices(sk) {
                        for a in &slice.addrs {
                            out.push((format!("{}.{sk}.svc.{zone}", endpoint_hostname(a, self.opts.endpoint_pod_names)), a.ip));
                        }
                    }
                } else {
                    out.extend(svc.cluster_ips.iter().map(|cip| (format!("{sk}.svc.{zone}"), *cip)));
                }
            }
        }
        if !found {
            out = self.opts.local_ips.iter().map(|ip| (format!("ns.dns.{zone}"), *ip)).collect();
        }
        out
    }

    fn ns_addrs(&self, store: &Store, zone: &str) -> Vec<(String, IpAddr)> {
        self.ns_addrs_for(store, zone, false)
    }

    /// CoreDNS's kubernetes `Services`: the special names, then `records`.
    fn services(&self, store: &Store, qtype: Rtype, base: &str, zone: &str, lower: &str) -> Result<Vec<Hit>, NameError> {
        if qtype == Rtype::TXT {
            if base == "dns-version" {
                return Ok(vec![Hit { host: Host::Name(String::new()), port: 0, key: String::new(), ttl: 28800 }]);
            }
            // An existing name without TXT is NODATA; anything else NXDOMAIN.
            return match self.records(store, base, zone, lower) {
                Ok(v) if !v.is_empty() => Ok(Vec::new()),
                _ => Err(NameError),
            };
        }
        if qtype == Rtype::NS || base == "ns.dns" {
            return Ok(self
                .ns_addrs(store, zone)
                .into_iter()
                .map(|(n, ip)| Hit { host: Host::Ip(ip), port: 0, key: n, ttl: self.opts.ttl })
                .collect());
        }
        let hits = self.records(store, base, zone, lower)?;
        if qtype == Rtype::SRV {
            // SRV for ExternalName services is not implemented in CoreDNS either.
            return Ok(hits.into_iter().filter(|h| matches!(h.host, Host::Ip(_))).collect());
        }
        Ok(hits)
    }

    /// CoreDNS's `plugin.A`/`plugin.AAAA` over `services`, following in-zone CNAMEs.
    #[allow(clippy::too_many_arguments)] // the recursion carries the name in three forms
    fn addresses(&self, store: &Store, qtype: Rtype, owner: &Name<Bytes>, base: &str, zone: &str, lower: &str, depth: usize, out: &mut Answer) -> Result<(), NameError> {
        // checkForApex: the apex itself has no addresses (its `dns.ZONE` lookup is invalid).
        let hits = self.services(store, qtype, base, zone, lower)?;
        let mut seen: Vec<IpAddr> = Vec::new();
        for h in hits {
            match h.host {
                Host::Ip(ip) => {
                    if seen.contains(&ip) {
                        continue;
                    }
                    let data = match (ip, qtype) {
                        (IpAddr::V4(a), Rtype::A) => ZoneRecordData::A(A::new(a)),
                        (IpAddr::V6(a), Rtype::AAAA) => ZoneRecordData::Aaaa(Aaaa::new(a)),
                        _ => continue,
                    };
                    seen.push(ip);
                    out.records.push(rr(owner, h.ttl, data));
                }
                Host::Name(target) => {
                    let tl = target.to_ascii_lowercase();
                    if tl == lower || depth > 7 {
                        continue;
                    }
                    let Some(tname) = name(&target) else { continue };
                    let cname = rr(owner, h.ttl, ZoneRecordData::Cname(Cname::new(tname.clone())));
                    if let Some(zi) = self.zone_of(&tl) {
                        let z = &self.opts.zones[zi];
                        let b = base_of(&tl, z);
                        let mut sub = Answer::default();
                        if self.addresses(store, qtype, &tname, b, z, &tl, depth + 1, &mut sub).is_ok() && !sub.records.is_empty() {
                            out.records.push(cname);
                            out.records.extend(sub.records);
                        }
                        continue;
                    }
                    out.records.push(cname);
                    out.resolve = Some(tname);
                }
            }
        }
        Ok(())
    }

    /// CoreDNS's `plugin.SRV`: weights share 100 among the hits, targets get address records
    /// in the additional section.
    fn srv(&self, hits: Vec<Hit>, owner: &Name<Bytes>, out: &mut Answer) {
        let total = 100 * hits.len().max(1);
        let weight = ((100.0 / total as f64) * 100.0).floor().max(1.0) as u16;
        let mut dup_srv: Vec<(String, i32)> = Vec::new();
        let mut dup_addr: Vec<(String, IpAddr)> = Vec::new();
        for h in hits {
            if h.port == -1 {
                continue;
            }
            let Host::Ip(ip) = h.host else { continue };
            let target = h.key;
            let Some(tname) = name(&target) else { continue };
            if !dup_srv.contains(&(target.clone(), h.port)) {
                dup_srv.push((target.clone(), h.port));
                out.records.push(rr(owner, h.ttl, ZoneRecordData::Srv(Srv::new(0, weight, h.port as u16, tname.clone()))));
            }
            if !dup_addr.contains(&(target.clone(), ip)) {
                dup_addr.push((target, ip));
                out.extra.push(address(&tname, h.ttl, ip));
            }
        }
    }

    /// CoreDNS's `Reverse` and `serviceRecordForIP`: a ClusterIP names its service; otherwise
    /// every endpoint with the address names itself.
    fn ptr(&self, store: &Store, lower: &str, base: &str, zone: &str) -> Result<Vec<String>, NameError> {
        let Some(ip) = crate::cidr::reverse_name_ip(lower) else {
            self.records(store, base, zone, lower)?;
            return Ok(Vec::new());
        };
        let primary = self.opts.zones.first().map_or("cluster.local.", |z| z.as_str());
        let exposed = |sk: &str| {
            let ns = sk.rsplit('.').next().unwrap_or("");
            self.opts.namespaces.is_empty() || self.configured_namespace(ns)
        };
        if let Some(sk) = store.service_for_ip(&ip).filter(|sk| exposed(sk)) {
            return Ok(vec![format!("{sk}.svc.{primary}")]);
        }
        let mut out = Vec::new();
        for sk in store.endpoint_services_for_ip(&ip) {
            if !exposed(sk) {
                continue;
            }
            for slice in store.slices(sk) {
                for a in slice.addrs.iter().filter(|a| a.ip == ip) {
                    let n = format!("{}.{sk}.svc.{primary}", endpoint_hostname(a, self.opts.endpoint_pod_names));
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
        }
        if out.is_empty() {
            Err(NameError)
        } else {
            Ok(out)
        }
    }

    /// The SOA of a zone as CoreDNS's `plugin.SOA` builds it.
    fn soa(&self, store: &Store, zone_owner: &Name<Bytes>, zone: &str) -> crate::plugin::Rr {
        let ttl = self.opts.ttl;
        let mname = name(&format!("ns.dns.{zone}")).unwrap_or_else(Name::root_bytes);
        let rname = name(&format!("hostmaster.{zone}")).unwrap_or_else(Name::root_bytes);
        let soa = Soa::new(mname, rname, Serial(store.modified), Ttl::from_secs(7200), Ttl::from_secs(1800), Ttl::from_secs(86400), Ttl::from_secs(ttl));
        rr(zone_owner, ttl.min(300), ZoneRecordData::Soa(soa))
    }

    /// Answers a query in our zones; `None` passes it on (out of zone, or fallthrough).
    fn lookup(&self, req: &Request) -> Option<Result<Looked, ServeError>> {
        let qname_text = req.qname.fmt_with_dot().to_string();
        let lower = qname_text.to_ascii_lowercase();
        let zi = self.zone_of(&lower)?;
        let zone = self.opts.zones[zi].as_str();
        let synced = self.shared.synced();
        if !synced && self.shared.started.elapsed() < self.opts.startup_timeout {
            return Some(Err(ServeError::servfail("kubernetes", "not yet synced with the API server")));
        }
        // The zone as the client wrote it: CoreDNS keeps the query's case in owner names.
        let zone_q = if zone == "." { "." } else { &qname_text[qname_text.len() - zone.len()..] };
        let zone_owner = name(zone_q).unwrap_or_else(Name::root_bytes);
        let base = base_of(&lower, zone);
        let owner = &req.qname;
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Answer::default();
        let apex = base.is_empty();
        let res: Result<(), NameError> = match req.qtype {
            Rtype::A | Rtype::AAAA => self.addresses(&store, req.qtype, owner, base, zone, &lower, 0, &mut out),
            Rtype::TXT => self.services(&store, Rtype::TXT, base, zone, &lower).map(|hits| {
                for h in hits.iter().take(1) {
                    if let Ok(txt) = Txt::build_from_slice(DNS_SCHEMA_VERSION.as_bytes()) {
                        out.records.push(rr(owner, h.ttl, ZoneRecordData::Txt(txt)));
                    }
                }
            }),
            Rtype::CNAME => self.services(&store, Rtype::CNAME, base, zone, &lower).map(|hits| {
                for h in hits {
                    if let Host::Name(t) = h.host {
                        if let Some(t) = name(&t) {
                            out.records.push(rr(owner, h.ttl, ZoneRecordData::Cname(Cname::new(t))));
                        }
                    }
                }
            }),
            Rtype::SRV => self.services(&store, Rtype::SRV, base, zone, &lower).map(|hits| self.srv(hits, owner, &mut out)),
            Rtype::PTR => self.ptr(&store, &lower, base, zone).map(|names| {
                for n in names {
                    if let Some(n) = name(&n) {
                        out.records.push(rr(owner, self.opts.ttl, ZoneRecordData::Ptr(Ptr::new(n))));
                    }
                }
            }),
            Rtype::SOA => {
                if apex {
                    out.records.push(self.soa(&store, &zone_owner, zone_q));
                }
                Ok(())
            }
            Rtype::AXFR | Rtype::IXFR => return Some(Ok((Reply::error(req, Rcode::REFUSED), None))),
            Rtype::NS if apex => {
                for (n, ip) in self.ns_addrs(&store, zone_q) {
                    let Some(target) = name(&n) else { continue };
                    let ns = rr(owner, self.opts.ttl, ZoneRecordData::Ns(Ns::new(target.clone())));
                    if !out.records.contains(&ns) {
                        out.records.push(ns);
                    }
                    out.extra.push(address(&target, self.opts.ttl, ip));
                }
                Ok(())
            }
            // MX and every other type: a lookup of A tells NODATA from NXDOMAIN.
            _ => self.addresses(&store, Rtype::A, owner, base, zone, &lower, 0, &mut Answer::default()),
        };
        let mut reply = Reply::for_request(req);
        reply.header.set_aa(true);
        match res {
            Err(NameError) => {
                if self.falls_through(&lower) {
                    return None;
                }
                if !synced {
                    return Some(Err(ServeError::servfail("kubernetes", "not yet synced with the API server")));
                }
                reply.rcode = Rcode::NXDOMAIN.into();
                reply.authority.push(self.soa(&store, &zone_owner, zone_q));
            }
            Ok(()) if out.records.is_empty() => reply.authority.push(self.soa(&store, &zone_owner, zone_q)),
            Ok(()) => {
                reply.answer = out.records;
                reply.additional = out.extra;
            }
        }
        Some(Ok((reply, out.resolve)))
    }
}

/// A reply, and an ExternalName target for the rest of the chain to resolve.
type Looked = (Reply, Option<Name<Bytes>>);

/// The labels of `lower` before `zone` (both lower case with a trailing dot), without the dot.
fn base_of<'a>(lower: &'a str, zone: &str) -> &'a str {
    if zone == "." {
        return lower.trim_end_matches('.');
    }
    if lower.len() <= zone.len() {
        return "";
    }
    &lower[..lower.len() - zone.len() - 1]
}

fn address(owner: &Name<Bytes>, ttl: u32, ip: IpAddr) -> crate::plugin::Rr {
    match ip {
        IpAddr::V4(a) => rr(owner, ttl, ZoneRecordData::A(A::new(a))),
        IpAddr::V6(a) => rr(owner, ttl, ZoneRecordData::Aaaa(Aaaa::new(a))),
    }
}

impl Plugin for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn ready(&self) -> bool {
        self.shared.synced()
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if req.qclass != Class::IN {
            return next.serve(req);
        }
        match self.lookup(req) {
            None => next.serve(req),
            Some(Err(e)) => Box::pin(std::future::ready(Err(e))),
            Some(Ok((reply, None))) => Box::pin(std::future::ready(Ok(reply))),
            Some(Ok((mut reply, Some(target)))) => Box::pin(async move {
                // An ExternalName outside our zones: CoreDNS asks its upstream for the target;
                // here the rest of the chain (forward, in kubeadm's Corefile) answers it.
                if !next.is_empty() {
                    let mut sub = req.clone();
                    sub.qname = target;
                    if let Ok(r) = next.serve(&mut sub).await {
                        reply.answer.extend(r.answer);
                    }
                }
                Ok(reply)
            }),
        }
    }
}

/// `autopath @kubernetes` (CoreDNS's `AutoPath`): the search path of the running pod that sent
/// the query, found by its address (`pods verified` keeps the index), as kubelet writes it into
/// the pod's resolv.conf: `NS.svc.ZONE`, `svc.ZONE`, `ZONE`, then the host's search list, then
/// the name as asked.
impl crate::plugin::AutoPath for Kubernetes {
    fn search_path(&self, req: &Request) -> Option<Vec<String>> {
        if self.opts.pods != PodMode::Verified {
            return None;
        }
        let lower = req.name_lower();
        let zone = &self.opts.zones[self.zone_of(&lower)?];
        let ip = req.client.ip().to_canonical();
        let ns = {
            let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
            store.pod_namespaces(&ip).iter().find(|(_, running)| *running)?.0.clone()
        };
        let mut search = Vec::with_capacity(4 + self.opts.autopath_search.len());
        if zone == "." {
            search.extend([format!("{ns}.svc."), "svc.".to_string(), ".".to_string()]);
        } else {
            search.extend([format!("{ns}.svc.{zone}"), format!("svc.{zone}"), zone.clone()]);
        }
        search.extend(self.opts.autopath_search.iter().cloned());
        search.push(String::new());
        Some(search)
    }
}

/// `k8s_external` (CoreDNS's `External`, `ExternalAddress`, `ExternalSerial`, `ExternalReverse`).
impl crate::plugin::External for Kubernetes {
    fn external(&self, base: &str, headless: bool) -> Result<Vec<crate::plugin::ExternalHit>, ()> {
        use crate::plugin::ExternalHit;
        let segs: Vec<&str> = base.split('.').filter(|s| !s.is_empty()).collect();
        let Some((&namespace, rest)) = segs.split_last() else { return Err(()) };
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        if !self.namespace_exposed(&store, namespace) {
            return Err(());
        }
        let Some((&service, rest)) = rest.split_last() else { return Ok(Vec::new()) };
        let strip = |s: &'_ str| s.strip_prefix('_').unwrap_or(s).to_string();
        let (endpoint, port, protocol) = match rest {
            [] => (String::new(), String::new(), String::new()),
            [e] => (strip(e), String::new(), String::new()),
            [p, pr] => (String::new(), strip(p), strip(pr)),
            _ => return Err(()),
        };
        let k = key(service, namespace);
        let Some(svc) = store.service_by_key(&k) else { return Err(()) };
        let sentinel = [Port::new("", "", -1)];
        let mut hits = Vec::new();
        let mut found = false;
        if headless && svc.external_ips.is_empty() && (svc.headless || !endpoint.is_empty()) {
            for slice in store.slices(&k) {
                let ports = if slice.ports.is_empty() { &sentinel[..] } else { &slice.ports[..] };
                for a in &slice.addrs {
                    let host = endpoint_hostname(a, self.opts.endpoint_pod_names);
                    if !matches(&endpoint, &host) {
                        continue;
                    }
                    for p in ports.iter().filter(|p| matches(&port, &p.name) && matches(&protocol, p.protocol.as_str())) {
                        found = true;
                        hits.push(ExternalHit { ip: a.ip, port: p.port, target: format!("{host}.{service}.{namespace}") });
                    }
                }
            }
        } else {
            let ports = if svc.ports.is_empty() { &sentinel[..] } else { &svc.ports[..] };
            for ip in &svc.external_ips {
                for p in ports.iter().filter(|p| matches(&port, &p.name) && matches(&protocol, p.protocol.as_str())) {
                    found = true;
                    hits.push(ExternalHit { ip: *ip, port: p.port, target: format!("{service}.{namespace}") });
                }
            }
        }
        if found {
            Ok(hits)
        } else {
            Err(())
        }
    }

    fn external_reverse(&self, ip: IpAddr) -> Vec<String> {
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        store
            .external_services_for_ip(&ip)
            .iter()
            .filter(|sk| self.configured_namespace(sk.rsplit('.').next().unwrap_or("")))
            .map(|sk| sk.to_string())
            .collect()
    }

    fn external_ns_addrs(&self) -> Vec<IpAddr> {
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<IpAddr> = Vec::new();
        for (_, ip) in self.ns_addrs_for(&store, ".", true) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        out
    }

    fn external_serial(&self) -> u32 {
        self.shared.store.read().unwrap_or_else(|e| e.into_inner()).modified
    }

    fn external_ready(&self) -> bool {
        self.shared.synced() || self.shared.started.elapsed() >= self.opts.startup_timeout
    }
}

#[cfg(test)]
pub(super) fn for_tests(opts: Options, fill: impl FnOnce(&mut Store)) -> Kubernetes {
    let shared = Arc::new(Shared::new(true));
    shared.store.write().expect("not poisoned").keep_targets = opts.endpoint_pod_names;
    fill(&mut shared.store.write().expect("not poisoned"));
    Kubernetes { shared, opts, _watch: None }
}
