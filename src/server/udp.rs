//! The UDP loop of one worker: a thread blocked in the kernel on its own SO_REUSEPORT socket.
//!
//! Blocking receive costs two system calls a query (receive, send), where a readiness-driven
//! loop costs four (receive, send, a receive that finds nothing, epoll_wait); at the rates a
//! DNS server sees that is most of its CPU time (see scripts/bench). On Linux the thread goes
//! further: `recvmmsg` waits for one datagram and takes every other one already queued (up to
//! `BATCH`), and the replies that need no waiting leave together in one `sendmmsg`, so under
//! load a batch of queries costs two system calls, and an idle server the same two a query. A
//! query a plugin must wait for (an upstream, a timer) is finished on the worker's runtime, if
//! the listener has room for it (see `overload`).

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use arc_swap::ArcSwap;

use super::chain::{handle, Outcome, Router};
use super::overload;
use crate::message::Proto;

/// Datagrams taken in one receive (and replies sent in one send).
#[cfg(target_os = "linux")]
const BATCH: usize = 32;

pub fn serve(
    sock: UdpSocket,
    router: Arc<ArcSwap<Router>>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
) {
    let w = Waiting { sock: Arc::new(sock), rt: rt.clone(), in_flight };
    let sock = w.sock.clone();
    // Plugins that start timers or sockets while being polled here need the runtime's context.
    let _guard = rt.enter();
    #[cfg(target_os = "linux")]
    {
        let mut batch = mmsg::Batch::new();
        let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
        while !stop.load(Ordering::Relaxed) {
            let n = match batch.recv(&sock) {
                Ok(n) => n,
                // The read timeout: look at the stop flag again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
                // ICMP errors from earlier sends surface here on some kernels; they are not ours to act on.
                Err(_) => continue,
            };
            let router = router.load();
            for i in 0..n {
                let Some((data, peer)) = batch.get(i) else { continue };
                if let Some(out) = w.answer(data, peer, &router) {
                    replies.push((out, peer));
                }
            }
            mmsg::send_all(&sock, &replies);
            replies.clear();
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut buf = vec![0u8; 65535];
        while !stop.load(Ordering::Relaxed) {
            let (n, peer) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => continue,
            };
            let router = router.load();
            if let Some(out) = w.answer(&buf[..n], peer, &router) {
                let _ = sock.send_to(&out, peer);
            }
        }
    }
}

/// Where queries that must wait go: the worker's runtime, within the listener's slots.
struct Waiting {
    sock: Arc<UdpSocket>,
    rt: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
}

impl Waiting {
    /// Runs one query through the chain: its reply if it is ready now (REFUSED if it would wait
    /// and the listener has no slot left), else `None` (dropped, or left to finish on the
    /// runtime, which sends the reply itself).
    fn answer(&self, query: &[u8], peer: SocketAddr, router: &Router) -> Option<Vec<u8>> {
        match handle(query, peer, Proto::Udp, router) {
            Outcome::Drop => None,
            Outcome::Reply(out) => Some(out),
            Outcome::Pending(fut) => match overload::admit(&self.in_flight, router.options.max_in_flight) {
                Some(slot) => Deferred::start(Job { fut, slot, sock: self.sock.clone(), peer }, &self.rt),
                None => {
                    drop(fut);
                    overload::refuse(query, peer, Proto::Udp, router)
                }
            },
        }
    }
}

