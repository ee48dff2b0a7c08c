//! auto: serves every zone file of a directory whose name matches a regex, as CoreDNS's auto
//! does; the zone's name comes from the file name through a template (`db\.(.*)` → `{1}`). Built
//! on the file plugin: the same loader, zone and handler. The directory is scanned again every
//! `reload` on a thread of its own: new files are loaded, removed ones dropped, changed ones
//! reloaded when their serial changes; the set of zones is swapped atomically.

use std::path::PathBuf;
use std::time::Duration;

use arc_swap::ArcSwap;
use regex::Regex;

use crate::plugin::prelude::*;
use crate::plugins::file::{parse_fallthrough, zone_name, File, Served, Zones, DEFAULT_RELOAD};

const DEFAULT_REGEX: &str = r"db\.(.*)";
const DEFAULT_TEMPLATE: &str = "{1}";

/// `auto [ZONES...] { directory DIR [REGEXP TEMPLATE]; reload DURATION; fallthrough [ZONES...] }`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// The directory to scan; a relative path is taken from `root`. The current one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::plugin::serde_opt_duration")]
    pub reload: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallthrough: Option<Vec<String>>,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    for t in &d.args {
        zone_name(&t.text).map_err(|m| t.err(m))?;
        c.zones.push(t.text.clone());
    }
    for line in d.lines() {
        match line.key().as_str() {
            "directory" => {
                let a = line.nargs(1, 3)?;
                if a.len() == 2 {
                    return Err(line.err("directory takes DIR, or DIR REGEXP TEMPLATE"));
                }
                c.directory = Some(a[0].text.clone());
                if a.len() == 3 {
                    Regex::new(&a[1].text).map_err(|e| a[1].err(format!("could not parse regex {:?}: {e}", a[1].text)))?;
                    c.regex = Some(a[1].text.clone());
                    c.template = Some(a[2].text.clone());
                }
            }
            "reload" => c.reload = Some(line.nargs(1, 1)?[0].duration()?),
            "fallthrough" => c.fallthrough = Some(parse_fallthrough(line)?),
            // Accepted and ignored, as CoreDNS does.
            "upstream" => line.no_block()?,
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let err = |m: String| SetupError::new(m);
    let zones = ctx.zones_or(&c.zones)?;
    let fallthrough = crate::plugin::fallthrough_names(&c.fallthrough)?;
    // CoreDNS anchors the regex: it must match the whole file name.
    let re = c.regex.as_deref().unwrap_or(DEFAULT_REGEX);
    let regex = Regex::new(&format!("^(?:{re})$")).map_err(|e| err(format!("could not parse regex {re:?}: {e}")))?;
    let scanner = Arc::new(Scanner {
        dir: ctx.path(c.directory.as_deref().unwrap_or(".")),
        regex,
        template: c.template.clone().unwrap_or_else(|| DEFAULT_TEMPLATE.to_string()),
        zones,
    });
    let handler = Arc::new(File { zones: ArcSwap::from_pointee(scanner.scan(None)), fallthrough, name: "auto" });
    let every = c.reload.unwrap_or(DEFAULT_RELOAD);
    if !every.is_zero() {
        let weak = Arc::downgrade(&handler);
        let spawned = std::thread::Builder::new().name("auto-scan".into()).spawn(move || loop {
            std::thread::sleep(every);
            let Some(h) = weak.upgrade() else { return };
            let old = h.zones.load();
            h.zones.store(Arc::new(scanner.scan(Some(&old))));
        });
        if let Err(e) = spawned {
            log::warn!(target: "plugin/auto", "cannot watch {}: {e}", c.directory.as_deref().unwrap_or("."));
        }
    }
    ctx.add_handler(handler);
    Ok(())
}

struct Scanner {
    dir: PathBuf,
    regex: Regex,
    template: String,
    zones: Vec<Name<Bytes>>,
}

impl Scanner {
    /// The zone a file name makes, if it matches and falls in our zones.
    fn origin(&self, file: &str) -> Option<Name<Bytes>> {
        let caps = self.regex.captures(file)?;
        let mut name = self.template.clone();
        for i in (0..caps.len()).rev() {
            name = name.replace(&format!("{{{i}}}"), caps.get(i).map_or("", |m| m.as_str()));
        }
        let origin = zone_name(&name).ok()?;
        self.zones.iter().any(|z| origin.ends_with(z)).then_some(origin)
    }

    /// The zones of the directory now; zones already loaded from the same file are kept (and
    /// reloaded if changed). A file that fails to load is logged and not served (or, if it was
    /// served, keeps its last good zone).
    fn scan(&self, old: Option<&Zones>) -> Zones {
        let mut out: Vec<Arc<Served>> = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                log::error!(target: "plugin/auto", "{}: {e}", self.dir.display());
                return Zones::new(old.map(|o| o.list().to_vec()).unwrap_or_default());
            }
        };
        let mut files: Vec<(String, PathBuf)> =
            entries.filter_map(Result::ok).filter(|e| e.path().is_file()).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect();
        files.sort();
        for (file, path) in files {
            let Some(origin) = self.origin(&file) else { continue };
            if out.iter().any(|z| z.origin == origin) {
                continue;
            }
            if let Some(z) = old.and_then(|o| o.list().iter().find(|z| z.origin == origin && z.path == path)) {
                z.reload();
                out.push(z.clone());
                continue;
            }
            match Served::load(path, origin) {
                Ok(z) => out.push(Arc::new(z)),
                Err(e) => log::error!(target: "plugin/auto", "{e}"),
            }
        }
        Zones::new(out)
    }
}

#[cfg(test)]
mod tests;
