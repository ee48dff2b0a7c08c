//! The command line: `ferrite [run] [-c FILE]`, `check`, `convert`, `plugins`, and CoreDNS's
//! single-dash flags (`-conf`, `-dns.port`, `-plugins`, `-version`, `-quiet`, `-pidfile`, `-help`)
//! so that existing manifests work as they are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Problem};
use crate::plugins::REGISTRY;
use crate::server;

#[derive(Parser, Debug)]
#[command(
    name = "ferrite",
    disable_version_flag = true,
    // NOTE: the help and usage texts are written out below and clap is built without its `help`
    // and `usage` features, which would generate them (README, Sizes). A new flag or command
    // goes into HELP too; a test checks that every one is there.
    override_help = HELP,
    override_usage = USAGE
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Corefile or RON configuration to load
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
    #[arg(long, global = true)]
    plugins: bool,
    /// Print the version and exit
    #[arg(long, global = true)]
    version: bool,
}

/// The commands. Each one's `--help` is the whole command line's: it is short.
#[derive(Subcommand, Debug, PartialEq, Eq)]
enum Cmd {
    /// Serve DNS (the default)
    #[command(override_help = HELP, override_usage = "ferrite run [OPTIONS]")]
    Run,
    /// Validate a configuration without serving it
    #[command(override_help = HELP, override_usage = "ferrite check [OPTIONS] <FILE>")]
    Check { file: PathBuf },
    /// Print a Corefile as RON
    #[command(override_help = HELP, override_usage = "ferrite convert [OPTIONS] <FILE>")]
    Convert { file: PathBuf },
    /// List the compiled-in plugins in execution order
    #[command(override_help = HELP, override_usage = "ferrite plugins")]
    Plugins,
}

const USAGE: &str = "ferrite [OPTIONS] [COMMAND]";

const HELP: &str = "A DNS server in the family of CoreDNS

Usage: ferrite [OPTIONS] [COMMAND]

Commands:
  run           Serve DNS (the default)
  check FILE    Validate a configuration without serving it
  convert FILE  Print a Corefile as RON
  plugins       List the compiled-in plugins in execution order
  help          Print this message

Options:
  -c, -conf FILE      Corefile or RON configuration to load (default: ./Corefile if present, else `.:53 { whoami log }`)
      -dns.port PORT  Default port for server blocks that name none [default: 53]
      -quiet          Print no initialization output
      -pidfile FILE   Write the process ID to this file
      -plugins        List the compiled-in plugins and exit
      -version        Print the version and exit
  -h, -help           Print help

Long options take one dash, as CoreDNS's do, or two: -conf FILE, --conf=FILE.";

