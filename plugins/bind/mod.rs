//! bind: chooses the addresses a server block listens on, as CoreDNS's bind does. Each argument
//! is an IP address or a network interface, which stands for every address the interface has
//! when the server starts or reloads. An `except` line in the block removes addresses again.
//! Setup only: it fills the block's `ServerOptions` and adds no handler.

use std::ffi::CString;
use std::net::IpAddr;

use crate::plugin::prelude::*;
use crate::plugin::ServerOptions;

/// `bind ADDRESS|IFACE ... { except ADDRESS|IFACE ... }`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    if d.args.is_empty() {
        return Err(d.err("at least one address or interface name is expected"));
    }
    let mut c = Config::default();
    for t in &d.args {
        check(t, true)?;
        c.addresses.push(t.text.clone());
    }
    for line in d.lines() {
        if line.key().as_str() != "except" {
            return Err(line.unknown());
        }
        for t in line.nargs(1, usize::MAX)? {
            check(t, false)?;
            c.except.push(t.text.clone());
        }
    }
    Ok(c)
}

/// Checks that a token names an address or an interface of this host, with its location.
fn check(t: &Token, binding: bool) -> Result<(), SetupError> {
    match target(&t.text) {
        Some(Target::Ip(ip)) if binding => bindable(ip).map_err(|m| t.err(m)),
        Some(_) => Ok(()),
        None if t.text.contains('%') => Err(t.err(format!(
            "{:?}: scoped IPv6 addresses are not supported; name the interface, or use a global address",
            t.text
        ))),
        None => Err(t.err(format!("not a valid IP address or interface name: {:?}", t.text))),
    }
}

/// An explicit address must be one a socket can bind without more information.
fn bindable(ip: IpAddr) -> Result<(), String> {
    match ip {
        // A link-local IPv6 address is only unique with its scope id (the interface), which
        // ServerOptions cannot carry; binding it without one fails.
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            Err(format!("cannot bind link-local address {ip}: it needs a scope id, which ferrite does not support"))
        }
        _ => Ok(()),
    }
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    if c.addresses.is_empty() {
        return Err(SetupError::new("at least one address or interface name is expected"));
    }
    for a in &c.addresses {
        if let Some(Target::Ip(ip)) = target(a) {
            bindable(ip).map_err(SetupError::new)?;
        }
    }
    let host = if c.addresses.iter().chain(&c.except).any(|a| matches!(target(a), Some(Target::Iface(_)))) {
        host_addrs()?
    } else {
        Vec::new()
    };
    let bind = expand(&c.addresses, target, &host).map_err(SetupError::new)?;
    let except = expand(&c.except, target, &host).map_err(SetupError::new)?;
    add(ctx.server, &bind, &except);
    Ok(())
}

/// Adds one `bind` directive's addresses to the block's. As in CoreDNS, `except` applies only to
/// its own directive: an address another `bind` line names is still listened on. The block's
/// `except` list keeps what was excluded and is not bound, so `bind` minus `except` is the answer
/// whatever the order of the lines.
fn add(opts: &mut ServerOptions, bind: &[IpAddr], except: &[IpAddr]) {
    for ip in bind.iter().filter(|ip| !except.contains(ip)) {
        if !opts.bind.contains(ip) {
            opts.bind.push(*ip);
        }
    }
    for ip in except {
        if !opts.bind.contains(ip) && !opts.except.contains(ip) {
            opts.except.push(*ip);
        }
    }
    let bound = opts.bind.clone();
    opts.except.retain(|ip| !bound.contains(ip));
}

/// What an argument names. An interface name wins over an address, as in CoreDNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// An interface, by index.
    Iface(u32),
    Ip(IpAddr),
}

fn target(arg: &str) -> Option<Target> {
    iface_index(arg).map(Target::Iface).or_else(|| arg.parse().ok().map(Target::Ip))
}

fn iface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call; the function only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Every address of every interface of this host, with the interface's index.
fn host_addrs() -> Result<Vec<(u32, IpAddr)>, SetupError> {
    let ifaces = if_addrs::get_if_addrs().map_err(|e| SetupError::new(format!("cannot list network interfaces: {e}")))?;
    // Matching by index also finds addresses listed under an alias label such as `eth0:1`.
    Ok(ifaces.into_iter().filter_map(|i| Some((i.index?, i.ip()))).collect())
}

/// The addresses `args` stand for, in order, each once. An interface stands for all its
/// addresses except IPv6 link-local ones (they cannot be bound without a scope id).
fn expand(args: &[String], target: impl Fn(&str) -> Option<Target>, host: &[(u32, IpAddr)]) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |ip: IpAddr| {
        if !out.contains(&ip) {
            out.push(ip);
        }
    };
    for a in args {
        match target(a) {
            Some(Target::Ip(ip)) => push(ip),
            Some(Target::Iface(index)) => {
                for &(_, ip) in host.iter().filter(|(i, _)| *i == index) {
                    if !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
                        push(ip);
                    }
                }
            }
            // Checked at parse time; an interface can vanish before a reload.
            None => return Err(format!("not a valid IP address or interface name: {a:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
