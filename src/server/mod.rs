//! Listeners, workers, and their life: start, reload, shutdown.
//!
//! Each worker has its own SO_REUSEPORT UDP socket and TCP listener per address, so the kernel
//! spreads queries over cores: a UDP thread blocked in `recv_from` (see `udp`), and a
//! single-threaded tokio runtime for TCP and for queries that must wait. Sockets are bound
//! before anything changes, so a port in use is reported at once (and on reload leaves the old
//! configuration serving), and port 0 resolves to one port shared by UDP and TCP.
//!
//! On reload a listener whose address is still configured keeps its sockets and gets the new
//! router atomically (queries in flight finish on the old chains); new addresses are bound and
//! started; addresses no longer configured are stopped.

pub mod chain;
pub mod framing;
pub mod options;
pub(crate) mod overload;
pub mod setup;
mod tcp;
mod udp;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use self::chain::Router;
use self::setup::ListenerSpec;
use crate::config::keys::Scheme;

/// How often a blocked UDP thread wakes to see whether it should stop.
const UDP_STOP_POLL: Duration = Duration::from_millis(200);

/// Queries being answered on a task (they had to wait), across all listeners, UDP and TCP;
/// shutdown waits for these to finish.
pub(crate) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Queries waiting for an answer now, across all listeners (`coredns_dns_requests_in_flight`).
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Raises the soft limit on open files to the hard limit, as Go does for CoreDNS at start: each
/// TCP connection is a descriptor, and the common soft limit of 1024 would cap the server below
/// its own `tcp_connections` default.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A listener as started: what it serves, swapped on reload, and how to stop it.
struct Listener {
    scheme: Scheme,
    /// The address as configured (port 0 stays 0), which keys the listener across reloads.
    spec_addr: SocketAddr,
    bound: SocketAddr,
    router: Arc<ArcSwap<Router>>,
    stop: Arc<AtomicBool>,
    tcp_stop: watch::Sender<bool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
}

/// A bound but not yet started listener.
struct Fresh {
    spec_addr: SocketAddr,
    scheme: Scheme,
    bound: SocketAddr,
    router: Router,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
}

/// The running server.
pub struct Server {
    workers: Vec<tokio::runtime::Handle>,
    listeners: BTreeMap<(Scheme, SocketAddr), Listener>,
}

impl Server {
    /// Starts `workers` worker runtimes, each on its own thread, serving nothing yet.
    pub fn new(workers: usize) -> io::Result<Server> {
        raise_nofile_limit();
        let mut handles = Vec::new();
        for i in 0..workers {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(format!("ferrite-worker-{i}"))
                .spawn(move || {
                    crate::plugin::set_worker(i);
                    rt.block_on(std::future::pending::<()>())
                })?;
        }
        Ok(Server { workers: handles, listeners: BTreeMap::new() })
    }

    /// Serves exactly `specs`. Every new socket is bound before anything changes: on an error
    /// the server goes on as it was. Returns the newly bound addresses with their zones.
    pub fn apply(&mut self, specs: Vec<ListenerSpec>) -> io::Result<Vec<(Scheme, SocketAddr, Vec<String>)>> {
        let n = self.workers.len();
        let mut fresh = Vec::new();
        let mut swaps = Vec::new();
        for spec in specs {
            let key = (spec.scheme, spec.addr);
            if self.listeners.contains_key(&key) {
                swaps.push((key, spec.router));
                continue;
            }
            let (udp, tcp, bound) = bind_one(spec.addr, n)
                .map_err(|e| io::Error::new(e.kind(), format!("listen {}://{}: {e}", spec.scheme.as_str(), spec.addr)))?;
            fresh.push(Fresh { spec_addr: spec.addr, scheme: spec.scheme, bound, router: spec.router, udp, tcp });
        }
        // Nothing can fail from here on.
        let keep: Vec<(Scheme, SocketAddr)> = swaps.iter().map(|(k, _)| *k).chain(fresh.iter().map(|f| (f.scheme, f.spec_addr))).collect();
        let gone: Vec<_> = self.listeners.keys().filter(|k| !keep.contains(k)).copied().collect();
        for key in gone {
            if let Some(l) = self.listeners.remove(&key) {
                stop_listener(l);
            }
        }
        for (key, router) in swaps {
            if let Some(l) = self.listeners.get(&key) {
                l.router.store(Arc::new(router));
            }
        }
        let mut started = Vec::new();
        for f in fresh {
            let zones = f.router.zones().map(|z| z.fmt_with_dot().to_string()).collect();
            started.push((f.scheme, f.bound, zones));
            let l = self.start_listener(f)?;
            self.listeners.insert((l.scheme, l.spec_addr), l);
        }
        Ok(started)
    }

