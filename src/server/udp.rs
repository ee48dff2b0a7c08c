//! The UDP loop of one worker: receive, answer in place, send.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::chain::{handle, Outcome, Router};
use crate::message::Proto;

pub async fn serve(sock: Arc<UdpSocket>, router: Arc<Router>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors from earlier sends surface here on some kernels; they are not ours to act on.
            Err(_) => continue,
        };
        match handle(Bytes::copy_from_slice(&buf[..n]), peer, Proto::Udp, &router) {
            Outcome::Drop => {}
            Outcome::Reply(out) => {
                let _ = sock.send_to(&out, peer).await;
            }
            Outcome::Pending(fut) => {
                let sock = sock.clone();
                tokio::spawn(async move {
                    let out = fut.await;
                    let _ = sock.send_to(&out, peer).await;
                });
            }
        }
    }
}
