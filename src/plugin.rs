//! The plugin contract: what a plugin implements and everything it may use from the core.
//!
//! A plugin module provides `Config` (its typed configuration, `serde` for RON), `parse` (from
//! its Corefile directive), and `setup` (which adds a handler to the block's chain or changes the
//! block's server options). The chain calls `Plugin::serve(req, next)`; `next` is the rest of the
//! chain. Plugins use only this module (see `prelude`), never the listeners or the config parser.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

pub use crate::cidr::Cidr;
pub use crate::config::directive::{parse_duration, Directive, Line, Loc, Token};
pub use crate::metrics::CounterVec;
pub use crate::message::{parse_rr, Edns, EdnsOption, Metadata, Proto, Reply, Request, Rr};
pub use crate::server::options::ServerOptions;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The worker this thread serves (its runtime's thread and its UDP threads share the index),
/// for state a plugin keeps per worker; 0 on any other thread.
pub fn worker() -> usize {
    WORKER.with(|w| w.get())
}

/// Marks this thread as serving worker `i` (the server does, for the threads it starts).
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// Everything a plugin module usually needs.
pub mod prelude {
    pub use super::{
        BoxFuture, Directive, Line, Next, OwnedNext, Plugin, Reply, Request, Rr, ServeError, SetupCtx, SetupError,
        Token,
    };
    pub use bytes::Bytes;
    pub use domain::base::iana::{Class, OptRcode, Rcode, Rtype};
    pub use domain::base::name::Name;
    pub use domain::base::{Record, Ttl};
    pub use domain::rdata::ZoneRecordData;
    pub use serde::{Deserialize, Serialize};
    pub use std::sync::Arc;
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One link of a server block's chain.
pub trait Plugin: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Answers `req`, or passes it to `next` (possibly changing the request before or the reply
    /// after). The server may drop the future at any `.await` (timeouts).
    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>>;
    /// False while the plugin cannot answer yet; feeds `/ready`.
    fn ready(&self) -> bool {
        true
    }
    /// Whether the plugin looks at the records of the replies it gets from `next` (or changes
    /// them). One that does not may still read their header, rcode, question and EDNS, and
    /// encode them (`Reply::to_wire`). While no
    /// plugin on the way to an upstream reads replies, the upstream's records can go to the
    /// client as they came, unparsed (`Request::pass_through`).
    fn reads_replies(&self) -> bool {
        true
    }
}

/// The rest of the chain after the current plugin.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Plugin>],
    /// The plugin handing the query on reads the reply it gets back (`Plugin::reads_replies`).
    reader: bool,
}

impl<'a> Next<'a> {
    pub fn new(rest: &'a [Arc<dyn Plugin>]) -> Next<'a> {
        Next { rest, reader: false }
    }

    /// Runs the rest of the chain. Falling off its end is SERVFAIL, as in CoreDNS.
    pub fn serve<'b>(self, req: &'b mut Request) -> BoxFuture<'b, Result<Reply, ServeError>>
    where
        'a: 'b,
    {
        match self.rest.split_first() {
            Some((p, rest)) => {
                req.plugin = p.name();
                if self.reader {
                    req.pass_through = false;
                }
                p.serve(req, Next { rest, reader: p.reads_replies() })
            }
            None => Box::pin(std::future::ready(Err(ServeError::no_next()))),
        }
    }

    /// The name of the plugin `serve` would call, if any.
    pub fn name(&self) -> Option<&'static str> {
        self.rest.first().map(|p| p.name())
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The plugins `serve` would run, for work that must outlive this query (a cache refreshing
    /// an entry in the background clones them into an owned chain: see [`OwnedNext`]).
    pub fn plugins(&self) -> &'a [Arc<dyn Plugin>] {
        self.rest
    }

    /// An owned copy of the rest of the chain, for a task that outlives this query.
    pub fn to_owned(&self) -> OwnedNext {
        OwnedNext(self.rest.into(), self.reader)
    }
}

/// The rest of a chain, owned: a background task (prefetch, a stale entry's refresh) runs it
/// after the query that started it has been answered. It keeps what its `Next` knew of the
/// plugin handing queries on: whether that plugin reads replies.
#[derive(Clone)]
pub struct OwnedNext(Arc<[Arc<dyn Plugin>]>, bool);

impl OwnedNext {
    pub fn next(&self) -> Next<'_> {
        Next { rest: &self.0, reader: self.1 }
    }
}

