//! errors: logs the errors that the rest of the chain returns, as CoreDNS's errors plugin does:
//! `[ERROR] plugin/errors: 2 example.org. A: plugin/forward: ...`, then passes the error on
//! unchanged (the chain runner answers it with its rcode). Errors that match a `consolidate`
//! pattern are counted instead and summed up in one line per period.
//!
//! A consolidation window starts with the first matching error: that error spawns a one-shot
//! timer task on the runtime serving it, which sleeps for the period and then prints the count.
//! The task holds only a `Weak` reference, so a reload that drops the plugin is not held up; the
//! plugin prints what it has counted when it is dropped, as CoreDNS does on shutdown. No task
//! outlives one period, and a server without errors runs none.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regex_lite::Regex;

use crate::plugin::parse_duration;
use crate::plugin::prelude::*;

/// CoreDNS's limit on a consolidate pattern's length.
pub const MAX_REGEXP_LEN: usize = 10_000;

/// How the Corefile's `errors [stdout] { stacktrace; consolidate ... }` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accepted for CoreDNS compatibility; has no effect (see the README).
    #[serde(default)]
    pub stacktrace: bool,
    /// Patterns whose errors are counted instead of logged one by one; the first match wins.
    #[serde(default)]
    pub consolidate: Vec<Consolidate>,
}

/// `consolidate DURATION REGEXP [LEVEL] [show_first]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consolidate {
    /// The period, e.g. `"30s"` or `"5m"`.
    pub duration: String,
    /// Matched against the error's whole message, `plugin/<name>: ...`.
    pub regexp: String,
    #[serde(default)]
    pub level: Level,
    /// Log the first error of each period in full, at `level`.
    #[serde(default)]
    pub show_first: bool,
}

/// The level a summary is printed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Error,
    Warning,
    Info,
    Debug,
}

impl FromStr for Level {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "error" => Ok(Level::Error),
            // CoreDNS's code takes `warning`; an older README of it said `warn`. Take both.
            "warning" | "warn" => Ok(Level::Warning),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(()),
        }
    }
}

