//! The in-memory model of the cluster that answers are made from: only the fields the records
//! need (names, addresses, ports, hostnames), indexed by name and by address. Watchers write it;
//! queries read it under a read lock that is held for the lookup only.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A port of a Service or an EndpointSlice. `port == -1` stands for "no ports declared", as
/// CoreDNS's sentinel: it still makes A records, never SRV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Shared among the ports of one name (`http`, `dns`, ...) once in the store.
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub port: i32,
}

/// A port's protocol: one byte rather than a string per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The sentinel port's: matches no protocol asked for.
    None,
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As the API writes it; queries compare it case-insensitively.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::None => "",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The API's protocol; TCP when it is left out (the API's default).
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_uppercase().as_str() {
            "" => Protocol::None,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }
}

impl Port {
    pub fn new(name: &str, protocol: &str, port: i32) -> Port {
        Port { name: name.into(), protocol: Protocol::parse(protocol), port }
    }
}

/// What a Service contributes to DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// `spec.clusterIPs` (both families for dual-stack); empty for headless services.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.clusterIP: None`.
    pub headless: bool,
    /// `spec.externalName` of a Service of type ExternalName.
    pub external_name: Option<Box<str>>,
    pub ports: Vec<Port>,
    /// `spec.externalIPs` and the `status.loadBalancer.ingress` IPs, for `k8s_external`.
    pub external_ips: Vec<IpAddr>,
}

/// One ready address of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAddr {
    pub ip: IpAddr,
    pub hostname: Option<Box<str>>,
    /// `targetRef.name`, the pod's name: kept only with `endpoint_pod_names`, which needs it.
    pub target: Option<Box<str>>,
}

/// The part of an EndpointSlice DNS uses: its service, ports and ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub service: Box<str>,
    pub ports: Vec<Port>,
    pub addrs: Vec<EndpointAddr>,
}

/// The model. Keys are (namespace, name) joined as `name.namespace`, the order of the labels in
/// a query, so that a lookup needs one string.
#[derive(Debug, Default)]
pub struct Store {
    /// Keys are shared (reference-counted) by the indexes below: one allocation a service.
    services: HashMap<Arc<str>, Service>,
    /// `service.namespace` → (slice name, slice): a service has one slice, or a few (a slice
    /// holds up to 100 endpoints), so a list is smaller than a map.
    slices: HashMap<Arc<str>, Vec<(Box<str>, Slice)>>,
    /// `slice.namespace` → `service.namespace`, to find a slice when it is deleted or moved.
    slice_owner: HashMap<Box<str>, Arc<str>>,
    namespaces: HashSet<Box<str>>,
    /// `pod.namespace` → IP; and the reverse index IP → namespaces (`pods verified`), each
    /// with whether the pod is running (autopath completes only a running pod's queries).
    pods: HashMap<Box<str>, IpAddr>,
    pod_ips: HashMap<IpAddr, Vec<(Box<str>, bool)>>,
    /// ClusterIP → `service.namespace`.
    service_ips: HashMap<IpAddr, Arc<str>>,
    /// External address → `service.namespace` of the services that have it.
    external_ips: HashMap<IpAddr, Vec<Arc<str>>>,
    /// Endpoint IP → `service.namespace` of the slices that hold it.
    endpoint_ips: HashMap<IpAddr, Owners>,
    /// Unix time of the last change: the SOA serial.
    pub modified: u32,
    /// Keep endpoints' pod names (`endpoint_pod_names`); without it they are dropped.
    pub keep_targets: bool,
    /// Port names, each kept once.
    port_names: HashSet<Arc<str>>,
}

/// The services an endpoint address belongs to: nearly always one, kept without a list.
#[derive(Debug, Clone)]
enum Owners {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Owners {
    fn as_slice(&self) -> &[Arc<str>] {
        match self {
            Owners::One(k) => std::slice::from_ref(k),
            Owners::Many(v) => v,
        }
    }

    fn add(&mut self, k: &Arc<str>) {
        if self.as_slice().iter().any(|o| o == k) {
            return;
        }
        match self {
            Owners::One(first) => *self = Owners::Many(vec![first.clone(), k.clone()]),
            Owners::Many(v) => v.push(k.clone()),
        }
    }

