//! Exchanges with one upstream: UDP from a fresh random port per query, and TCP or TLS
//! connections that are kept open and pipelined.
//!
//! Why our own exchange rather than domain's `net::client`: the spoofing defence wants a fresh
//! kernel-chosen random source port and a random ID for every UDP query, and
//! replies must be checked against ID, question and source; health checking needs to tell a
//! timeout from a refused connection from a closed cached connection. Those are the whole of a
//! UDP client, and a pipelined stream is one small task per connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use domain::base::iana::{Class, Rtype};
use domain::base::message::Message;
use domain::base::name::{Name, ToName};

use std::task::{Context, Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Why one try with an upstream failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// No matching reply within the try's time.
    Timeout(Duration),
    /// A cached connection was closed by the other side before it answered: try again on a new
    /// one, without counting it against the upstream (CoreDNS's ErrCachedClosed).
    Closed,
    /// Anything else: refused, unreachable, TLS failure, a reply that does not parse.
    Io(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout(d) => write!(f, "timed out after {}ms", d.as_millis()),
            ExchangeError::Closed => f.write_str("connection closed"),
            ExchangeError::Io(e) => f.write_str(e),
        }
    }
}

impl From<io::Error> for ExchangeError {
    fn from(e: io::Error) -> Self {
        ExchangeError::Io(e.to_string())
    }
}

/// The time one try may take, from when it started: the caller has read the clock already, and
/// the try does not read it again to set its timer.
#[derive(Debug, Clone, Copy)]
pub struct TryLimit {
    pub start: Instant,
    pub timeout: Duration,
}

impl TryLimit {
    pub fn from_now(timeout: Duration) -> TryLimit {
        TryLimit { start: Instant::now(), timeout }
    }

    fn deadline(&self) -> Instant {
        self.start + self.timeout
    }
}

/// The question a reply must carry.
pub struct Question<'a> {
    pub qname: &'a Name<Bytes>,
    pub qtype: Rtype,
    pub qclass: Class,
}

/// True when `wire` is a response with `id` to exactly `q` (the name compared without case).
pub fn matches(wire: &[u8], id: Option<u16>, q: &Question) -> bool {
    let Ok(msg) = Message::from_octets(wire) else { return false };
    let h = msg.header();
    if !h.qr() || id.is_some_and(|id| h.id() != id) || msg.header_counts().qdcount() != 1 {
        return false;
    }
    match msg.first_question() {
        Some(got) => got.qtype() == q.qtype && got.qclass() == q.qclass && got.qname().name_eq(q.qname),
        None => false,
    }
}

/// The largest UDP reply we take: what we advertise, with room for a peer that ignores it.
const UDP_BUF: usize = 4096;

/// Idle sockets kept per worker for one upstream at most: as many as queries were in flight at
/// once, so that a burst does not open (and register, and close) a socket per query.
const IDLE_MAX: usize = 512;
/// Idle sockets kept per worker for one upstream once a burst is over.
const IDLE_KEPT: usize = 64;
/// Workers told apart by the pool (more share slots).
const POOL_SLOTS: usize = 16;

/// UDP sockets to one upstream, kept between queries, one list per worker (its UDP thread takes,
/// its runtime's thread gives back). A socket is not a port: before each query it gives up its
/// port (connect(AF_UNSPEC)), and the query's send has the kernel bind it to a new one, at
/// random from the ephemeral range. So every query still leaves from a fresh random port,
/// without a new socket, its registration with the runtime and its close (four system calls
/// for one, and a third of the CPU time of a forwarded query on loopback).
pub struct UdpPool {
    slots: Box<[Slot]>,
}

/// One worker's share of a pool.
#[derive(Default)]
struct Slot {
    idle: Arc<Mutex<Idle<Sock>>>,
    anchor: Arc<Anchor>,
}

/// A worker's idle sockets for one upstream. The list grows to the most queries in flight at
/// once (up to `IDLE_MAX`), and each tick of the anchor closes what a whole tick did not need,
/// down to `IDLE_KEPT`.
struct Idle<S> {
    socks: Vec<S>,
    /// The fewest sockets idle since the last tick: that many were not used in the meantime.
    low: usize,
}

impl<S> Default for Idle<S> {
    fn default() -> Self {
        Idle { socks: Vec::new(), low: 0 }
    }
}

