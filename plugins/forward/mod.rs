//! forward: sends queries to upstream resolvers over UDP, TCP or DNS over TLS, as CoreDNS's
//! forward does: up to 15 upstreams (addresses, `dns://`/`tls://` URLs, or a resolv.conf whose
//! nameservers are read), a selection policy, health probes that mark an upstream down after
//! `max_fails` failures and up again when one is answered, `max_concurrent` (REFUSED at once,
//! counted), `next` and `failover` rcodes.
//!
//! Beyond CoreDNS: every UDP query leaves from a fresh socket (a random source port) with a
//! random ID, and only a reply with that ID, our question and the upstream's address is taken;
//! the per-try timeout follows the upstream's observed latency (RFC 6298); a truncated UDP
//! reply is asked again over TCP; TCP and TLS connections are kept and pipelined.

mod transport;
mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::base::message_builder::MessageBuilder;
use rand::seq::SliceRandom;
use tokio::time::Instant;

use crate::plugin::prelude::*;
use crate::plugin::{parse_duration, Proto as ClientProto};

pub use transport::{Connector, ExchangeError, StreamPool, TryLimit};
pub use upstream::{HealthCheck, Proto, Upstream, MAX_TIMEOUT, MIN_TIMEOUT};

/// CoreDNS's limit on upstreams per forward.
pub const MAX_UPSTREAMS: usize = 15;
/// A query gives up after this long, whatever is left to try (CoreDNS's defaultTimeout).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(5);

/// `forward FROM TO... { ... }`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zone whose queries are forwarded, e.g. `.`.
    pub from: String,
    /// Upstreams as written: `1.2.3.4`, `1.2.3.4:5353`, `[::1]:53`, `dns://...`,
    /// `tls://1.2.3.4%name:853`, or a resolv.conf path. Host names are refused.
    pub to: Vec<String>,
    #[serde(default)]
    pub except: Vec<String>,
    #[serde(default)]
    pub force_tcp: bool,
    #[serde(default)]
    pub prefer_udp: bool,
    /// Idle connections are closed after this long (default 10s).
    #[serde(default)]
    pub expire: Option<String>,
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    #[serde(default)]
    pub max_idle_conns: Option<usize>,
    /// `tls [CERT KEY] [CA]`: 0 to 3 paths.
    #[serde(default)]
    pub tls: Option<Vec<String>>,
    #[serde(default)]
    pub tls_servername: Option<String>,
    #[serde(default)]
    pub next: Vec<String>,
    #[serde(default)]
    pub failfast_all_unhealthy_upstreams: bool,
    #[serde(default)]
    pub failover: Vec<String>,
}

fn default_max_fails() -> u32 {
    2
}

