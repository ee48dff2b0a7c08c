//! DNS over TCP (RFC 7766): pipelined queries answered in any order, read, write and idle
//! timeouts, a cap on connections and an optional cap on queries per connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::chain::{handle, Outcome, Router};
use super::options::ServerOptions;
use super::overload;
use crate::message::Proto;

/// Open connections across all listeners; shutdown waits for them to finish their queries.
pub(crate) static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Queries of one connection waiting at once; beyond this the connection is not read until one
/// is answered, so one client cannot take every in-flight slot of the listener (TCP's flow
/// control holds back the rest).
const MAX_PIPELINED: usize = 64;

/// How long to wait after a failed accept (no file descriptors left) before trying again.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

pub async fn serve(
    listener: TcpListener,
    router: Arc<ArcSwap<Router>>,
    conns: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors (EMFILE, ENFILE) or buffers: accept fails at once
                // until a connection closes, so back off instead of spinning on it.
                log::warn!("tcp accept: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let opts = router.load().options.clone();
        // NOTE: the count is shared by every worker's listener on this address.
        if conns.fetch_add(1, Ordering::AcqRel) >= opts.tcp_max_connections {
            conns.fetch_sub(1, Ordering::AcqRel);
            drop(stream);
            continue;
        }
        OPEN.fetch_add(1, Ordering::SeqCst);
        let (router, conns, in_flight, stop) = (router.clone(), conns.clone(), in_flight.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, peer, &router, &opts, &in_flight, stop).await;
            conns.fetch_sub(1, Ordering::AcqRel);
            OPEN.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    router: &ArcSwap<Router>,
    opts: &ServerOptions,
    in_flight: &Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.split();
    let mut buf = BytesMut::with_capacity(4096);
    let mut pending = FuturesUnordered::new();
    let mut queries = 0usize;
    let mut reading = true;
    // The first query must arrive within the read timeout, later ones within the idle timeout;
    // a query that has begun must be complete within the read timeout (as CoreDNS's TCP server).
    // NOTE: the read timeout runs from the first byte of a message, not from the last read, so
    // a client that trickles a byte at a time (slowloris) cannot hold the connection: each
    // message, length prefix included, must be whole within one read timeout.
    let mut last_activity = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        // Answer every complete query in the buffer, up to MAX_PIPELINED waiting at once.
        while reading && pending.len() < MAX_PIPELINED {
            let Some(wire) = super::framing::next_frame(&mut buf) else { break };
            // The next message's clock starts with its first byte (below), not this one's.
            partial_since = None;
            queries += 1;
            if opts.tcp_max_queries > 0 && queries >= opts.tcp_max_queries {
                reading = false;
            }
            // NOTE: the router's guard is dropped before the write below awaits.
            let out = {
                let router = router.load();
                match handle(&wire, peer, Proto::Tcp, &router) {
                    Outcome::Drop => None,
                    Outcome::Reply(out) => Some(out),
                    Outcome::Pending(f) => match overload::admit(in_flight, router.options.max_in_flight) {
                        Some(slot) => {
                            pending.push(async move {
                                let _slot = slot;
                                f.await
                            });
                            None
                        }
                        None => {
                            drop(f);
                            overload::refuse(&wire, peer, Proto::Tcp, &router)
                        }
                    },
                }
            };
            if let Some(out) = out {
                if write_frame(&mut wr, &out, opts).await.is_err() {
                    return;
                }
            }
        }
        if !reading && pending.is_empty() {
            break;
        }
        partial_since = if buf.is_empty() { None } else { partial_since.or(Some(last_activity)) };
        let deadline = match partial_since {
            Some(t) => t + opts.tcp_read_timeout,
            None if queries == 0 => last_activity + opts.tcp_read_timeout,
            None => last_activity + opts.tcp_idle_timeout,
        };
        tokio::select! {
            n = rd.read_buf(&mut buf), if reading && pending.len() < MAX_PIPELINED => match n {
                Ok(0) | Err(_) => reading = false,
                Ok(_) => last_activity = Instant::now(),
            },
            Some(out) = pending.next(), if !pending.is_empty() => {
                if let Some(out) = out {
                    if write_frame(&mut wr, &out, opts).await.is_err() {
                        return;
                    }
                }
                last_activity = Instant::now();
            }
            _ = tokio::time::sleep_until(deadline), if pending.is_empty() => break,
            // Shutting down: answer what was received, read nothing more.
            _ = stop.changed(), if reading => reading = false,
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes one reply; a client that does not take it within the write timeout is given up on.
async fn write_frame(wr: &mut (impl AsyncWriteExt + Unpin), msg: &[u8], opts: &ServerOptions) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(2 + msg.len());
    frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    frame.extend_from_slice(msg);
    match tokio::time::timeout(opts.tcp_write_timeout, wr.write_all(&frame)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
    }
}