    /// Removes `k`; false when none is left.
    fn remove(&mut self, k: &str) -> bool {
        match self {
            Owners::One(o) => &**o != k,
            Owners::Many(v) => {
                v.retain(|o| &**o != k);
                if v.len() == 1 {
                    *self = Owners::One(v.pop().expect("one left"));
                }
                !matches!(self, Owners::Many(v) if v.is_empty())
            }
        }
    }
}

pub fn key(name: &str, namespace: &str) -> Box<str> {
    let mut k = String::with_capacity(name.len() + namespace.len() + 1);
    k.push_str(name);
    k.push('.');
    k.push_str(namespace);
    k.into_boxed_str()
}

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

fn remove_from<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<Arc<str>>>, k: K, v: &str) {
    if let Some(list) = m.get_mut(&k) {
        if let Some(i) = list.iter().position(|x| &**x == v) {
            list.swap_remove(i);
        }
        if list.is_empty() {
            m.remove(&k);
        }
    }
}

impl Store {
    pub fn touch(&mut self) {
        self.modified = now();
    }

    pub fn service(&self, name: &str, namespace: &str) -> Option<&Service> {
        self.services.get(&*key(name, namespace))
    }

    pub fn service_by_key(&self, k: &str) -> Option<&Service> {
        self.services.get(k)
    }

    /// The slices of a service, in no particular order.
    pub fn slices(&self, svc_key: &str) -> impl Iterator<Item = &Slice> {
        self.slices.get(svc_key).into_iter().flat_map(|m| m.iter().map(|(_, s)| s))
    }

    pub fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    /// The namespaces of the pods with address `ip`, and whether each is running.
    pub fn pod_namespaces(&self, ip: &IpAddr) -> &[(Box<str>, bool)] {
        self.pod_ips.get(ip).map_or(&[], |v| v.as_slice())
    }

    /// `service.namespace` of the services with external address `ip`.
    pub fn external_services_for_ip(&self, ip: &IpAddr) -> &[Arc<str>] {
        self.external_ips.get(ip).map_or(&[], |v| v.as_slice())
    }

    pub fn service_for_ip(&self, ip: &IpAddr) -> Option<&str> {
        self.service_ips.get(ip).map(|k| &**k)
    }

    pub fn endpoint_services_for_ip(&self, ip: &IpAddr) -> &[Arc<str>] {
        self.endpoint_ips.get(ip).map_or(&[], |v| v.as_slice())
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let eps = self.slices.values().flatten().map(|(_, s)| s.addrs.len()).sum();
        (self.services.len(), eps, self.namespaces.len(), self.pods.len())
    }

    /// The shared form of key `k`: the one the store holds, or a new one.
    fn shared_key(&self, k: &str) -> Arc<str> {
        if let Some((a, _)) = self.services.get_key_value(k) {
            return a.clone();
        }
        if let Some((a, _)) = self.slices.get_key_value(k) {
            return a.clone();
        }
        Arc::from(k)
    }

    fn intern_ports(&mut self, ports: &mut [Port]) {
        for p in ports {
            match self.port_names.get(&p.name) {
                Some(n) => p.name = n.clone(),
                None => {
                    self.port_names.insert(p.name.clone());
                }
            }
        }
    }

    pub fn upsert_service(&mut self, name: &str, namespace: &str, mut svc: Service) {
        self.delete_service_key(&key(name, namespace));
        let k = self.shared_key(&key(name, namespace));
        self.intern_ports(&mut svc.ports);
        svc.ports.shrink_to_fit();
        svc.cluster_ips.shrink_to_fit();
        for ip in &svc.cluster_ips {
            self.service_ips.insert(*ip, k.clone());
        }
        for ip in &svc.external_ips {
            let list = self.external_ips.entry(*ip).or_default();
            if !list.contains(&k) {
                list.push(k.clone());
            }
        }
        self.services.insert(k, svc);
        self.touch();
    }