/// `health_check DURATION [no_rec] [domain NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    pub interval: String,
    #[serde(default)]
    pub no_rec: bool,
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    Random,
    RoundRobin,
    Sequential,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let Some((from, to)) = d.args.split_first() else {
        return Err(d.err("needs FROM and at least one TO"));
    };
    if to.is_empty() {
        return Err(from.err("needs at least one TO after FROM"));
    }
    let mut c = Config {
        from: fqdn(from)?,
        to: Vec::new(),
        except: Vec::new(),
        force_tcp: false,
        prefer_udp: false,
        expire: None,
        max_fails: default_max_fails(),
        health_check: None,
        policy: Policy::Random,
        max_concurrent: None,
        max_idle_conns: None,
        tls: None,
        tls_servername: None,
        next: Vec::new(),
        failfast_all_unhealthy_upstreams: false,
        failover: Vec::new(),
    };
    for t in to {
        check_to(t)?;
        c.to.push(t.text.clone());
    }
    for line in d.lines() {
        match line.key().as_str() {
            "except" => {
                for t in line.nargs(1, usize::MAX)? {
                    c.except.push(fqdn(t)?);
                }
            }
            "force_tcp" => {
                line.nargs(0, 0)?;
                c.force_tcp = true;
            }
            "prefer_udp" => {
                line.nargs(0, 0)?;
                c.prefer_udp = true;
            }
            "expire" => {
                let t = &line.nargs(1, 1)?[0];
                t.duration()?;
                c.expire = Some(t.text.clone());
            }
            "max_fails" => c.max_fails = line.nargs(1, 1)?[0].parse("a number")?,
            "health_check" => {
                let args = line.nargs(1, 4)?;
                let interval = &args[0];
                if interval.duration()?.is_zero() {
                    return Err(interval.err("health_check interval must be above zero"));
                }
                let mut hc = HealthCheckConfig { interval: interval.text.clone(), no_rec: false, domain: None };
                let mut rest = args[1..].iter();
                while let Some(t) = rest.next() {
                    match t.as_str() {
                        "no_rec" => hc.no_rec = true,
                        "domain" => {
                            let name = rest.next().ok_or_else(|| t.err("domain needs a name"))?;
                            hc.domain = Some(fqdn(name)?);
                        }
                        other => return Err(t.err(format!("unknown health_check option {other:?}: expected no_rec or domain NAME"))),
                    }
                }
                c.health_check = Some(hc);
            }
            "policy" => {
                let t = &line.nargs(1, 1)?[0];
                c.policy = match t.as_str() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    other => return Err(t.err(format!("unknown policy {other:?}: expected random, round_robin or sequential"))),
                };
            }
            "max_concurrent" => {
                let n: usize = line.nargs(1, 1)?[0].parse("a number")?;
                if n == 0 {
                    return Err(line.args()[0].err("max_concurrent must be above zero"));
                }
                c.max_concurrent = Some(n);
            }
            "max_idle_conns" => c.max_idle_conns = Some(line.nargs(1, 1)?[0].parse("a number")?),
            "tls" => c.tls = Some(line.nargs(0, 3)?.iter().map(|t| t.text.clone()).collect()),
            "tls_servername" => c.tls_servername = Some(line.nargs(1, 1)?[0].text.clone()),
            "next" => {
                for t in line.nargs(1, usize::MAX)? {
                    rcode(t)?;
                    c.next.push(t.text.to_ascii_uppercase());
                }
            }
            "failfast_all_unhealthy_upstreams" => {
                line.nargs(0, 0)?;
                c.failfast_all_unhealthy_upstreams = true;
            }
            "failover" => {
                for t in line.nargs(1, usize::MAX)? {
                    if rcode(t)? == Rcode::NOERROR {
                        return Err(t.err("NOERROR cannot be used with failover"));
                    }
                    c.failover.push(t.text.to_ascii_uppercase());
                }
            }
            _ => return Err(line.unknown()),
        }
    }
    if c.tls_servername.is_some() && c.to.iter().any(|t| t.contains('%')) {
        return Err(d.err("tls_servername cannot be combined with a per-upstream server name (tls://ADDR%NAME)"));
    }
    Ok(c)
}

fn fqdn(t: &Token) -> Result<String, SetupError> {
    let text = if t.text.ends_with('.') { t.text.clone() } else { format!("{}.", t.text) };
    let text = text.to_ascii_lowercase();
    Name::<Bytes>::from_str(&text).map_err(|e| t.err(format!("invalid domain name {:?}: {e}", t.text)))?;
    Ok(text)
}

fn rcode(t: &Token) -> Result<Rcode, SetupError> {
    rcode_from_name(&t.text).ok_or_else(|| t.err(format!("unknown rcode {:?}", t.text)))
}

/// An rcode by its mnemonic (`NXDOMAIN`, any case), as CoreDNS's `dns.StringToRcode`.
pub fn rcode_from_name(s: &str) -> Option<Rcode> {
    let s = s.to_ascii_uppercase();
    (0..16u8).filter_map(Rcode::checked_from_int).find(|r| r.to_mnemonic_str() == Some(s.as_str()))
}

/// A TO as written, taken apart: scheme, host (address or path), server name, port.
struct To<'a> {
    tls: bool,
    host: &'a str,
    server_name: Option<&'a str>,
    port: Option<u16>,
}

