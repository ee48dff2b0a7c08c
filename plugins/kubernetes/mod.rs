//! kubernetes: serves a cluster's Services, endpoints and pods under `cluster.local` (and any
//! zones configured) as the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0)
//! says and as CoreDNS's kubernetes plugin answers it. `store.rs` is the in-memory model,
//! `handler.rs` the answers, `watch.rs` the API watchers that keep the model current.

pub mod handler;
pub mod store;
pub mod watch;

use std::net::IpAddr;
use std::time::Duration;

use crate::plugin::prelude::*;
use crate::plugin::zone_text as zone;
use crate::plugin::{AutoPath, External, Links};
pub use handler::PodMode;
use handler::{Kubernetes, Options, Shared};

pub const DEFAULT_TTL: u32 = 5;
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `kubernetes [ZONES...] { endpoint URL; tls CERT KEY CACERT; kubeconfig FILE [CONTEXT];
/// namespaces NS...; labels SELECTOR; namespace_labels SELECTOR; pods MODE; endpoint_pod_names;
/// ttl N; noendpoints; fallthrough [ZONES...]; ignore empty_service; apiserver_qps N;
/// apiserver_burst N; startup_timeout DURATION }`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zones served; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `[CERT, KEY, CACERT]` for the connection to `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<[String; 3]>,
    /// `[FILE]` or `[FILE, CONTEXT]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeconfig: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<String>,
    #[serde(default)]
    pub pods: PodMode,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub endpoint_pod_names: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noendpoints: bool,
    /// `None`: no fallthrough; `Some([])`: for every name; else for names in these zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_empty_service: bool,
    /// Accepted for CoreDNS compatibility; the client does not rate-limit (see README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiserver_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiserver_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::plugin::serde_opt_duration")]
    pub startup_timeout: Option<Duration>,
}



/// A label selector as the API takes it: `k=v`, `k!=v`, `k in (a,b)`, `!k`, comma-separated.
fn selector(t: &Token, text: &str) -> Result<String, SetupError> {
    let ok = !text.trim().is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=!,() ".contains(c))
        && text.matches('(').count() == text.matches(')').count();
    if !ok {
        return Err(t.err(format!("invalid label selector {text:?}")));
    }
    Ok(text.to_string())
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        for z in t.text.split_whitespace() {
            zone(z).map_err(|m| t.err(m))?;
            c.zones.push(z.to_string());
        }
    }
    for line in d.lines() {
        let joined = |args: &[Token]| args.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" ");
        match line.key().text.as_str() {
            "endpoint" => {
                let t = &line.nargs(1, 1)?[0];
                let u = &t.text;
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.split("://").nth(1).is_none_or(|h| h.is_empty()) {
                    return Err(t.err(format!("endpoint must be an http:// or https:// URL, got {u:?}")));
                }
                c.endpoint = Some(u.clone());
            }
            "tls" => {
                let a = line.nargs(3, 3)?;
                c.tls = Some([a[0].text.clone(), a[1].text.clone(), a[2].text.clone()]);
            }
            "kubeconfig" => {
                let a = line.nargs(1, 2)?;
                c.kubeconfig = a.iter().map(|t| t.text.clone()).collect();
            }
            "namespaces" => {
                let a = line.nargs(1, usize::MAX)?;
                c.namespaces.extend(a.iter().map(|t| t.text.to_ascii_lowercase()));
            }
            "labels" => {
                let a = line.nargs(1, usize::MAX)?;
                c.labels = Some(selector(&a[0], &joined(a))?);
            }
            "namespace_labels" => {
                let a = line.nargs(1, usize::MAX)?;
                c.namespace_labels = Some(selector(&a[0], &joined(a))?);
            }
            "pods" => {
                let t = &line.nargs(1, 1)?[0];
                c.pods = match t.text.as_str() {
                    "disabled" => PodMode::Disabled,
                    "insecure" => PodMode::Insecure,
                    "verified" => PodMode::Verified,
                    m => return Err(t.err(format!("pods must be disabled, insecure or verified, got {m:?}"))),
                };
            }
            "endpoint_pod_names" => {
                line.nargs(0, 0)?;
                c.endpoint_pod_names = true;
            }
            "ttl" => {
                let t = &line.nargs(1, 1)?[0];
                let ttl: u32 = t.parse("a TTL in seconds")?;
                // CoreDNS: 0 to 3600 seconds.
                if ttl > 3600 {
                    return Err(t.err(format!("ttl must be in range [0, 3600]: {ttl}")));
                }
                c.ttl = Some(ttl);
            }
            "noendpoints" => {
                line.nargs(0, 0)?;
                c.noendpoints = true;
            }
            "fallthrough" => c.fallthrough = Some(crate::plugin::parse_fallthrough(line)?),
            "ignore" => {
                let t = &line.nargs(1, 1)?[0];
                if t.text != "empty_service" {
                    return Err(t.err(format!("ignore takes empty_service, got {:?}", t.text)));
                }
                c.ignore_empty_service = true;
            }
            "apiserver_qps" => {
                let t = &line.nargs(1, 1)?[0];
                let q: f64 = t.parse("a number of queries per second")?;
                if q.is_nan() || q <= 0.0 {
                    return Err(t.err("apiserver_qps must be positive"));
                }
                c.apiserver_qps = Some(q);
            }
            "apiserver_burst" => {
                let t = &line.nargs(1, 1)?[0];
                c.apiserver_burst = Some(t.parse("a number of requests")?);
            }
            "startup_timeout" => {
                let t = &line.nargs(1, 1)?[0];
                c.startup_timeout = Some(t.duration()?);
            }
            _ => return Err(line.unknown()),
        }
    }
    if c.endpoint.is_some() && !c.kubeconfig.is_empty() {
        return Err(d.err("endpoint and kubeconfig cannot both be set"));
    }
    if c.tls.is_some() && c.endpoint.is_none() {
        return Err(d.err("tls needs an endpoint"));
    }
    Ok(c)
}

