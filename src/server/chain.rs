//! Routing a query to its server block and running that block's chain.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use domain::base::iana::{OptRcode, Rcode};
use domain::base::name::Name;
use futures_util::FutureExt;

use crate::cookie::{CookieState, Cookies};
use crate::message::opt_code::COOKIE;
use crate::message::{finish_reply, parse_query, Proto, Rejected, Reply, Request};
use crate::plugin::{Collector, Filter, Next, Plugin};

/// One server block's chain, as served for one zone.
pub struct Chain {
    pub zone: Name<Bytes>,
    /// The listener address as CoreDNS labels it, e.g. `dns://:53`.
    pub server: Arc<str>,
    pub plugins: Vec<Arc<dyn Plugin>>,
    /// Run on each query routed here, before `filters`.
    pub collectors: Vec<Collector>,
    /// The block takes a query only if all pass (`view`); none means every query.
    pub filters: Vec<Filter>,
    /// The block's view name, or empty.
    pub view: Arc<str>,
    /// Set when the block has `prometheus`.
    pub metrics: Option<crate::metrics::ChainMetrics>,
    /// Set when the block has `debug`: a log line per query.
    pub debug: bool,
    /// The block's DNS cookie secret and policy (`cookie`; a per-process secret without it).
    pub cookies: Cookies,
}

impl Chain {
    /// Marks `req` as taken by this block: its zone, server and view, and what its DNS cookie
    /// proves under this block's secret.
    pub fn accept(&self, req: &mut Request) {
        req.zone = self.zone.clone();
        req.server = self.server.clone();
        req.view = self.view.clone();
        if !self.view.is_empty() {
            req.metadata.set("view/name", &*self.view);
        }
        let option = req.edns.as_ref().and_then(|e| e.option(COOKIE));
        if let Some(o) = option {
            let (state, out) = self.cookies.check(&o.data, req.client.ip(), crate::cookie::now());
            req.cookie = state;
            req.cookie_reply = Some(out);
        }
    }

    /// RFC 7873 §5.2.3 and §5.4: with `cookie { require }`, a UDP query from a client that
    /// does cookies but sent no valid server cookie is answered BADCOOKIE, with a fresh server
    /// cookie to retry with; the chain does not run.
    fn bad_cookie(&self, req: &Request) -> Option<Reply> {
        let refuse = self.cookies.require
            && req.proto == Proto::Udp
            && matches!(req.cookie, CookieState::ClientOnly | CookieState::Bad);
        refuse.then(|| {
            let mut r = Reply::for_request(req);
            r.rcode = OptRcode::BADCOOKIE;
            r.plugin = "cookie";
            r
        })
    }

    /// A chain that takes every query routed to its zone.
    pub fn new(zone: Name<Bytes>, server: Arc<str>, plugins: Vec<Arc<dyn Plugin>>) -> Chain {
        Chain {
            zone,
            server,
            plugins,
            collectors: Vec::new(),
            filters: Vec::new(),
            view: Arc::from(""),
            metrics: None,
            debug: false,
            cookies: Cookies::default(),
        }
    }

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
                crate::metrics::panic();
                Some(Reply::error(req, Rcode::SERVFAIL))
            }
        }
    }
}

/// The server blocks of one listener, by zone.
#[derive(Default)]
pub struct Router {
    /// Longest zone first, so the first suffix match is the most specific; blocks of one zone
    /// in the order they were inserted (the sort is stable).
    entries: Vec<(Name<Bytes>, Arc<Chain>)>,
    /// The listener's TCP limits (from the first block served on it).
    pub options: super::options::ServerOptions,
}

impl Router {
    pub fn with_options(options: super::options::ServerOptions) -> Router {
        Router { entries: Vec::new(), options }
    }

    /// Adds a block. A zone may have several blocks on one listener only while those before the
    /// new one have filters (views): a block without one takes every query left.
    pub fn insert(&mut self, zone: Name<Bytes>, chain: Arc<Chain>) -> Result<(), String> {
        if self.entries.iter().any(|(z, c)| z == &zone && c.filters.is_empty()) {
            return Err(format!(
                "zone {} is defined twice for this address (only blocks with a view may share a zone, and a block without one must come last)",
                zone.fmt_with_dot()
            ));
        }
        self.entries.push((zone, chain));
        self.entries.sort_by_key(|(z, _)| std::cmp::Reverse(z.label_count()));
        Ok(())
    }

