//! Options of the listeners a server block is served on, set by setup-only plugins.

use std::net::IpAddr;
use std::time::Duration;

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
        }
    }
}
