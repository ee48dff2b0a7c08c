use std::net::IpAddr;

use super::{add, expand, target, Config, Target};
use crate::config::directive::Directive;
use crate::plugin::{ServerOptions, SetupCtx};
use crate::testing::{check_contract, setup_with_options, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "bind", config: "bind 127.0.0.1", passes: None });
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn options(text: &str) -> ServerOptions {
    let (handlers, opts) = setup_with_options(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(handlers.is_empty(), "setup only");
    opts
}

/// Sets up several `bind` directives of one block, in order.
fn block(lines: &[&str]) -> ServerOptions {
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&[], std::env::temp_dir(), &mut opts);
    for text in lines {
        let c = super::parse(&Directive::from_text(text).expect("parses")).unwrap_or_else(|e| panic!("{text}: {e}"));
        super::setup(&c, &mut ctx).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    drop(ctx);
    opts
}

#[test]
fn addresses() {
    let table: &[(&str, &[&str])] = &[
        ("bind 1.2.3.4", &["1.2.3.4"]),
        ("bind 1.2.3.4 ::5", &["1.2.3.4", "::5"]),
        ("bind ::1 1.2.3.4 ::5 127.9.9.0", &["::1", "1.2.3.4", "::5", "127.9.9.0"]),
        ("bind 1.2.3.4 1.2.3.4", &["1.2.3.4"]),
        ("bind 127.0.0.1 ::1 {\n    except ::1\n}", &["127.0.0.1"]),
    ];
    for &(text, want) in table {
        let o = options(text);
        assert_eq!(o.bind, ips(want), "{text}");
        assert_eq!(o.tcp_max_connections, ServerOptions::default().tcp_max_connections);
    }
}

#[test]
fn loopback_interface() {
    let o = options("bind lo");
    assert!(o.bind.contains(&ip("127.0.0.1")), "{:?}", o.bind);
    assert!(o.bind.iter().all(|a| a.is_loopback()), "{:?}", o.bind);
    let o = options("bind lo {\n    except 127.0.0.1\n}");
    assert!(!o.bind.contains(&ip("127.0.0.1")), "{:?}", o.bind);
}

#[test]
fn interfaces_expand_without_link_local() {
    let host = [
        (2, ip("192.0.2.2")),
        (2, ip("fd00::2")),
        (2, ip("fe80::fc:ff:fe00:1")),
        (2, ip("169.254.1.1")),
        (1, ip("127.0.0.1")),
    ];
    let fake = |a: &str| match a {
        "eth0" => Some(Target::Iface(2)),
        "empty0" => Some(Target::Iface(9)),
        _ => a.parse().ok().map(Target::Ip),
    };
    let args = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // IPv4 link-local stays (it binds without a scope), as in CoreDNS.
    assert_eq!(expand(&args(&["eth0"]), fake, &host), Ok(ips(&["192.0.2.2", "fd00::2", "169.254.1.1"])));
    assert_eq!(expand(&args(&["192.0.2.2", "eth0"]), fake, &host), Ok(ips(&["192.0.2.2", "fd00::2", "169.254.1.1"])));
    // An interface without addresses stands for none; the server then reports nothing to bind.
    assert_eq!(expand(&args(&["empty0"]), fake, &host), Ok(vec![]));
    assert!(expand(&args(&["eth9"]), fake, &host).is_err());
}

#[test]
fn except_is_per_directive() {
    // CoreDNS: `except` only removes addresses of its own `bind` line.
    let o = block(&["bind 127.0.0.1 ::1 {\n    except ::1\n}", "bind ::1"]);
    assert_eq!(o.bind, ips(&["127.0.0.1", "::1"]));
    assert!(o.except.is_empty());
    let o = block(&["bind ::1", "bind 127.0.0.1 ::1 {\n    except ::1\n}"]);
    assert_eq!(o.bind, ips(&["::1", "127.0.0.1"]));
    assert!(o.except.is_empty());
    // What stays excluded is recorded, and the server's bind-minus-except is the same list.
    let o = block(&["bind 127.0.0.1 127.0.0.2 {\n    except 127.0.0.2\n}", "bind 127.0.0.3"]);
    assert_eq!(o.bind, ips(&["127.0.0.1", "127.0.0.3"]));
    assert_eq!(o.except, ips(&["127.0.0.2"]));
}

#[test]
fn add_keeps_bind_and_except_disjoint() {
    let mut o = ServerOptions::default();
    add(&mut o, &ips(&["10.0.0.1", "10.0.0.2"]), &ips(&["10.0.0.2", "10.0.0.9"]));
    assert_eq!((o.bind.clone(), o.except.clone()), (ips(&["10.0.0.1"]), ips(&["10.0.0.2", "10.0.0.9"])));
    add(&mut o, &ips(&["10.0.0.2"]), &[]);
    assert_eq!((o.bind.clone(), o.except.clone()), (ips(&["10.0.0.1", "10.0.0.2"]), ips(&["10.0.0.9"])));
}

#[test]
fn errors_have_locations() {
    let table: &[(&str, &str)] = &[
        ("bind", "at least one address or interface name is expected"),
        ("bind 1.2.3.invalid", "not a valid IP address or interface name: \"1.2.3.invalid\""),
        ("bind ::1 noone", "not a valid IP address or interface name: \"noone\""),
        ("bind 1.2.3.4 {\n    except\n}", "needs at least 1 argument"),
        ("bind 1.2.3.4 {\n    except nowhere0\n}", "not a valid IP address or interface name: \"nowhere0\""),
        ("bind ::1 {\n    unknown ::1\n}", "unknown property \"unknown\""),
        ("bind fe80::1", "cannot bind link-local address fe80::1"),
        ("bind fe80::1%lo", "scoped IPv6 addresses are not supported"),
    ];
    for &(text, want) in table {
        let e = setup_with_options(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
    // A link-local address may be excluded, though: that binds nothing.
    assert!(setup_with_options("bind lo {\n    except fe80::1\n}", &["."]).is_ok());
}

#[test]
fn ron_is_checked_at_setup() {
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&[], std::env::temp_dir(), &mut opts);
    for bad in [
        Config { addresses: vec![], except: vec![] },
        Config { addresses: vec!["bogus".into()], except: vec![] },
        Config { addresses: vec!["fe80::1".into()], except: vec![] },
        Config { addresses: vec!["::1".into()], except: vec!["bogus".into()] },
    ] {
        assert!(super::setup(&bad, &mut ctx).is_err(), "{bad:?}");
    }
    assert_eq!(target("127.0.0.1"), Some(Target::Ip(ip("127.0.0.1"))));
    assert!(matches!(target("lo"), Some(Target::Iface(_))));
}
