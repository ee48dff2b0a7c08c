//! The UDP loop of one worker: a thread blocked in `recv_from` on its own SO_REUSEPORT socket.
//!
//! Blocking receive costs two system calls a query (receive, send), where a readiness-driven
//! loop costs four (receive, send, a receive that finds nothing, epoll_wait); at the rates a
//! DNS server sees that is most of its CPU time (see scripts/bench). A reply that needs no
//! waiting is sent from this thread; a query a plugin must wait for (an upstream, a timer) is
//! finished on the worker's runtime, if the listener has room for it (see `overload`).

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

use super::chain::{handle, Outcome, Router};
use super::overload;
use crate::message::Proto;

pub fn serve(
    sock: UdpSocket,
    router: Arc<ArcSwap<Router>>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
) {
    // Plugins that start timers or sockets while being polled here need the runtime's context.
    let _guard = rt.enter();
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            // The read timeout: look at the stop flag again.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            // ICMP errors from earlier sends surface here on some kernels; they are not ours to act on.
            Err(_) => continue,
        };
        let router = router.load();
        let wire = Bytes::copy_from_slice(&buf[..n]);
        match handle(wire.clone(), peer, Proto::Udp, &router) {
            Outcome::Drop => {}
            Outcome::Reply(out) => {
                let _ = sock.send_to(&out, peer);
            }
            Outcome::Pending(fut) => match overload::admit(&in_flight, router.options.max_in_flight) {
                Some(slot) => {
                    let sock = sock.clone();
                    rt.spawn(async move {
                        let _slot = slot;
                        let Some(out) = fut.await else { return };
                        // A UDP send does not block on a socket with buffer space; a full buffer
                        // drops the reply, as the kernel would for a non-blocking send.
                        let _ = sock.send_to(&out, peer);
                    });
                }
                None => {
                    drop(fut);
                    if let Some(out) = overload::refuse(wire, peer, Proto::Udp, &router) {
                        let _ = sock.send_to(&out, peer);
                    }
                }
            },
        }
    }
}