impl From<Level> for log::Level {
    fn from(l: Level) -> log::Level {
        match l {
            Level::Error => log::Level::Error,
            Level::Warning => log::Level::Warn,
            Level::Info => log::Level::Info,
            Level::Debug => log::Level::Debug,
        }
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.max_args(1)?;
    // CoreDNS writes errors to standard output only, and takes its name as the one argument.
    if let Some(t) = d.args.first() {
        if t.text != "stdout" {
            return Err(t.err(format!("invalid log file {:?}: only stdout is supported", t.text)));
        }
    }
    let mut c = Config::default();
    for line in d.lines() {
        match line.key().as_str() {
            "stacktrace" => {
                line.nargs(0, 0)?;
                c.stacktrace = true;
            }
            "consolidate" => c.consolidate.push(parse_consolidate(line)?),
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

fn parse_consolidate(line: &Line) -> Result<Consolidate, SetupError> {
    let args = line.nargs(2, 4)?;
    period(&args[0].text).map_err(|e| args[0].err(e))?;
    compile(&args[1].text).map_err(|e| args[1].err(e))?;
    let mut c = Consolidate {
        duration: args[0].text.clone(),
        regexp: args[1].text.clone(),
        level: Level::Error,
        show_first: false,
    };
    // [LEVEL] [show_first], in that order.
    let mut rest = args[2..].iter();
    let mut next = rest.next();
    if let Some(t) = next.filter(|t| t.text != "show_first") {
        c.level = t.text.parse().map_err(|_| {
            t.err(format!("unknown log level {:?} in consolidate: expected warning, error, info or debug", t.text))
        })?;
        next = rest.next();
    }
    if let Some(t) = next {
        if t.text != "show_first" {
            return Err(t.err(format!("unexpected argument {:?} in consolidate: expected show_first", t.text)));
        }
        c.show_first = true;
    }
    if let Some(t) = rest.next() {
        return Err(t.err(format!("unexpected argument {:?} in consolidate: show_first comes last", t.text)));
    }
    Ok(c)
}

fn period(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err("consolidate needs a period above zero".to_string()),
        None => Err(format!("expected a duration such as 30s or 5m, got {text:?}")),
    }
}

fn compile(re: &str) -> Result<Regex, String> {
    if re.len() > MAX_REGEXP_LEN {
        return Err(format!("regexp is {} characters long, the limit is {MAX_REGEXP_LEN}", re.len()));
    }
    Regex::new(re).map_err(|e| format!("invalid regexp {re:?}: {e}"))
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.add_handler(Arc::new(Errors::new(c, stdout_sink())?));
    Ok(())
}

/// Where lines go: the log (standard output) in production, a buffer in tests.
pub type Sink = Arc<dyn Fn(log::Level, &str) + Send + Sync>;

/// `[LEVEL] plugin/errors: message` on standard output (see `src/logging.rs`).
fn stdout_sink() -> Sink {
    Arc::new(|level, msg: &str| log::log!(target: "plugin/errors", level, "{msg}"))
}

pub struct Errors {
    patterns: Vec<Arc<Pattern>>,
    sink: Sink,
}

/// One `consolidate` pattern and its count in the current period.
struct Pattern {
    regex: Regex,
    period: Duration,
    level: log::Level,
    show_first: bool,
    /// Matching errors since the period started; 0 when no period is running.
    count: AtomicU64,
    sink: Sink,
}

impl Errors {
    pub fn new(c: &Config, sink: Sink) -> Result<Errors, SetupError> {
        let mut patterns = Vec::with_capacity(c.consolidate.len());
        for p in &c.consolidate {
            patterns.push(Arc::new(Pattern {
                regex: compile(&p.regexp).map_err(SetupError::new)?,
                period: period(&p.duration).map_err(SetupError::new)?,
                level: p.level.into(),
                show_first: p.show_first,
                count: AtomicU64::new(0),
                sink: sink.clone(),
            }));
        }
        Ok(Errors { patterns, sink })
    }

    /// Logs `e`, or counts it when it matches a pattern.
    fn report(&self, req: &Request, e: &ServeError) {
        let message = e.to_string();
        // As CoreDNS: `RCODE NAME TYPE: ERROR`, the rcode as a number.
        let line = || format!("{} {} {}: {message}", e.rcode.to_int(), req.name_lower(), req.qtype);
        if let Some(p) = self.patterns.iter().find(|p| p.regex.is_match(&message)) {
            // The first error of a period starts the period's timer.
            if p.count.fetch_add(1, Ordering::AcqRel) == 0 {
                if !start_period(p) {
                    // No runtime to time the period: nothing would ever print the count.
                    p.count.fetch_sub(1, Ordering::AcqRel);
                    (self.sink)(log::Level::Error, &line());
                    return;
                }
                if p.show_first {
                    (p.sink)(p.level, &line());
                }
            }
            return;
        }
        (self.sink)(log::Level::Error, &line());
    }
}

/// Spawns the timer that prints `p`'s count at the end of its period; false without a runtime.
fn start_period(p: &Arc<Pattern>) -> bool {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return false };
    let weak = Arc::downgrade(p);
    let period = p.period;
    rt.spawn(async move {
        tokio::time::sleep(period).await;
        // Gone means dropped (a reload), and the drop has printed the count already.
        if let Some(p) = weak.upgrade() {
            p.flush();
        }
    });
    true
}

impl Pattern {
    /// Prints the period's count and starts over.
    fn flush(&self) {
        let n = self.count.swap(0, Ordering::AcqRel);
        // With show_first, a period with one error has printed it already.
        if n > 1 || (n == 1 && !self.show_first) {
            let msg =
                format!("{n} errors like '{}' occurred in last {}", self.regex.as_str(), go_duration(self.period));
            (self.sink)(self.level, &msg);
        }
    }
}

impl Drop for Pattern {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Plugin for Errors {
    fn name(&self) -> &'static str {
        "errors"
    }

    fn reads_replies(&self) -> bool {
        false
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(async move {
            let result = next.serve(req).await;
            // A dropped query is a decision (acl, erratic), not an error.
            if let Some(e) = result.as_ref().err().filter(|e| !e.drop) {
                self.report(req, e);
            }
            result
        })
    }
}

/// A duration as Go's `time.Duration.String` writes it (`30s`, `5m0s`, `1h0m0s`, `1.5s`, `20ms`),
/// so summaries read as CoreDNS's do.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        let (div, unit) = match ns {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{unit}", decimal(ns, div));
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, s) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&decimal(s, 1_000_000_000));
    out.push('s');
    out
}

/// `v / div` with the fraction's trailing zeros left out: 1500/1000 is `1.5`, 2000/1000 is `2`.
fn decimal(v: u128, div: u128) -> String {
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return int.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
