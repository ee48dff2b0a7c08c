//! CoreDNS's server metrics, recorded at the edge for blocks that have `prometheus`, and the
//! Prometheus exporter behind `/metrics`.
//!
//! Names and labels are CoreDNS's so dashboards and alerts keep working. Handles for each label
//! combination are made once, on first use, and kept per chain: a query costs a few atomic
//! operations, never a lookup by name.
//!
//! Plugins whose labels are only known per query count through a [`CounterVec`], which makes a
//! handle on first use of a label set and keeps it.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram, Label};

use crate::message::{Proto, Reply, Request};

pub const REQUESTS: &str = "coredns_dns_requests_total";
pub const RESPONSES: &str = "coredns_dns_responses_total";
pub const DURATION: &str = "coredns_dns_request_duration_seconds";
pub const REQUEST_SIZE: &str = "coredns_dns_request_size_bytes";
pub const RESPONSE_SIZE: &str = "coredns_dns_response_size_bytes";
pub const DO_REQUESTS: &str = "coredns_dns_do_requests_total";
pub const PANICS: &str = "coredns_panics_total";
pub const PLUGIN_ENABLED: &str = "coredns_plugin_enabled";
pub const BUILD_INFO: &str = "coredns_build_info";
pub const RELOAD_FAILED: &str = "coredns_reload_failed_total";
pub const HEALTH_DURATION: &str = "coredns_health_request_duration_seconds";
pub const HEALTH_FAILURES: &str = "coredns_health_request_failures_total";
/// ferrite's own: queries waiting for an answer (an upstream, a timer) now, across listeners.
pub const IN_FLIGHT: &str = "coredns_dns_requests_in_flight";

/// CoreDNS's `plugin.TimeBuckets`: 0.25 ms doubling 16 times.
pub fn time_buckets() -> Vec<f64> {
    (0..16).map(|i| 0.00025 * f64::from(1u32 << i)).collect()
}

/// CoreDNS's `plugin.SizeBuckets`.
pub const SIZE_BUCKETS: &[f64] = &[0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3];

/// The query types CoreDNS counts by name; everything else is "other".
const TYPES: &[&str] = &[
    "A", "AAAA", "MX", "SOA", "CNAME", "PTR", "TXT", "NS", "SRV", "DS", "DNSKEY", "RRSIG", "NSEC", "NSEC3", "HTTPS",
    "IXFR", "AXFR", "ANY",
];
const OTHER: usize = TYPES.len();
/// Rcodes 0..=23 by number, then "other".
const RCODES: usize = 25;

fn type_index(t: domain::base::iana::Rtype) -> usize {
    let s = t.to_string();
    TYPES.iter().position(|n| *n == s).unwrap_or(OTHER)
}

fn type_label(i: usize) -> &'static str {
    TYPES.get(i).copied().unwrap_or("other")
}

/// The metrics of one chain (one zone of one server block).
pub struct ChainMetrics {
    server: String,
    zone: String,
    view: String,
    /// Plugin names of the chain, for the `plugin` label; slot 0 is "" (the server itself).
    plugins: Vec<&'static str>,
    requests: Vec<OnceLock<Counter>>,
    responses: Vec<OnceLock<Counter>>,
    duration: Vec<OnceLock<Histogram>>,
    request_size: [OnceLock<Histogram>; 2],
    response_size: [OnceLock<Histogram>; 2],
    do_requests: OnceLock<Counter>,
}

