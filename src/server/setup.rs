//! From a [`Config`] to listeners: keys parsed, plugins set up in plugin.cfg order, chains
//! built once, and blocks grouped by the address they are served on.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use domain::base::name::Name;

use super::chain::{Chain, Router};
use super::options::ServerOptions;
use crate::config::keys::{parse_key, Key, Scheme};
use crate::config::{locate, Config, Problem};
use crate::plugin::{Hook, SetupCtx, SetupError};
use crate::plugins::REGISTRY;

/// Everything served on one address.
pub struct ListenerSpec {
    pub scheme: Scheme,
    pub addr: SocketAddr,
    pub router: Router,
}

/// What one HTTP side address serves (several plugins and blocks may share it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub health: bool,
    pub ready: bool,
    pub metrics: bool,
}

/// A configuration set up and ready to serve.
pub struct Plan {
    pub listeners: Vec<ListenerSpec>,
    /// HTTP side addresses and their paths.
    pub http: BTreeMap<SocketAddr, Routes>,
    /// `reload`'s interval and jitter, if any block has it.
    pub reload: Option<(std::time::Duration, std::time::Duration)>,
    /// The longest `health { lameduck }` of any block.
    pub lameduck: std::time::Duration,
    /// `ready { monitor continuously }` in any block.
    pub ready_continuously: bool,
    /// Every handler of every chain, for `/ready`.
    pub plugins: Vec<Arc<dyn crate::plugin::Plugin>>,
    pub debug: bool,
    /// What blocks asked to run at startup and shutdown (`on`).
    pub hooks: Hooks,
}

/// What blocks asked to run when the server starts and when it stops (`on`, `loop`), each with
/// the block's first listener (scheme and configured address).
#[derive(Default, Clone)]
pub struct Hooks {
    pub startup: Vec<(Scheme, SocketAddr, Hook)>,
    pub shutdown: Vec<(Scheme, SocketAddr, Hook)>,
}

