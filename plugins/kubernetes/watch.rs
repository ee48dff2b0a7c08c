//! The API side: watches Services, EndpointSlices, Namespaces (and Pods for `pods verified`)
//! with kube's `watcher`, which lists, then watches, relists on `410 Gone` and reconnects with
//! backoff. Each object is cut down to the store's model as it arrives. The watchers run on a
//! small current-thread runtime on a thread of their own, started at setup (setup runs outside
//! any runtime) and stopped when the plugin is dropped (a reload builds a new one).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};

use super::handler::Shared;
use super::store::{self, EndpointAddr, Kind, Port, Store};
use crate::plugin::prelude::*;

/// Metric names: CoreDNS's where it has one, the rest in its family.
pub const PROGRAMMING_DURATION: &str = "coredns_kubernetes_dns_programming_duration_seconds";
pub const WATCH_ERRORS: &str = "coredns_kubernetes_watch_errors_total";
pub const SYNCED: &str = "coredns_kubernetes_synced";
pub const LAST_SYNC: &str = "coredns_kubernetes_last_event_timestamp_seconds";

/// How to reach the API server.
#[derive(Debug, Clone)]
pub enum Connect {
    /// In-cluster: the service account's token (re-read when rotated) and CA.
    InCluster,
    /// A kubeconfig file and an optional context.
    Kubeconfig(std::path::PathBuf, Option<String>),
    /// A URL, with optional client certificate, key and CA (`tls CERT KEY CACERT`).
    Endpoint(String, Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>),
}

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub connect: Connect,
    pub labels: Option<String>,
    pub namespace_labels: Option<String>,
    pub endpoints: bool,
    pub pods: bool,
}

/// Owns the watcher thread; dropping it stops the watchers.
pub struct Handle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn start(cfg: WatchConfig, shared: Arc<Shared>) -> Result<Handle, SetupError> {
    describe();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("kubernetes".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!(target: "plugin/kubernetes", "cannot start the watcher runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    _ = rx => {}
                    _ = run(cfg, shared) => {}
                }
            });
        })
        .map_err(|e| SetupError::new(format!("cannot start the watcher thread: {e}")))?;
    Ok(Handle { stop: Some(tx) })
}

fn describe() {
    metrics::describe_histogram!(PROGRAMMING_DURATION, metrics::Unit::Seconds, "Histogram of the time from an endpoint change to its being served.");
    metrics::describe_counter!(WATCH_ERRORS, "Errors of the watches on the API server, by resource.");
    metrics::describe_gauge!(SYNCED, "1 when the resource's watch has its list and is current, 0 while it is failing.");
    metrics::describe_gauge!(LAST_SYNC, "Unix time of the last good event from the API server, by resource: staleness shows as its age.");
}

async fn client(c: &Connect) -> Result<Client, String> {
    let config = match c {
        Connect::InCluster => kube::Config::incluster().map_err(|e| format!("in-cluster configuration: {e}"))?,
        Connect::Kubeconfig(path, context) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let opts = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
            kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| format!("{}: {e}", path.display()))?
        }
        Connect::Endpoint(url, None) => {
            let uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
            kube::Config::new(uri)
        }
        Connect::Endpoint(url, Some((cert, key, ca))) => {
            // A kubeconfig in memory is the one way kube takes a client certificate by path.
            let yaml = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url:?}\n    certificate-authority: {:?}\nusers:\n- name: u\n  user:\n    client-certificate: {:?}\n    client-key: {:?}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
                ca.display().to_string(),
                cert.display().to_string(),
                key.display().to_string()
            );
            let kc = kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| format!("tls: {e}"))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.map_err(|e| format!("tls: {e}"))?
        }
    };
    Client::try_from(config).map_err(|e| format!("api client: {e}"))
}