    /// The block for `req`: of the blocks whose zone holds the name, longest zone first and in
    /// order within a zone, the first whose filters pass (after its collectors ran), as CoreDNS's
    /// server picks a view. `.` holds every name.
    pub fn route(&self, req: &mut Request) -> Option<&Arc<Chain>> {
        for (z, c) in &self.entries {
            if !crate::message::is_within(&req.qname, z) {
                continue;
            }
            for collect in &c.collectors {
                collect(req);
            }
            if c.filters.iter().all(|f| f(req)) {
                return Some(c);
            }
        }
        None
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
pub fn handle(wire: &[u8], client: SocketAddr, proto: Proto, router: &Router) -> Outcome {
    let mut req = match parse_query(wire, client, proto) {
        Ok(r) => r,
        Err(Rejected::Drop) => return Outcome::Drop,
        Err(Rejected::Reply(b)) => return Outcome::Reply(b),
        Err(Rejected::CookieOnly(req)) => return Outcome::Reply(cookie_only(*req, router)),
    };
    let Some(chain) = router.route(&mut req) else {
        let mut reply = Reply::error(&req, Rcode::REFUSED);
        finish_reply(&req, &mut reply);
        return Outcome::Reply(reply.to_wire(req.max_reply_size()));
    };
    chain.accept(&mut req);
    if let Some(mut reply) = chain.bad_cookie(&req) {
        finish_reply(&req, &mut reply);
        let wire = reply.to_wire(req.max_reply_size());
        if let Some(m) = &chain.metrics {
            m.record(&req, &reply, wire.len());
        }
        return Outcome::Reply(wire);
    }
    let chain = chain.clone();
    // The reply is encoded below and nothing else reads it: an upstream's records may pass.
    req.pass_through = true;
    let mut fut = Box::pin(async move {
        let mut reply = chain.serve(&mut req).await?;
        finish_reply(&req, &mut reply);
        let mut wire = reply.to_wire(req.max_reply_size());
        if req.reply_cap.is_some_and(|cap| wire.len() > cap) && !reply.header.tc() {
            // Over the amplification cap: the question alone, truncated, for the client to ask
            // again over TCP (the reply keeps its rcode, OPT and cookie).
            reply.answer.clear();
            reply.authority.clear();
            reply.additional.clear();
            reply.raw = None;
            reply.header.set_tc(true);
            wire = reply.to_wire(req.max_reply_size());
        }
        if let Some(m) = &chain.metrics {
            m.record(&req, &reply, wire.len());
        }
        if chain.debug {
            log::debug!(
                "{} {} {} {} from {} ({}): {} by plugin/{} in {:?}",
                chain.server, req.name_lower(), req.qclass, req.qtype, req.client, req.proto.as_str(),
                reply.rcode, reply.plugin, req.received.elapsed()
            );
        }
        Some(wire)
    });
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(b)) => Outcome::Reply(b),
        Poll::Ready(None) => Outcome::Drop,
        Poll::Pending => Outcome::Pending(fut),
    }
}

