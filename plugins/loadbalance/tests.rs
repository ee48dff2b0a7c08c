use std::collections::HashMap;
use std::time::Duration;

use domain::base::iana::{Class, Rcode, Rtype};

use super::*;
use crate::testing::{check_contract, fixed_reply, query, rcode_reply, rr, serve, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "loadbalance", config: "loadbalance", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn texts(rs: &[Rr]) -> Vec<String> {
    rs.iter().map(|r| r.to_string()).collect()
}

const ANSWER: &[&str] = &[
    "www.example.org. 300 IN CNAME web.example.org.",
    "web.example.org. 300 IN A 192.0.2.1",
    "web.example.org. 300 IN A 192.0.2.2",
    "web.example.org. 300 IN A 192.0.2.3",
    "web.example.org. 300 IN A 192.0.2.4",
    "web.example.org. 300 IN TXT \"t\"",
    "web.example.org. 300 IN MX 10 mx1.example.org.",
    "web.example.org. 300 IN MX 20 mx2.example.org.",
];

#[test]
fn round_robin_keeps_cnames_first_and_shuffles_addresses() {
    let mut chain = setup("loadbalance round_robin", &["."]).expect("sets up");
    chain.push(fixed_reply(ANSWER));
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..200 {
        let r = serve(&chain, &mut query("www.example.org.", Rtype::A)).expect("answer");
        let t = texts(&r.answer);
        assert_eq!(t.len(), ANSWER.len());
        assert!(t[0].contains("CNAME"), "{t:?}");
        assert!(t[1].contains("TXT"), "other records before addresses: {t:?}");
        assert!(t[2..6].iter().all(|x| x.contains(" A ")), "{t:?}");
        assert!(t[6..].iter().all(|x| x.contains(" MX ")), "{t:?}");
        firsts.insert(t[2].clone());
    }
    assert_eq!(firsts.len(), 4, "every address comes first sometimes");
}

#[test]
fn errors_are_left_alone_and_limit_answers_trims() {
    let mut chain = setup("loadbalance", &["."]).expect("sets up");
    chain.push(rcode_reply(Rcode::NXDOMAIN));
    let r = serve(&chain, &mut query("x.example.org.", Rtype::A)).expect("answer");
    assert_eq!(r.rcode.rcode(), Rcode::NXDOMAIN);
    let mut chain = setup("loadbalance round_robin {\n limit_answers 2\n}", &["."]).expect("sets up");
    chain.push(fixed_reply(ANSWER));
    let r = serve(&chain, &mut query("www.example.org.", Rtype::A)).expect("answer");
    assert_eq!(r.answer.len(), 2);
    assert!(r.answer[0].to_string().contains("CNAME"));
}

#[test]
fn weights_pick_the_first_address_in_proportion() {
    let w = parse_weights("# weights\nweb.example.org\n192.0.2.1 3\n192.0.2.2 1\n\n192.0.2.3 2\n").expect("parses");
    let ws: &HashMap<IpAddr, u8> = &w["web.example.org."];
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut rng = rand::rng();
    for _ in 0..6000 {
        let mut recs: Vec<Rr> = ANSWER[1..5].iter().map(|t| rr(t)).collect();
        weighted(&mut recs, ws, &mut rng);
        *counts.entry(recs[0].to_string()).or_default() += 1;
    }
    let c = |ip: &str| counts.get(&format!("web.example.org. 300 IN A {ip}")).copied().unwrap_or(0);
    // Weights 3:1:2:1 (the unlisted address weighs 1): 6000 draws, expected 2571/857/1714/857.
    assert!((2300..2850).contains(&c("192.0.2.1")), "{counts:?}");
    assert!((700..1050).contains(&c("192.0.2.2")), "{counts:?}");
    assert!((1500..1950).contains(&c("192.0.2.3")), "{counts:?}");
    assert!((700..1050).contains(&c("192.0.2.4")), "{counts:?}");
}

#[test]
fn weighted_setup_reads_the_file_and_bad_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("ferrite-lb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("weights");
    std::fs::write(&good, "web.example.org\n192.0.2.1 255\n").expect("write");
    let mut chain = setup(&format!("loadbalance weighted {} {{\n reload 0s\n}}", good.display()), &["."]).expect("sets up");
    chain.push(fixed_reply(&ANSWER[1..5]));
    let mut first = 0;
    for _ in 0..20 {
        let r = serve(&chain, &mut query("web.example.org.", Rtype::A)).expect("answer");
        // 255 against three of weight 1: first in 99% of answers.
        first += usize::from(r.answer[0].to_string().ends_with("A 192.0.2.1"));
        assert_eq!(r.answer.len(), 4);
    }
    assert!(first >= 15, "{first} of 20");
    let bad = dir.join("bad");
    std::fs::write(&bad, "192.0.2.1 3\n").expect("write");
    let e = setup(&format!("loadbalance weighted {}", bad.display()), &["."]).map(|_| ()).expect_err("address before name");
    assert!(e.to_string().contains("before any name"), "{e}");
    std::fs::write(&bad, "web.example.org\n192.0.2.1 0\n").expect("write");
    assert!(setup(&format!("loadbalance weighted {}", bad.display()), &["."]).is_err(), "weight 0");
    let e = setup("loadbalance fastest", &["."]).map(|_| ()).expect_err("unknown policy");
    assert!(e.to_string().contains("unknown policy"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_weight_file_is_read_again() {
    let dir = std::env::temp_dir().join(format!("ferrite-lb-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("weights");
    std::fs::write(&file, "web.example.org\n192.0.2.1 255\n").expect("write");
    let mut chain = setup(&format!("loadbalance weighted {} {{\n reload 50ms\n}}", file.display()), &["."]).expect("sets up");
    chain.push(fixed_reply(&ANSWER[1..5]));
    let first = |chain: &[Arc<dyn Plugin>]| {
        (0..20)
            .filter(|_| {
                let r = serve(chain, &mut query("web.example.org.", Rtype::A)).expect("answer");
                r.answer[0].to_string().ends_with("A 192.0.2.4")
            })
            .count()
    };
    assert!(first(&chain) <= 3, "192.0.2.4 weighs 1 against 255");
    // A different modification time and content: the new weights are used (bounded wait).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "web.example.org\n192.0.2.4 255\n").expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while first(&chain) < 15 {
        assert!(std::time::Instant::now() < deadline, "the new weights were never read");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
