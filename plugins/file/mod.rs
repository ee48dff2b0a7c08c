//! file: serves zones from RFC 1035 zone files as an authoritative server does, as CoreDNS's file
//! plugin is configured. `loader.rs` reads the files (`$ORIGIN`, `$TTL`, `$INCLUDE`,
//! `$GENERATE`), `zone.rs` holds a loaded zone and its lookup (CNAME chains, DNAME, wildcards,
//! referrals, negative answers, DNSSEC records). Zones are built once and swapped atomically
//! when a reload finds a new SOA serial; a zone that fails to reload keeps being served as it was.

mod chunked;
mod index;
pub mod loader;
mod nsec3;
pub mod zone;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use domain::base::name::ToLabelIter;

use crate::plugin::prelude::*;
use zone::Zone;

/// CoreDNS's default interval for checking a zone file.
pub const DEFAULT_RELOAD: Duration = Duration::from_secs(60);

/// `file DBFILE [ZONES...] { reload DURATION; fallthrough [ZONES...] }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zone file; a relative path is taken from `root`.
    pub file: String,
    /// The zones to load the file as; the server block's zones when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// How often the file is checked for a new serial; zero turns checking off. 1m when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::plugin::serde_opt_duration")]
    pub reload: Option<Duration>,
    /// `reload DURATION mtime`: a changed file replaces the zone even with the same serial.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reload_on_mtime: bool,
    /// `None`: no fallthrough; `Some([])`: for every name; else for names in these zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
}


pub use crate::plugin::zone_name;

