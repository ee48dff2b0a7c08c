//! Routing a query to its server block and running that block's chain.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::name::Name;
use futures_util::FutureExt;

use crate::message::{finish_reply, parse_query, Proto, Rejected, Reply, Request};
use crate::plugin::{Next, Plugin};

/// One server block's chain, as served for one zone.
pub struct Chain {
    pub zone: Name<Bytes>,
    /// The listener address as CoreDNS labels it, e.g. `dns://:53`.
    pub server: Arc<str>,
    pub plugins: Vec<Arc<dyn Plugin>>,
}

impl Chain {
    /// Runs the chain. Errors become a reply with their rcode, a dropped query no reply (`None`);
    /// a panic becomes SERVFAIL and is logged, and the server goes on serving.
    pub async fn serve(&self, req: &mut Request) -> Option<Reply> {
        // A plugin may panic while building its future as well as while it runs: catch both.
        // The async block makes the first plugin's `serve` call happen inside the first poll.
        let result = AssertUnwindSafe(async { Next::new(&self.plugins).serve(req).await }).catch_unwind().await;
        match result {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(e)) if e.drop => None,
            Ok(Err(e)) => Some(Reply::error(req, e.rcode)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                log::error!("recovered from panic in server {:?} for {} {}: {what}", self.server, req.name_lower(), req.qtype);
                Some(Reply::error(req, Rcode::SERVFAIL))
            }
        }
    }
}

/// The server blocks of one listener, by zone.
#[derive(Default)]
pub struct Router {
    /// Longest zone first, so the first suffix match is the most specific.
    entries: Vec<(Name<Bytes>, Arc<Chain>)>,
}

impl Router {
    pub fn insert(&mut self, zone: Name<Bytes>, chain: Arc<Chain>) -> Result<(), String> {
        if self.entries.iter().any(|(z, _)| z == &zone) {
            return Err(format!("zone {} is defined twice for this address", zone.fmt_with_dot()));
        }
        self.entries.push((zone, chain));
        self.entries.sort_by_key(|(z, _)| std::cmp::Reverse(z.label_count()));
        Ok(())
    }

    /// The block for `qname`: the longest zone it is in (`.` matches every name).
    pub fn route(&self, qname: &Name<Bytes>) -> Option<&Arc<Chain>> {
        self.entries.iter().find(|(z, _)| qname.ends_with(z)).map(|(_, c)| c)
    }

    pub fn zones(&self) -> impl Iterator<Item = &Name<Bytes>> {
        self.entries.iter().map(|(z, _)| z)
    }

    pub fn chains(&self) -> impl Iterator<Item = &Arc<Chain>> {
        self.entries.iter().map(|(_, c)| c)
    }
}

/// What to do with one received packet.
pub enum Outcome {
    Drop,
    Reply(Vec<u8>),
    /// A plugin is waiting (an upstream, a timer): finish this on a task of its own. `None` is a
    /// query the chain dropped.
    Pending(Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>),
}

