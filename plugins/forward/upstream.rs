//! One upstream: its address and transport, its health (failed probes in a row), its observed
//! latency (which sets the per-try timeout), its pooled connections and its metric handles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::message_builder::MessageBuilder;
use domain::base::name::Name;
use metrics::{Counter, Histogram};

use super::transport::{self, Connector, ExchangeError, Question, StreamPool, TryLimit};

/// The per-try timeout before any reply was seen, and its ceiling (CoreDNS's static read timeout).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2);
/// The floor of the per-try timeout: a recursive upstream that is usually fast still gets this
/// long for an answer it has to look up.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest a health probe waits for its reply; it waits the upstream's per-try timeout
/// when that is shorter.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub const REQUESTS: &str = "coredns_forward_requests_total";
pub const RESPONSES: &str = "coredns_forward_responses_total";
pub const DURATION: &str = "coredns_forward_request_duration_seconds";
pub const HC_FAILURES: &str = "coredns_forward_healthcheck_failures_total";
pub const HC_BROKEN: &str = "coredns_forward_healthcheck_broken_total";
pub const MAX_CONCURRENT_REJECTS: &str = "coredns_forward_max_concurrent_rejects_total";

/// Which wire an upstream is spoken to over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

/// How the plugin health-checks its upstreams.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub interval: Duration,
    pub recursion_desired: bool,
    pub domain: Name<Bytes>,
    /// Probes failed in a row before an upstream is down; 0 turns checking off.
    pub max_fails: u32,
    /// Probes go over TCP (`force_tcp`) instead of UDP for plain DNS upstreams.
    pub force_tcp: bool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    /// The `to` label, as CoreDNS writes it: `127.0.0.1:53`, `tls://9.9.9.9:853`.
    pub label: String,
    pub connector: Connector,
    pub pool: StreamPool,
    udp: transport::UdpPool,
    fails: AtomicU32,
    checking: AtomicBool,
    /// Set when the plugin is dropped (reload), so a probe loop stops.
    pub closed: AtomicBool,
    /// Smoothed RTT and its variation in microseconds (RFC 6298), 0 before the first sample.
    srtt: AtomicU64,
    rttvar: AtomicU64,
    /// The current per-try timeout in microseconds.
    rto: AtomicU64,
    metrics: OnceLock<UpstreamMetrics>,
}

/// Label handles for one upstream, made on first use (after the exporter is installed) and kept.
struct UpstreamMetrics {
    requests: Counter,
    hc_failures: Counter,
    /// By rcode (0..=15; higher extended rcodes share the last slot's label-less fallback).
    by_rcode: [OnceLock<(Counter, Histogram)>; 16],
}