/// RFC 7873 §5.4: a query without a question but with a COOKIE option asks for a server
/// cookie alone. It gets NOERROR, no question, and the client cookie with a server cookie made
/// with the secret of the block that serves the root zone (or the per-process one).
fn cookie_only(mut req: Request, router: &Router) -> Vec<u8> {
    match router.route(&mut req) {
        Some(chain) => chain.accept(&mut req),
        None => Chain::new(Name::root_bytes(), Arc::from(""), Vec::new()).accept(&mut req),
    }
    let mut reply = Reply::for_request(&req);
    reply.question = None;
    finish_reply(&req, &mut reply);
    reply.to_wire(req.max_reply_size())
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
        Arc::new(Chain::new(name(zone), Arc::from("dns://:53"), plugins))
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
        match handle(&wire(qname), client, Proto::Udp, router) {
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

    /// Passes every query on; `reads` says whether it reads the replies it gets back.
    struct Relays {
        reads: bool,
    }

    impl Plugin for Relays {
        fn name(&self) -> &'static str {
            "relays"
        }

        fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            next.serve(req)
        }

        fn reads_replies(&self) -> bool {
            self.reads
        }
    }

    /// Reads replies, and runs the rest of the chain as a background refresh does: owned.
    struct Owns;

    impl Plugin for Owns {
        fn name(&self) -> &'static str {
            "owns"
        }

        fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            let owned = next.to_owned();
            Box::pin(async move { owned.next().serve(req).await })
        }
    }

    #[test]
    fn replies_pass_through_only_while_no_plugin_on_the_way_reads_them() {
        let relays = |reads| -> Arc<dyn Plugin> { Arc::new(Relays { reads }) };
        for (plugins, passes) in [
            (vec![], true),
            (vec![relays(false)], true),
            (vec![relays(false), relays(false)], true),
            (vec![relays(true)], false),
            (vec![relays(false), relays(true), relays(false)], false),
            (vec![Arc::new(Owns) as Arc<dyn Plugin>], false),
            (vec![relays(false), Arc::new(Owns), relays(false)], false),
        ] {
            let what = format!("{:?}", plugins.iter().map(|p| p.reads_replies()).collect::<Vec<_>>());
            // The last plugin, the one that would relay an upstream's reply, keeps what it saw.
            let seen = crate::testing::record_calls();
            let mut plugins = plugins;
            plugins.push(seen.clone());
            let mut r = Router::default();
            r.insert(Name::root_bytes(), chain(".", plugins)).expect("new");
            answer(&r, "x.example.");
            let got = seen.last.lock().expect("not poisoned").as_ref().expect("reached").pass_through;
            assert_eq!(got, passes, "{what}");
        }
        // A request made by a plugin of its own (a probe, a refresh) never passes through.
        let mut req = crate::testing::query("x.example.", Rtype::A);
        assert!(!req.pass_through);
        let seen = crate::testing::record_calls();
        let plugin: Arc<dyn Plugin> = seen.clone();
        crate::testing::serve(std::slice::from_ref(&plugin), &mut req).expect("answers");
        assert!(!seen.last.lock().expect("not poisoned").as_ref().expect("reached").pass_through);
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
        assert!(matches!(handle(&wire("x.example."), client, Proto::Udp, &r), Outcome::Drop));
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

    struct Named(&'static str);

    impl Plugin for Named {
        fn name(&self) -> &'static str {
            self.0
        }

        fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            let mut r = Reply::for_request(req);
            r.answer.push(crate::testing::rr(&format!("{} 0 IN TXT {} {}", req.qname, self.0, req.metadata.get("t/n").unwrap_or("-"))));
            Box::pin(std::future::ready(Ok(r)))
        }
    }

    fn viewed(tag: &'static str, filter: Option<Filter>) -> Arc<Chain> {
        let mut c = Chain::new(Name::root_bytes(), Arc::from("dns://:53"), vec![Arc::new(Named(tag))]);
        c.view = Arc::from(tag);
        c.collectors.push(Arc::new(|r: &mut Request| {
            r.metadata.enable();
            r.metadata.set("t/n", r.qname.to_string());
        }));
        if let Some(f) = filter {
            c.filters.push(f);
        }
        Arc::new(c)
    }

    #[test]
    fn blocks_of_one_zone_are_tried_in_order_by_their_filters() {
        let mut r = Router::default();
        let starts = |p: &'static str| -> Filter { Arc::new(move |q: &Request| q.metadata.get("t/n").is_some_and(|n| n.starts_with(p))) };
        r.insert(Name::root_bytes(), viewed("a", Some(starts("a")))).expect("first view");
        r.insert(Name::root_bytes(), viewed("b", Some(starts("b")))).expect("second view");
        r.insert(Name::root_bytes(), viewed("rest", None)).expect("a default last");
        assert!(r.insert(Name::root_bytes(), viewed("late", Some(starts("l")))).is_err(), "nothing after a default");
        let text = |q: &str| answer(&r, q).answer[0].to_string();
        assert_eq!(text("a1.example."), "a1.example. 0 IN TXT \"a\" \"a1.example\"");
        assert_eq!(text("b1.example."), "b1.example. 0 IN TXT \"b\" \"b1.example\"");
        assert_eq!(text("c1.example."), "c1.example. 0 IN TXT \"rest\" \"c1.example\"");
        // Views only: a query none takes is REFUSED.
        let mut r = Router::default();
        r.insert(Name::root_bytes(), viewed("a", Some(starts("a")))).expect("view");
        assert_eq!(answer(&r, "z.example.").rcode, domain::base::iana::OptRcode::REFUSED);
    }

    /// Reports the cookie state it sees in a TXT record.
    struct SeesCookie;

    impl Plugin for SeesCookie {
        fn name(&self) -> &'static str {
            "sees"
        }

        fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            let mut r = Reply::for_request(req);
            r.answer.push(crate::testing::rr(&format!("{} 0 IN TXT {:?}", req.qname, req.cookie)));
            Box::pin(std::future::ready(Ok(r)))
        }
    }

    fn with_cookie(cookie: Option<&[u8]>) -> Bytes {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(9);
        let mut q = b.question();
        q.push((&name("c.example."), Rtype::A, Class::IN)).expect("fits");
        let mut a = q.additional();
        a.opt(|o| {
            if let Some(c) = cookie {
                o.push_raw_option(domain::base::iana::OptionCode::COOKIE, c.len() as u16, |t| octseq::builder::OctetsBuilder::append_slice(t, c))?;
            }
            Ok(())
        })
        .expect("fits");
        Bytes::from(a.finish())
    }

    #[test]
    fn plugins_see_what_the_cookie_proved_and_require_stops_the_chain() {
        let client: SocketAddr = "192.0.2.9:5300".parse().expect("addr");
        let run = |router: &Router, cookie: Option<&[u8]>| -> Reply {
            match handle(&with_cookie(cookie), client, Proto::Udp, router) {
                Outcome::Reply(b) => Reply::from_wire(&b).expect("parses"),
                _ => panic!("an immediate reply"),
            }
        };
        let seen = |r: &Reply| r.answer.first().map(|a| a.data().to_string()).unwrap_or_default();
        let mut open = Chain::new(Name::root_bytes(), Arc::from("dns://:53"), vec![Arc::new(SeesCookie)]);
        open.cookies = Cookies { secret: crate::cookie::Secret::new([7; 16]), require: false };
        let mut required = Chain::new(Name::root_bytes(), Arc::from("dns://:53"), vec![Arc::new(SeesCookie)]);
        required.cookies = Cookies { require: true, ..open.cookies.clone() };
        let mut r_open = Router::default();
        r_open.insert(Name::root_bytes(), Arc::new(open)).expect("new");
        let mut r_req = Router::default();
        r_req.insert(Name::root_bytes(), Arc::new(required)).expect("new");

        assert_eq!(seen(&run(&r_open, None)), "\"None\"");
        let first = run(&r_open, Some(&[1; 8]));
        assert_eq!(seen(&first), "\"ClientOnly\"");
        let cookie = first.edns.as_ref().and_then(|e| e.option(COOKIE)).expect("cookie").data.clone();
        assert_eq!(cookie.len(), 24);
        assert_eq!(seen(&run(&r_open, Some(&cookie))), "\"Valid\"");
        let mut bad = cookie.to_vec();
        bad[20] ^= 1;
        assert_eq!(seen(&run(&r_open, Some(&bad))), "\"Bad\"");
        // With require the chain never runs for a client-only or bad cookie.
        for c in [&[1u8; 8][..], &bad] {
            let r = run(&r_req, Some(c));
            assert_eq!(r.rcode, OptRcode::BADCOOKIE);
            assert!(r.answer.is_empty());
        }
        assert_eq!(seen(&run(&r_req, Some(&cookie))), "\"Valid\"");
        assert_eq!(seen(&run(&r_req, None)), "\"None\"", "no cookie, no demand");
    }
}