/// A query left waiting, with what its reply needs.
struct Job {
    fut: Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>,
    slot: overload::Slot,
    sock: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl Job {
    async fn finish(self) {
        let Job { fut, slot, sock, peer } = self;
        let _slot = slot;
        let Some(out) = fut.await else { return };
        // A UDP send does not block on a socket with buffer space; a full buffer drops the
        // reply, as the kernel would for a non-blocking send.
        let _ = sock.send_to(&out, peer);
    }
}

/// A waiting query that becomes a task on the worker's runtime only when something it waits
/// for happens. Spawning at once would wake the runtime's thread (a write to its event fd, a
/// context switch) just to poll the query and park again, the same moment the UDP thread
/// has already polled it; instead the query is polled here once more with a waker of its own,
/// which registers that waker with the runtime's reactor and timers. When the upstream's reply
/// (or a timer) fires, the reactor calls the waker on the runtime's own thread, where the
/// spawned task goes on the local queue without waking anything.
struct Deferred {
    state: AtomicU8,
    job: Mutex<Option<Job>>,
    rt: tokio::runtime::Handle,
}

/// The UDP thread is polling the job.
const POLLING: u8 = 0;
/// Woken while the UDP thread was polling: the UDP thread spawns it.
const WOKEN: u8 = 1;
/// Parked in `job`, waiting for a wake.
const PARKED: u8 = 2;
/// Spawned (or finished): later wakes are the task's business, or nobody's.
const GONE: u8 = 3;

impl Deferred {
    /// Polls `job` with the deferred waker: its reply if ready now, else `None` (the job then
    /// finishes on the runtime).
    fn start(mut job: Job, rt: &tokio::runtime::Handle) -> Option<Vec<u8>> {
        let d = Arc::new(Deferred { state: AtomicU8::new(POLLING), job: Mutex::new(None), rt: rt.clone() });
        let waker = Waker::from(d.clone());
        match job.fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(out) => {
                d.state.store(GONE, Ordering::Release);
                return out;
            }
            Poll::Pending => {}
        }
        *d.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        if d.state.compare_exchange(POLLING, PARKED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Woken during the poll (the reply came already): run it now.
            d.state.store(GONE, Ordering::Release);
            d.spawn();
        }
        None
    }

    fn spawn(&self) {
        if let Some(job) = self.job.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.rt.spawn(job.finish());
        }
    }
}

impl Wake for Deferred {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                POLLING => WOKEN,
                PARKED => GONE,
                _ => return,
            };
            match self.state.compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if s == PARKED => return self.spawn(),
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }
}

/// `recvmmsg` and `sendmmsg`, which neither std nor socket2 offers.
#[cfg(target_os = "linux")]
mod mmsg {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;

    use super::BATCH;

    /// The largest datagram a slot takes: any UDP payload.
    const SLOT: usize = 65535;

    /// Buffers for one receive of up to `BATCH` datagrams. The slots are one mapping of zero
    /// pages that the kernel fills only as far as datagrams reach, so an idle batch costs little
    /// resident memory.
    pub struct Batch {
        bufs: Slots,
        addrs: Box<[libc::sockaddr_storage; BATCH]>,
        iovs: Box<[libc::iovec; BATCH]>,
        hdrs: Box<[libc::mmsghdr; BATCH]>,
        /// Headers the last receive filled.
        used: usize,
    }

    // SAFETY: the raw pointers in `iovs` and `hdrs` point into the batch's own heap buffers,
    // which move with it; nothing is shared with another thread.
    unsafe impl Send for Batch {}

    impl Batch {
        pub fn new() -> Batch {
            // SAFETY: all-zero is a valid value of these plain C structs.
            let mut b = Batch {
                bufs: Slots::new(SLOT * BATCH),
                addrs: Box::new(unsafe { zeroed() }),
                iovs: Box::new(unsafe { zeroed() }),
                hdrs: Box::new(unsafe { zeroed() }),
                used: 0,
            };
            for i in 0..BATCH {
                // SAFETY: slot `i` is inside the mapping.
                b.iovs[i] = libc::iovec { iov_base: unsafe { b.bufs.ptr.add(i * SLOT) }.cast(), iov_len: SLOT };
                // The boxes do not move when the batch does: these pointers stay valid.
                let h = &mut b.hdrs[i].msg_hdr;
                h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut b.iovs[i];
                h.msg_iovlen = 1;
            }
            b
        }

        /// Blocks until at least one datagram is queued (or the socket's read timeout passes),
        /// then takes up to `BATCH`; returns how many.
        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            // The kernel writes only the address length, flags and length of the datagrams it
            // fills: only those of the last receive need their address length back.
            for h in &mut self.hdrs[..self.used] {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            self.used = 0;
            // SAFETY: every header points at live buffers of the sizes given, owned by `self`.
            let n = unsafe {
                libc::recvmmsg(sock.as_raw_fd(), self.hdrs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            self.used = n as usize;
            Ok(n as usize)
        }

        /// Datagram `i` of the last receive and its sender; `None` for one cut short (larger than
        /// a slot, which UDP cannot carry) or from an address that is not IP.
        pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            let len = (h.msg_len as usize).min(SLOT);
            Some((&self.bufs.as_slice()[i * SLOT..i * SLOT + len], socket_addr(&self.addrs[i])?))
        }
    }

    /// Memory of its own from the kernel, zero until written. NOTE: not `vec![0; n]`: once a
    /// large zone load has freed memory, the allocator hands that back for it and must clear it
    /// first, which makes every page of the batch resident (4 MB for two workers).
    struct Slots {
        ptr: *mut u8,
        len: usize,
    }

