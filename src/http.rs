//! The HTTP side port: `/health`, `/ready` and `/metrics`, as CoreDNS's health, ready and
//! prometheus plugins serve them. Several blocks and plugins may name one address; it is served
//! by one listener with the union of their paths. The listeners run on a runtime of their own
//! thread, so a slow scrape never delays a DNS query.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;

use crate::plugin::Plugin;
pub use crate::server::setup::Routes;


/// Process-wide state the endpoints report.
struct State {
    /// Set on SIGTERM: `/ready` fails from then on, first thing in a shutdown.
    shutting_down: AtomicBool,
    /// Every plugin of every chain, for `/ready`.
    plugins: ArcSwap<Vec<Arc<dyn Plugin>>>,
    /// `monitor continuously`: keep checking after the first success.
    continuously: AtomicBool,
    became_ready: AtomicBool,
}

static STATE: LazyLock<State> = LazyLock::new(|| State {
    shutting_down: AtomicBool::new(false),
    plugins: ArcSwap::from_pointee(Vec::new()),
    continuously: AtomicBool::new(false),
    became_ready: AtomicBool::new(false),
});

/// Publishes the plugins of a newly applied configuration to `/ready`.
pub fn set_plugins(plugins: Vec<Arc<dyn Plugin>>, continuously: bool) {
    STATE.plugins.store(Arc::new(plugins));
    STATE.continuously.store(continuously, Ordering::SeqCst);
}

/// From now on `/ready` answers 503.
pub fn begin_shutdown() {
    STATE.shutting_down.store(true, Ordering::SeqCst);
}

/// The names of plugins not ready, or `None` when all are (or were, under `until-ready`).
fn not_ready() -> Option<Vec<&'static str>> {
    if STATE.became_ready.load(Ordering::SeqCst) && !STATE.continuously.load(Ordering::SeqCst) {
        return None;
    }
    let plugins = STATE.plugins.load();
    let mut names: Vec<&'static str> = plugins.iter().filter(|p| !p.ready()).map(|p| p.name()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        STATE.became_ready.store(true, Ordering::SeqCst);
        None
    } else {
        Some(names)
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

fn route(routes: Routes, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/health" if routes.health => reply(StatusCode::OK, "OK", TEXT),
        "/ready" if routes.ready => {
            if STATE.shutting_down.load(Ordering::SeqCst) {
                return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down", TEXT);
            }
            match not_ready() {
                None => reply(StatusCode::OK, "OK", TEXT),
                Some(names) => reply(StatusCode::SERVICE_UNAVAILABLE, names.join(", "), TEXT),
            }
        }
        #[cfg(feature = "plugin-prometheus")]
        "/metrics" if routes.metrics => reply(StatusCode::OK, crate::metrics::render(), "text/plain; version=0.0.4; charset=utf-8"),
        _ => reply(StatusCode::NOT_FOUND, "404 page not found\n", TEXT),
    }
}

struct Listener {
    bound: SocketAddr,
    routes: Arc<ArcSwap<Routes>>,
    stop: watch::Sender<bool>,
}

/// The HTTP listeners of the process and the thread that runs them.
pub struct HttpServer {
    rt: tokio::runtime::Handle,
    listeners: BTreeMap<SocketAddr, Listener>,
    /// The address `/health` is served on, for the self-check behind the health metric.
    health_addr: Arc<Mutex<Option<SocketAddr>>>,
}

