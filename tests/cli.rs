//! The command line: check, convert, plugins, version, CoreDNS's flags, the default config.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use domain::base::iana::{OptRcode, Rtype};

fn ferrite(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn corefiles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corefiles")
}

#[test]
fn shared_corefiles_pass_check_syntactically() {
    let mut n = 0;
    for entry in std::fs::read_dir(corefiles()).expect("shared/corefiles exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "Corefile") {
            continue;
        }
        n += 1;
        let (code, out, err) = ferrite(&["check", path.to_str().expect("utf8")]);
        // 0: servable; 2: well-formed, but names plugins or transports this build lacks.
        assert!(code == 0 || code == 2, "{}: exit {code}\n{out}\n{err}", path.display());
        assert!(err.is_empty(), "{}: errors reported:\n{err}", path.display());
        if code == 2 {
            assert!(out.contains("syntax ok"), "{out}");
            for line in out.lines().skip(1) {
                assert!(
                    line.contains("does not provide yet") || line.contains("not built yet") || line.contains("not compiled in"),
                    "{}: unexpected problem {line}",
                    path.display()
                );
            }
        }
    }
    assert!(n >= 4, "expected the shared Corefiles, found {n}");
}

/// Breaks a shared Corefile in a known place and expects the exact location back.
#[test]
fn broken_variants_name_file_line_and_column() {
    let dir = temp_dir("broken");
    let original = std::fs::read_to_string(corefiles().join("kubeadm.Corefile")).expect("read");
    let cases: Vec<(String, &str)> = vec![
        // The last closing brace removed: the block's '{' on line 1 is never closed.
        (original.trim_end().trim_end_matches('}').to_string(), ":1:6: this '{' is never closed"),
        // An unterminated quote on line 2.
        (original.replacen("    errors\n", "    errors \"oops\n", 1), ":2:12: unterminated quoted string"),
        // A stray closing brace after the block.
        (format!("{original}}}\n"), ":24:1: unexpected '}'"),
        // A misspelled plugin.
        (original.replacen("    errors\n", "    erors\n", 1), ":2:5: unknown plugin \"erors\""),
        // A bad port in the key.
        (original.replacen(".:53", ".:99999", 1), ":1:1: invalid port \"99999\""),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("broken{i}.Corefile"));
        std::fs::write(&path, text).expect("write");
        let (code, _out, err) = ferrite(&["check", path.to_str().expect("utf8")]);
        assert_eq!(code, 1, "case {i}: {err}");
        let want = format!("{}{want}", path.display());
        assert!(err.contains(&want), "case {i}: want {want:?} in\n{err}");
    }
}

#[test]
fn plugin_with_bad_arguments_names_plugin_and_place() {
    let dir = temp_dir("badarg");
    let path = dir.join("Corefile");
    std::fs::write(&path, ".:53 {\n    whoami extra\n}\n").expect("write");
    let (code, _, err) = ferrite(&["check", path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{}:2:12: plugin/whoami: unexpected argument \"extra\"", path.display())), "{err}");
}

#[test]
fn plugins_and_version() {
    let (code, out, _) = ferrite(&["-plugins"]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = out.lines().collect();
    let (_, out2, _) = ferrite(&["plugins"]);
    assert_eq!(out, out2);
    // Execution order: the order of plugin.cfg.
    let cfg = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin.cfg")).expect("plugin.cfg");
    let order: Vec<&str> = cfg.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
    let mut pos = 0;
    for p in &listed {
        let i = order.iter().position(|o| o == p).expect("listed plugin is in plugin.cfg");
        assert!(i >= pos, "{p} out of order");
        pos = i;
    }
    assert!(listed.contains(&"whoami"));
    let (code, out, _) = ferrite(&["-version"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], concat!("ferrite-", env!("CARGO_PKG_VERSION")), "{out}");
    // CoreDNS's second line: OS/ARCH, toolchain, commit.
    assert!(lines[1].starts_with(&format!("{}/{}, rustc ", std::env::consts::OS, std::env::consts::ARCH)), "{out}");
    let field = |key: &str| {
        lines.iter().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key:?} line in\n{out}")).to_string()
    };
    assert!(field("rustc: ").starts_with("rustc 1."), "{out}");
    assert!(field("target: ").contains("panic=unwind"), "{out}");
    assert_eq!(field("plugins: "), listed.join(" "), "{out}");
    let commit = field("commit: ");
    assert!(lines[1].ends_with(&format!(", {commit}")), "{out}");
    let git = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    if let Some(g) = git.ok().filter(|g| g.status.success() && std::env::var_os("FERRITE_COMMIT").is_none()) {
        assert_eq!(commit, String::from_utf8_lossy(&g.stdout).trim(), "the commit built in is HEAD's");
    }
}

