//! loop: detects a forwarding loop at start-up, as CoreDNS's loop plugin does. Once the server
//! listens, it sends one query for a random name (`<random>.<random>.<zone>`, type HINFO) to its
//! own first listener. If that query comes back through the chain more than twice, queries for
//! this zone go round in a loop (usually a forward upstream that is this server itself, such as
//! a resolv.conf naming 127.0.0.53 or the node's own address): the server stops with an error
//! that says so. Once the probe is answered, or after 30 seconds, the plugin steps aside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use domain::base::message_builder::MessageBuilder;

use crate::plugin::prelude::*;

/// How long the start-up probe is retried for (CoreDNS: 30s).
pub const PROBE_FOR: Duration = Duration::from_secs(30);
/// How long one probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// More than this many sightings of the probe is a loop.
pub const MAX_SEEN: u32 = 2;

/// `loop` takes no arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

/// What happens when a loop is found: log it and exit, as CoreDNS's `log.Fatalf`.
pub type OnLoop = Arc<dyn Fn(&str) + Send + Sync>;

fn fatal() -> OnLoop {
    Arc::new(|msg: &str| {
        log::error!(target: "plugin/loop", "{msg}");
        log::logger().flush();
        std::process::exit(1);
    })
}

pub fn setup(_c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let zone = ctx.zones.first().cloned().unwrap_or_else(Name::root_bytes);
    let l = Arc::new(Loop::new(zone, fatal()));
    let probe = l.clone();
    ctx.on_startup(move |addr| {
        let probe = probe.clone();
        let _ = std::thread::Builder::new().name("loop-probe".into()).spawn(move || probe.run_probe(addr));
    });
    ctx.add_handler(l);
    Ok(())
}

pub struct Loop {
    /// The probe's name: two random numbers under the zone.
    pub qname: Name<Bytes>,
    zone: Name<Bytes>,
    seen: AtomicU32,
    disabled: AtomicBool,
    /// Where the probe was sent, for the error message.
    target: std::sync::Mutex<Option<SocketAddr>>,
    on_loop: OnLoop,
}

impl Loop {
    pub fn new(zone: Name<Bytes>, on_loop: OnLoop) -> Loop {
        let a: u64 = rand::random();
        let b: u64 = rand::random();
        let zone_text = zone.fmt_with_dot().to_string();
        let name = if zone.is_root() { format!("{a}.{b}.") } else { format!("{a}.{b}.{zone_text}") };
        // A zone too long for two more labels probes with the zone's own name.
        let qname = std::str::FromStr::from_str(&name).unwrap_or_else(|_| zone.clone());
        Loop { qname, zone, seen: AtomicU32::new(0), disabled: AtomicBool::new(false), target: Default::default(), on_loop }
    }

    pub fn seen(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }

    pub fn disabled(&self) -> bool {
        self.disabled.load(Ordering::SeqCst)
    }

    /// Sends the probe to `addr` until it is answered or `PROBE_FOR` has passed, then steps aside.
    pub fn run_probe(&self, addr: SocketAddr) {
        // A wildcard listener is reached on loopback.
        let ip = match addr.ip() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let target = SocketAddr::new(ip, addr.port());
        *self.target.lock().expect("never poisoned") = Some(target);
        let deadline = Instant::now() + PROBE_FOR;
        while Instant::now() < deadline && !self.disabled() {
            match self.probe_once(target) {
                Ok(()) => break,
                Err(e) => {
                    log::warn!(target: "plugin/loop", "failure while trying to run loop detection on {:?}: {e}", self.qname.fmt_with_dot().to_string());
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.disabled.store(true, Ordering::SeqCst);
    }

    fn probe_once(&self, target: SocketAddr) -> std::io::Result<()> {
        let bind: SocketAddr = if target.is_ipv4() { (Ipv4Addr::LOCALHOST, 0).into() } else { (Ipv6Addr::LOCALHOST, 0).into() };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(PROBE_TIMEOUT))?;
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(rand::random());
        b.header_mut().set_rd(true);
        let mut q = b.question();
        q.push((&self.qname, Rtype::HINFO, Class::IN)).map_err(|_| std::io::Error::other("probe does not fit"))?;
        sock.send_to(&q.finish(), target)?;
        let mut buf = [0u8; 512];
        sock.recv_from(&mut buf)?;
        Ok(())
    }
}

impl Plugin for Loop {
    fn name(&self) -> &'static str {
        "loop"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if req.qtype != Rtype::HINFO || self.disabled() || !req.qname.ends_with(&self.zone) {
            return next.serve(req);
        }
        if req.qname == self.qname && self.seen.fetch_add(1, Ordering::SeqCst) + 1 > MAX_SEEN {
            let target = self.target.lock().expect("never poisoned").map_or_else(|| "-".to_string(), |a| a.to_string());
            let msg = format!(
                "loop ({} -> {target}) detected for zone {:?}: the probe \"HINFO {}\" came back {} times. \
                 A forward upstream sends this server's queries back to it, most often a resolv.conf that \
                 names this host (127.0.0.53, 127.0.0.1 or the node's own address); forward to a real resolver instead",
                req.client,
                self.zone.fmt_with_dot().to_string(),
                self.qname.fmt_with_dot(),
                self.seen()
            );
            (self.on_loop)(&msg);
        }
        next.serve(req)
    }
}

#[cfg(test)]
mod tests;