impl ChainMetrics {
    pub fn new(server: &str, zone: &str, view: &str, plugins: &[&'static str]) -> ChainMetrics {
        let mut names = vec![""];
        names.extend_from_slice(plugins);
        for p in plugins {
            metrics::gauge!(PLUGIN_ENABLED, "server" => server.to_string(), "zone" => zone.to_string(), "view" => view.to_string(), "name" => *p)
                .set(1.0);
        }
        ChainMetrics {
            server: server.to_string(),
            zone: zone.to_string(),
            view: view.to_string(),
            requests: (0..2 * 2 * (OTHER + 1)).map(|_| OnceLock::new()).collect(),
            responses: (0..RCODES * names.len()).map(|_| OnceLock::new()).collect(),
            duration: (0..=OTHER).map(|_| OnceLock::new()).collect(),
            request_size: Default::default(),
            response_size: Default::default(),
            do_requests: OnceLock::new(),
            plugins: names,
        }
    }

    /// Records one answered query: `wire_len` is the size of the reply as sent.
    pub fn record(&self, req: &Request, reply: &Reply, wire_len: usize) {
        let proto = match req.proto {
            Proto::Udp => 0,
            Proto::Tcp => 1,
        };
        let family = if req.client.is_ipv4() { 0 } else { 1 };
        let t = type_index(req.qtype);
        self.requests[(proto * 2 + family) * (OTHER + 1) + t]
            .get_or_init(|| {
                metrics::counter!(REQUESTS,
                    "server" => self.server.clone(), "zone" => self.zone.clone(), "view" => self.view.clone(),
                    "proto" => ["udp", "tcp"][proto], "family" => ["1", "2"][family], "type" => type_label(t))
            })
            .increment(1);
        if req.dnssec_ok() {
            self.do_requests
                .get_or_init(|| metrics::counter!(DO_REQUESTS, "server" => self.server.clone(), "view" => self.view.clone(), "zone" => self.zone.clone()))
                .increment(1);
        }
        let rcode = reply.rcode.to_int() as usize;
        let rslot = rcode.min(RCODES - 1);
        let pslot = self.plugins.iter().position(|p| *p == reply.plugin).unwrap_or(0);
        self.responses[pslot * RCODES + rslot]
            .get_or_init(|| {
                let label = if rslot == RCODES - 1 { "other".to_string() } else { reply.rcode.to_string() };
                metrics::counter!(RESPONSES,
                    "server" => self.server.clone(), "zone" => self.zone.clone(), "view" => self.view.clone(),
                    "rcode" => label, "plugin" => self.plugins[pslot])
            })
            .increment(1);
        self.duration[t]
            .get_or_init(|| {
                metrics::histogram!(DURATION,
                    "server" => self.server.clone(), "zone" => self.zone.clone(), "view" => self.view.clone(), "type" => type_label(t))
            })
            .record(req.received.elapsed().as_secs_f64());
        let size = |slot: &OnceLock<Histogram>, name: &'static str, value: usize| {
            slot.get_or_init(|| {
                metrics::histogram!(name,
                    "server" => self.server.clone(), "zone" => self.zone.clone(), "view" => self.view.clone(), "proto" => ["udp", "tcp"][proto])
            })
            .record(value as f64)
        };
        size(&self.request_size[proto], REQUEST_SIZE, req.size);
        size(&self.response_size[proto], RESPONSE_SIZE, wire_len);
    }
}

/// Counts a panic caught in a chain.
pub fn panic() {
    metrics::counter!(PANICS).increment(1);
}

#[cfg(feature = "plugin-prometheus")]
mod exporter {
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    use super::*;

    static HANDLE: OnceLock<Option<(PrometheusHandle, metrics_process::Collector)>> = OnceLock::new();