fn split_to(text: &str) -> Result<To<'_>, String> {
    let (tls, rest) = if let Some(r) = text.strip_prefix("tls://") {
        (true, r)
    } else if let Some(r) = text.strip_prefix("dns://") {
        (false, r)
    } else if text.contains("://") {
        let scheme = text.split("://").next().unwrap_or_default();
        return Err(format!("transport {scheme}:// is not supported by forward: use dns:// or tls://"));
    } else {
        (false, text)
    };
    if rest.contains('/') {
        return Ok(To { tls, host: rest, server_name: None, port: None });
    }
    // [v6]:port, [v6], v4:port, v4, v6, and a %servername before the port.
    let (hostpart, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("unclosed [")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected {after:?} after ]")),
        };
        (h, port)
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').ok_or("unreachable")?;
        (h, Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?))
    } else {
        (rest, None)
    };
    let (host, server_name) = match hostpart.split_once('%') {
        Some((h, n)) if tls => (h, Some(n)),
        Some(_) => return Err("a server name (ADDR%NAME) needs tls://".into()),
        None => (hostpart, None),
    };
    if host.is_empty() {
        return Err("empty address".into());
    }
    Ok(To { tls, host, server_name, port })
}

fn check_to(t: &Token) -> Result<(), SetupError> {
    split_to(&t.text).map(|_| ()).map_err(|e| t.err(format!("invalid upstream {:?}: {e}", t.text)))
}

/// One resolved upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: bool,
    pub server_name: Option<String>,
}

/// Resolves TO arguments: addresses as they are, resolv.conf files to their nameservers. Host
/// names are refused, as CoreDNS's forward refuses them.
// NOTE: no host-name lookups here (README, Packaging): in a static glibc binary getaddrinfo needs
// NSS modules that the image does not have, and linking it costs about 130 KB.
pub fn resolve_targets(to: &[String], ctx: &SetupCtx) -> Result<Vec<Target>, SetupError> {
    let mut out = Vec::new();
    for text in to {
        let t = split_to(text).map_err(|e| SetupError::new(format!("invalid upstream {text:?}: {e}")))?;
        let default_port = if t.tls { 853 } else { 53 };
        let port = t.port.unwrap_or(default_port);
        let server_name = t.server_name.map(str::to_string);
        if let Ok(ip) = IpAddr::from_str(t.host) {
            out.push(Target { addr: SocketAddr::new(ip, port), tls: t.tls, server_name });
            continue;
        }
        // Anything else must be a resolv.conf-style file; CoreDNS's words for what is neither.
        let path = ctx.path(t.host);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            SetupError::new(format!("not an IP address or file: {:?} (cannot read {}: {e})", t.host, path.display()))
        })?;
        let servers = resolv_conf_nameservers(&text);
        if servers.is_empty() {
            return Err(SetupError::new(format!("{} names no nameserver", path.display())));
        }
        out.extend(servers.into_iter().map(|ip| Target { addr: SocketAddr::new(ip, default_port), tls: t.tls, server_name: None }));
    }
    if out.len() > MAX_UPSTREAMS {
        return Err(SetupError::new(format!("more than {MAX_UPSTREAMS} upstreams ({})", out.len())));
    }
    Ok(out)
}

/// The `nameserver` lines of a resolv.conf (an IPv6 zone index such as `%eth0` is dropped).
pub fn resolv_conf_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            let addr = w.next()?;
            IpAddr::from_str(addr.split('%').next()?).ok()
        })
        .collect()
}