impl HttpServer {
    pub fn new() -> io::Result<HttpServer> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new().name("ferrite-http".into()).spawn(move || rt.block_on(std::future::pending::<()>()))?;
        let health_addr = Arc::new(Mutex::new(None));
        handle.spawn(housekeeping(health_addr.clone()));
        Ok(HttpServer { rt: handle, listeners: BTreeMap::new(), health_addr })
    }

    /// A handle to the side runtime, for plugins' background work.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.rt.clone()
    }

    /// Serves exactly `wanted`: new addresses are bound (all before any change, so a failure
    /// changes nothing), kept ones get their new routes, dropped ones close.
    pub fn apply(&mut self, wanted: &BTreeMap<SocketAddr, Routes>) -> io::Result<Vec<SocketAddr>> {
        let mut fresh = Vec::new();
        for addr in wanted.keys().filter(|a| !self.listeners.contains_key(a)) {
            let l = std::net::TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("listen http://{addr}: {e}")))?;
            l.set_nonblocking(true)?;
            fresh.push((*addr, l));
        }
        self.listeners.retain(|addr, l| {
            let keep = wanted.contains_key(addr);
            if !keep {
                let _ = l.stop.send(true);
            }
            keep
        });
        let mut bound = Vec::new();
        for (addr, l) in fresh {
            let actual = l.local_addr()?;
            let routes = Arc::new(ArcSwap::from_pointee(wanted[&addr]));
            let (stop, stopped) = watch::channel(false);
            let _guard = self.rt.enter();
            let l = tokio::net::TcpListener::from_std(l)?;
            self.rt.spawn(serve(l, routes.clone(), stopped));
            self.listeners.insert(addr, Listener { bound: actual, routes, stop });
            bound.push(actual);
        }
        for (addr, l) in &self.listeners {
            l.routes.store(Arc::new(wanted[addr]));
        }
        let health = wanted.iter().find(|(_, r)| r.health).and_then(|(a, _)| self.listeners.get(a)).map(|l| l.bound);
        *self.health_addr.lock().expect("not poisoned") = health;
        Ok(bound)
    }
}

async fn serve(listener: tokio::net::TcpListener, routes: Arc<ArcSwap<Routes>>, mut stop: watch::Receiver<bool>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = conn else { continue };
        let routes = routes.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = route(**routes.load(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Once a second: fold histogram samples into buckets, and time a request to our own
/// `/health` as CoreDNS's health plugin does (`coredns_health_request_duration_seconds`).
async fn housekeeping(health_addr: Arc<Mutex<Option<SocketAddr>>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        #[cfg(feature = "plugin-prometheus")]
        crate::metrics::upkeep();
        let addr = *health_addr.lock().expect("not poisoned");
        if let Some(addr) = addr {
            let t = Instant::now();
            let ok = tokio::time::timeout(Duration::from_secs(1), self_check(addr)).await.unwrap_or(false);
            if ok {
                metrics::histogram!(crate::metrics::HEALTH_DURATION).record(t.elapsed().as_secs_f64());
            } else {
                metrics::counter!(crate::metrics::HEALTH_FAILURES).increment(1);
            }
        }
    }
}

async fn self_check(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() }, addr.port())
    } else {
        addr
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(target).await else { return false };
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{BoxFuture, Next, ServeError};
    use crate::message::{Reply, Request};

    struct Waiting(AtomicBool);

    impl Plugin for Waiting {
        fn name(&self) -> &'static str {
            "kubernetes"
        }

        fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            Box::pin(std::future::ready(Ok(Reply::for_request(req))))
        }

        fn ready(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn ready_reports_plugins_then_stays_ready_until_told_otherwise() {
        let routes = Routes { health: true, ready: true, metrics: false };
        let p = Arc::new(Waiting(AtomicBool::new(false)));
        set_plugins(vec![p.clone(), p.clone()], false);
        let r = route(routes, "/ready");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(not_ready(), Some(vec!["kubernetes"]), "named once");
        p.0.store(true, Ordering::SeqCst);
        assert_eq!(route(routes, "/ready").status(), StatusCode::OK);
        // until-ready: a plugin that falls behind later does not fail the probe.
        p.0.store(false, Ordering::SeqCst);
        assert_eq!(route(routes, "/ready").status(), StatusCode::OK);
        // continuously: it does.
        set_plugins(vec![p.clone()], true);
        assert_eq!(route(routes, "/ready").status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(route(routes, "/health").status(), StatusCode::OK);
        assert_eq!(route(routes, "/metrics").status(), StatusCode::NOT_FOUND);
        assert_eq!(route(Routes::default(), "/health").status(), StatusCode::NOT_FOUND);
    }
}