/// How one plugin's entry in the generated registry looks.
pub struct Registration {
    pub name: &'static str,
    pub parse: fn(&Directive) -> Result<crate::plugins::PluginConfig, SetupError>,
}

/// A failure while answering, mapped to the rcode the client gets; or, with `drop`, a decision
/// to send the client nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError {
    pub rcode: domain::base::iana::Rcode,
    pub plugin: &'static str,
    pub message: String,
    /// No reply is sent (acl's `drop`, erratic): the client times out. Not an error to log.
    pub drop: bool,
}

impl ServeError {
    pub fn new(plugin: &'static str, rcode: domain::base::iana::Rcode, message: impl Into<String>) -> Self {
        ServeError { rcode, plugin, message: message.into(), drop: false }
    }

    /// The query is dropped: the server sends no reply. Plugins that wrap the chain see it as
    /// an error with NOERROR, as CoreDNS's plugins see a handler that wrote nothing.
    pub fn dropped(plugin: &'static str, message: impl Into<String>) -> Self {
        ServeError { drop: true, ..Self::new(plugin, domain::base::iana::Rcode::NOERROR, message) }
    }

    pub fn servfail(plugin: &'static str, message: impl Into<String>) -> Self {
        Self::new(plugin, domain::base::iana::Rcode::SERVFAIL, message)
    }

    pub fn no_next() -> Self {
        Self::new("", domain::base::iana::Rcode::SERVFAIL, "no next plugin found")
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plugin.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "plugin/{}: {}", self.plugin, self.message)
        }
    }
}

impl std::error::Error for ServeError {}

/// A configuration error: where, which plugin, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError {
    pub loc: Option<Loc>,
    pub plugin: Option<String>,
    pub message: String,
}

impl SetupError {
    pub fn new(message: impl Into<String>) -> Self {
        SetupError { loc: None, plugin: None, message: message.into() }
    }

    pub fn at(loc: &Loc, message: impl Into<String>) -> Self {
        SetupError { loc: Some(loc.clone()), plugin: None, message: message.into() }
    }

