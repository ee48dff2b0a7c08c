//! Listeners and workers.
//!
//! Each worker has its own SO_REUSEPORT UDP socket and TCP listener per address, so the kernel
//! spreads queries over cores: a UDP thread blocked in `recv_from` (see `udp`), and a
//! single-threaded tokio runtime for TCP and for queries that must wait. Sockets are bound before any worker starts, so a port in use is reported at
//! once and port 0 resolves to one port shared by UDP and TCP.

pub mod chain;
pub mod options;
pub mod setup;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use self::chain::Router;
use self::options::ServerOptions;
use self::setup::ListenerSpec;
use crate::config::keys::Scheme;

/// One address's sockets for every worker, and what they serve.
pub struct Bound {
    pub scheme: Scheme,
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    pub options: ServerOptions,
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    tcp_conns: Arc<AtomicUsize>,
    startup: Vec<crate::plugin::StartupHook>,
}

impl Bound {
    /// The zones served here, for the start-up banner.
    pub fn zones(&self) -> Vec<String> {
        self.router.zones().map(|z| z.fmt_with_dot().to_string()).collect()
    }
}

/// Binds `workers` UDP sockets and TCP listeners for every listener.
pub fn bind(specs: Vec<ListenerSpec>, workers: usize) -> io::Result<Vec<Bound>> {
    let mut out = Vec::new();
    for spec in specs {
        let (udp, tcp, addr) = bind_one(spec.addr, workers)
            .map_err(|e| io::Error::new(e.kind(), format!("listen {}://{}: {e}", spec.scheme.as_str(), spec.addr)))?;
        out.push(Bound {
            scheme: spec.scheme,
            addr,
            router: Arc::new(spec.router),
            options: spec.options,
            udp,
            tcp,
            tcp_conns: Arc::new(AtomicUsize::new(0)),
            startup: spec.startup,
        });
    }
    Ok(out)
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

/// Starts one thread per worker and serves until the process exits.
pub fn start(bound: Vec<Bound>, workers: usize) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut per_worker: Vec<Vec<Task>> = (0..workers).map(|_| Vec::new()).collect();
    let mut hooks = Vec::new();
    for mut b in bound {
        for h in b.startup.drain(..) {
            hooks.push((b.addr, h));
        }
        for (i, s) in b.udp.into_iter().enumerate() {
            per_worker[i].push(Task::Udp(s, b.router.clone()));
        }
        for (i, l) in b.tcp.into_iter().enumerate() {
            per_worker[i].push(Task::Tcp(l, b.router.clone(), b.options.clone(), b.tcp_conns.clone()));
        }
    }
    let mut handles = Vec::new();
    for (i, tasks) in per_worker.into_iter().enumerate() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut tcp = Vec::new();
        for t in tasks {
            match t {
                Task::Udp(s, r) => {
                    // NOTE: the UDP thread blocks in recv_from, so the socket must be blocking.
                    s.set_nonblocking(false)?;
                    let h = rt.handle().clone();
                    handles.push(
                        std::thread::Builder::new()
                            .name(format!("ferrite-udp-{i}"))
                            .spawn(move || udp::serve(s, r, h))?,
                    );
                }
                Task::Tcp(l, r, o, c) => tcp.push((l, r, o, c)),
            }
        }
        let h = std::thread::Builder::new().name(format!("ferrite-worker-{i}")).spawn(move || {
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (l, r, o, c) in tcp {
                    let l = tokio::net::TcpListener::from_std(l).expect("listener is non-blocking");
                    set.spawn(tcp::serve(l, r, o, c));
                }
                // The runtime also finishes UDP queries that had to wait: keep it running.
                std::future::pending::<()>().await;
            });
        })?;
        handles.push(h);
    }
    // NOTE: hooks run after every socket is being served, so a probe sent to ourselves is answered.
    for (addr, hook) in hooks {
        hook(addr);
    }
    Ok(handles)
}

enum Task {
    Udp(std::net::UdpSocket, Arc<Router>),
    Tcp(std::net::TcpListener, Arc<Router>, ServerOptions, Arc<AtomicUsize>),
}

/// How many workers to run: one per core, or `FERRITE_WORKERS`.
pub fn worker_count() -> usize {
    std::env::var("FERRITE_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
