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
use crate::plugin::{SetupCtx, SetupError};
use crate::plugins::REGISTRY;

/// Everything served on one address.
pub struct ListenerSpec {
    pub scheme: Scheme,
    pub addr: SocketAddr,
    pub router: Router,
    pub options: ServerOptions,
    /// Startup hooks of the blocks whose first listener this is.
    pub startup: Vec<crate::plugin::StartupHook>,
}

/// Sets up every block of `config`. `dns_port` is the port of keys that name none.
pub fn build(config: &Config, dns_port: u16) -> Result<Vec<ListenerSpec>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut listeners: BTreeMap<(Scheme, SocketAddr), ListenerSpec> = BTreeMap::new();
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
        let mut hooks = ctx.take_startup_hooks();
        let handlers = ctx.into_handlers();
        if failed {
            continue;
        }
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
            let chain = Arc::new(Chain { zone: key.zone.clone(), server, plugins: handlers.clone() });
            for ip in addrs {
                let addr = SocketAddr::new(ip, key.port);
                let spec = listeners.entry((key.scheme, addr)).or_insert_with(|| ListenerSpec {
                    scheme: key.scheme,
                    addr,
                    router: Router::default(),
                    options: options.clone(),
                    startup: Vec::new(),
                });
                // As CoreDNS's loop plugin, a block's hooks see its first listener.
                spec.startup.append(&mut hooks);
                if let Err(e) = spec.router.insert(key.zone.clone(), chain.clone()) {
                    problems.push(SetupError::new(format!("{key}: {e}")).into());
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(listeners.into_values().collect())
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
