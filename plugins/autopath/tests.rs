use std::sync::{Arc, OnceLock};

use domain::base::iana::{Class, Rcode, Rtype};

use super::{AutoPath, Source, SUCCESS_TOTAL};
use crate::plugin::{AutoPath as Provider, CounterVec, Plugin, Request};
use crate::testing::{check_contract, run_cases, setup, zone, Case, Contract};

#[test]
fn contract() {
    // Without a kubernetes plugin in the block, every query passes unchanged.
    check_contract(&Contract { name: "autopath", config: "autopath @kubernetes", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

#[test]
fn syntax() {
    assert!(setup("autopath", &["."]).is_err(), "a resolv-conf is required");
    assert!(setup("autopath @", &["."]).is_err());
    assert!(setup("autopath /no/such/resolv.conf", &["."]).err().is_some_and(|e| e.to_string().contains("failed to parse")));
    assert!(setup("autopath {\n    x\n}", &["."]).is_err());
    assert!(setup("autopath cluster.local @kubernetes", &["."]).is_ok());
}

/// A search path as a provider gives it: the same for every client.
struct Fixed(Vec<String>);

impl Provider for Fixed {
    fn search_path(&self, _: &Request) -> Option<Vec<String>> {
        Some(self.0.clone())
    }
}

fn chain(search: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let slot = Arc::new(OnceLock::new());
    let _ = slot.set(Arc::new(Fixed(search.iter().map(|s| s.to_string()).collect())) as Arc<dyn Provider>);
    vec![
        Arc::new(AutoPath { zones: vec![".".into()], source: Source::Plugin(slot), success: CounterVec::new(SUCCESS_TOTAL, &["server"]) }),
        zone(&[
            "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1",
            "other.svc.cluster.local. 5 IN A 10.0.0.2",
            "example.org. 60 IN A 192.0.2.1",
            "example.org. 60 IN MX 10 mx.example.org.",
            "nodata.search.test. 60 IN TXT \"x\"",
        ]),
    ]
}

const PATH: &[&str] = &["testns.svc.cluster.local.", "svc.cluster.local.", "cluster.local.", "search.test.", ""];

#[test]
fn walks_the_search_path_and_answers_with_a_cname() {
    run_cases(
        &chain(PATH),
        &[
            // Found with the first element: the answer as it is, no CNAME.
            Case { qname: "svc1.testns.svc.cluster.local.", answer: &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"], ..Case::EMPTY },
            // Found with the bare name, the last element.
            Case {
                qname: "example.org.testns.svc.cluster.local.",
                answer: &["example.org.testns.svc.cluster.local. 60 IN CNAME example.org.", "example.org. 60 IN A 192.0.2.1"],
                ..Case::EMPTY
            },
            Case {
                qname: "example.org.testns.svc.cluster.local.",
                qtype: Rtype::MX,
                answer: &["example.org.testns.svc.cluster.local. 60 IN CNAME example.org.", "example.org. 60 IN MX 10 mx.example.org."],
                ..Case::EMPTY
            },
            // Found with the second element.
            Case {
                qname: "other.testns.svc.cluster.local.",
                answer: &["other.testns.svc.cluster.local. 5 IN CNAME other.svc.cluster.local.", "other.svc.cluster.local. 5 IN A 10.0.0.2"],
                ..Case::EMPTY
            },
            // NODATA (the name exists) ends the walk: no answer, so no CNAME either.
            Case { qname: "nodata.testns.svc.cluster.local.", ..Case::EMPTY },
            // Nothing anywhere: the first reply, NXDOMAIN, and the client walks its list.
            Case { qname: "nothing.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
            // Not in the first element of the path: passed unchanged.
            Case { qname: "other.svc.cluster.local.", answer: &["other.svc.cluster.local. 5 IN A 10.0.0.2"], ..Case::EMPTY },
            Case { qname: "example.org.", answer: &["example.org. 60 IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn the_question_is_the_one_asked() {
    let c = chain(PATH);
    let mut req = crate::testing::query("Example.Org.testns.svc.cluster.local.", Rtype::A);
    let r = crate::testing::serve(&c, &mut req).expect("answers");
    let q = r.question.expect("a question");
    assert_eq!(q.qname().to_string(), "Example.Org.testns.svc.cluster.local");
    assert_eq!(r.answer[0].owner().to_string(), "Example.Org.testns.svc.cluster.local");
}

#[test]
fn resolv_conf_form() {
    let dir = crate::testing::temp_dir_for("autopath");
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "nameserver 127.0.0.1\nsearch first.test second.test\noptions ndots:5\n").expect("write");
    let mut c = setup(&format!("autopath {}", path.display()), &["."]).expect("sets up");
    c.push(zone(&["www.second.test. 60 IN A 192.0.2.7"]));
    run_cases(
        &c,
        &[Case {
            qname: "www.first.test.",
            answer: &["www.first.test. 60 IN CNAME www.second.test.", "www.second.test. 60 IN A 192.0.2.7"],
            ..Case::EMPTY
        }],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn resolv_conf_search_list() {
    use crate::plugin::resolv_conf_search;
    assert_eq!(resolv_conf_search("domain a.test\nsearch B.test c.test.\n"), ["b.test.", "c.test."]);
    assert_eq!(resolv_conf_search("search x.test\ndomain y.test\n"), ["y.test."]);
    assert!(resolv_conf_search("nameserver 127.0.0.1\n").is_empty());
}