impl Upstream {
    pub fn new(addr: SocketAddr, label: String, connector: Connector, pool: StreamPool) -> Upstream {
        Upstream {
            addr,
            label,
            connector,
            pool,
            udp: transport::UdpPool::default(),
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            srtt: AtomicU64::new(0),
            rttvar: AtomicU64::new(0),
            rto: AtomicU64::new(MAX_TIMEOUT.as_micros() as u64),
            metrics: OnceLock::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "forward-tls")]
        return matches!(self.connector, Connector::Tls(..));
        #[cfg(not(feature = "forward-tls"))]
        false
    }

    fn metrics(&self) -> &UpstreamMetrics {
        self.metrics.get_or_init(|| UpstreamMetrics {
            requests: metrics::counter!(REQUESTS, "to" => self.label.clone()),
            hc_failures: metrics::counter!(HC_FAILURES, "to" => self.label.clone()),
            by_rcode: Default::default(),
        })
    }

    pub fn count_request(&self) {
        self.metrics().requests.increment(1);
    }

    pub fn count_response(&self, rcode: Rcode, took: Duration) {
        let m = self.metrics();
        let i = (rcode.to_int() as usize).min(15);
        let (c, h) = m.by_rcode[i].get_or_init(|| {
            let name = rcode.to_string();
            (
                metrics::counter!(RESPONSES, "to" => self.label.clone(), "rcode" => name.clone()),
                metrics::histogram!(DURATION, "to" => self.label.clone(), "rcode" => name),
            )
        });
        c.increment(1);
        h.record(took.as_secs_f64());
    }

    /// Down once `max_fails` health probes in a row have failed (0: never down).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) >= max_fails
    }

    pub fn fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    /// The time one try may take: RFC 6298's RTO from the replies seen so far, within
    /// [`MIN_TIMEOUT`, `MAX_TIMEOUT`]. The query backs off per try (see `Forward::forward`), not
    /// the upstream: a silent upstream must not make every later query wait the longest time
    /// before it fails over.
    pub fn timeout(&self) -> Duration {
        Duration::from_micros(self.rto.load(Ordering::Relaxed))
    }

    /// Folds one reply's round trip into the estimate (RFC 6298 §2: alpha 1/8, beta 1/4).
    pub fn observe_rtt(&self, rtt: Duration) {
        let r = rtt.as_micros() as u64;
        let srtt = self.srtt.load(Ordering::Relaxed);
        let (srtt, var) = if srtt == 0 {
            (r.max(1), r / 2)
        } else {
            let var = self.rttvar.load(Ordering::Relaxed);
            let var = (3 * var + srtt.abs_diff(r)) / 4;
            ((7 * srtt + r) / 8, var)
        };
        self.srtt.store(srtt, Ordering::Relaxed);
        self.rttvar.store(var, Ordering::Relaxed);
        let rto = (srtt + 4 * var).clamp(MIN_TIMEOUT.as_micros() as u64, MAX_TIMEOUT.as_micros() as u64);
        self.rto.store(rto, Ordering::Relaxed);
    }

    /// One try: `query` (whose ID is replaced) over `proto`, within `limit`.
    pub async fn exchange(
        &self,
        query: &mut [u8],
        proto: Proto,
        q: &Question<'_>,
        limit: TryLimit,
    ) -> Result<Bytes, ExchangeError> {
        match proto {
            Proto::Udp => {
                // A fresh random ID for every try: with the fresh source port, 32 bits to guess.
                query[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
                self.udp.exchange(self.addr, query, q, limit).await
            }
            // NOTE: boxed: opening a stream (TCP connect, TLS handshake) is a large future, and
            // unboxed it would make every UDP query's future that large too.
            Proto::Tcp | Proto::Tls => Box::pin(self.pool.exchange(self.addr, &self.connector, query, q, limit)).await,
        }
    }

    /// Starts probing this upstream, unless a probe loop already runs: probe now and then every
    /// `interval` until one is answered. Each failed probe counts towards `max_fails`; an
    /// answered one (any rcode) makes the upstream healthy again, as in CoreDNS.
    pub fn start_health_check(self: &Arc<Self>, hc: &Arc<HealthCheck>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if hc.max_fails == 0 || self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let (up, hc) = (self.clone(), hc.clone());
        // NOTE: spawned on the runtime of the query that saw the error; the worker runtimes live
        // as long as the server, and the loop ends when the plugin is dropped.
        rt.spawn(async move {
            loop {
                if up.closed.load(Ordering::Acquire) {
                    break;
                }
                if up.probe(&hc).await {
                    up.fails.store(0, Ordering::Relaxed);
                    break;
                }
                up.fails.fetch_add(1, Ordering::Relaxed);
                up.metrics().hc_failures.increment(1);
                tokio::time::sleep(hc.interval).await;
            }
            up.checking.store(false, Ordering::Release);
        });
    }

    /// One health probe: `. IN NS` (or the configured domain) with RD unless `no_rec`, over the
    /// upstream's transport. Any reply is healthy.
    pub async fn probe(&self, hc: &HealthCheck) -> bool {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_rd(hc.recursion_desired);
        let mut qb = b.question();
        if qb.push((&hc.domain, Rtype::NS, Class::IN)).is_err() {
            return false;
        }
        let mut query = qb.finish();
        let proto = if self.is_tls() {
            Proto::Tls
        } else if hc.force_tcp {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let q = Question { qname: &hc.domain, qtype: Rtype::NS, qclass: Class::IN };
        self.exchange(&mut query, proto, &q, TryLimit::from_now(self.timeout().min(PROBE_TIMEOUT))).await.is_ok()
    }
}

/// Metric handles that belong to the plugin rather than an upstream.
#[derive(Default)]
pub struct PluginMetrics {
    broken: OnceLock<Counter>,
    rejects: OnceLock<Counter>,
}

impl PluginMetrics {
    pub fn broken(&self) -> &Counter {
        self.broken.get_or_init(|| metrics::counter!(HC_BROKEN))
    }

    pub fn rejects(&self) -> &Counter {
        self.rejects.get_or_init(|| metrics::counter!(MAX_CONCURRENT_REJECTS))
    }
}

/// Describes the metrics once, for the exporter's HELP lines.
pub fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(REQUESTS, "Counter of requests made per upstream.");
        metrics::describe_counter!(RESPONSES, "Counter of responses received per upstream.");
        metrics::describe_histogram!(DURATION, metrics::Unit::Seconds, "Histogram of the time each request took.");
        metrics::describe_counter!(HC_FAILURES, "Counter of the number of failed healthchecks.");
        metrics::describe_counter!(HC_BROKEN, "Counter of the number of complete failures of the healthchecks.");
        metrics::describe_counter!(
            MAX_CONCURRENT_REJECTS,
            "Counter of the number of queries rejected because the concurrent queries were at maximum."
        );
    });
}
