//! Log lines in CoreDNS's format on standard output: `[INFO] plugin/reload: message`.
//!
//! A record whose target starts with `plugin/` is printed with that prefix; others without one.

use std::io::Write;

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, r: &log::Record) {
        let level = match r.level() {
            log::Level::Error => "ERROR",
            log::Level::Warn => "WARNING",
            log::Level::Info => "INFO",
            log::Level::Debug => "DEBUG",
            log::Level::Trace => "TRACE",
        };
        let mut out = std::io::stdout().lock();
        let _ = if r.target().starts_with("plugin/") {
            writeln!(out, "[{level}] {}: {}", r.target(), r.args())
        } else {
            writeln!(out, "[{level}] {}", r.args())
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

/// Installs the logger; `debug` also shows debug lines. Safe to call more than once.
pub fn init(debug: bool) {
    static LOGGER: Logger = Logger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
}
