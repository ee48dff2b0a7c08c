//! Load shedding: a bound on the queries one listener holds while plugins wait (an upstream, a
//! timer), so that a flood of queries that hang cannot grow memory without bound or starve the
//! queries that can be answered at once.
//!
//! A query is first run on the receiving thread; only if a plugin must wait does it take a slot
//! here. Queries answered without waiting (a zone, the cache, a refusal) need no slot and are
//! answered however many others wait. A query that would wait when every slot is taken is
//! answered REFUSED at once, as CoreDNS's forward answers beyond its `max_concurrent`: the
//! client can go on to another server instead of waiting for a timeout and retrying here, which
//! would add to the load. A shed query has been run once (that is how it is known to wait), so
//! forward has sent it upstream once; shedding bounds this server's memory, not the upstream's
//! load (forward's `max_concurrent` does that). Slots come back as the waiting queries finish (their plugins bound
//! how long that takes: forward's timeouts, cancel), so the server recovers by itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use domain::base::iana::Rcode;

use super::chain::Router;
use super::IN_FLIGHT;
use crate::message::{finish_reply, parse_query, Proto, Reply};
use crate::metrics::CounterVec;

/// Queries answered REFUSED because the listener had `max_in_flight` queries waiting.
pub const SHED_TOTAL: &str = "coredns_dns_requests_shed_total";

/// One waiting query's place; given back when dropped (answered, dropped or cancelled).
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A slot on this listener, or `None` when `limit` queries already wait.
pub(crate) fn admit(count: &Arc<AtomicUsize>, limit: usize) -> Option<Slot> {
    if count.fetch_add(1, Ordering::AcqRel) >= limit {
        count.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    Some(Slot(count.clone()))
}

fn shed_counter() -> &'static CounterVec {
    static C: OnceLock<CounterVec> = OnceLock::new();
    C.get_or_init(|| CounterVec::new(SHED_TOTAL, &["server", "proto"]))
}

/// The REFUSED reply to a shed query (parsed again from its wire: this runs only when shedding),
/// counted in [`SHED_TOTAL`].
pub(crate) fn refuse(wire: &[u8], peer: SocketAddr, proto: Proto, router: &Router) -> Option<Vec<u8>> {
    let mut req = parse_query(wire, peer, proto).ok()?;
    if let Some(chain) = router.route(&mut req) {
        shed_counter().inc(&[&chain.server, proto.as_str()]);
    }
    let mut reply = Reply::error(&req, Rcode::REFUSED);
    finish_reply(&req, &mut reply);
    Some(reply.to_wire(req.max_reply_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_come_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = admit(&count, 2).expect("first");
        let b = admit(&count, 2).expect("second");
        assert!(admit(&count, 2).is_none(), "over the limit");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        drop(a);
        let c = admit(&count, 2).expect("a slot came back");
        drop((b, c));
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
