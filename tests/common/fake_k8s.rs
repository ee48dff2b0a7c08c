//! A fake Kubernetes API server on 127.0.0.1 that speaks the real wire format: discovery
//! documents, LIST (`...List` with `metadata.resourceVersion`, `limit`/`continue` pagination),
//! WATCH (`?watch=1`: chunked, newline-delimited `{"type":...,"object":...}` events, bookmarks,
//! a `410` ERROR for a resource version older than the last compaction), and faults: drop every
//! watch, go down for a while, expire resource versions so that watchers must relist.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use serde_json::{json, Value};

/// The resources the fake serves: (path, kind of one object, list kind).
const KINDS: &[(&str, &str, &str)] = &[
    ("/api/v1/services", "Service", "ServiceList"),
    ("/api/v1/namespaces", "Namespace", "NamespaceList"),
    ("/api/v1/pods", "Pod", "PodList"),
    ("/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice", "EndpointSliceList"),
];

#[derive(Default)]
struct Inner {
    rv: u64,
    /// path → "ns/name" → object.
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// (rv, path, type, object): the watch history.
    events: Vec<(u64, &'static str, &'static str, Value)>,
    /// Watches from a resource version below this get 410 Gone.
    compacted: u64,
    down_until: Option<Instant>,
    /// Requests seen, for tests that check pagination and relists.
    pub requests: Vec<String>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    /// Bumped on every change; the generation half ends every open watch.
    tick: tokio::sync::watch::Sender<(u64, u64)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn path_of(kind: &str) -> &'static str {
    KINDS.iter().find(|k| k.1 == kind).map(|k| k.0).unwrap_or_else(|| panic!("unknown kind {kind}"))
}

fn key_of(o: &Value) -> String {
    format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or(""))
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let inner = Arc::new(Mutex::new(Inner { rv: 100, ..Default::default() }));
        let (tick, _) = tokio::sync::watch::channel((0u64, 0u64));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (inner2, tick2) = (inner.clone(), tick.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let down = inner2.lock().expect("lock").down_until.is_some_and(|t| Instant::now() < t);
                        if down {
                            drop(stream);
                            continue;
                        }
                        let (inner, tick) = (inner2.clone(), tick2.clone());
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| handle(req, inner.clone(), tick.clone()));
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        });
                    }
                };
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept => {}
                }
            });
        });
        FakeApi { addr, inner, tick, stop: Some(stop_tx) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bump(&self, new_generation: bool) {
        let rv = self.inner.lock().expect("lock").rv;
        self.tick.send_modify(|t| {
            t.0 = rv;
            if new_generation {
                t.1 += 1;
            }
        });
    }

    /// Creates or replaces an object (JSON as `kubectl get -o json` prints it).
    pub fn apply(&self, mut obj: Value) {
        {
            let mut g = self.inner.lock().expect("lock");
            g.rv += 1;
            let rv = g.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let path = path_of(obj["kind"].as_str().expect("kind"));
            let key = key_of(&obj);
            let existed = g.objects.entry(path).or_default().insert(key, obj.clone()).is_some();
            g.events.push((rv, path, if existed { "MODIFIED" } else { "ADDED" }, obj));
        }
        self.bump(false);
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        {
            let mut g = self.inner.lock().expect("lock");
            g.rv += 1;
            let rv = g.rv;
            let path = path_of(kind);
            let Some(mut obj) = g.objects.entry(path).or_default().remove(&format!("{namespace}/{name}")) else { return };
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            g.events.push((rv, path, "DELETED", obj));
        }
        self.bump(false);
    }

    /// Ends every open watch (the clients reconnect from their last resource version).
    pub fn drop_watches(&self) {
        self.bump(true);
    }

    /// Forgets the watch history: every watcher reconnecting gets `410 Gone` and relists.
    pub fn expire(&self) {
        {
            let mut g = self.inner.lock().expect("lock");
            g.compacted = g.rv + 1;
            g.events.clear();
        }
        self.bump(true);
    }

    /// Closes every connection, and every new one for `d`.
    pub fn down_for(&self, d: Duration) {
        self.inner.lock().expect("lock").down_until = Some(Instant::now() + d);
        self.bump(true);
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().expect("lock").requests.clone()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("response")
}

fn query_params(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2C", ",").replace("%3D", "="))
        })
        .collect()
}

fn status_410() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "too old resource version", "reason": "Expired", "code": 410})
}