/// This server's addresses, for the NS records of the zone: the non-loopback addresses of the
/// machine's interfaces (CoreDNS's `localIPs` when it listens on every address).
fn local_ips() -> Vec<IpAddr> {
    let all: Vec<IpAddr> = if_addrs::get_if_addrs().map(|v| v.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
    let outside: Vec<IpAddr> = all.iter().copied().filter(|ip| !ip.is_loopback()).collect();
    if outside.is_empty() {
        all
    } else {
        outside
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = |m: String| SetupError::new(m);
    let zones: Vec<String> = if c.zones.is_empty() {
        ctx.zones.iter().map(|z| zone(&z.to_string()).expect("a block zone is a valid name")).collect()
    } else {
        c.zones.iter().map(|z| zone(z)).collect::<Result<_, _>>().map_err(err)?
    };
    let fallthrough = c.fallthrough.as_ref().map(|zs| zs.iter().map(|z| zone(z)).collect::<Result<Vec<_>, _>>()).transpose().map_err(err)?;
    let connect = match (&c.endpoint, c.kubeconfig.as_slice()) {
        (Some(u), _) => watch::Connect::Endpoint(
            u.clone(),
            c.tls.as_ref().map(|[cert, key, ca]| (ctx.path(cert), ctx.path(key), ctx.path(ca))),
        ),
        (None, [f]) => watch::Connect::Kubeconfig(ctx.path(f), None),
        (None, [f, ctxname]) => watch::Connect::Kubeconfig(ctx.path(f), Some(ctxname.clone())),
        (None, _) => watch::Connect::InCluster,
    };
    let opts = Options {
        zones,
        namespaces: c.namespaces.clone(),
        pods: c.pods,
        endpoint_pod_names: c.endpoint_pod_names,
        ignore_empty_service: c.ignore_empty_service,
        ttl: c.ttl.unwrap_or(DEFAULT_TTL),
        fallthrough,
        local_ips: local_ips(),
        startup_timeout: c.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
        // CoreDNS reads the host's /etc/resolv.conf for autopath's search path, whatever the
        // root: the search list of the machine this server runs on.
        autopath_search: std::fs::read_to_string("/etc/resolv.conf").map(|t| crate::plugin::resolv_conf_search(&t)).unwrap_or_default(),
    };
    let shared = Arc::new(Shared::new(false));
    shared.store.write().unwrap_or_else(|e| e.into_inner()).keep_targets = c.endpoint_pod_names;
    let wc = watch::WatchConfig {
        connect,
        labels: c.labels.clone(),
        namespace_labels: c.namespace_labels.clone(),
        endpoints: !c.noendpoints,
        pods: c.pods == PodMode::Verified,
    };
    let handle = watch::start(wc, shared.clone())?;
    let k = Arc::new(Kubernetes { shared, opts, _watch: Some(handle) });
    // autopath and k8s_external, set up before this plugin, read these slots when serving.
    let _ = ctx.state::<Links<dyn AutoPath>>().slot("kubernetes").set(k.clone());
    let _ = ctx.state::<Links<dyn External>>().slot("kubernetes").set(k.clone());
    ctx.add_handler(k);
    Ok(())
}

#[cfg(test)]
mod tests;
