use std::time::Duration;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, temp_dir_for, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "hosts",
        config: "hosts /nonexistent/hosts example.net {\n    192.0.2.1 www.example.net\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

const INLINE: &str = "hosts /nonexistent/hosts {
    192.0.2.1 www.example.org web.example.org
    192.0.2.2 www.example.org
    2001:db8::1 www.example.org
    ::ffff:192.0.2.9 mapped.example.org
    fe80::1%eth0 link.example.org
    10.0.0.1 Upper.Example.ORG  # a comment
    ttl 60
}";

#[test]
fn answers_a_aaaa_ptr_and_nodata() {
    let chain = setup(INLINE, &["example.org."]).expect("sets up");
    run_cases(
        &chain,
        &[
            Case {
                qname: "www.example.org.",
                answer: &["www.example.org. 60 IN A 192.0.2.1", "www.example.org. 60 IN A 192.0.2.2"],
                ..Case::EMPTY
            },
            Case { qname: "www.example.org.", qtype: Rtype::AAAA, answer: &["www.example.org. 60 IN AAAA 2001:db8::1"], ..Case::EMPTY },
            // A known name with no data of the type asked: NOERROR, empty answer.
            Case { qname: "web.example.org.", qtype: Rtype::AAAA, ..Case::EMPTY },
            Case { qname: "web.example.org.", qtype: Rtype::MX, ..Case::EMPTY },
            Case { qname: "mapped.example.org.", answer: &["mapped.example.org. 60 IN A 192.0.2.9"], ..Case::EMPTY },
            Case { qname: "link.example.org.", qtype: Rtype::AAAA, answer: &["link.example.org. 60 IN AAAA fe80::1"], ..Case::EMPTY },
            Case { qname: "upper.example.org.", answer: &["upper.example.org. 60 IN A 10.0.0.1"], ..Case::EMPTY },
            Case {
                qname: "1.2.0.192.in-addr.arpa.",
                qtype: Rtype::PTR,
                answer: &["1.2.0.192.in-addr.arpa. 60 IN PTR www.example.org.", "1.2.0.192.in-addr.arpa. 60 IN PTR web.example.org."],
                ..Case::EMPTY
            },
            Case {
                qname: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
                qtype: Rtype::PTR,
                answer: &["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 60 IN PTR www.example.org."],
                ..Case::EMPTY
            },
            // Unknown names: SERVFAIL without fallthrough, as CoreDNS (no SOA to make NXDOMAIN with).
            Case { qname: "nope.example.org.", rcode: Rcode::SERVFAIL, ..Case::EMPTY },
        ],
    );
    let mut req = query("WWW.Example.Org.", Rtype::A);
    let reply = serve(&chain, &mut req).expect("answers");
    assert!(reply.header.aa());
    assert_eq!(reply.answer[0].owner().to_string(), "WWW.Example.Org", "the question's case is kept");
}

#[test]
fn default_ttl_no_reverse_and_zones() {
    let chain = setup("hosts /nonexistent/hosts example.org {\n    192.0.2.1 a.example.org b.example.net\n    no_reverse\n}", &["."])
        .expect("sets up");
    let rec = record_calls();
    let mut c = chain.clone();
    c.push(rec.clone());
    run_cases(&c, &[Case { qname: "a.example.org.", answer: &["a.example.org. 3600 IN A 192.0.2.1"], ..Case::EMPTY }]);
    // Out of zone, and PTR with no_reverse: the next plugin answers.
    for (name, qtype) in [("b.example.net.", Rtype::A), ("1.2.0.192.in-addr.arpa.", Rtype::PTR)] {
        let mut req = query(name, qtype);
        serve(&c, &mut req).expect("next answers");
    }
    assert_eq!(rec.count(), 2);
}

#[test]
fn fallthrough_passes_unknown_names_only() {
    let mut c = setup("hosts /nonexistent/hosts {\n    192.0.2.1 a.example.org\n    fallthrough\n}", &["."]).expect("sets up");
    let rec = record_calls();
    c.push(rec.clone());
    let mut req = query("a.example.org.", Rtype::MX);
    let r = serve(&c, &mut req).expect("nodata");
    assert!(r.answer.is_empty() && r.header.aa());
    assert_eq!(rec.count(), 0, "a known name is not passed on");
    let mut req = query("z.example.org.", Rtype::A);
    serve(&c, &mut req).expect("next answers");
    assert_eq!(rec.count(), 1);
    // Fallthrough for other zones only.
    let mut c = setup("hosts /nonexistent/hosts {\n    fallthrough example.net\n}", &["."]).expect("sets up");
    c.push(record_calls());
    let mut req = query("z.example.org.", Rtype::A);
    assert_eq!(serve(&c, &mut req).expect("servfail").rcode.rcode(), Rcode::SERVFAIL);
}

#[test]
fn reads_the_file_and_reloads_it() {
    let dir = temp_dir_for("hosts");
    let file = dir.join("hosts");
    std::fs::write(&file, "# test\n192.0.2.7 file.example.org\n").expect("write");
    let text = format!("hosts {} {{\n    192.0.2.1 inline.example.org\n    reload 50ms\n}}", file.display());
    let chain = setup(&text, &["."]).expect("sets up");
    run_cases(
        &chain,
        &[
            Case { qname: "file.example.org.", answer: &["file.example.org. IN A 192.0.2.7"], ..Case::EMPTY },
            Case { qname: "inline.example.org.", answer: &["inline.example.org. IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
    // A change in size is seen even within the file system's timestamp granularity.
    std::fs::write(&file, "192.0.2.8 file.example.org\n192.0.2.9 new.example.org\n").expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut req = query("new.example.org.", Rtype::A);
        let r = serve(&chain, &mut req).expect("answers");
        if r.rcode.rcode() == Rcode::NOERROR {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the change was not picked up");
        std::thread::sleep(Duration::from_millis(20));
    }
    run_cases(&chain, &[Case { qname: "file.example.org.", answer: &["file.example.org. IN A 192.0.2.8"], ..Case::EMPTY }]);
}

#[test]
fn rejects_bad_options() {
    for text in ["hosts {\n    ttl 0\n}", "hosts {\n    reload x\n}", "hosts {\n    bogus\n}", "hosts /etc/hosts bad..zone"] {
        assert!(setup(text, &["."]).is_err(), "{text}");
    }
}
