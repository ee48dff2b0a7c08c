use std::time::{Duration, Instant};

use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, query, run_cases, serve, setup, temp_dir_for, Case, Contract};

fn testdata() -> String {
    format!("{}/plugins/file/testdata", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn contract() {
    let config: &'static str = Box::leak(format!("auto example.org {{\n    directory {}\n}}", testdata()).into_boxed_str());
    check_contract(&Contract { name: "auto", config, passes: Some(("example.net.", Rtype::A, Class::IN)) });
}

#[test]
fn loads_matching_files_and_picks_up_new_ones() {
    let dir = temp_dir_for("auto");
    std::fs::write(dir.join("db.example.com"), "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.1\n").expect("write");
    std::fs::write(dir.join("db.broken.com"), "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A nope\n").expect("write");
    std::fs::write(dir.join("notes.txt"), "not a zone").expect("write");
    let text = format!("auto {{\n    directory {} db\\.(.*) {{1}}\n    reload 20ms\n}}", dir.display());
    let c = setup(&text, &["."]).expect("sets up");
    run_cases(
        &c,
        &[
            Case { qname: "www.example.com.", answer: &["www.example.com. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "nope.example.com.", rcode: Rcode::NXDOMAIN, authority: &["example.com. 5 IN SOA ns.example.com. h.example.com. 1 2 3 4 5"], ..Case::EMPTY },
        ],
    );
    // A broken file is not served; the next plugin (none here) gets its names.
    let mut req = query("www.broken.com.", Rtype::A);
    assert!(serve(&c, &mut req).is_err(), "no zone: falls off the chain");
    std::fs::write(dir.join("db.example.net"), "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.2\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut req = query("www.example.net.", Rtype::A);
        if serve(&c, &mut req).is_ok_and(|r| r.answer.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the new zone was not loaded");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(dir.join("db.example.com")).expect("remove");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut req = query("www.example.com.", Rtype::A);
        if serve(&c, &mut req).is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "the removed zone is still served");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn zones_limit_what_is_loaded() {
    let c = setup(&format!("auto example.org {{\n    directory {}\n}}", testdata()), &["."]).expect("sets up");
    run_cases(&c, &[Case { qname: "www.example.org.", answer: &["www.example.org. 300 IN A 192.0.2.80"], ..Case::EMPTY }]);
}

#[test]
fn rejects_bad_options() {
    for text in ["auto {\n    directory a b\n}", "auto {\n    directory a ( {1}\n}", "auto {\n    bogus\n}"] {
        assert!(setup(text, &["."]).is_err(), "{text}");
    }
}
