//! Options of the listeners a server block is served on, and the process-wide services it asks
//! for (HTTP side ports, reload, debug), set by setup-only plugins.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Queries waiting for an answer at once on one listener, by default. Each costs its task and
/// the plugins' state (a forwarded query holds a socket and about 2 KiB), so this bounds the
/// memory a slow upstream can make the server hold; at 100 ms an answer it still lets one
/// listener forward 50,000 queries a second.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 5000;

/// Listener options for one server block. When blocks share a listener, the first block's
/// TCP limits apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Addresses to listen on (`bind`); empty means every address.
    pub bind: Vec<IpAddr>,
    /// Addresses `bind` excludes.
    pub except: Vec<IpAddr>,
    /// A TCP connection with no query in flight is closed after this long (RFC 7766 §6.2.3).
    pub tcp_idle_timeout: Duration,
    /// The first query of a TCP connection, and every query once begun, must arrive within this.
    pub tcp_read_timeout: Duration,
    /// A reply the client does not take within this closes the connection.
    pub tcp_write_timeout: Duration,
    /// Connections beyond this many are closed as soon as they are accepted.
    pub tcp_max_connections: usize,
    /// Queries one TCP connection may send before it is closed; 0 is no limit.
    pub tcp_max_queries: usize,
    /// Queries that must wait for an answer (an upstream, a timer), at once on one listener,
    /// UDP and TCP together; beyond this a query that would wait is shed (REFUSED).
    pub max_in_flight: usize,
    /// `health`: where `/health` is served, and the lameduck period on shutdown.
    pub health: Option<(SocketAddr, Duration)>,
    /// `ready`: where `/ready` is served; true to keep checking after the first success.
    pub ready: Option<(SocketAddr, bool)>,
    /// `prometheus`: where `/metrics` is served; the block's queries are counted.
    pub metrics: Option<SocketAddr>,
    /// `reload`: how often the configuration is checked for changes, and the jitter.
    pub reload: Option<(Duration, Duration)>,
    /// `debug`: debug logging, and a line per query of this block.
    pub debug: bool,
    /// `cookie`: the block's DNS cookie secret and policy; `None` is the per-process secret.
    pub cookies: Option<crate::cookie::Cookies>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: Vec::new(),
            except: Vec::new(),
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_read_timeout: Duration::from_secs(3),
            tcp_write_timeout: Duration::from_secs(5),
            tcp_max_connections: 1000,
            tcp_max_queries: 0,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            health: None,
            ready: None,
            metrics: None,
            reload: None,
            debug: false,
            cookies: None,
        }
    }
}
