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
use crate::message::Proto;

/// Open connections across all listeners; shutdown waits for them to finish their queries.
pub(crate) static OPEN: AtomicUsize = AtomicUsize::new(0);

pub async fn serve(listener: TcpListener, router: Arc<ArcSwap<Router>>, conns: Arc<AtomicUsize>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((stream, peer)) = accepted else { continue };
        let opts = router.load().options.clone();
        // NOTE: the count is shared by every worker's listener on this address.
        if conns.fetch_add(1, Ordering::AcqRel) >= opts.tcp_max_connections {
            conns.fetch_sub(1, Ordering::AcqRel);
            drop(stream);
            continue;
        }
        OPEN.fetch_add(1, Ordering::SeqCst);
        let (router, conns, stop) = (router.clone(), conns.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, peer, &router, &opts, stop).await;
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
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.split();
    let mut buf = BytesMut::with_capacity(4096);
    let mut pending = FuturesUnordered::new();
    let mut queries = 0usize;
    let mut reading = true;
    // The first query must arrive within the read timeout, later ones within the idle timeout;
    // a query that has begun must be complete within the read timeout (as CoreDNS's TCP server).
    let mut last_activity = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        // Answer every complete query in the buffer.
        while reading {
            let Some(wire) = super::framing::next_frame(&mut buf) else { break };
            queries += 1;
            if opts.tcp_max_queries > 0 && queries >= opts.tcp_max_queries {
                reading = false;
            }
            match handle(wire, peer, Proto::Tcp, &router.load()) {
                Outcome::Drop => {}
                Outcome::Reply(out) => {
                    if write_frame(&mut wr, &out, opts).await.is_err() {
                        return;
                    }
                }
                Outcome::Pending(f) => pending.push(f),
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
            n = rd.read_buf(&mut buf), if reading => match n {
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