async fn handle(req: Request<hyper::body::Incoming>, inner: Arc<Mutex<Inner>>, tick: tokio::sync::watch::Sender<(u64, u64)>) -> Result<Response<Body>, std::io::Error> {
    // Down: a kept-alive connection is cut too (an error from the service closes it).
    if inner.lock().expect("lock").down_until.is_some_and(|t| Instant::now() < t) {
        return Err(std::io::Error::other("the fake API server is down"));
    }
    let path = req.uri().path().to_string();
    let params = query_params(req.uri().query());
    inner.lock().expect("lock").requests.push(req.uri().to_string());
    // Discovery documents, for clients that ask.
    match path.as_str() {
        "/api" => return Ok(full(200, json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))),
        "/apis" => {
            return Ok(full(200, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "discovery.k8s.io",
                "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}]})))
        }
        "/version" => return Ok(full(200, json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}))),
        _ => {}
    }
    let Some(&(kpath, _, list_kind)) = KINDS.iter().find(|k| k.0 == path) else {
        return Ok(full(404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})));
    };
    let watch = params.get("watch").is_some_and(|v| v == "1" || v == "true");
    let selector = params.get("labelSelector").cloned();
    let selected = move |o: &Value| match &selector {
        None => true,
        Some(s) => s.split(',').all(|term| match term.split_once('=') {
            Some((k, v)) => o["metadata"]["labels"][k].as_str() == Some(v),
            None => true,
        }),
    };
    if !watch {
        let g = inner.lock().expect("lock");
        let all: Vec<Value> = g.objects.get(kpath).map(|m| m.values().filter(|o| selected(o)).cloned().collect()).unwrap_or_default();
        let start: usize = params.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let limit: usize = params.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
        let end = start.saturating_add(limit).min(all.len());
        let mut meta = json!({"resourceVersion": g.rv.to_string()});
        if end < all.len() {
            meta["continue"] = json!(end.to_string());
            meta["remainingItemCount"] = json!(all.len() - end);
        }
        let api_version = if kpath.starts_with("/apis/") { "discovery.k8s.io/v1" } else { "v1" };
        return Ok(full(200, json!({"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": all[start.min(end)..end]})));
    }
    let from: u64 = params.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let mut ticks = tick.subscribe();
    let generation = ticks.borrow().1;
    tokio::spawn(async move {
        let line = |v: Value| Ok(Frame::data(Bytes::from(format!("{v}\n"))));
        let mut last = from;
        if from < inner.lock().expect("lock").compacted {
            let _ = tx.send(line(json!({"type": "ERROR", "object": status_410()}))).await;
            return;
        }
        loop {
            let (batch, rv) = {
                let g = inner.lock().expect("lock");
                let b: Vec<(u64, &'static str, Value)> =
                    g.events.iter().filter(|e| e.0 > last && e.1 == kpath && selected(&e.3)).map(|e| (e.0, e.2, e.3.clone())).collect();
                (b, g.rv)
            };
            for (rv, ty, obj) in batch {
                if tx.send(line(json!({"type": ty, "object": obj}))).await.is_err() {
                    return;
                }
                last = rv;
            }
            if bookmarks && rv > last {
                let kind = KINDS.iter().find(|k| k.0 == kpath).map(|k| k.1).unwrap_or("");
                let bm = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}}});
                if tx.send(line(bm)).await.is_err() {
                    return;
                }
                last = rv;
            }
            tokio::select! {
                r = ticks.changed() => {
                    if r.is_err() || ticks.borrow().1 != generation {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("response"))
}

// Objects as `kubectl get -o json` prints them (the fields that matter and some that do not).

fn meta(name: &str, namespace: &str, labels: Value) -> Value {
    json!({
        "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
        "creationTimestamp": "2025-01-01T00:00:00Z", "labels": labels,
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                           "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
    })
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"kubernetes.io/metadata.name": name},
                        "creationTimestamp": "2025-01-01T00:00:00Z"},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// A Service; `cluster_ips` empty makes it headless; ports are (name, protocol, port).
pub fn service(namespace: &str, name: &str, cluster_ips: &[&str], ports: &[(&str, &str, i32)]) -> Value {
    let headless = cluster_ips.is_empty();
    let ips: Vec<&str> = if headless { vec!["None"] } else { cluster_ips.to_vec() };
    let families: Vec<&str> = ips.iter().map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" }).collect();
    let ports: Vec<Value> = ports.iter().map(|(n, p, port)| json!({"name": n, "protocol": p, "port": port, "targetPort": port})).collect();
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace, json!({"app": name})),
           "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ipFamilies": if headless { vec!["IPv4"] } else { families },
                    "ipFamilyPolicy": "SingleStack", "ports": ports, "selector": {"app": name},
                    "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster"},
           "status": {"loadBalancer": {}}})
}

pub fn external_name(namespace: &str, name: &str, target: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace, json!({})),
           "spec": {"externalName": target, "sessionAffinity": "None", "type": "ExternalName"}, "status": {"loadBalancer": {}}})
}

/// An EndpointSlice of `service`; endpoints are (address, hostname, pod name, ready).
pub fn slice(namespace: &str, name: &str, service: &str, endpoints: &[(&str, Option<&str>, &str, bool)], ports: &[(&str, &str, i32)]) -> Value {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(ip, host, pod, ready)| {
            let mut e = json!({"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false},
                               "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace, "uid": format!("uid-{pod}")}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    let ports: Vec<Value> = ports.iter().map(|(n, p, port)| json!({"name": n, "protocol": p, "port": port})).collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": meta(name, namespace, json!({"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"})),
           "endpoints": eps, "ports": ports})
}

/// A Pod with its address and phase (`Running`, `Pending`, ...).
pub fn pod(namespace: &str, name: &str, ip: &str, phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, namespace, json!({"app": name})),
           "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}], "nodeName": "node-1",
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"},
           "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "172.18.0.2", "qosClass": "BestEffort"}})
}

/// `svc` (a Service) with `spec.externalIPs` and, as a LoadBalancer, ingress IPs.
pub fn with_external(mut svc: Value, external_ips: &[&str], ingress_ips: &[&str]) -> Value {
    if !external_ips.is_empty() {
        svc["spec"]["externalIPs"] = json!(external_ips);
    }
    if !ingress_ips.is_empty() {
        svc["spec"]["type"] = json!("LoadBalancer");
        let ingress: Vec<Value> = ingress_ips.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
        svc["status"]["loadBalancer"] = json!({"ingress": ingress});
    }
    svc
}