impl<S> Idle<S> {
    fn take(&mut self) -> Option<S> {
        let s = self.socks.pop();
        self.low = self.low.min(self.socks.len());
        s
    }

    /// Keeps `s`, if there is room.
    fn give(&mut self, s: S) {
        if self.socks.len() < IDLE_MAX {
            self.socks.push(s);
        }
    }

    /// The sockets that sat unused through a whole tick, beyond `IDLE_KEPT`, the longest idle
    /// first: for the caller to close once the lock is released.
    fn trim(&mut self) -> Vec<S> {
        let surplus = self.low.saturating_sub(IDLE_KEPT);
        let gone = self.socks.drain(..surplus).collect();
        self.low = self.socks.len();
        gone
    }
}

impl Default for UdpPool {
    fn default() -> Self {
        UdpPool { slots: (0..POOL_SLOTS).map(|_| Slot::default()).collect() }
    }
}

/// How often an anchor timer fires: below the shortest try timeout (`upstream::MIN_TIMEOUT`).
const ANCHOR_TICK: Duration = Duration::from_millis(100);
/// An anchor stops after this many ticks without a query (2 s).
const ANCHOR_QUIET_TICKS: u32 = 20;

/// A timer that keeps firing on a worker's runtime while its UDP thread forwards queries.
///
/// A query's timeout is a timer that the UDP thread sets on the runtime. When the runtime has no
/// timer due sooner, tokio wakes its thread to look at the new one (a write to its event fd and
/// a context switch) though nothing is due for hundreds of milliseconds: at 10,000 queries a
/// second on loopback, a third of all forwarded queries did that. With a timer due within
/// `ANCHOR_TICK`, setting a later one wakes nobody. The anchor runs only while queries come and
/// stops by itself after `ANCHOR_QUIET_TICKS` ticks without any, so an idle server stays idle.
/// Each tick also closes the idle sockets the last tick did not need (`Idle::trim`).
#[derive(Default)]
struct Anchor {
    running: AtomicBool,
    /// Queries set up so far; the timer stops once a run of ticks has seen it unchanged.
    queries: AtomicUsize,
}

impl Anchor {
    fn touch(self: &Arc<Self>, idle: &Arc<Mutex<Idle<Sock>>>) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if self.running.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let (me, idle) = (self.clone(), idle.clone());
        rt.spawn(async move {
            let (mut seen, mut quiet) = (me.queries.load(Ordering::Relaxed), 0);
            while quiet < ANCHOR_QUIET_TICKS {
                tokio::time::sleep(ANCHOR_TICK).await;
                let unused = idle.lock().unwrap_or_else(|e| e.into_inner()).trim();
                drop(unused);
                let now = me.queries.load(Ordering::Relaxed);
                quiet = if now == seen { quiet + 1 } else { 0 };
                seen = now;
            }
            // A query set up between the last tick and this store only wakes the runtime once.
            me.running.store(false, Ordering::Release);
        });
    }
}

/// A pooled upstream socket, registered with the runtime for reading only: sending on a UDP
/// socket does not wait (a full send buffer fails the try), and with writability registered
/// too, every send would wake the runtime's thread with a "writable" event that
/// nobody waits for (one more wake-up per forwarded query).
type Sock = AsyncFd<socket2::Socket>;

impl UdpPool {
    fn slot(&self) -> &Slot {
        &self.slots[crate::plugin::worker() % POOL_SLOTS]
    }

