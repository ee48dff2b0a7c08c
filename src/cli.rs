//! The command line: `ferrite [run] [-c FILE]`, `check`, `convert`, `plugins`, and CoreDNS's
//! single-dash flags (`-conf`, `-dns.port`, `-plugins`, `-version`, `-quiet`, `-pidfile`) so that
//! existing manifests work as they are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Problem};
use crate::plugins::REGISTRY;
use crate::server;

#[derive(Parser, Debug)]
#[command(name = "ferrite", about = "A DNS server in the family of CoreDNS", disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Corefile or RON configuration to load (default: ./Corefile if present, else `.:53 { whoami log }`)
    #[arg(short = 'c', long = "conf", global = true, value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Default port for server blocks that name none
    #[arg(long = "dns.port", global = true, value_name = "PORT", default_value_t = 53)]
    dns_port: u16,
    /// Print no initialization output
    #[arg(long, global = true)]
    quiet: bool,
    /// Write the process ID to this file
    #[arg(long, global = true, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// List the compiled-in plugins and exit
    #[arg(long)]
    plugins: bool,
    /// Print the version and exit
    #[arg(long)]
    version: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve DNS (the default)
    Run,
    /// Validate a configuration without serving it
    Check { file: PathBuf },
    /// Print a Corefile as RON
    Convert { file: PathBuf },
    /// List the compiled-in plugins in execution order
    Plugins,
}

/// CoreDNS's flags take one dash; clap wants two for long names.
const GO_FLAGS: &[&str] = &["conf", "dns.port", "plugins", "version", "quiet", "pidfile"];

fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else { return a };
            let name = rest.split('=').next().unwrap_or(rest);
            if GO_FLAGS.contains(&name) {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

/// Runs the command line; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(normalize(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if cli.version {
        println!("{}", version_text());
        return 0;
    }
    if cli.plugins {
        print_plugins();
        return 0;
    }
    match cli.cmd {
        Some(Cmd::Plugins) => {
            print_plugins();
            0
        }
        Some(Cmd::Check { ref file }) => check(file, cli.dns_port),
        Some(Cmd::Convert { ref file }) => match config::load(file) {
            Ok(c) => {
                print!("{}", config::to_ron(&c));
                0
            }
            Err(p) => report(&p),
        },
        None | Some(Cmd::Run) => run(&cli),
    }
}

/// CoreDNS's second line of `-version` and of the start-up banner: `OS/ARCH, TOOLCHAIN, COMMIT`.
fn platform_line() -> String {
    format!("{}/{}, {}, {}", std::env::consts::OS, std::env::consts::ARCH, env!("FERRITE_RUSTC_VERSION"), env!("FERRITE_COMMIT"))
}

/// `-version`: CoreDNS's two lines, then one `key: value` line per build fact.
fn version_text() -> String {
    let plugins: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
    let linking = if cfg!(target_feature = "crt-static") { "static" } else { "dynamic" };
    let panic = if cfg!(panic = "unwind") { "unwind" } else { "abort" };
    let allocator = if cfg!(feature = "mimalloc") { "mimalloc" } else { "system" };
    format!(
        "{}\n{}\ncommit: {}\nrustc: {}\ntarget: {} ({linking}, {} profile, panic={panic})\nallocator: {allocator}\nplugins: {}",
        crate::VERSION,
        platform_line(),
        env!("FERRITE_COMMIT"),
        env!("FERRITE_RUSTC_VERSION"),
        env!("FERRITE_TARGET"),
        env!("FERRITE_PROFILE"),
        plugins.join(" ")
    )
}

fn print_plugins() {
    for r in REGISTRY {
        println!("{}", r.name);
    }
}

fn report(problems: &[Problem]) -> i32 {
    for p in problems {
        eprintln!("{p}");
    }
    1
}

fn check(file: &Path, dns_port: u16) -> i32 {
    let problems = match config::load(file) {
        Ok(c) => match server::setup::build(&c, dns_port) {
            Ok(_) => {
                println!("{}: ok", file.display());
                return 0;
            }
            Err(p) => p,
        },
        Err(p) => p,
    };
    let (unavailable, errors): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| p.unavailable);
    for p in &errors {
        eprintln!("{p}");
    }
    if errors.is_empty() {
        println!("{}: syntax ok, but this build cannot serve it:", file.display());
        for p in &unavailable {
            println!("  {p}");
        }
        return 2;
    }
    for p in &unavailable {
        eprintln!("{p}");
    }
    1
}