/// Parses, routes and answers one packet. The chain is polled once here, so a reply that needs
/// no waiting is sent without spawning a task.
pub fn handle(wire: Bytes, client: SocketAddr, proto: Proto, router: &Router) -> Outcome {
    let mut req = match parse_query(wire, client, proto) {
        Ok(r) => r,
        Err(Rejected::Drop) => return Outcome::Drop,
        Err(Rejected::Reply(b)) => return Outcome::Reply(b),
    };
    let Some(chain) = router.route(&req.qname) else {
        let mut reply = Reply::error(&req, Rcode::REFUSED);
        finish_reply(&req, &mut reply);
        return Outcome::Reply(reply.to_wire(req.max_reply_size()));
    };
    req.zone = chain.zone.clone();
    req.server = chain.server.clone();
    let chain = chain.clone();
    let mut fut = Box::pin(async move {
        let mut reply = chain.serve(&mut req).await?;
        finish_reply(&req, &mut reply);
        Some(reply.to_wire(req.max_reply_size()))
    });
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(b)) => Outcome::Reply(b),
        Poll::Ready(None) => Outcome::Drop,
        Poll::Pending => Outcome::Pending(fut),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::plugin::{BoxFuture, ServeError};
    use crate::testing::fixed_reply;
    use domain::base::iana::{Class, Rtype};
    use domain::base::message_builder::MessageBuilder;

    fn name(s: &str) -> Name<Bytes> {
        Name::from_str(s).expect("valid name")
    }

    fn chain(zone: &str, plugins: Vec<Arc<dyn Plugin>>) -> Arc<Chain> {
        Arc::new(Chain { zone: name(zone), server: Arc::from("dns://:53"), plugins })
    }

    fn wire(qname: &str) -> Bytes {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(7);
        let mut q = b.question();
        q.push((&name(qname), Rtype::A, Class::IN)).expect("fits");
        Bytes::from(q.finish())
    }

    fn answer(router: &Router, qname: &str) -> Reply {
        let client: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        match handle(wire(qname), client, Proto::Udp, router) {
            Outcome::Reply(b) => Reply::from_wire(&b).expect("parses"),
            _ => panic!("expected an immediate reply"),
        }
    }

    #[test]
    fn longest_zone_then_root_else_refused() {
        let mut r = Router::default();
        r.insert(name("example.org."), chain("example.org.", vec![fixed_reply(&["a.example.org. 1 IN A 192.0.2.1"])])).expect("new");
        r.insert(name("sub.example.org."), chain("sub.example.org.", vec![fixed_reply(&["a.sub.example.org. 1 IN A 192.0.2.2"])])).expect("new");
        assert!(r.insert(name("Example.org."), chain("example.org.", vec![])).is_err(), "duplicate zone");
        assert_eq!(answer(&r, "x.SUB.example.org.").answer[0].to_string().to_lowercase(), "a.sub.example.org. 1 in a 192.0.2.2");
        assert_eq!(answer(&r, "x.example.org.").answer[0].to_string(), "a.example.org. 1 IN A 192.0.2.1");
        assert_eq!(answer(&r, "example.net.").rcode, domain::base::iana::OptRcode::REFUSED);
        r.insert(Name::root_bytes(), chain(".", vec![fixed_reply(&["root. 1 IN A 192.0.2.3"])])).expect("new");
        assert_eq!(answer(&r, "example.net.").answer[0].to_string(), "root. 1 IN A 192.0.2.3");
    }

    struct Panics;

    impl Plugin for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            if req.qname.to_string().starts_with("boom") {
                panic!("deliberate panic for a test");
            }
            Box::pin(std::future::ready(Ok(Reply::for_request(req))))
        }
    }

    #[test]
    fn panic_becomes_servfail_and_serving_goes_on() {
        let mut r = Router::default();
        r.insert(Name::root_bytes(), chain(".", vec![Arc::new(Panics)])).expect("new");
        let boom = answer(&r, "boom.example.");
        assert_eq!(boom.rcode, domain::base::iana::OptRcode::SERVFAIL);
        assert_eq!(boom.header.id(), 7);
        assert_eq!(answer(&r, "fine.example.").rcode, domain::base::iana::OptRcode::NOERROR);
    }

    #[test]
    fn falling_off_the_chain_is_servfail() {
        let mut r = Router::default();
        r.insert(Name::root_bytes(), chain(".", vec![])).expect("new");
        assert_eq!(answer(&r, "x.example.").rcode, domain::base::iana::OptRcode::SERVFAIL);
    }

    struct Drops;

    impl Plugin for Drops {
        fn name(&self) -> &'static str {
            "drops"
        }

        fn serve<'a>(&'a self, _req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            Box::pin(std::future::ready(Err(ServeError::dropped("drops", "test"))))
        }
    }

    #[test]
    fn a_dropped_query_gets_no_reply() {
        let mut r = Router::default();
        r.insert(Name::root_bytes(), chain(".", vec![Arc::new(Drops)])).expect("new");
        let client: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert!(matches!(handle(wire("x.example."), client, Proto::Udp, &r), Outcome::Drop));
    }

    #[test]
    fn setup_state_and_replace_handler_merge_directives() {
        let zones = [Name::root_bytes()];
        let mut opts = crate::plugin::ServerOptions::default();
        let mut ctx = crate::plugin::SetupCtx::new(&zones, std::path::PathBuf::new(), &mut opts);
        ctx.add_handler(Arc::new(Panics));
        for _ in 0..3 {
            *ctx.state::<usize>() += 1;
            ctx.replace_handler(Arc::new(Drops));
        }
        assert_eq!(*ctx.state::<usize>(), 3);
        let names: Vec<&str> = ctx.into_handlers().iter().map(|h| h.name()).collect();
        assert_eq!(names, ["panics", "drops"]);
    }
}