    pub fn plugin(mut self, name: &str) -> Self {
        if self.plugin.is_none() {
            self.plugin = Some(name.to_string());
        }
        self
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.loc {
            write!(f, "{l}: ")?;
        }
        if let Some(p) = &self.plugin {
            write!(f, "plugin/{p}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SetupError {}

/// Runs on every query routed to a block, before the block's filters and chain: metadata is
/// collected here so that filters can read it.
pub type Collector = Arc<dyn Fn(&mut Request) + Send + Sync>;

/// Decides whether a block takes a query. Blocks serving the same zone on one listener are
/// tried in the order they are written; the first whose filters all pass answers (`view`).
pub type Filter = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// Runs once when the server has started serving, or once when it shuts down (`on`).
pub type Hook = Arc<dyn Fn(std::net::SocketAddr) + Send + Sync>;

/// What setup made of one server block, for the server to build its chain from.
pub(crate) struct BlockParts {
    pub handlers: Vec<Arc<dyn Plugin>>,
    pub collectors: Vec<Collector>,
    pub filters: Vec<Filter>,
    pub view: Arc<str>,
    pub startup: Vec<Hook>,
    pub shutdown: Vec<Hook>,
}

/// What a plugin's `setup` sees of one server block, and how it contributes to it.
pub struct SetupCtx<'c> {
    /// The block's zones, lower case, fully qualified.
    pub zones: &'c [domain::base::name::Name<bytes::Bytes>],
    /// Directory that relative paths are taken from (the Corefile's, or `root`'s).
    pub root: PathBuf,
    /// Options of the listeners this block is served on (bind addresses, TCP limits).
    pub server: &'c mut ServerOptions,
    pub(crate) handlers: Vec<Arc<dyn Plugin>>,
    collectors: Vec<Collector>,
    filters: Vec<Filter>,
    view: Option<Arc<str>>,
    startup: Vec<Hook>,
    shutdown: Vec<Hook>,
    /// Per-block state of plugins whose directives add up (see [`SetupCtx::state`]).
    state: HashMap<TypeId, Box<dyn Any + Send>>,
}


impl<'c> SetupCtx<'c> {
    /// The zones a plugin serves: those it was `given`, else the server block's.
    pub fn zones_or(&self, given: &[String]) -> Result<Vec<domain::base::name::Name<bytes::Bytes>>, SetupError> {
        if given.is_empty() {
            return Ok(self.zones.to_vec());
        }
        given.iter().map(|z| zone_name(z)).collect::<Result<_, _>>().map_err(SetupError::new)
    }

    pub fn new(zones: &'c [domain::base::name::Name<bytes::Bytes>], root: PathBuf, server: &'c mut ServerOptions) -> Self {
        SetupCtx {
            zones,
            root,
            server,
            handlers: Vec::new(),
            collectors: Vec::new(),
            filters: Vec::new(),
            view: None,
            startup: Vec::new(),
            shutdown: Vec::new(),
            state: HashMap::new(),
        }
    }

    /// Runs `h` once, after the server has started listening (not for `ferrite check`), with
    /// the address the block's first listener is bound to (port 0 resolved): CoreDNS's
    /// `OnStartup`. The `loop` plugin sends its probe there.
    pub fn on_startup(&mut self, h: impl Fn(std::net::SocketAddr) + Send + Sync + 'static) {
        self.startup.push(Arc::new(h));
    }

    /// Runs `h` once, when the server shuts down on SIGTERM or SIGINT (with the same address).
    pub fn on_shutdown(&mut self, h: impl Fn(std::net::SocketAddr) + Send + Sync + 'static) {
        self.shutdown.push(Arc::new(h));
    }

    /// Adds a collector, run on each query routed to this block before its filters.
    pub fn add_collector(&mut self, c: Collector) {
        self.collectors.push(c);
    }

    /// Adds a filter: the block takes only queries every filter passes, and other blocks for the
    /// same zone get the rest.
    pub fn add_filter(&mut self, f: Filter) {
        self.filters.push(f);
    }

    /// Names the block's view; queries it takes carry the name (`Request::view` and, when
    /// metadata is collected, the label `view/name`). Fails if the block has another name.
    pub fn set_view(&mut self, name: &str) -> Result<(), SetupError> {
        if let Some(v) = self.view.as_deref().filter(|v| *v != name) {
            return Err(SetupError::new(format!("the block already has view {v:?}")));
        }
        self.view = Some(Arc::from(name));
        Ok(())
    }

    /// Adds a handler to the end of the block's chain.
    pub fn add_handler(&mut self, p: Arc<dyn Plugin>) {
        self.handlers.push(p);
    }

    /// Puts `p` in place of the block's handler of the same name, or adds it. With [`state`]
    /// this lets the directives of one plugin in a block make one handler, as CoreDNS's
    /// `rewrite` and `acl` do: a `stop` or an `allow` ends the evaluation of them all.
    ///
    /// [`state`]: SetupCtx::state
    pub fn replace_handler(&mut self, p: Arc<dyn Plugin>) {
        match self.handlers.iter_mut().find(|h| h.name() == p.name()) {
            Some(h) => *h = p,
            None => self.handlers.push(p),
        }
    }

    /// State a plugin keeps from one of its directives to the next within this block, keyed by
    /// its type; created with `Default` on first use.
    pub fn state<T: Any + Send + Default>(&mut self) -> &mut T {
        self.state
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("the entry for a TypeId holds that type")
    }

    pub fn into_handlers(self) -> Vec<Arc<dyn Plugin>> {
        self.handlers
    }

    pub(crate) fn into_parts(self) -> BlockParts {
        BlockParts {
            handlers: self.handlers,
            collectors: self.collectors,
            filters: self.filters,
            view: self.view.unwrap_or_else(|| Arc::from("")),
            startup: self.startup,
            shutdown: self.shutdown,
        }
    }

    /// Resolves a path from the configuration against `root`.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

/// The machine's host name, for chaos and nsid.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A zone argument (`Example.org`, `example.org.`), lower case and fully qualified.
pub fn zone_name(z: &str) -> Result<domain::base::name::Name<bytes::Bytes>, String> {
    let mut s = z.to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    std::str::FromStr::from_str(&s).map_err(|e| format!("invalid zone {z:?}: {e}"))
}

/// Parses `fallthrough [ZONES...]`: the zones as written (none: every name), each checked to be
/// a name.
pub fn parse_fallthrough(line: &Line) -> Result<Vec<String>, SetupError> {
    line.no_block()?;
    let mut zs = Vec::new();
    for t in line.args() {
        zone_name(&t.text).map_err(|m| t.err(m))?;
        zs.push(t.text.clone());
    }
    Ok(zs)
}

/// The names of a parsed `fallthrough` (`None`: none; an empty list: every name).
pub fn fallthrough_names(f: &Option<Vec<String>>) -> Result<Option<Vec<domain::base::name::Name<bytes::Bytes>>>, SetupError> {
    f.as_ref().map(|zs| zs.iter().map(|z| zone_name(z)).collect::<Result<Vec<_>, _>>()).transpose().map_err(SetupError::new)
}

/// [`zone_name`] in presentation form: lower case with the trailing dot.
pub fn zone_text(z: &str) -> Result<String, String> {
    zone_name(z).map(|n| n.fmt_with_dot().to_string())
}

/// Parses a listen address as CoreDNS's health, ready and prometheus take it: `:8080` (every
/// address), `localhost:9153`, `127.0.0.1:8080`, `[::1]:8080`.
pub fn listen_addr(tok: &Token) -> Result<std::net::SocketAddr, SetupError> {
    let t = tok.text.as_str();
    let (host, port) = t.rsplit_once(':').ok_or_else(|| tok.err(format!("expected HOST:PORT or :PORT, got {t:?}")))?;
    let port: u16 = port.parse().map_err(|_| tok.err(format!("invalid port in {t:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = match host {
        "" => std::net::Ipv6Addr::UNSPECIFIED.into(),
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h.parse().map_err(|_| tok.err(format!("expected an IP address or localhost, got {h:?}")))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// An optional duration in RON, as [`serde_duration`] writes one (`None` is left out).
pub mod serde_opt_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serde_duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::serde_duration::deserialize(d).map(Some)
    }
}

/// Durations in RON as Go-style strings (`"5s"`, `"1m30s"`), as a Corefile writes them.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).ok_or_else(|| serde::de::Error::custom(format!("expected a duration such as \"5s\", got {s:?}")))
    }
}

/// Links between plugins of one block, by the name of the plugin that provides them: a plugin
/// set up earlier in plugin.cfg order (autopath, k8s_external) takes a slot with
/// `ctx.state::<Links<dyn Trait>>().slot("kubernetes")` and reads it when serving; the named
/// plugin fills the same slot in its own setup. An empty slot means the block has no such
/// plugin, and the reader passes its queries on.
pub struct Links<T: ?Sized>(HashMap<String, Arc<std::sync::OnceLock<Arc<T>>>>);

impl<T: ?Sized> Default for Links<T> {
    fn default() -> Self {
        Links(HashMap::new())
    }
}

impl<T: ?Sized> Links<T> {
    /// The slot of the plugin `name`, shared by whoever asks for it in this block.
    pub fn slot(&mut self, name: &str) -> Arc<std::sync::OnceLock<Arc<T>>> {
        self.0.entry(name.to_string()).or_default().clone()
    }
}

/// What `autopath @NAME` asks of the plugin NAME (CoreDNS's `AutoPather`).
pub trait AutoPath: Send + Sync {
    /// The search path of the client that sent `req`, each element lower case and fully
    /// qualified, the last one `""` (the name as asked); `None` when the query is not to be
    /// completed (not in the plugin's zones, or an unknown client).
    fn search_path(&self, req: &Request) -> Option<Vec<String>>;
}

/// A service address as `k8s_external` serves it: the address, the port (-1 when the service
/// declares none), and the target name of an SRV record relative to the external zone
/// (`svc.ns` or `endpoint.svc.ns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalHit {
    pub ip: std::net::IpAddr,
    pub port: i32,
    pub target: String,
}

/// What `k8s_external` asks of the kubernetes plugin (CoreDNS's `Externaler`).
pub trait External: Send + Sync {
    /// The addresses of `base`, the query name below the external zone without it (`svc.ns`,
    /// `endpoint.svc.ns`, `_port._proto.svc.ns`), lower case: `Err(())` for a name that does
    /// not exist (NXDOMAIN), else the hits (empty: the name exists but has none, NODATA).
    /// `headless` adds the endpoints of headless services without external addresses.
    #[allow(clippy::result_unit_err)] // NXDOMAIN is the only failure
    fn external(&self, base: &str, headless: bool) -> Result<Vec<ExternalHit>, ()>;
    /// `svc.ns` of the services that have `ip` as an external address.
    fn external_reverse(&self, ip: std::net::IpAddr) -> Vec<String>;
    /// The external addresses of this DNS server's own services (the services whose
    /// endpoints are this server): the NS of the zone. This server's addresses when no endpoint
    /// is this server.
    fn external_ns_addrs(&self) -> Vec<std::net::IpAddr>;
    /// The SOA serial: the time of the last change.
    fn external_serial(&self) -> u32;
    /// False until the first sync with the API.
    fn external_ready(&self) -> bool;
}

/// The search list of a resolv.conf's text: the last `search` or `domain` line wins, as in
/// the C library; names lower case and fully qualified.
pub fn resolv_conf_search(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => {
                out = words.filter_map(|w| zone_text(w).ok()).filter(|z| z != ".").collect();
            }
            _ => {}
        }
    }
    out
}

/// While one of these lives, memory the allocator frees goes back to the system at once instead
/// of after a short delay. For a plugin loading a large transient data set at start-up (the
/// kubernetes plugin's first list of the cluster): the delayed hand-back is done only on later
/// allocator activity, which an idle server may not have for a long time, so those pages would
/// stay resident. Guards nest (a reload may overlap a load); the last one dropped restores the
/// allocator's setting. Without mimalloc this does nothing (see `release_free_memory`).
pub struct PromptRelease(());

#[cfg(feature = "mimalloc")]
static PROMPT_RELEASE: std::sync::Mutex<(usize, std::os::raw::c_long)> = std::sync::Mutex::new((0, 0));

impl PromptRelease {
    pub fn new() -> PromptRelease {
        #[cfg(feature = "mimalloc")]
        {
            let mut g = PROMPT_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
            if g.0 == 0 {
                // SAFETY: reading and setting an allocator option is thread-safe.
                unsafe {
                    g.1 = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
                    libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
                }
            }
            g.0 += 1;
        }
        PromptRelease(())
    }
}

impl Default for PromptRelease {
    fn default() -> Self {
        PromptRelease::new()
    }
}

impl Drop for PromptRelease {
    fn drop(&mut self) {
        #[cfg(feature = "mimalloc")]
        {
            let mut g = PROMPT_RELEASE.lock().unwrap_or_else(|e| e.into_inner());
            g.0 -= 1;
            if g.0 == 0 {
                // SAFETY: as in `new`.
                unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, g.1) };
            }
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (milliseconds; 0 = at once), which the sys crate does not
/// name: its place in `mi_option_t` (mimalloc.h) is the same in mimalloc 2 and 3.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hands the calling thread's free heap memory back to the system. For a plugin that has just
/// dropped a large transient load on a thread of its own, which then sits idle and would keep
/// those pages resident (the kubernetes plugin after its first list of the cluster).
pub fn release_free_memory() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect only walks and frees the allocator's own free pages.
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
    #[cfg(all(not(feature = "mimalloc"), target_env = "gnu"))]
    // SAFETY: malloc_trim only returns glibc's free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod prompt_release_tests {
    use super::{PromptRelease, MI_OPTION_PURGE_DELAY, PROMPT_RELEASE};

    fn purge_delay() -> std::os::raw::c_long {
        // SAFETY: reading an allocator option.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn guards_nest_and_the_last_one_restores_the_delay() {
        // Other tests' kubernetes plugins may hold guards of their own meanwhile.
        let a = PromptRelease::new();
        let b = PromptRelease::new();
        assert_eq!(purge_delay(), 0);
        drop(a);
        assert_eq!(purge_delay(), 0, "one guard is still alive");
        drop(b);
        let g = PROMPT_RELEASE.lock().unwrap();
        if g.0 == 0 {
            assert_eq!(purge_delay(), g.1, "the delay from before the first guard");
            assert_ne!(g.1, 0, "mimalloc's default delay is not 0");
        }
    }
}
