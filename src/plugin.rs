//! The plugin contract: what a plugin implements and everything it may use from the core.
//!
//! A plugin module provides `Config` (its typed configuration, `serde` for RON), `parse` (from
//! its Corefile directive), and `setup` (which adds a handler to the block's chain or changes the
//! block's server options). The chain calls `Plugin::serve(req, next)`; `next` is the rest of the
//! chain. Plugins use only this module (see `prelude`), never the listeners or the config parser.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

pub use crate::config::directive::{parse_duration, Directive, Line, Loc, Token};
pub use crate::message::{Edns, EdnsOption, Proto, Reply, Request, Rr};
pub use crate::server::options::ServerOptions;

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
}

/// The rest of the chain after the current plugin.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Plugin>],
}

impl<'a> Next<'a> {
    pub fn new(rest: &'a [Arc<dyn Plugin>]) -> Next<'a> {
        Next { rest }
    }

    /// Runs the rest of the chain. Falling off its end is SERVFAIL, as in CoreDNS.
    pub fn serve<'b>(self, req: &'b mut Request) -> BoxFuture<'b, Result<Reply, ServeError>>
    where
        'a: 'b,
    {
        match self.rest.split_first() {
            Some((p, rest)) => p.serve(req, Next { rest }),
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
        OwnedNext(self.rest.into())
    }
}

/// The rest of a chain, owned: a background task (prefetch, a stale entry's refresh) runs it
/// after the query that started it has been answered.
#[derive(Clone)]
pub struct OwnedNext(Arc<[Arc<dyn Plugin>]>);

impl OwnedNext {
    pub fn next(&self) -> Next<'_> {
        Next { rest: &self.0 }
    }
}

/// How one plugin's entry in the generated registry looks.
pub struct Registration {
    pub name: &'static str,
    pub parse: fn(&Directive) -> Result<crate::plugins::PluginConfig, SetupError>,
}

/// A failure while answering, mapped to the rcode the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeError {
    pub rcode: domain::base::iana::Rcode,
    pub plugin: &'static str,
    pub message: String,
}

impl ServeError {
    pub fn new(plugin: &'static str, rcode: domain::base::iana::Rcode, message: impl Into<String>) -> Self {
        ServeError { rcode, plugin, message: message.into() }
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

/// What a plugin's `setup` sees of one server block, and how it contributes to it.
pub struct SetupCtx<'c> {
    /// The block's zones, lower case, fully qualified.
    pub zones: &'c [domain::base::name::Name<bytes::Bytes>],
    /// Directory that relative paths are taken from (the Corefile's, or `root`'s).
    pub root: PathBuf,
    /// Options of the listeners this block is served on (bind addresses, TCP limits).
    pub server: &'c mut ServerOptions,
    pub(crate) handlers: Vec<Arc<dyn Plugin>>,
    pub(crate) startup: Vec<StartupHook>,
}

/// Work a plugin runs once the server is listening, given the address of the block's first
/// listener (as bound: port 0 resolved, a wildcard address as written). CoreDNS's `OnStartup`.
pub type StartupHook = Box<dyn FnOnce(std::net::SocketAddr) + Send + 'static>;

impl<'c> SetupCtx<'c> {
    pub fn new(zones: &'c [domain::base::name::Name<bytes::Bytes>], root: PathBuf, server: &'c mut ServerOptions) -> Self {
        SetupCtx { zones, root, server, handlers: Vec::new(), startup: Vec::new() }
    }

    /// Runs `hook` once every listener is serving (the `loop` plugin sends its probe from here).
    pub fn on_startup(&mut self, hook: impl FnOnce(std::net::SocketAddr) + Send + 'static) {
        self.startup.push(Box::new(hook));
    }

    /// The hooks registered with [`SetupCtx::on_startup`].
    pub fn take_startup_hooks(&mut self) -> Vec<StartupHook> {
        std::mem::take(&mut self.startup)
    }

    /// Adds a handler to the end of the block's chain.
    pub fn add_handler(&mut self, p: Arc<dyn Plugin>) {
        self.handlers.push(p);
    }

    pub fn into_handlers(self) -> Vec<Arc<dyn Plugin>> {
        self.handlers
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