    /// A socket for a query to `addr` whose next send binds it to a port the kernel picks then.
    ///
    /// The socket is not connected: a kept one is only unbound (one system call), and the send
    /// to `addr` binds it afresh; a connect would cost a second call, for a route lookup the
    /// send makes anyway. Replies from other sources are told apart by their address
    /// instead of by the kernel, and ICMP errors still end the try at once (IP_RECVERR; other
    /// systems report them to connected sockets only, and there a refused try times out).
    fn take(slot: &Slot, addr: SocketAddr) -> io::Result<Sock> {
        let kept = slot.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sock) = kept {
            disconnect(sock.get_ref())?;
            // What the last query left ready (its reply, read) is not news for this one; a
            // datagram still queued from before is checked like any other and ignored.
            if let Poll::Ready(Ok(mut ready)) = sock.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
                ready.clear_ready();
            }
            return Ok(sock);
        }
        // NOTE: created non-blocking and close-on-exec in one system call.
        let raw = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM.nonblocking().cloexec(),
            Some(socket2::Protocol::UDP),
        )?;
        report_icmp_errors(&raw, addr)?;
        // SAFETY: the socket owns its fd, which stays open and the same until the AsyncFd,
        // which owns the socket, is dropped.
        unsafe { AsyncFd::register_with_interest(raw, tokio::io::Interest::READABLE) }.map_err(|e| e.into_parts().1)
    }

    /// Keeps a socket whose exchange ended with its reply (one that timed out or failed is
    /// closed: what it may still receive or report is not for the next query).
    fn give_back(slot: &Slot, sock: Sock) {
        if !cfg!(target_os = "linux") {
            // Elsewhere a disconnected socket may keep its port: a new socket for every query.
            return;
        }
        slot.idle.lock().unwrap_or_else(|e| e.into_inner()).give(sock);
    }

    /// One UDP query from a fresh random port. A datagram that does not come from `addr` or is
    /// not a response with our ID and question is ignored, and we keep listening until the
    /// try's time is up.
    pub async fn exchange(&self, addr: SocketAddr, query: &[u8], q: &Question<'_>, limit: TryLimit) -> Result<Bytes, ExchangeError> {
        let slot = self.slot();
        slot.anchor.touch(&slot.idle);
        let sock = Self::take(slot, addr)?;
        sock.get_ref().send_to(query, &addr.into())?;
        let id = u16::from_be_bytes([query[0], query[1]]);
        let work = async {
            loop {
                // An ICMP error comes as EPOLLERR alone, not as readability.
                let mut ready = sock.ready(tokio::io::Interest::READABLE | tokio::io::Interest::ERROR).await?;
                // NOTE: received on the stack and copied out at its length: a reply is a few
                // hundred bytes, and a receive buffer in the future would make every query's
                // future (and its allocation) 4 KB larger.
                let got = ready.try_io(|s| {
                    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); UDP_BUF];
                    let (n, from) = s.get_ref().recv_from(&mut buf)?;
                    // SAFETY: recv_from initialised the first `n` bytes of `buf`.
                    let wire = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
                    // A datagram from another source, or a spoofed, stale or garbled one, is not
                    // ours: keep waiting for the real one.
                    Ok((same_peer(&from, addr) && matches(wire, Some(id), q)).then(|| Bytes::copy_from_slice(wire)))
                });
                match got {
                    Ok(Ok(Some(reply))) => return Ok::<Bytes, io::Error>(reply),
                    Ok(Ok(None)) => continue,
                    Ok(Err(e)) => return Err(e),
                    // Nothing after all: readiness is cleared, wait again.
                    Err(_) => continue,
                }
            }
        };
        let reply = match tokio::time::timeout_at(limit.deadline(), work).await {
            Ok(r) => r.map_err(ExchangeError::from)?,
            Err(_) => return Err(ExchangeError::Timeout(limit.timeout)),
        };
        // NOTE: given back to the slot it came from, whichever thread finishes the query.
        Self::give_back(slot, sock);
        Ok(reply)
    }
}

/// Whether a datagram from `from` comes from the upstream at `addr` (address and port; an
/// IPv6 source carries flow and scope details that the upstream's address may lack).
fn same_peer(from: &socket2::SockAddr, addr: SocketAddr) -> bool {
    match (from.as_socket(), addr) {
        (Some(SocketAddr::V6(f)), SocketAddr::V6(a)) => f.ip() == a.ip() && f.port() == a.port(),
        (Some(f), a) => f == a,
        (None, _) => false,
    }
}