/// Sets up every block of `config`. `dns_port` is the port of keys that name none.
pub fn build(config: &Config, dns_port: u16) -> Result<Plan, Vec<Problem>> {
    let mut hooks = Hooks::default();
    let mut problems = Vec::new();
    let mut listeners: BTreeMap<(Scheme, SocketAddr), ListenerSpec> = BTreeMap::new();
    let mut http: BTreeMap<SocketAddr, Routes> = BTreeMap::new();
    let mut reload = None;
    let mut lameduck = std::time::Duration::ZERO;
    let mut ready_continuously = false;
    let mut all_plugins: Vec<Arc<dyn crate::plugin::Plugin>> = Vec::new();
    let mut debug = false;
    // NOTE: the recorder must be installed before any plugin makes a metric handle, or the
    // handle records into nothing.
    if config.servers.iter().any(|b| b.plugins.iter().any(|p| p.name() == "prometheus")) {
        crate::metrics::install();
    }
    for block in &config.servers {
        let mut keys: Vec<Key> = Vec::new();
        for (i, text) in block.keys.iter().enumerate() {
            let loc = block.key_locs.get(i).cloned().flatten().unwrap_or(crate::plugin::Loc {
                file: "<config>".into(),
                line: 0,
                col: 0,
            });
            let tok = crate::plugin::Token::new(text.clone(), loc.clone());
            match parse_key(&tok, dns_port) {
                Ok(k) => {
                    for key in k {
                        if key.scheme != Scheme::Dns {
                            problems.push(Problem {
                                error: SetupError::at(
                                    &loc,
                                    format!("{}:// transport (key {text:?}) is not built yet; only dns:// is served", key.scheme.as_str()),
                                ),
                                unavailable: true,
                            });
                        }
                        keys.push(key);
                    }
                }
                Err(e) => problems.push(e.into()),
            }
        }
        let mut zones: Vec<Name<Bytes>> = Vec::new();
        for k in &keys {
            if !zones.contains(&k.zone) {
                zones.push(k.zone.clone());
            }
        }
        // Setup runs in plugin.cfg order, whatever order the block lists its plugins in.
        let mut order: Vec<usize> = (0..block.plugins.len()).collect();
        order.sort_by_key(|&i| REGISTRY.iter().position(|r| r.name == block.plugins[i].name()));
        let mut options = ServerOptions::default();
        let mut ctx = SetupCtx::new(&zones, config.dir.clone(), &mut options);
        let mut failed = false;
        for i in order {
            let p = &block.plugins[i];
            if let Err(e) = p.setup(&mut ctx) {
                let e = e.plugin(p.name());
                let e = match block.plugin_locs.get(i).cloned().flatten() {
                    Some(loc) => locate(e, &loc),
                    None => e,
                };
                problems.push(e.into());
                failed = true;
            }
        }
        let parts = ctx.into_parts();
        if failed {
            continue;
        }
        if let Some((addr, d)) = options.health {
            http.entry(addr).or_default().health = true;
            lameduck = lameduck.max(d);
        }
        if let Some((addr, continuously)) = options.ready {
            http.entry(addr).or_default().ready = true;
            ready_continuously |= continuously;
        }
        if let Some(addr) = options.metrics {
            http.entry(addr).or_default().metrics = true;
        }
        if options.reload.is_some() {
            reload = options.reload;
        }
        debug |= options.debug;
        all_plugins.extend(parts.handlers.iter().cloned());
        let names: Vec<&'static str> = parts.handlers.iter().map(|h| h.name()).collect();
        let mut first_listener: Option<(Scheme, SocketAddr)> = None;
        for key in keys.iter().filter(|k| k.scheme == Scheme::Dns) {
            let addrs: Vec<IpAddr> = if options.bind.is_empty() {
                vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
            } else {
                options.bind.iter().copied().filter(|a| !options.except.contains(a)).collect()
            };
            if addrs.is_empty() {
                problems.push(SetupError::new(format!("{key}: bind leaves no address to listen on")).into());
            }
            let server: Arc<str> = Arc::from(format!("{}://{}:{}", key.scheme.as_str(), zone_label(&key.zone), key.port));
            let mut chain = Chain {
                zone: key.zone.clone(),
                server: server.clone(),
                plugins: parts.handlers.clone(),
                collectors: parts.collectors.clone(),
                filters: parts.filters.clone(),
                view: parts.view.clone(),
                metrics: None,
                debug: options.debug,
                cookies: options.cookies.clone().unwrap_or_default(),
            };
            if options.metrics.is_some() {
                let zone = key.zone.fmt_with_dot().to_string();
                chain.metrics = Some(crate::metrics::ChainMetrics::new(&server, &zone, &parts.view, &names));
            }
            let chain = Arc::new(chain);
            for ip in addrs {
                let addr = SocketAddr::new(ip, key.port);
                let spec = listeners.entry((key.scheme, addr)).or_insert_with(|| ListenerSpec {
                    scheme: key.scheme,
                    addr,
                    router: Router::with_options(options.clone()),
                });
                first_listener.get_or_insert((key.scheme, addr));
                if let Err(e) = spec.router.insert(key.zone.clone(), chain.clone()) {
                    problems.push(SetupError::new(format!("{key}: {e}")).into());
                }
            }
        }
        // As CoreDNS's, a block's hooks see its first listener (the loop plugin probes it).
        if let Some((scheme, addr)) = first_listener {
            hooks.startup.extend(parts.startup.iter().map(|h| (scheme, addr, h.clone())));
            hooks.shutdown.extend(parts.shutdown.iter().map(|h| (scheme, addr, h.clone())));
        }
    }
    if problems.is_empty() {
        Ok(Plan {
            listeners: listeners.into_values().collect(),
            http,
            reload,
            lameduck,
            ready_continuously,
            plugins: all_plugins,
            debug,
            hooks,
        })
    } else {
        Err(problems)
    }
}

/// CoreDNS's server label leaves out the root zone: `dns://:53`, `dns://example.org.:53`.
fn zone_label(z: &Name<Bytes>) -> String {
    if z.is_root() {
        String::new()
    } else {
        z.fmt_with_dot().to_string()
    }
}
