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

fn load_for_run(cli: &Cli) -> Result<Config, Vec<Problem>> {
    if let Some(path) = &cli.conf {
        return config::load(path);
    }
    if Path::new("Corefile").is_file() {
        return config::load(Path::new("Corefile"));
    }
    config::from_corefile_str(&default_corefile(cli.dns_port), "<default>")
}

fn run(cli: &Cli) -> i32 {
    crate::logging::init(false);
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    let cfg = match load_for_run(cli) {
        Ok(c) => c,
        Err(p) => return report(&p),
    };
    let specs = match server::setup::build(&cfg, cli.dns_port) {
        Ok(s) => s,
        Err(p) => return report(&p),
    };
    let workers = server::worker_count();
    let bound = match server::bind(specs, workers) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if !cli.quiet {
        for b in &bound {
            println!("listening on {}://{} zones: {}", b.scheme.as_str(), b.addr, b.zones().join(" "));
        }
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
    if let Err(e) = server::start(bound, workers) {
        eprintln!("cannot start workers: {e}");
        return 1;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime builds");
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be caught");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be caught");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    if let Some(p) = &cli.pidfile {
        let _ = std::fs::remove_file(p);
    }
    0
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