/// The configuration served when none is given, as CoreDNS's: `whoami` and `log` (each if
/// compiled in).
pub fn default_corefile(port: u16) -> String {
    let mut s = format!(".:{port} {{\n");
    for p in ["whoami", "log"] {
        if REGISTRY.iter().any(|r| r.name == p) {
            s.push_str(&format!("    {p}\n"));
        }
    }
    s.push_str("}\n");
    s
}

/// Where the configuration comes from: a file (reloadable) or the built-in default.
fn config_path(cli: &Cli) -> Option<PathBuf> {
    if let Some(path) = &cli.conf {
        return Some(path.clone());
    }
    Path::new("Corefile").is_file().then(|| PathBuf::from("Corefile"))
}

fn load_for_run(cli: &Cli) -> Result<Config, Vec<Problem>> {
    match config_path(cli) {
        Some(p) => config::load(&p),
        None => config::from_corefile_str(&default_corefile(cli.dns_port), "<default>"),
    }
}

/// A hook with the block's first listener (scheme, configured address).
type HookAt = (crate::config::keys::Scheme, std::net::SocketAddr, crate::plugin::Hook);

/// The running process: DNS listeners, the HTTP side port, and what reload needs.
struct Running {
    server: server::Server,
    #[cfg(feature = "http")]
    http: Option<crate::http::HttpServer>,
    reload: Option<(std::time::Duration, std::time::Duration)>,
    lameduck: std::time::Duration,
    fingerprint: u64,
    quiet: bool,
    /// `on shutdown` commands of the configuration now serving.
    shutdown_hooks: Vec<HookAt>,
}

impl Running {
    /// Puts a plan into service; on an error nothing changes. Returns the plan's startup hooks
    /// (`on startup`), which only the first configuration runs.
    fn apply(&mut self, mut plan: server::setup::Plan) -> Result<Vec<HookAt>, String> {
        let hooks = std::mem::take(&mut plan.hooks);
        #[cfg(feature = "http")]
        {
            if self.http.is_none() && !plan.http.is_empty() {
                self.http = Some(crate::http::HttpServer::new().map_err(|e| e.to_string())?);
            }
            if let Some(h) = &mut self.http {
                for addr in h.apply(&plan.http).map_err(|e| e.to_string())? {
                    if !self.quiet {
                        println!("listening on http://{addr}");
                    }
                }
            }
            crate::http::set_plugins(plan.plugins.clone(), plan.ready_continuously);
        }
        #[cfg(not(feature = "http"))]
        if let Some(addr) = plan.http.keys().next() {
            return Err(format!("http://{addr}: this build has no HTTP side port (health, ready, prometheus)"));
        }
        let started = self.server.apply(plan.listeners).map_err(|e| e.to_string())?;
        if !self.quiet {
            for (scheme, addr, zones) in started {
                println!("listening on {}://{} zones: {}", scheme.as_str(), addr, zones.join(" "));
            }
        }
        if plan.debug {
            crate::logging::init(true);
        }
        self.reload = plan.reload;
        self.lameduck = plan.lameduck;
        self.shutdown_hooks = hooks.shutdown;
        Ok(hooks.startup)
    }

    /// Re-reads the configuration. A broken one is logged with its location, counted in
    /// `coredns_reload_failed_total`, and the running configuration keeps serving.
    fn reload(&mut self, cli: &Cli, path: &Path) {
        let fingerprint = config::fingerprint(&[path.to_path_buf()]);
        let result = config::load(path).and_then(|c| {
            let fp = config::fingerprint(&c.sources);
            server::setup::build(&c, cli.dns_port).map(|p| (p, fp))
        });
        let outcome = match result {
            Ok((plan, fp)) => {
                self.fingerprint = fp;
                self.apply(plan)
            }
            Err(problems) => {
                self.fingerprint = fingerprint;
                Err(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))
            }
        };
        match outcome {
            Ok(_) => log::info!(target: "plugin/reload", "reloaded {}", path.display()),
            Err(e) => {
                metrics::counter!(crate::metrics::RELOAD_FAILED).increment(1);
                log::error!(target: "plugin/reload", "{e}; the running configuration keeps serving");
            }
        }
    }
}