/// A rustls client configuration for `tls [CERT KEY] [CA]`, with ring as the provider.
#[cfg(feature = "forward-tls")]
fn tls_config(args: &[String], ctx: &SetupCtx) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // The process-wide default, for any other rustls user; ours names its provider explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (client, ca) = match args.len() {
        0 => (None, None),
        1 => (None, Some(&args[0])),
        2 => (Some((&args[0], &args[1])), None),
        _ => (Some((&args[0], &args[1])), Some(&args[2])),
    };
    let ca_path = match ca {
        Some(p) => ctx.path(p),
        None => std::path::PathBuf::from(SYSTEM_CA_FILE),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&ca_path)
        .map_err(|e| SetupError::new(format!("tls: cannot read CA {}: {e}", ca_path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| SetupError::new(format!("tls: bad certificate in {}: {e}", ca_path.display())))?;
        // The system bundle may hold a certificate rustls rejects; skip it, as browsers do.
        if roots.add(cert).is_err() && ca.is_some() {
            return Err(SetupError::new(format!("tls: unusable CA certificate in {}", ca_path.display())));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::new(format!("tls: {e}")))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (cert, key) = (ctx.path(cert), ctx.path(key));
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| SetupError::new(format!("tls: cannot read certificate {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| SetupError::new(format!("tls: cannot read key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| SetupError::new(format!("tls: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

/// Debian's bundle of the system's trusted CAs.
#[cfg(feature = "forward-tls")]
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let f = build(c, ctx)?;
    ctx.add_handler(Arc::new(f));
    Ok(())
}

/// The plugin for one directive.
pub fn build(c: &Config, ctx: &SetupCtx) -> Result<Forward, SetupError> {
    upstream::describe();
    let targets = resolve_targets(&c.to, ctx)?;
    let expire = match &c.expire {
        Some(e) => parse_duration(e).ok_or_else(|| SetupError::new(format!("invalid expire {e:?}")))?,
        None => Duration::from_secs(10),
    };
    #[cfg(feature = "forward-tls")]
    let tls = if targets.iter().any(|t| t.tls) { Some(tls_config(c.tls.as_deref().unwrap_or(&[]), ctx)?) } else { None };
    #[cfg(not(feature = "forward-tls"))]
    if let Some(t) = targets.iter().find(|t| t.tls) {
        return Err(SetupError::new(format!(
            "tls://{}: this ferrite was built without DNS over TLS for forward (Cargo feature forward-tls)",
            t.addr
        )));
    }
    let mut upstreams = Vec::new();
    for t in &targets {
        #[cfg(feature = "forward-tls")]
        let (label, connector) = match &tls {
            Some(cfg) if t.tls => {
                let name = t.server_name.clone().or_else(|| c.tls_servername.clone()).unwrap_or_else(|| t.addr.ip().to_string());
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| SetupError::new(format!("tls_servername {name:?}: {e}")))?;
                (format!("tls://{}", t.addr), Connector::Tls(tokio_rustls::TlsConnector::from(cfg.clone()), name))
            }
            _ => (t.addr.to_string(), Connector::Tcp),
        };
        #[cfg(not(feature = "forward-tls"))]
        let (label, connector) = (t.addr.to_string(), Connector::Tcp);
        let pool = StreamPool::new(expire, c.max_idle_conns.unwrap_or(0));
        upstreams.push(Arc::new(Upstream::new(t.addr, label, connector, pool)));
    }
    let hc = c.health_check.as_ref();
    let health = HealthCheck {
        interval: match hc {
            Some(h) => parse_duration(&h.interval).ok_or_else(|| SetupError::new(format!("invalid interval {:?}", h.interval)))?,
            None => Duration::from_millis(500),
        },
        recursion_desired: !hc.is_some_and(|h| h.no_rec),
        domain: Name::from_str(hc.and_then(|h| h.domain.as_deref()).unwrap_or("."))
            .map_err(|e| SetupError::new(format!("invalid health_check domain: {e}")))?,
        max_fails: c.max_fails,
        force_tcp: c.force_tcp,
    };
    let names = |v: &[String]| -> Result<Vec<Name<Bytes>>, SetupError> {
        v.iter().map(|z| Name::from_str(z).map_err(|e| SetupError::new(format!("invalid name {z:?}: {e}")))).collect()
    };
    let rcodes = |v: &[String]| -> Vec<Rcode> { v.iter().filter_map(|r| rcode_from_name(r)).collect() };
    Ok(Forward {
        from: Name::from_str(&c.from).map_err(|e| SetupError::new(format!("invalid FROM: {e}")))?,
        except: names(&c.except)?,
        upstreams,
        health: Arc::new(health),
        policy: c.policy,
        force_tcp: c.force_tcp,
        prefer_udp: c.prefer_udp,
        max_concurrent: c.max_concurrent,
        failfast: c.failfast_all_unhealthy_upstreams,
        next_rcodes: rcodes(&c.next),
        failover: rcodes(&c.failover),
        concurrent: AtomicUsize::new(0),
        turn: AtomicUsize::new(0),
        metrics: upstream::PluginMetrics::default(),
    })
}

pub struct Forward {
    from: Name<Bytes>,
    except: Vec<Name<Bytes>>,
    pub upstreams: Vec<Arc<Upstream>>,
    health: Arc<HealthCheck>,
    policy: Policy,
    force_tcp: bool,
    prefer_udp: bool,
    max_concurrent: Option<usize>,
    failfast: bool,
    next_rcodes: Vec<Rcode>,
    failover: Vec<Rcode>,
    concurrent: AtomicUsize,
    /// The round_robin policy's next first upstream.
    turn: AtomicUsize,
    metrics: upstream::PluginMetrics,
}

impl Drop for Forward {
    fn drop(&mut self) {
        for u in &self.upstreams {
            u.closed.store(true, Ordering::Release);
        }
    }
}

/// Gives back a `max_concurrent` slot when the query ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Forward {
    /// The order upstreams are tried in for one query: the first `upstreams.len()` entries.
    fn order(&self) -> [u8; MAX_UPSTREAMS] {
        let n = self.upstreams.len();
        let mut order: [u8; MAX_UPSTREAMS] = std::array::from_fn(|i| i as u8);
        let v = &mut order[..n];
        match self.policy {
            Policy::Random => v.shuffle(&mut rand::rng()),
            Policy::RoundRobin => v.rotate_left(self.turn.fetch_add(1, Ordering::Relaxed) % n),
            Policy::Sequential => {}
        }
        order
    }

    /// Whether this forward handles `qname`: inside FROM and outside every `except` zone.
    fn handles(&self, qname: &Name<Bytes>) -> bool {
        use crate::message::is_within;
        is_within(qname, &self.from) && !self.except.iter().any(|z| is_within(qname, z))
    }

    async fn forward<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> Result<Reply, ServeError> {
        let mut query = encode_query(req);
        let q = transport::Question { qname: &req.qname, qtype: req.qtype, qclass: req.qclass };
        let list = self.order();
        let n = self.upstreams.len();
        // NOTE: set at the first try, from the clock read there.
        let mut query_deadline = None;
        // Stream when asked to, or when the client came over TCP (unless prefer_udp), as CoreDNS.
        let mut use_tcp = self.force_tcp || (req.proto == ClientProto::Tcp && !self.prefer_udp);
        let mut fails = 0;
        let mut i = 0;
        let mut tries = 0;
        let mut last_err: Option<String> = None;
        let mut failed_over: Option<Reply> = None;
        // Each upstream gets two tries at most, so a query never spins on refused connections.
        loop {
            let now = Instant::now();
            let deadline = *query_deadline.get_or_insert(now + QUERY_DEADLINE);
            if now >= deadline || tries > 2 * n {
                break;
            }
            if i >= n {
                i = 0;
                fails = 0;
                if failed_over.is_some() {
                    break;
                }
            }
            let mut up = &self.upstreams[list[i] as usize];
            i += 1;
            if up.down(self.health.max_fails) {
                fails += 1;
                if fails < n {
                    continue;
                }
                // Every upstream is down: health checking itself is taken to be broken, and a
                // random upstream is tried (or, with failfast_all_unhealthy_upstreams, none).
                self.metrics.broken().increment(1);
                if self.failfast {
                    break;
                }
                up = &self.upstreams[rand::random_range(0..n)];
            }
            tries += 1;
            let proto = if up.is_tls() {
                Proto::Tls
            } else if use_tcp {
                Proto::Tcp
            } else {
                Proto::Udp
            };
            // RFC 6298 §5.5: each further try of this query waits twice as long.
            let mut timeout = up.timeout().saturating_mul(1 << (tries - 1).min(4)).min(MAX_TIMEOUT);
            if proto != Proto::Udp {
                // A new stream may need a handshake first.
                timeout = timeout.max(Duration::from_secs(1));
            }
            timeout = timeout.min(deadline.saturating_duration_since(now));
            up.count_request();
            let start = now;
            let wire = match up.exchange(&mut query, proto, &q, TryLimit { start, timeout }).await {
                Ok(w) => w,
                Err(ExchangeError::Closed) => {
                    // The other side closed a kept connection: try again on a new one.
                    i -= 1;
                    continue;
                }
                Err(e) => {
                    up.start_health_check(&self.health);
                    last_err = Some(format!("upstream {} {e}", up.label));
                    continue;
                }
            };
            let took = start.elapsed();
            // Nothing on the way back reads the records: keep them as they came, if they can be.
            let parsed = if req.pass_through {
                Reply::pass_through(wire, domain::base::Question::new(req.qname.clone(), req.qtype, req.qclass)).or_else(Reply::from_bytes)
            } else {
                Reply::from_bytes(wire)
            };
            let mut reply = match parsed {
                Ok(mut r) => {
                    r.plugin = "forward";
                    r
                }
                Err(e) => {
                    up.start_health_check(&self.health);
                    last_err = Some(format!("upstream {} sent a malformed reply: {e}", up.label));
                    continue;
                }
            };
            up.observe_rtt(took);
            up.count_response(reply.rcode.rcode(), took);
            if reply.header.tc() && proto == Proto::Udp {
                // Truncated: ask the same upstream again over TCP (RFC 7766 §5).
                use_tcp = true;
                i -= 1;
                continue;
            }
            let rcode = reply.rcode.rcode();
            if self.failover.contains(&rcode) {
                failed_over = Some(reply);
                continue;
            }
            if self.next_rcodes.contains(&rcode) && next.name() == Some("forward") {
                return next.serve(req).await;
            }
            // The upstream's OPT options (its cookie, NSID) are not the client's business; the
            // server writes our own OPT for the client.
            reply.edns = None;
            return Ok(reply);
        }
        if let Some(mut reply) = failed_over {
            // Every upstream answered with a failover rcode: the last answer stands.
            reply.edns = None;
            return Ok(reply);
        }
        Err(ServeError::servfail("forward", last_err.unwrap_or_else(|| "no healthy upstream".to_string())))
    }
}

/// Our query for `req`: its opcode, RD, CD and AD bits and question, with an OPT record offering
/// 1232 bytes and the client's DO bit (RFC 6891), whether or not the client sent EDNS.
fn encode_query(req: &Request) -> Vec<u8> {
    let mut b = MessageBuilder::from_target(Vec::with_capacity(64)).expect("an empty Vec takes a header");
    let h = b.header_mut();
    h.set_opcode(req.header.opcode());
    h.set_rd(req.header.rd());
    h.set_cd(req.header.cd());
    h.set_ad(req.header.ad());
    let mut q = b.question();
    q.push((&req.qname, req.qtype, req.qclass)).expect("one question fits in a Vec");
    let mut a = q.additional();
    let dnssec_ok = req.dnssec_ok();
    a.opt(|o| {
        o.set_udp_payload_size(crate::message::ADVERTISED_UDP_SIZE);
        o.set_dnssec_ok(dnssec_ok);
        Ok(())
    })
    .expect("an OPT record fits in a Vec");
    a.finish()
}

impl Plugin for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    /// Another forward's reply (`next RCODE...`) is passed on as it is.
    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        if !self.handles(&req.qname) {
            return next.serve(req);
        }
        let slot = match self.max_concurrent {
            Some(max) => {
                if self.concurrent.fetch_add(1, Ordering::AcqRel) >= max {
                    self.concurrent.fetch_sub(1, Ordering::AcqRel);
                    self.metrics.rejects().increment(1);
                    // As CoreDNS: REFUSED at once; not a health failure.
                    let e = ServeError::new("forward", Rcode::REFUSED, format!("concurrent queries exceeded maximum {max}"));
                    return Box::pin(std::future::ready(Err(e)));
                }
                Some(Slot(&self.concurrent))
            }
            None => None,
        };
        Box::pin(async move {
            let _slot = slot;
            self.forward(req, next).await
        })
    }
}

#[cfg(test)]
mod tests;