    fn start_listener(&self, f: Fresh) -> io::Result<Listener> {
        let router = Arc::new(ArcSwap::from_pointee(f.router));
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp_stop, tcp_stopped) = watch::channel(false);
        let conns = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut udp_threads = Vec::new();
        for (i, s) in f.udp.into_iter().enumerate() {
            // NOTE: the UDP thread blocks in recv_from, so the socket must be blocking; the read
            // timeout lets it notice a stop.
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(UDP_STOP_POLL))?;
            let (r, h, st, q) = (router.clone(), self.workers[i].clone(), stop.clone(), in_flight.clone());
            udp_threads.push(std::thread::Builder::new().name(format!("ferrite-udp-{i}")).spawn(move || {
                crate::plugin::set_worker(i);
                udp::serve(s, r, h, st, q)
            })?);
        }
        for (i, l) in f.tcp.into_iter().enumerate() {
            let h = &self.workers[i];
            let _guard = h.enter();
            let l = tokio::net::TcpListener::from_std(l)?;
            h.spawn(tcp::serve(l, router.clone(), conns.clone(), in_flight.clone(), tcp_stopped.clone()));
        }
        Ok(Listener { scheme: f.scheme, spec_addr: f.spec_addr, bound: f.bound, router, stop, tcp_stop, udp_threads })
    }

    /// The address a configured listener is bound to (port 0 resolved), if it is serving.
    pub fn bound(&self, scheme: Scheme, configured: SocketAddr) -> Option<SocketAddr> {
        self.listeners.get(&(scheme, configured)).map(|l| l.bound)
    }

    /// Stops every listener, then waits up to `grace` for queries in flight to finish.
    pub fn shutdown(&mut self, grace: Duration) {
        let all = std::mem::take(&mut self.listeners);
        for (_, l) in all {
            stop_listener(l);
        }
        let deadline = Instant::now() + grace;
        while (IN_FLIGHT.load(Ordering::SeqCst) > 0 || tcp::OPEN.load(Ordering::SeqCst) > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn stop_listener(l: Listener) {
    l.stop.store(true, Ordering::SeqCst);
    let _ = l.tcp_stop.send(true);
    for t in l.udp_threads {
        let _ = t.join();
    }
    log::info!("stopped listening on {}://{}", l.scheme.as_str(), l.bound);
}

type Sockets = (Vec<std::net::UdpSocket>, Vec<std::net::TcpListener>, SocketAddr);

fn bind_one(addr: SocketAddr, workers: usize) -> io::Result<Sockets> {
    // Port 0 asks the kernel for a port; if TCP cannot have the same one, ask again.
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match bind_all(addr, workers) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

fn bind_all(addr: SocketAddr, workers: usize) -> io::Result<Sockets> {
    let mut addr = addr;
    let mut udp = Vec::new();
    for _ in 0..workers {
        let s = match udp_socket(addr) {
            Ok(s) => s,
            // No IPv6 on this machine: the wildcard falls back to IPv4.
            Err(_) if addr.ip().is_unspecified() && addr.is_ipv6() && udp.is_empty() => {
                addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
                udp_socket(addr)?
            }
            Err(e) => return Err(e),
        };
        addr = s.local_addr()?;
        udp.push(s);
    }
    let mut tcp = Vec::new();
    for _ in 0..workers {
        tcp.push(tcp_listener(addr)?);
    }
    Ok((udp, tcp, addr))
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        // The IPv6 wildcard also serves IPv4 (mapped addresses), as CoreDNS's does.
        s.set_only_v6(!addr.ip().is_unspecified())?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let s = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    // A larger receive buffer rides out bursts; the kernel caps it at net.core.rmem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// How many workers to run: one per core, or `FERRITE_WORKERS`.
pub fn worker_count() -> usize {
    std::env::var("FERRITE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