/// IP_RECVERR (IPV6_RECVERR): an ICMP error for our query, say port unreachable from an
/// upstream that is down, fails the next receive on this unconnected socket, as it would on a
/// connected one, so the try fails at once instead of waiting out its time.
fn report_icmp_errors(sock: &socket2::Socket, addr: SocketAddr) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (level, name) = match addr {
            SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_RECVERR),
            SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
        };
        let on: libc::c_int = 1;
        // SAFETY: an int option of its own size, for the socket's fd.
        let rc = unsafe {
            libc::setsockopt(sock.as_raw_fd(), level, name, (&on as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (sock, addr);
    Ok(())
}

/// connect(AF_UNSPEC): on Linux the socket gives up its automatically bound address and port
/// (the socket is unhashed), so the next send binds it afresh.
fn disconnect(sock: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC, of its own size, for the socket's fd.
    let rc = unsafe {
        let mut unspec: libc::sockaddr = std::mem::zeroed();
        unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(sock.as_raw_fd(), &unspec, std::mem::size_of::<libc::sockaddr>() as libc::socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A job for a stream connection: a query without its length prefix, and where the reply goes.
struct Job {
    query: Vec<u8>,
    reply: oneshot::Sender<Bytes>,
}

/// One open TCP or TLS connection: a task owns the stream, writes queries as they come and
/// hands each reply to its waiter by ID, so many queries share the connection (RFC 7766 §6.2.1.1).
pub struct StreamConn {
    tx: mpsc::UnboundedSender<Job>,
    alive: Arc<AtomicBool>,
    inflight: Arc<AtomicUsize>,
}

impl StreamConn {
    fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.tx.is_closed()
    }
}

/// How to open a stream to an upstream.
#[derive(Clone)]
pub enum Connector {
    Tcp,
    #[cfg(feature = "forward-tls")]
    Tls(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>),
}

/// The open connections to one upstream.
pub struct StreamPool {
    conns: Mutex<Vec<Arc<StreamConn>>>,
    /// Held while a connection is being opened, so a burst of queries opens one, not one each.
    opening: tokio::sync::Mutex<()>,
    /// Idle connections are closed after this long (`expire`).
    pub expire: Duration,
    /// Queries in flight on one connection before another is opened.
    per_conn: usize,
    /// Connections kept open at most (`max_idle_conns`; 0 means no limit).
    pub max_conns: usize,
}

impl StreamPool {
    pub fn new(expire: Duration, max_conns: usize) -> StreamPool {
        StreamPool { conns: Mutex::new(Vec::new()), opening: tokio::sync::Mutex::new(()), expire, per_conn: 100, max_conns }
    }

    /// A connection with room for one more query, if one is open.
    fn pick(&self) -> Option<Arc<StreamConn>> {
        let mut conns = self.conns.lock().expect("pool lock is never poisoned: no panics while held");
        conns.retain(|c| c.alive());
        let best = conns.iter().min_by_key(|c| c.inflight.load(Ordering::Relaxed))?;
        let full = best.inflight.load(Ordering::Relaxed) >= self.per_conn;
        let may_grow = self.max_conns == 0 || conns.len() < self.max_conns;
        if full && may_grow {
            return None;
        }
        Some(best.clone())
    }

    /// Sends `query` on a pooled connection (opening one if needed) and waits for its reply.
    /// Returns whether a cached connection was used, for the caller to retry on `Closed`.
    pub async fn exchange(
        &self,
        addr: SocketAddr,
        connector: &Connector,
        query: &[u8],
        q: &Question<'_>,
        limit: TryLimit,
    ) -> Result<Bytes, ExchangeError> {
        let (deadline, timeout) = (limit.deadline(), limit.timeout);
        let conn = match self.pick() {
            Some(c) => c,
            None => {
                let opened = tokio::time::timeout_at(deadline, async {
                    let _opening = self.opening.lock().await;
                    // Another query may have opened one while we waited.
                    if let Some(c) = self.pick() {
                        return Ok(c);
                    }
                    let c = self.open(addr, connector).await?;
                    self.conns.lock().expect("pool lock is never poisoned").push(c.clone());
                    Ok::<_, ExchangeError>(c)
                })
                .await;
                match opened {
                    Ok(c) => c?,
                    Err(_) => return Err(ExchangeError::Timeout(timeout)),
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        conn.inflight.fetch_add(1, Ordering::Relaxed);
        let _done = Inflight(&conn.inflight);
        if conn.tx.send(Job { query: query.to_vec(), reply: tx }).is_err() {
            return Err(ExchangeError::Closed);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(wire)) if matches(&wire, None, q) => Ok(wire),
            Ok(Ok(_)) => Err(ExchangeError::Io("reply does not match the question".into())),
            Ok(Err(_)) => Err(ExchangeError::Closed),
            Err(_) => Err(ExchangeError::Timeout(timeout)),
        }
    }

    async fn open(&self, addr: SocketAddr, connector: &Connector) -> Result<Arc<StreamConn>, ExchangeError> {
        // The connection's task lives on the runtime of the query that opened it.
        let rt = tokio::runtime::Handle::try_current().map_err(|e| ExchangeError::Io(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let conn = Arc::new(StreamConn { tx, alive: alive.clone(), inflight: Arc::new(AtomicUsize::new(0)) });
        match connector {
            Connector::Tcp => {
                rt.spawn(drive(tcp, rx, alive, self.expire));
            }
            #[cfg(feature = "forward-tls")]
            Connector::Tls(tls, name) => {
                let stream = tls.connect(name.clone(), tcp).await.map_err(|e| ExchangeError::Io(format!("tls: {e}")))?;
                rt.spawn(drive(stream, rx, alive, self.expire));
            }
        }
        Ok(conn)
    }

    /// Number of open connections (for tests).
    pub fn open_count(&self) -> usize {
        let mut conns = self.conns.lock().expect("pool lock is never poisoned");
        conns.retain(|c| c.alive());
        conns.len()
    }
}

struct Inflight<'a>(&'a AtomicUsize);

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Owns one stream: writes queries with an ID that is unused on this connection, reads replies
/// and hands each to the query with its ID. Ends on EOF, an error, or `expire` without traffic;
/// dropping the waiters' senders tells them the connection closed.
async fn drive<S>(stream: S, mut rx: mpsc::UnboundedReceiver<Job>, alive: Arc<AtomicBool>, expire: Duration)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut pending: HashMap<u16, oneshot::Sender<Bytes>> = HashMap::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut idle_since = Instant::now();
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(mut job) = job else { break };
                pending.retain(|_, tx| !tx.is_closed());
                let mut id: u16 = rand::random();
                while pending.contains_key(&id) {
                    id = rand::random();
                }
                job.query[..2].copy_from_slice(&id.to_be_bytes());
                let mut frame = Vec::with_capacity(2 + job.query.len());
                frame.extend_from_slice(&(job.query.len() as u16).to_be_bytes());
                frame.extend_from_slice(&job.query);
                pending.insert(id, job.reply);
                if wr.write_all(&frame).await.is_err() {
                    break;
                }
            }
            n = rd.read_buf(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                while buf.len() >= 2 {
                    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
                    if buf.len() < 2 + len {
                        break;
                    }
                    buf.advance(2);
                    let msg = buf.split_to(len).freeze();
                    if msg.len() >= 2 {
                        if let Some(tx) = pending.remove(&u16::from_be_bytes([msg[0], msg[1]])) {
                            let _ = tx.send(msg);
                        }
                    }
                }
                if pending.is_empty() {
                    idle_since = Instant::now();
                }
            }
            _ = tokio::time::sleep_until(idle_since + expire), if pending.is_empty() => break,
        }
    }
    alive.store(false, Ordering::Release);
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::{Idle, IDLE_KEPT, IDLE_MAX};

    #[test]
    fn idle_sockets_grow_with_a_burst_and_shrink_after_it() {
        let mut idle = Idle::default();
        // A burst: 300 queries in flight at once, each on a new socket, then all given back.
        for s in 0..300 {
            idle.give(s);
        }
        assert_eq!(idle.socks.len(), 300);
        // The tick in which they came back trims nothing: none was idle all through it...
        assert!(idle.trim().is_empty());
        // ...and while the next burst uses them all, neither.
        let taken: Vec<i32> = (0..300).filter_map(|_| idle.take()).collect();
        taken.into_iter().for_each(|s| idle.give(s));
        assert!(idle.trim().is_empty(), "every socket was needed in this tick");
        // A quiet tick (one query at a time) closes the surplus, the longest idle first.
        let s = idle.take().expect("one");
        idle.give(s);
        let gone = idle.trim();
        assert_eq!(gone.len(), 299 - IDLE_KEPT);
        assert_eq!(idle.socks.len(), IDLE_KEPT + 1);
        assert!(!idle.socks.contains(&gone[0]), "closed sockets are gone from the list");
        // Quiet from now on: down to IDLE_KEPT, and no further.
        assert_eq!(idle.trim().len(), 1);
        assert!(idle.trim().is_empty());
        assert_eq!(idle.socks.len(), IDLE_KEPT);
    }

    #[test]
    fn idle_sockets_are_kept_up_to_the_most() {
        let mut idle = Idle::default();
        for s in 0..IDLE_MAX + 10 {
            idle.give(s);
        }
        assert_eq!(idle.socks.len(), IDLE_MAX);
    }
}
