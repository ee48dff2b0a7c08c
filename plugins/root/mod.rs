//! root: sets the directory that relative paths in a server block are read from (zone files,
//! hosts files, keys), as CoreDNS's root does. Setup only: it adds no handler. It runs first
//! (plugin.cfg) so every later plugin of the block resolves its paths against it.

use std::io::ErrorKind;

use crate::plugin::prelude::*;

/// `root PATH`; a relative PATH is taken from the Corefile's directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub path: String,
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_block()?;
    d.max_args(1)?;
    let path = d.args.first().ok_or_else(|| d.err("expected a directory: root PATH"))?;
    Ok(Config { path: path.text.clone() })
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let dir = ctx.path(&c.path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(SetupError::new(format!("root path {} is not a directory", dir.display()))),
        // As CoreDNS: a directory that does not exist yet may appear later; say so and go on.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            log::warn!(target: "plugin/root", "root path does not exist: {}", dir.display());
        }
        Err(e) => return Err(SetupError::new(format!("unable to access root path {}: {e}", dir.display()))),
    }
    ctx.root = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