fn run(cli: &Cli) -> i32 {
    crate::logging::init(false);
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    let cfg = match load_for_run(cli) {
        Ok(c) => c,
        Err(p) => return report(&p),
    };
    let fingerprint = config::fingerprint(&cfg.sources);
    let plan = match server::setup::build(&cfg, cli.dns_port) {
        Ok(s) => s,
        Err(p) => return report(&p),
    };
    // NOTE: signal handlers go in before the listeners are announced: SIGUSR1's default action
    // is to end the process, and whoever reads the announcement may send one at once.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime builds");
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate()).expect("SIGTERM can be caught"),
            signal(SignalKind::interrupt()).expect("SIGINT can be caught"),
            signal(SignalKind::user_defined1()).expect("SIGUSR1 can be caught"),
        )
    };
    let server = match server::Server::new(server::worker_count()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start workers: {e}");
            return 1;
        }
    };
    let mut running = Running {
        server,
        #[cfg(feature = "http")]
        http: None,
        reload: None,
        lameduck: std::time::Duration::ZERO,
        fingerprint,
        quiet: cli.quiet,
        shutdown_hooks: Vec::new(),
    };
    let startup = match running.apply(plan) {
        Ok(hooks) => hooks,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if !cli.quiet {
        println!("{}", crate::VERSION);
        println!("{}", platform_line());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Some(p) = &cli.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("pidfile {}: {e}", p.display());
            return 1;
        }
    }
    // The listeners are open and serving: what blocks asked to run at startup runs now.
    for (scheme, addr, h) in &startup {
        h(running.server.bound(*scheme, *addr).unwrap_or(*addr));
    }
    let path = config_path(cli);
    let (mut term, mut int, mut usr1) = signals;
    rt.block_on(async {
        loop {
            let wait = running.reload.map(|(every, jitter)| every + jitter.mul_f64(jitter_fraction()));
            tokio::select! {
                // Said in the log, as CoreDNS does: an unexpected stop can then be told from a crash.
                _ = term.recv() => {
                    log::info!("SIGTERM: shutting down");
                    break;
                }
                _ = int.recv() => {
                    log::info!("SIGINT: shutting down");
                    break;
                }
                _ = usr1.recv() => {
                    if let Some(p) = &path {
                        log::info!(target: "plugin/reload", "SIGUSR1 received: reloading");
                        running.reload(cli, p);
                    }
                }
                _ = tokio::time::sleep(wait.unwrap_or(std::time::Duration::from_secs(3600))), if wait.is_some() => {
                    if let Some(p) = &path {
                        let now = config::load(p).map(|c| config::fingerprint(&c.sources)).unwrap_or_else(|_| config::fingerprint(std::slice::from_ref(p)));
                        if now != running.fingerprint {
                            running.reload(cli, p);
                        }
                    }
                }
            }
        }
        // Shutdown, as CoreDNS: readiness fails first, DNS goes on answering for the lameduck
        // period, then the listeners close and queries in flight finish.
        #[cfg(feature = "http")]
        crate::http::begin_shutdown();
        if !running.lameduck.is_zero() {
            log::info!(target: "plugin/health", "going into lameduck mode for {:?}", running.lameduck);
            tokio::time::sleep(running.lameduck).await;
        }
    });
    running.server.shutdown(std::time::Duration::from_secs(5));
    for (_, addr, h) in &running.shutdown_hooks {
        h(*addr);
    }
    if let Some(p) = &cli.pidfile {
        let _ = std::fs::remove_file(p);
    }
    0
}

/// A fraction in [0, 1) for reload jitter; it need not be a good random number.
fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags() {
        let n = normalize(["ferrite", "-conf", "x", "-dns.port=1053", "-c", "y", "--quiet", "-v"].map(OsString::from).to_vec());
        let n: Vec<_> = n.iter().map(|s| s.to_str().expect("utf8")).collect();
        assert_eq!(n, ["ferrite", "--conf", "x", "--dns.port=1053", "-c", "y", "--quiet", "-v"]);
        let cli = Cli::try_parse_from(normalize(["ferrite", "-conf", "/etc/coredns/Corefile"].map(OsString::from).to_vec()))
            .expect("kubeadm's args parse");
        assert_eq!(cli.conf.as_deref(), Some(Path::new("/etc/coredns/Corefile")));
    }
}