/// Help in CoreDNS's spelling and clap's, and what a wrong command line gets: exit code, stream.
#[test]
fn help_and_usage_errors() {
    for args in [&["-help"][..], &["--help"], &["-h"], &["help"], &["check", "-help"]] {
        let (code, out, err) = ferrite(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with("A DNS server in the family of CoreDNS\n\nUsage: ferrite [OPTIONS] [COMMAND]\n"), "{args:?}: {out}");
        assert!(out.contains("-dns.port PORT"), "{args:?}: {out}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    for (args, want) in [
        (&["-bogus"][..], "error: unexpected argument '-b' found"),
        (&["-dns.port", "x"], "error: invalid value 'x' for '--dns.port <PORT>'"),
        (&["check"], "Usage: ferrite check [OPTIONS] <FILE>"),
        (&["nosuch"], "error: unrecognized subcommand 'nosuch'"),
    ] {
        let (code, out, err) = ferrite(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(want) && err.contains("try '--help'"), "{args:?}: want {want:?} in {err}");
    }
}

#[test]
fn convert_prints_ron_that_check_accepts() {
    let dir = temp_dir("convert");
    let core = dir.join("Corefile");
    std::fs::write(&core, "example.org:1053 {\n    whoami\n}\n").expect("write");
    let (code, ron, err) = ferrite(&["convert", core.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(ron.contains("\"example.org:1053\""), "{ron}");
    assert!(ron.contains("whoami"), "{ron}");
    let ron_path = dir.join("config.ron");
    std::fs::write(&ron_path, &ron).expect("write");
    let (code, out, err) = ferrite(&["check", ron_path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    // A RON error has a location too.
    std::fs::write(&ron_path, "(servers: [(keys: [\".\"], plugins: [nosuch(())])])").expect("write");
    let (code, _, err) = ferrite(&["check", ron_path.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{}:1:", ron_path.display())), "{err}");
}

#[test]
fn serves_a_ron_config() {
    let dir = temp_dir("ron");
    let ron_path = dir.join("config.ron");
    std::fs::write(&ron_path, "(servers: [(keys: [\".:0\"], plugins: [whoami(())])])").expect("write");
    let f = Ferrite::spawn(&["-conf".into(), ron_path.display().to_string()], &dir);
    let r = udp(f.v4(), Q::new("ron.example.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert_eq!(r.additional.len(), 2);
}

#[test]
fn no_config_serves_the_default_on_dns_port() {
    // No -conf and no ./Corefile: `.:PORT { whoami log }`.
    let dir = temp_dir("default");
    let f = Ferrite::spawn(&["-dns.port".into(), "0".into()], &dir);
    let r = udp(f.v4(), Q::new("whoami.example.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert_eq!(r.additional[0].to_string(), "whoami.example. 0 IN A 127.0.0.1");
}

#[test]
fn pidfile_is_written_and_quiet_prints_nothing() {
    let dir = temp_dir("pid");
    let pidfile = dir.join("ferrite.pid");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, ".:0 {\n    whoami\n}\n").expect("write");
    let stdout = std::fs::File::create(dir.join("stdout")).expect("create");
    let mut child = Command::new(BIN)
        .args(["-conf", conf.to_str().expect("utf8"), "-pidfile", pidfile.to_str().expect("utf8"), "-quiet"])
        .stdout(stdout)
        .spawn()
        .expect("starts");
    // The pidfile is written once the listeners are bound; poll for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no pidfile");
        std::thread::yield_now();
    };
    assert_eq!(pid, child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(std::fs::read_to_string(dir.join("stdout")).expect("read"), "", "-quiet prints nothing at start-up");
}

/// features.Corefile passes `ferrite check` except for what other builds provide: every problem
/// reported names one of file, hosts, forward, cache, loadbalance or tls.
#[test]
fn features_corefile_problems_are_only_other_plugins() {
    let path = corefiles().join("features.Corefile");
    let (code, out, err) = ferrite(&["check", path.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.is_empty(), "{err}");
    let problems: Vec<&str> = out.lines().skip(1).collect();
    assert!(!problems.is_empty());
    for p in problems {
        let named = ["file", "hosts", "forward", "cache", "loadbalance", "tls"].iter().any(|n| p.contains(&format!("plugin \"{n}\"")));
        assert!(named, "unexpected problem: {p}");
    }
}