/// CoreDNS's flags take one dash (Go's flag package); clap wants two for long names.
const GO_FLAGS: &[&str] = &["conf", "dns.port", "plugins", "version", "quiet", "pidfile", "help"];

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
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(a: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize(std::iter::once("ferrite").chain(a.iter().copied()).map(OsString::from).collect()))
    }

    #[test]
    fn go_style_flags() {
        let n = normalize(["ferrite", "-conf", "x", "-dns.port=1053", "-c", "y", "--quiet", "-v", "-help"].map(OsString::from).to_vec());
        let n: Vec<_> = n.iter().map(|s| s.to_str().expect("utf8")).collect();
        assert_eq!(n, ["ferrite", "--conf", "x", "--dns.port=1053", "-c", "y", "--quiet", "-v", "--help"]);
        let cli = parse(&["-conf", "/etc/coredns/Corefile"]).expect("kubeadm's args parse");
        assert_eq!(cli.conf.as_deref(), Some(Path::new("/etc/coredns/Corefile")));
        assert_eq!(cli.cmd, None);
    }

    #[test]
    fn parses_commands_and_flags_in_any_order() {
        // (arguments, (command, conf, dns.port, quiet, pidfile, plugins, version))
        type Want = (Option<Cmd>, Option<&'static str>, u16, bool, Option<&'static str>, bool, bool);
        let check = |f: &str| Some(Cmd::Check { file: f.into() });
        let cases: &[(&[&str], Want)] = &[
            (&[], (None, None, 53, false, None, false, false)),
            (&["run", "--conf=a", "-dns.port", "1053"], (Some(Cmd::Run), Some("a"), 1053, false, None, false, false)),
            (&["-c", "a", "-dns.port=0", "-quiet", "-pidfile", "p"], (None, Some("a"), 0, true, Some("p"), false, false)),
            (&["-cfile"], (None, Some("file"), 53, false, None, false, false)),
            (&["-conf=a"], (None, Some("a"), 53, false, None, false, false)),
            (&["check", "x.Corefile", "-dns.port", "1053"], (check("x.Corefile"), None, 1053, false, None, false, false)),
            (&["-conf", "a", "convert", "b"], (Some(Cmd::Convert { file: "b".into() }), Some("a"), 53, false, None, false, false)),
            (&["plugins"], (Some(Cmd::Plugins), None, 53, false, None, false, false)),
            (&["-plugins"], (None, None, 53, false, None, true, false)),
            (&["--version"], (None, None, 53, false, None, false, true)),
            (&["check", "x", "-version"], (check("x"), None, 53, false, None, false, true)),
            (&["check", "--", "-x"], (check("-x"), None, 53, false, None, false, false)),
        ];
        for (a, want) in cases {
            let c = parse(a).unwrap_or_else(|e| panic!("{a:?}: {e}"));
            let got = (
                c.cmd,
                c.conf.as_deref().map(|p| p.to_str().expect("utf8")),
                c.dns_port,
                c.quiet,
                c.pidfile.as_deref().map(|p| p.to_str().expect("utf8")),
                c.plugins,
                c.version,
            );
            assert_eq!(&got, want, "{a:?}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        let cases: &[(&[&str], &str)] = &[
            (&["-bogus"], "unexpected argument '-b' found"),
            (&["--bogus"], "unexpected argument '--bogus' found"),
            (&["extra"], "unrecognized subcommand 'extra'"),
            (&["check"], "required arguments were not provided"),
            (&["convert"], "required arguments were not provided"),
            (&["check", "a", "b"], "unexpected argument 'b' found"),
            (&["run", "a"], "unexpected argument 'a' found"),
            (&["-conf"], "a value is required for '--conf <FILE>'"),
            (&["-dns.port", "x"], "invalid value 'x' for '--dns.port <PORT>'"),
            (&["-dns.port", "65536"], "invalid value '65536'"),
            (&["-quiet=true"], "unexpected value 'true' for '--quiet'"),
        ];
        for (a, want) in cases {
            let Err(e) = parse(a) else { panic!("{a:?} parsed") };
            assert!(e.use_stderr(), "{a:?}: an error, exit code 2");
            let text = e.to_string();
            assert!(text.contains(want), "{a:?}: want {want:?} in {text:?}");
            assert!(text.starts_with("error: ") && text.ends_with("For more information, try '--help'.\n"), "{a:?}: {text:?}");
        }
    }

    #[test]
    fn help_in_every_spelling_is_the_written_text() {
        for a in [&["-h"][..], &["-help"], &["--help"], &["help"], &["check", "-help"], &["help", "convert"], &["-conf", "x", "-h"]] {
            let Err(e) = parse(a) else { panic!("{a:?} parsed") };
            assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{a:?}");
            assert!(!e.use_stderr(), "{a:?}: help goes to stdout, exit code 0");
            assert_eq!(e.to_string().trim_end(), HELP, "{a:?}");
        }
    }

    /// HELP is written by hand (clap's help generator is not built in): it names every flag and
    /// command clap knows.
    #[test]
    fn help_names_every_flag_and_command() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(HELP.contains(&format!(" -{long}")), "HELP lacks -{long}");
            }
            if let Some(short) = arg.get_short() {
                assert!(HELP.contains(&format!("-{short}, ")), "HELP lacks -{short}");
            }
        }
        for sub in cmd.get_subcommands() {
            assert!(HELP.contains(&format!("\n  {} ", sub.get_name())), "HELP lacks the command {}", sub.get_name());
        }
    }
}
