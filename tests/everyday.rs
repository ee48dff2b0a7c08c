//! The everyday plugins in the real binary, where the network matters: views by client address,
//! dns64 for IPv6 clients, acl drops, erratic, TCP timeouts, local, filter, and on's commands.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use domain::base::iana::{OptRcode, Rtype};

fn answers(r: &ferrite::message::Reply) -> Vec<String> {
    r.answer.iter().map(|r| r.to_string()).collect()
}

#[test]
fn views_split_by_client_address_family() {
    let f = Ferrite::start(concat!(
        ".:0 {\n    view v4 {\n        expr incidr(client_ip(), '127.0.0.0/8')\n    }\n",
        "    template IN A test {\n        answer \"test. 60 IN A 192.0.2.4\"\n    }\n}\n",
        ".:0 {\n    template IN A test {\n        answer \"test. 60 IN A 192.0.2.6\"\n    }\n}\n",
    ));
    for over_tcp in [false, true] {
        let ask = |addr, q| if over_tcp { tcp(addr, q) } else { udp(addr, q) };
        assert_eq!(answers(&ask(f.v4(), Q::new("test.", Rtype::A))), ["test. 60 IN A 192.0.2.4"]);
        assert_eq!(answers(&ask(f.v6(), Q::new("test.", Rtype::A))), ["test. 60 IN A 192.0.2.6"]);
    }
}

#[test]
fn dns64_local_and_filter_by_family() {
    let f = Ferrite::start(concat!(
        ".:0 {\n    local\n    dns64\n    filter {\n        net 127.0.0.0/8\n        immediate\n    }\n",
        "    template IN A v4only.example {\n        answer \"{{ .Name }} 60 IN A 192.0.2.33\"\n    }\n",
        "    template IN AAAA dual.example {\n        answer \"{{ .Name }} 60 IN AAAA 2001:db8::33\"\n    }\n}\n",
    ));
    // An IPv6 client gets an AAAA made from the A record.
    let r = udp(f.v6(), Q::new("v4only.example.", Rtype::AAAA));
    assert_eq!(answers(&r), ["v4only.example. 60 IN AAAA 64:ff9b::c000:221"]);
    // An IPv4 client gets none: dns64 is for IPv6 clients, and filter takes AAAA from 127/8.
    let r = udp(f.v4(), Q::new("v4only.example.", Rtype::AAAA));
    assert!(r.answer.is_empty() && r.rcode == OptRcode::NOERROR, "{r:?}");
    assert!(udp(f.v4(), Q::new("dual.example.", Rtype::AAAA)).answer.is_empty());
    assert_eq!(answers(&udp(f.v6(), Q::new("dual.example.", Rtype::AAAA))), ["dual.example. 60 IN AAAA 2001:db8::33"]);
    // local answers before anything else.
    assert_eq!(answers(&tcp(f.v6(), Q::new("localhost.", Rtype::AAAA))), ["localhost. 604800 IN AAAA ::1"]);
}

#[test]
fn acl_drop_sends_nothing_and_the_server_goes_on() {
    let f = Ferrite::start(".:0 {\n    acl {\n        drop net ::1\n    }\n    whoami\n}\n");
    let wire = Q::new("example.org.", Rtype::A).wire();
    assert!(udp_raw(f.v6(), &wire, Duration::from_millis(700)).is_none(), "dropped over UDP");
    // Over TCP the connection stays open without an answer until the client gives up.
    let mut s = TcpStream::connect(f.v6()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
    tcp_send(&mut s, &wire);
    assert!(tcp_read(&mut s).is_none());
    assert_eq!(udp(f.v4(), Q::new("example.org.", Rtype::A)).rcode, OptRcode::NOERROR);
}

#[test]
fn erratic_drops_every_second_query() {
    let f = Ferrite::start(".:0 {\n    erratic {\n        drop 2\n    }\n}\n");
    let wire = Q::new("example.org.", Rtype::A).wire();
    // The plugin's counter is shared by every worker and socket: of 4 queries, 2 are answered.
    let answered = (0..4).filter(|_| udp_raw(f.v4(), &wire, Duration::from_millis(500)).is_some()).count();
    assert_eq!(answered, 2);
    let out = run_tool("dig", &["@127.0.0.1", "-p", &f.port.to_string(), "example.org", "AAAA", "+short", "+tries=3", "+time=1"]);
    // dig retries the dropped query; the retry is answered.
    assert_eq!(out.lines().last().map(str::trim), Some("2001:db8::53"), "{out}");
}

#[test]
fn tcp_read_timeout_closes_silent_and_slow_connections() {
    let f = Ferrite::start(".:0 {\n    timeouts {\n        read 1s\n        idle 5s\n    }\n    whoami\n}\n");
    // Nothing sent: closed after the read timeout, not the idle one.
    for partial in [&[][..], &[0x00u8, 0x1d, 0x12][..]] {
        let mut s = TcpStream::connect(f.v4()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
        s.write_all(partial).expect("write");
        let t = Instant::now();
        assert!(tcp_read(&mut s).is_none());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(4), "closed after {waited:?} ({partial:?})");
    }
    // A connection that asks in time is answered.
    assert_eq!(tcp(f.v4(), Q::new("example.org.", Rtype::A)).rcode, OptRcode::NOERROR);
}

#[test]
fn on_runs_commands_at_startup_and_shutdown() {
    let dir = temp_dir("on");
    let up = dir.join("up");
    let down = dir.join("down");
    let f = Ferrite::start(&format!(
        ".:0 {{\n    on startup touch {}\n    on shutdown touch {}\n    whoami\n}}\n",
        up.display(),
        down.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !up.exists() {
        assert!(Instant::now() < deadline, "startup command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!down.exists());
    let status = std::process::Command::new("kill").args(["-TERM", &f.pid().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !down.exists() {
        assert!(Instant::now() < deadline, "shutdown command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