    /// Installs the recorder once per process. Metrics recorded before it is installed are
    /// lost, so setup calls this before building chains.
    pub fn install() -> bool {
        HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Full(DURATION.into()), &time_buckets())
                    .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HEALTH_DURATION.into()), &time_buckets()))
                    .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &time_buckets()))
                    .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size_bytes".into()), SIZE_BUCKETS));
                let handle = match builder.and_then(|b| b.install_recorder()) {
                    Ok(h) => h,
                    Err(e) => {
                        log::error!("plugin/prometheus: cannot install the metrics recorder: {e}");
                        return None;
                    }
                };
                let collector = metrics_process::Collector::default();
                collector.describe();
                let version = env!("CARGO_PKG_VERSION");
                metrics::gauge!(BUILD_INFO, "version" => version, "revision" => env!("FERRITE_COMMIT"), "goversion" => env!("FERRITE_RUSTC_VERSION"))
                    .set(1.0);
                metrics::counter!(RELOAD_FAILED).absolute(0);
                metrics::counter!(PANICS).absolute(0);
                Some((handle, collector))
            })
            .is_some()
    }

    /// The text exposition of every metric, with the process metrics read now.
    pub fn render() -> String {
        match HANDLE.get() {
            Some(Some((h, c))) => {
                c.collect();
                metrics::gauge!(IN_FLIGHT).set(crate::server::in_flight() as f64);
                h.render()
            }
            _ => String::new(),
        }
    }

    /// Drains recorded histogram samples into their buckets; run about once a second so memory
    /// between scrapes stays small.
    pub fn upkeep() {
        if let Some(Some((h, _))) = HANDLE.get() {
            h.run_upkeep();
        }
    }
}

#[cfg(feature = "plugin-prometheus")]
pub use exporter::{install, render, upkeep};

/// Without the prometheus plugin nothing is exported and recording is a no-op.
#[cfg(not(feature = "plugin-prometheus"))]
pub fn install() -> bool {
    false
}

/// One set of label values and its handle.
type Cell = (Box<[Box<str>]>, Counter);

/// A counter with labels, its handles kept per label values.
pub struct CounterVec {
    name: &'static str,
    labels: &'static [&'static str],
    cells: ArcSwap<Vec<Cell>>,
}

impl CounterVec {
    pub fn new(name: &'static str, labels: &'static [&'static str]) -> CounterVec {
        CounterVec { name, labels, cells: ArcSwap::from_pointee(Vec::new()) }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The counter for these label values (one per label, in order).
    pub fn with(&self, values: &[&str]) -> Counter {
        debug_assert_eq!(values.len(), self.labels.len(), "{}: one value per label", self.name);
        let same = |v: &[Box<str>]| v.iter().map(|s| &**s).eq(values.iter().copied());
        if let Some((_, c)) = self.cells.load().iter().find(|(v, _)| same(v)) {
            return c.clone();
        }
        let labels: Vec<Label> = self.labels.iter().zip(values).map(|(k, v)| Label::new(*k, v.to_string())).collect();
        let counter = metrics::counter!(self.name, labels);
        let key: Box<[Box<str>]> = values.iter().map(|v| Box::from(*v)).collect();
        self.cells.rcu(|cells| {
            let mut next = Vec::clone(cells);
            if !next.iter().any(|(v, _)| same(v)) {
                next.push((key.clone(), counter.clone()));
            }
            Arc::new(next)
        });
        counter
    }

    /// Adds one to the counter for these label values.
    pub fn inc(&self, values: &[&str]) {
        self.with(values).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::capture_counters;

    #[test]
    fn keeps_one_handle_per_label_values() {
        let c = CounterVec::new("coredns_test_total", &["server", "zone"]);
        let ((), got) = capture_counters(|| {
            c.inc(&["dns://:53", "a."]);
            c.inc(&["dns://:53", "a."]);
            c.inc(&["dns://:53", "b."]);
        });
        assert_eq!(
            got,
            [("coredns_test_total{server=dns://:53,zone=a.}".to_string(), 2), ("coredns_test_total{server=dns://:53,zone=b.}".to_string(), 1)]
        );
        assert_eq!(c.cells.load().len(), 2);
    }


    #[test]
    fn buckets_match_coredns() {
        let b = time_buckets();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 0.00025);
        assert_eq!(b[15], 0.00025 * 32768.0);
        assert_eq!(type_label(type_index(domain::base::iana::Rtype::AAAA)), "AAAA");
        assert_eq!(type_label(type_index(domain::base::iana::Rtype::CAA)), "other");
    }
}