async fn run(cfg: WatchConfig, shared: Arc<Shared>) {
    let client = loop {
        match client(&cfg.connect).await {
            Ok(c) => break c,
            Err(e) => {
                log::error!(target: "plugin/kubernetes", "{e}; retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let with_labels = |c: watcher::Config, l: &Option<String>| match l {
        Some(l) => c.labels(l),
        None => c,
    };
    let base = watcher::Config::default().page_size(500);
    let kinds = 2 + usize::from(cfg.endpoints) + usize::from(cfg.pods);
    let pending = Arc::new(Pending { left: AtomicUsize::new(kinds), prompt: std::sync::Mutex::new(Some(crate::plugin::PromptRelease::new())) });
    let services = watch(
        watcher::watcher(Api::<Service>::all(client.clone()), with_labels(base.clone(), &cfg.labels)),
        Kind::Service,
        shared.clone(),
        pending.clone(),
    );
    let namespaces = watch(
        watcher::watcher(Api::<Namespace>::all(client.clone()), with_labels(base.clone(), &cfg.namespace_labels)),
        Kind::Namespace,
        shared.clone(),
        pending.clone(),
    );
    let slices = async {
        if cfg.endpoints {
            let s = watcher::watcher(Api::<EndpointSlice>::all(client.clone()), with_labels(base.clone(), &cfg.labels));
            watch(s, Kind::Slice, shared.clone(), pending.clone()).await;
        }
    };
    let pods = async {
        if cfg.pods {
            let s = watcher::watcher(Api::<Pod>::all(client.clone()), base.clone());
            watch(s, Kind::Pod, shared.clone(), pending.clone()).await;
        }
    };
    futures_util::join!(services, namespaces, slices, pods);
}

/// One change, cut down to what the store keeps.
enum Op {
    Service(String, String, Option<store::Service>),
    Slice(String, String, Option<store::Slice>),
    Namespace(String, bool),
    /// Name, namespace, IP, running.
    Pod(String, String, Option<IpAddr>, bool),
}

impl Op {
    fn apply(self, s: &mut Store) {
        match self {
            Op::Service(n, ns, Some(v)) => s.upsert_service(&n, &ns, v),
            Op::Service(n, ns, None) => s.delete_service(&n, &ns),
            Op::Slice(n, ns, Some(v)) => s.upsert_slice(&n, &ns, v),
            Op::Slice(n, ns, None) => s.delete_slice(&n, &ns),
            Op::Namespace(n, true) => s.upsert_namespace(&n),
            Op::Namespace(n, false) => s.delete_namespace(&n),
            Op::Pod(n, ns, ip, running) => s.upsert_pod(&n, &ns, ip, running),
        }
    }
}

/// The objects the watchers convert.
trait Compact: Resource + Sized {
    /// The object as the store keeps it; `present` false for a deletion.
    fn op(&self, present: bool) -> Option<Op>;
}

fn ns_name<K: Resource>(o: &K) -> (String, String) {
    (o.meta().name.clone().unwrap_or_default(), o.meta().namespace.clone().unwrap_or_default())
}

fn port(name: Option<&String>, protocol: Option<&String>, port: i32) -> Port {
    Port::new(name.map_or("", |s| s.as_str()), protocol.map_or("TCP", |s| s.as_str()), port)
}

impl Compact for Service {
    fn op(&self, present: bool) -> Option<Op> {
        let (n, ns) = ns_name(self);
        if !present {
            return Some(Op::Service(n, ns, None));
        }
        let spec = self.spec.as_ref()?;
        let ips: Vec<&String> = match &spec.cluster_ips {
            Some(v) if !v.is_empty() => v.iter().collect(),
            _ => spec.cluster_ip.iter().collect(),
        };
        let headless = ips.len() == 1 && ips[0] == "None";
        let external = spec.type_.as_deref() == Some("ExternalName");
        let svc = store::Service {
            cluster_ips: ips.iter().filter_map(|s| IpAddr::from_str(s).ok()).collect(),
            headless,
            external_name: if external { spec.external_name.as_deref().map(Into::into) } else { None },
            ports: spec.ports.iter().flatten().map(|p| port(p.name.as_ref(), p.protocol.as_ref(), p.port)).collect(),
            external_ips: external_ips(self),
        };
        Some(Op::Service(n, ns, Some(svc)))
    }
}

/// `spec.externalIPs`, then the `status.loadBalancer.ingress` IPs, without duplicates (CoreDNS's
/// `ExternalIPs` of a service object).
fn external_ips(svc: &Service) -> Vec<IpAddr> {
    let spec = svc.spec.iter().flat_map(|s| s.external_ips.iter().flatten());
    let lb = svc.status.iter().flat_map(|s| s.load_balancer.iter().flat_map(|l| l.ingress.iter().flatten().filter_map(|i| i.ip.as_ref())));
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in spec.chain(lb).filter_map(|s| IpAddr::from_str(s).ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

impl Compact for EndpointSlice {
    fn op(&self, present: bool) -> Option<Op> {
        let (n, ns) = ns_name(self);
        if !present {
            return Some(Op::Slice(n, ns, None));
        }
        // FQDN slices carry no addresses DNS can serve.
        if self.address_type == "FQDN" {
            return None;
        }
        let service = self.labels().get("kubernetes.io/service-name")?.clone();
        let mut addrs = Vec::new();
        for e in &self.endpoints {
            // CoreDNS: an endpoint whose readiness is unknown counts as ready.
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                let Ok(ip) = IpAddr::from_str(a) else { continue };
                addrs.push(EndpointAddr {
                    ip,
                    hostname: e.hostname.as_deref().map(Into::into),
                    target: e.target_ref.as_ref().and_then(|t| t.name.as_deref()).map(Into::into),
                });
            }
        }
        let ports = self.ports.iter().flatten().map(|p| port(p.name.as_ref(), p.protocol.as_ref(), p.port.unwrap_or(-1))).collect();
        if let Some(t) = self.annotations().get("endpoints.kubernetes.io/last-change-trigger-time") {
            observe_programming(t, &service);
        }
        Some(Op::Slice(n, ns, Some(store::Slice { service: service.into(), ports, addrs })))
    }
}

impl Compact for Namespace {
    fn op(&self, present: bool) -> Option<Op> {
        Some(Op::Namespace(self.name_any(), present))
    }
}

impl Compact for Pod {
    fn op(&self, present: bool) -> Option<Op> {
        let (n, ns) = ns_name(self);
        // A pod on its way out answers no more (CoreDNS's `Deleting`).
        if !present || self.meta().deletion_timestamp.is_some() {
            return Some(Op::Pod(n, ns, None, false));
        }
        let status = self.status.as_ref();
        let ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|s| IpAddr::from_str(s).ok());
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        Some(Op::Pod(n, ns, ip, running))
    }
}

/// `dns_programming_duration`: the time from the change that triggered an endpoint update
/// (its `last-change-trigger-time` annotation, RFC 3339) to now.
fn observe_programming(t: &str, _service: &str) {
    let Ok(ts) = t.parse::<jiff::Timestamp>() else { return };
    let secs = (jiff::Timestamp::now() - ts).total(jiff::Unit::Second).unwrap_or(0.0);
    if secs >= 0.0 {
        metrics::histogram!(PROGRAMMING_DURATION, "service_kind" => "cluster_ip").record(secs);
    }
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Service => "services",
        Kind::Slice => "endpointslices",
        Kind::Namespace => "namespaces",
        Kind::Pod => "pods",
    }
}

/// Feeds one watcher's events into the store. A relist is buffered until it is complete and
/// then replaces the kind's objects at once, so a query never sees half a list.
/// The watchers still to finish their first list. Until they have, memory the lists free goes
/// back to the system at once (`PromptRelease`): the server's memory once it answers is then
/// the cluster's model, not the model plus the lists' garbage.
struct Pending {
    left: AtomicUsize,
    prompt: std::sync::Mutex<Option<crate::plugin::PromptRelease>>,
}

async fn watch<K, S>(stream: S, kind: Kind, shared: Arc<Shared>, pending: Arc<Pending>)
where
    K: Compact,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let label = kind_label(kind);
    let errors = metrics::counter!(WATCH_ERRORS, "resource" => label);
    let synced_gauge = metrics::gauge!(SYNCED, "resource" => label);
    let last = metrics::gauge!(LAST_SYNC, "resource" => label);
    let stream = stream.default_backoff();
    futures_util::pin_mut!(stream);
    let mut buffer: Vec<Op> = Vec::new();
    let mut first = true;
    let mut failing = false;
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                errors.increment(1);
                synced_gauge.set(0.0);
                if !failing {
                    log::warn!(target: "plugin/kubernetes", "watch of {label} failed, answering from the last state: {e}");
                    failing = true;
                }
                continue;
            }
        };
        if failing {
            log::info!(target: "plugin/kubernetes", "watch of {label} is back");
            failing = false;
        }
        last.set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
        match ev {
            Event::Init => {
                buffer.clear();
                // A first list that failed half way starts again from nothing.
                if first {
                    shared.store.write().unwrap_or_else(|e| e.into_inner()).clear(kind);
                }
            }
            // NOTE: the first list goes straight into the store: nothing is answered from it
            // before every watcher has synced, and buffering it would hold the cluster twice
            // at the peak, memory the allocator then keeps.
            Event::InitApply(o) if first => {
                if let Some(op) = o.op(true) {
                    op.apply(&mut shared.store.write().unwrap_or_else(|e| e.into_inner()));
                }
            }
            Event::InitApply(o) => buffer.extend(o.op(true)),
            Event::InitDone => {
                if !first {
                    let mut s = shared.store.write().unwrap_or_else(|e| e.into_inner());
                    s.clear(kind);
                    for op in buffer.drain(..) {
                        op.apply(&mut s);
                    }
                    s.touch();
                }
                buffer = Vec::new();
                synced_gauge.set(1.0);
                if first {
                    first = false;
                    if pending.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        // The lists' JSON and API objects are gone; this thread now mostly
                        // waits, and would keep their pages resident. Before answering: the
                        // memory of a synced server is its steady state.
                        crate::plugin::release_free_memory();
                        pending.prompt.lock().unwrap_or_else(|e| e.into_inner()).take();
                        shared.synced.store(true, Ordering::Release);
                        log::info!(target: "plugin/kubernetes", "synced with the API server");
                    }
                }
            }
            Event::Apply(o) => {
                if let Some(op) = o.op(true) {
                    op.apply(&mut shared.store.write().unwrap_or_else(|e| e.into_inner()));
                }
            }
            Event::Delete(o) => {
                if let Some(op) = o.op(false) {
                    op.apply(&mut shared.store.write().unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
    }
}