pub use crate::plugin::parse_fallthrough;

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let Some(file) = d.args.first() else {
        return Err(d.err("file needs a zone file, such as `file db.example.org example.org`"));
    };
    let mut c = Config { file: file.text.clone(), ..Config::default() };
    for t in &d.args[1..] {
        for z in t.text.split_whitespace() {
            zone_name(z).map_err(|m| t.err(m))?;
            c.zones.push(z.to_string());
        }
    }
    for line in d.lines() {
        match line.key().as_str() {
            "reload" => {
                let args = line.nargs(1, 2)?;
                c.reload = Some(args[0].duration()?);
                if let Some(how) = args.get(1) {
                    match how.text.as_str() {
                        "mtime" => c.reload_on_mtime = true,
                        "serial" => c.reload_on_mtime = false,
                        _ => return Err(how.err("expected `serial` or `mtime` after the reload interval")),
                    }
                }
            }
            "fallthrough" => c.fallthrough = Some(parse_fallthrough(line)?),
            // CoreDNS's `upstream` is accepted and ignored, as CoreDNS itself now does.
            "upstream" => {
                line.no_block()?;
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = |m: String| SetupError::new(m);
    let origins = ctx.zones_or(&c.zones)?;
    let fallthrough = crate::plugin::fallthrough_names(&c.fallthrough)?;
    let path = ctx.path(&c.file);
    let mut zones = Vec::new();
    for origin in origins {
        let mut z = Served::load(path.clone(), origin).map_err(err)?;
        z.on_mtime = c.reload_on_mtime;
        zones.push(Arc::new(z));
    }
    let every = c.reload.unwrap_or(DEFAULT_RELOAD);
    if !every.is_zero() {
        for z in &zones {
            watch(Arc::downgrade(z), every);
        }
    }
    let zones = Zones::new(zones);
    ctx.add_handler(Arc::new(File { zones: ArcSwap::from_pointee(zones), fallthrough, name: "file" }));
    Ok(())
}

/// When the file was last changed, to skip re-reading a file that did not change.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads `path` as the zone `origin`.
pub fn load_zone(path: &Path, origin: &Name<Bytes>) -> Result<Zone, String> {
    let _purge = memory::PurgeNow::start();
    let mut b = zone::Builder::new(origin.clone());
    loader::read_each(path, origin, &mut |r| b.push(r))?;
    // What the scanner freed goes back before the zone is sorted, which is when the load holds
    // the most.
    crate::plugin::release_free_memory();
    b.finish().map_err(|e| format!("{}: {e}", path.display()))
}

mod memory {
    /// While a zone loads, memory the load frees goes back to the system at once; at the end,
    /// whatever mimalloc still holds unused is handed back too. mimalloc otherwise delays that
    /// (10 ms, in practice until the thread allocates again), so a load's scratch (the scanner's
    /// copy of the file, the builder's arrays) would stay resident and add to its peak.
    pub struct PurgeNow {
        #[cfg(feature = "mimalloc")]
        prev: Option<std::os::raw::c_long>,
    }

    #[cfg(feature = "mimalloc")]
    mod ffi {
        use std::os::raw::c_long;
        // Linked in by the binary's global allocator; named here so test binaries link it too.
        extern crate mimalloc as _;
        extern "C" {
            pub fn mi_collect(force: bool);
            pub fn mi_option_get(option: i32) -> c_long;
            pub fn mi_option_set(option: i32, value: c_long);
        }
        /// `mi_option_purge_delay` in mimalloc's `mi_option_t` (default 10 ms in v2, 1000 in v3).
        pub const PURGE_DELAY: i32 = 15;
    }

    impl PurgeNow {
        pub fn start() -> PurgeNow {
            #[cfg(feature = "mimalloc")]
            {
                // SAFETY: option calls take and return plain integers.
                let prev = unsafe { ffi::mi_option_get(ffi::PURGE_DELAY) };
                // Only when the option is the one expected (its default), in case mimalloc's
                // numbering changes.
                if prev == 10 || prev == 1000 {
                    unsafe { ffi::mi_option_set(ffi::PURGE_DELAY, 0) };
                    return PurgeNow { prev: Some(prev) };
                }
                PurgeNow { prev: None }
            }
            #[cfg(not(feature = "mimalloc"))]
            PurgeNow {}
        }
    }

    impl Drop for PurgeNow {
        fn drop(&mut self) {
            #[cfg(feature = "mimalloc")]
            // SAFETY: as above; mi_collect only frees what mimalloc holds unused.
            unsafe {
                ffi::mi_collect(true);
                if let Some(p) = self.prev {
                    ffi::mi_option_set(ffi::PURGE_DELAY, p);
                }
            }
        }
    }
}

/// One zone being served from one file.
pub struct Served {
    pub origin: Name<Bytes>,
    pub path: PathBuf,
    pub zone: ArcSwap<Zone>,
    stamp: std::sync::Mutex<Stamp>,
    /// Replace the zone whenever the file changed, not only on a new serial.
    pub on_mtime: bool,
}

impl Served {
    pub fn load(path: PathBuf, origin: Name<Bytes>) -> Result<Served, String> {
        let s = stamp(&path);
        let z = load_zone(&path, &origin)?;
        log::info!(target: "plugin/file", "loaded {} from {}: serial {}, {} records", origin.fmt_with_dot(), path.display(), z.serial, z.records);
        Ok(Served { origin, path, zone: ArcSwap::from_pointee(z), stamp: std::sync::Mutex::new(s), on_mtime: false })
    }

    /// Re-reads the file if it changed (modification time or size); swaps the zone in if its
    /// serial differs, or with `on_mtime` in any case. A file that fails to load leaves the zone
    /// as it was, and says why in the log.
    pub fn reload(&self) {
        let now = stamp(&self.path);
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now == *last {
            return;
        }
        *last = now;
        match load_zone(&self.path, &self.origin) {
            Ok(z) => {
                let old = self.zone.load().serial;
                if z.serial != old || self.on_mtime {
                    log::info!(target: "plugin/file", "reloaded {} from {}: serial {} -> {}", self.origin.fmt_with_dot(), self.path.display(), old, z.serial);
                    self.zone.store(Arc::new(z));
                }
            }
            Err(e) => log::error!(target: "plugin/file", "reload of {} failed, serving serial {}: {e}", self.origin.fmt_with_dot(), self.zone.load().serial),
        }
    }
}

/// Checks the zone's file every `every` on a thread of its own; ends when the zone is dropped.
fn watch(z: std::sync::Weak<Served>, every: Duration) {
    let spawned = std::thread::Builder::new().name("file-reload".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(z) = z.upgrade() else { return };
        z.reload();
    });
    if let Err(e) = spawned {
        log::warn!(target: "plugin/file", "cannot watch for changes: {e}");
    }
}

/// The zones one handler serves, longest origin first so the first match is the closest.
pub struct Zones {
    list: Vec<Arc<Served>>,
}

impl Zones {
    pub fn new(mut list: Vec<Arc<Served>>) -> Zones {
        list.sort_by_key(|z| std::cmp::Reverse(z.origin.iter_labels().count()));
        Zones { list }
    }

    pub fn find(&self, name: &Name<Bytes>) -> Option<&Arc<Served>> {
        self.list.iter().find(|z| crate::message::is_within(name, &z.origin))
    }

    pub fn list(&self) -> &[Arc<Served>] {
        &self.list
    }
}

/// The handler of file (and of auto, which fills `zones` from a directory).
pub struct File {
    pub zones: ArcSwap<Zones>,
    pub fallthrough: Option<Vec<Name<Bytes>>>,
    pub name: &'static str,
}

impl File {
    fn falls_through(&self, name: &Name<Bytes>) -> bool {
        match &self.fallthrough {
            None => false,
            Some(zs) => zs.is_empty() || zs.iter().any(|z| name.ends_with(z)),
        }
    }

    /// The reply for a query in one of the zones, or `None` for the next plugin.
    pub fn lookup(&self, req: &Request) -> Option<Reply> {
        if req.qclass != Class::IN {
            return None;
        }
        let zones = self.zones.load();
        let served = zones.find(&req.qname)?;
        if matches!(req.qtype, Rtype::AXFR | Rtype::IXFR) {
            // Zone transfers are not offered (CoreDNS's transfer plugin is not part of ferrite yet).
            return Some(Reply::error(req, Rcode::REFUSED));
        }
        let zone = served.zone.load();
        let mut reply = Reply::for_request(req);
        zone.answer(req, &mut reply);
        if reply.rcode == OptRcode::NXDOMAIN && self.falls_through(&req.qname) {
            return None;
        }
        Some(reply)
    }
}

impl Plugin for File {
    fn name(&self) -> &'static str {
        self.name
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        match self.lookup(req) {
            Some(r) => Box::pin(std::future::ready(Ok(r))),
            None => next.serve(req),
        }
    }
}

#[cfg(test)]
mod tests;