    impl Slots {
        fn new(len: usize) -> Slots {
            // SAFETY: a new private anonymous mapping, which nothing else refers to.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
            if p == libc::MAP_FAILED {
                std::alloc::handle_alloc_error(std::alloc::Layout::array::<u8>(len).expect("a batch's size fits a layout"));
            }
            Slots { ptr: p.cast(), len }
        }

        fn as_slice(&self) -> &[u8] {
            // SAFETY: the mapping is `len` bytes, readable, and lives as long as `self`.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    impl Drop for Slots {
        fn drop(&mut self) {
            // SAFETY: unmaps the mapping made in `new`, which no one uses any more.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    /// The IP address and port the kernel wrote into `a`.
    fn socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match a.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says `a` holds a sockaddr_in, which is smaller than the storage.
                let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(ip, u16::from_be(v6.sin6_port), v6.sin6_flowinfo, v6.sin6_scope_id)))
            }
            _ => None,
        }
    }

    /// Sends each reply to its client, as many as the kernel takes per call. A reply the kernel
    /// refuses (a full buffer, an unreachable client) is dropped, as a lone `send_to` would.
    pub fn send_all(sock: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
        match replies {
            [] => return,
            [(out, peer)] => {
                let _ = sock.send_to(out, *peer);
                return;
            }
            _ => {}
        }
        let addrs: Vec<SockAddr> = replies.iter().map(|(_, p)| SockAddr::from(*p)).collect();
        let mut iovs: Vec<libc::iovec> =
            replies.iter().map(|(out, _)| libc::iovec { iov_base: out.as_ptr() as *mut libc::c_void, iov_len: out.len() }).collect();
        // SAFETY: all-zero is a valid mmsghdr; the pointers set below stay valid for the calls.
        let mut hdrs: Vec<libc::mmsghdr> = (0..replies.len()).map(|_| unsafe { zeroed() }).collect();
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addrs[i].len();
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < hdrs.len() {
            let rest = &mut hdrs[sent..];
            // SAFETY: the headers point at `addrs` and `iovs`, which outlive the call, and the
            // replies' bytes, which `replies` holds.
            let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message failed: drop it and go on with the others.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A worker runtime on a thread of its own, as the server runs them.
    fn worker() -> tokio::runtime::Handle {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let h = rt.handle().clone();
        std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
        h
    }

    /// Starts `fut` as the UDP thread does and returns what the client gets.
    fn run(fut: Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>, rt: &tokio::runtime::Handle) -> (Option<Vec<u8>>, UdpSocket, Arc<AtomicUsize>) {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let count = Arc::new(AtomicUsize::new(0));
        let slot = overload::admit(&count, 10).expect("a slot");
        let _g = rt.enter();
        let now = Deferred::start(Job { fut, slot, sock, peer: client.local_addr().expect("addr") }, rt);
        (now, client, count)
    }

    /// Whether the listener's count of waiting queries comes back to 0 within a second.
    fn released(count: &AtomicUsize) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while count.load(Ordering::SeqCst) != 0 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    fn reply(client: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf).expect("a reply");
        buf[..n].to_vec()
    }

    #[test]
    fn a_query_woken_by_a_timer_is_finished_on_the_runtime() {
        let rt = worker();
        let fut = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some(b"late".to_vec())
        });
        let (now, client, count) = run(fut, &rt);
        assert_eq!(now, None);
        assert_eq!(reply(&client), b"late");
        assert!(released(&count), "the slot is given back");
    }

    #[test]
    fn a_query_woken_while_it_is_being_polled_is_not_lost() {
        let rt = worker();
        // Wakes itself during the poll and is pending once: the wake comes while the UDP thread
        // holds the job.
        let mut first = true;
        let fut = Box::pin(std::future::poll_fn(move |cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Some(b"again".to_vec()))
        }));
        let (now, client, count) = run(fut, &rt);
        assert_eq!(now, None);
        assert_eq!(reply(&client), b"again");
        assert!(released(&count), "the slot is given back");
    }

    #[test]
    fn a_query_ready_on_the_second_poll_is_answered_at_once() {
        let rt = worker();
        let fut = Box::pin(async { Some(b"now".to_vec()) });
        let (now, _client, count) = run(fut, &rt);
        assert_eq!(now.as_deref(), Some(&b"now"[..]));
        assert_eq!(count.load(Ordering::SeqCst), 0, "the slot is given back");
    }
}
