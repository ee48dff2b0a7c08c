use std::sync::Mutex;

use domain::base::iana::{Class, Rtype};

use super::*;
use crate::testing::{check_contract, query, record_calls, serve, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "loop", config: "loop", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn recording() -> (Arc<Loop>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let l = Arc::new(Loop::new(Name::root_bytes(), Arc::new(move |m: &str| s.lock().expect("lock").push(m.to_string()))));
    (l, seen)
}

#[test]
fn the_probe_seen_three_times_is_a_loop() {
    let (l, found) = recording();
    let rec = record_calls();
    let chain: Vec<Arc<dyn Plugin>> = vec![l.clone(), rec.clone()];
    let probe = l.qname.fmt_with_dot().to_string();
    for i in 1..=3 {
        serve(&chain, &mut query(&probe, Rtype::HINFO)).expect("passes on");
        assert_eq!(l.seen(), i);
    }
    let msgs = found.lock().expect("lock").clone();
    assert_eq!(msgs.len(), 1, "the third sighting is the loop");
    assert!(msgs[0].contains("loop (") && msgs[0].contains("detected for zone \".\""), "{}", msgs[0]);
    assert!(msgs[0].contains("resolv.conf"), "names the likely cause: {}", msgs[0]);
    assert_eq!(rec.count(), 3);
}

#[test]
fn other_queries_pass_and_are_not_counted() {
    let (l, found) = recording();
    let chain: Vec<Arc<dyn Plugin>> = vec![l.clone(), record_calls()];
    let probe = l.qname.fmt_with_dot().to_string();
    for _ in 0..5 {
        serve(&chain, &mut query("other.example.", Rtype::HINFO)).expect("passes on");
        serve(&chain, &mut query(&probe, Rtype::A)).expect("passes on");
    }
    assert_eq!(l.seen(), 0);
    assert!(found.lock().expect("lock").is_empty());
}

#[test]
fn an_answered_probe_turns_detection_off() {
    // A server that answers anything: the probe comes back once, then the plugin steps aside.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = sock.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            buf[2] |= 0x80;
            let _ = sock.send_to(&buf[..n], peer);
        }
    });
    let (l, found) = recording();
    l.run_probe(addr);
    assert!(l.disabled());
    let chain: Vec<Arc<dyn Plugin>> = vec![l.clone(), record_calls()];
    let probe = l.qname.fmt_with_dot().to_string();
    for _ in 0..4 {
        serve(&chain, &mut query(&probe, Rtype::HINFO)).expect("passes on");
    }
    assert!(found.lock().expect("lock").is_empty(), "disabled after start-up");
}

#[test]
fn takes_no_arguments() {
    assert!(setup("loop now", &["."]).is_err());
    let chain = setup("loop", &["example.org."]).expect("sets up");
    assert_eq!(chain.len(), 1);
}
