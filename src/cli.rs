//! The command line: `ferrite [run] [-c FILE]`, `check`, `convert`, `plugins`, and CoreDNS's
//! single-dash flags (`-conf`, `-dns.port`, `-plugins`, `-version`, `-quiet`, `-pidfile`) so that
//! existing manifests work as they are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, Problem};
use crate::plugins::REGISTRY;
use crate::server;

/// What the command line asks for. Flags may come before or after the command.
#[derive(Debug)]
struct Cli {
    cmd: Cmd,
    /// Corefile or RON configuration to load.
    conf: Option<PathBuf>,
    /// Default port for server blocks that name none.
    dns_port: u16,
    quiet: bool,
    pidfile: Option<PathBuf>,
    plugins: bool,
    version: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Run,
    Check(PathBuf),
    Convert(PathBuf),
    Help,
}

const USAGE: &str = "Usage: ferrite [OPTIONS] [COMMAND]";

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

Long options take one dash, as CoreDNS's do, or two: -conf FILE, --conf=FILE.
";

/// CoreDNS's flags take one dash (Go's flag package); lexopt reads `-conf` as `-c onf`, so
/// they are given a second dash first.
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

/// Parses the arguments after the program's name. Written out on lexopt rather than derived
/// with clap: clap was about 250 KB of the minimal static binary (README, Sizes), for a dozen
/// flags.
fn parse(args: Vec<OsString>) -> Result<Cli, String> {
    use lexopt::prelude::*;
    let mut cli =
        Cli { cmd: Cmd::Run, conf: None, dns_port: 53, quiet: false, pidfile: None, plugins: false, version: false };
    let mut cmd: Option<String> = None;
    let mut file: Option<PathBuf> = None;
    let mut help = false;
    let mut p = lexopt::Parser::from_args(normalize(args));
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('c') | Long("conf") => cli.conf = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("dns.port") => {
                let v = p.value().map_err(|e| e.to_string())?;
                let text = v.to_string_lossy();
                cli.dns_port =
                    text.parse().map_err(|e| format!("invalid value '{text}' for '--dns.port <PORT>': {e}"))?;
            }
            Long("quiet") => cli.quiet = true,
            Long("pidfile") => cli.pidfile = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("plugins") => cli.plugins = true,
            Long("version") => cli.version = true,
            Short('h') | Long("help") => help = true,
            Value(v) if cmd.is_none() => {
                let name = v.into_string().map_err(|v| format!("unrecognized subcommand {v:?}"))?;
                if !["run", "check", "convert", "plugins", "help"].contains(&name.as_str()) {
                    return Err(format!("unrecognized subcommand '{name}'"));
                }
                cmd = Some(name);
            }
            Value(v) if file.is_none() && matches!(cmd.as_deref(), Some("check" | "convert")) => file = Some(v.into()),
            Value(v) => return Err(format!("unexpected argument '{}' found", v.to_string_lossy())),
            Short(c) => return Err(format!("unexpected argument '-{c}' found")),
            Long(l) => return Err(format!("unexpected argument '--{l}' found")),
        }
    }
    cli.cmd = match cmd.as_deref() {
        _ if help => Cmd::Help,
        None | Some("run") => Cmd::Run,
        // `plugins` is `-plugins` spelled as a command.
        Some("plugins") => {
            cli.plugins = true;
            Cmd::Run
        }
        Some("help") => Cmd::Help,
        Some(c) => {
            let file = file.ok_or_else(|| format!("{c} needs a FILE: ferrite {c} FILE"))?;
            if c == "check" {
                Cmd::Check(file)
            } else {
                Cmd::Convert(file)
            }
        }
    };
    Ok(cli)
}

/// Runs the command line; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match parse(args.into_iter().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}\n\nFor more information, try '--help'.");
            return 2;
        }
    };
    // Help first, then the flags that print and exit, then the command.
    match cli.cmd {
        Cmd::Help => {
            print!("{HELP}");
            0
        }
        _ if cli.version => {
            println!("{}", version_text());
            0
        }
        _ if cli.plugins => {
            print_plugins();
            0
        }
        Cmd::Check(ref file) => check(file, cli.dns_port),
        Cmd::Convert(ref file) => match config::load(file) {
            Ok(c) => {
                print!("{}", config::to_ron(&c));
                0
            }
            Err(p) => report(&p),
        },
        Cmd::Run => run(&cli),
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

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let n = normalize(args(&["-conf", "x", "-dns.port=1053", "-c", "y", "--quiet", "-v", "-help"]));
        let n: Vec<_> = n.iter().map(|s| s.to_str().expect("utf8")).collect();
        assert_eq!(n, ["--conf", "x", "--dns.port=1053", "-c", "y", "--quiet", "-v", "--help"]);
        let cli = parse(args(&["-conf", "/etc/coredns/Corefile"])).expect("kubeadm's args parse");
        assert_eq!(cli.conf.as_deref(), Some(Path::new("/etc/coredns/Corefile")));
        assert_eq!(cli.cmd, Cmd::Run);
    }

    #[test]
    fn parses_commands_and_flags_in_any_order() {
        // (arguments, command, conf, dns.port, quiet, pidfile, plugins, version)
        type Want = (Cmd, Option<&'static str>, u16, bool, Option<&'static str>, bool, bool);
        let cases: &[(&[&str], Want)] = &[
            (&[], (Cmd::Run, None, 53, false, None, false, false)),
            (&["run", "--conf=a", "-dns.port", "1053"], (Cmd::Run, Some("a"), 1053, false, None, false, false)),
            (&["-c", "a", "-dns.port=0", "-quiet", "-pidfile", "p"], (Cmd::Run, Some("a"), 0, true, Some("p"), false, false)),
            (&["-cfile"], (Cmd::Run, Some("file"), 53, false, None, false, false)),
            (&["check", "x.Corefile", "-dns.port", "1053"], (Cmd::Check("x.Corefile".into()), None, 1053, false, None, false, false)),
            (&["-conf", "a", "convert", "b"], (Cmd::Convert("b".into()), Some("a"), 53, false, None, false, false)),
            (&["plugins"], (Cmd::Run, None, 53, false, None, true, false)),
            (&["-plugins"], (Cmd::Run, None, 53, false, None, true, false)),
            (&["--version"], (Cmd::Run, None, 53, false, None, false, true)),
            (&["-h"], (Cmd::Help, None, 53, false, None, false, false)),
            (&["check", "-help", "x"], (Cmd::Help, None, 53, false, None, false, false)),
            (&["help"], (Cmd::Help, None, 53, false, None, false, false)),
            (&["--", "check", "-x"], (Cmd::Check("-x".into()), None, 53, false, None, false, false)),
        ];
        for (a, want) in cases {
            let c = parse(args(a)).unwrap_or_else(|e| panic!("{a:?}: {e}"));
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
            (&["check"], "check needs a FILE"),
            (&["convert"], "convert needs a FILE"),
            (&["check", "a", "b"], "unexpected argument 'b' found"),
            (&["run", "a"], "unexpected argument 'a' found"),
            (&["-conf"], "missing argument for option '--conf'"),
            (&["-dns.port", "x"], "invalid value 'x' for '--dns.port <PORT>'"),
            (&["-dns.port", "65536"], "invalid value '65536'"),
            (&["-quiet=true"], "unexpected argument for option '--quiet'"),
        ];
        for (a, want) in cases {
            let e = parse(args(a)).expect_err(&format!("{a:?}"));
            assert!(e.contains(want), "{a:?}: want {want:?} in {e:?}");
        }
    }
}