    pub fn delete_service(&mut self, name: &str, namespace: &str) {
        self.delete_service_key(&key(name, namespace));
        self.touch();
    }

    fn delete_service_key(&mut self, k: &str) {
        if let Some(old) = self.services.remove(k) {
            for ip in &old.cluster_ips {
                if self.service_ips.get(ip).is_some_and(|o| &**o == k) {
                    self.service_ips.remove(ip);
                }
            }
            for ip in &old.external_ips {
                remove_from(&mut self.external_ips, *ip, k);
            }
        }
    }

    pub fn upsert_slice(&mut self, name: &str, namespace: &str, mut slice: Slice) {
        self.delete_slice_quiet(name, namespace);
        if !self.keep_targets {
            for a in &mut slice.addrs {
                a.target = None;
            }
        }
        slice.addrs.shrink_to_fit();
        slice.ports.shrink_to_fit();
        self.intern_ports(&mut slice.ports);
        let sk = key(name, namespace);
        let owner = self.shared_key(&key(&slice.service, namespace));
        for a in &slice.addrs {
            match self.endpoint_ips.get_mut(&a.ip) {
                Some(o) => o.add(&owner),
                None => {
                    self.endpoint_ips.insert(a.ip, Owners::One(owner.clone()));
                }
            }
        }
        self.slice_owner.insert(sk, owner.clone());
        self.slices.entry(owner).or_default().push((name.into(), slice));
        self.touch();
    }

    pub fn delete_slice(&mut self, name: &str, namespace: &str) {
        self.delete_slice_quiet(name, namespace);
        self.touch();
    }

    fn delete_slice_quiet(&mut self, name: &str, namespace: &str) {
        let Some(owner) = self.slice_owner.remove(&*key(name, namespace)) else { return };
        let Some(list) = self.slices.get_mut(&owner) else { return };
        if let Some(i) = list.iter().position(|(n, _)| &**n == name) {
            let (_, old) = list.swap_remove(i);
            for a in &old.addrs {
                // Another slice of the same service may hold the address too.
                let still = list.iter().any(|(_, s)| s.addrs.iter().any(|b| b.ip == a.ip));
                if !still {
                    if let Some(o) = self.endpoint_ips.get_mut(&a.ip) {
                        if !o.remove(&owner) {
                            self.endpoint_ips.remove(&a.ip);
                        }
                    }
                }
            }
        }
        if list.is_empty() {
            self.slices.remove(&owner);
        }
    }

    pub fn upsert_namespace(&mut self, name: &str) {
        self.namespaces.insert(name.into());
        self.touch();
    }

    pub fn delete_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
        self.touch();
    }

    pub fn upsert_pod(&mut self, name: &str, namespace: &str, ip: Option<IpAddr>, running: bool) {
        self.delete_pod_quiet(name, namespace);
        if let Some(ip) = ip {
            self.pods.insert(key(name, namespace), ip);
            self.pod_ips.entry(ip).or_default().push((namespace.into(), running));
        }
        self.touch();
    }

    pub fn delete_pod(&mut self, name: &str, namespace: &str) {
        self.delete_pod_quiet(name, namespace);
        self.touch();
    }

    fn delete_pod_quiet(&mut self, name: &str, namespace: &str) {
        if let Some(ip) = self.pods.remove(&*key(name, namespace)) {
            if let Some(list) = self.pod_ips.get_mut(&ip) {
                if let Some(i) = list.iter().position(|(ns, _)| &**ns == namespace) {
                    list.swap_remove(i);
                }
                if list.is_empty() {
                    self.pod_ips.remove(&ip);
                }
            }
        }
    }

    /// Forgets every object of one kind: a relist replaces them all.
    pub fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::Service => {
                self.services.clear();
                self.service_ips.clear();
                self.external_ips.clear();
            }
            Kind::Slice => {
                self.slices.clear();
                self.slice_owner.clear();
                self.endpoint_ips.clear();
            }
            Kind::Namespace => self.namespaces.clear(),
            Kind::Pod => {
                self.pods.clear();
                self.pod_ips.clear();
            }
        }
    }
}

/// The kinds of object watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Slice,
    Namespace,
    Pod,
}
