use std::sync::Arc;

use domain::base::iana::{Class, Rtype};

use crate::plugin::Plugin;
use crate::testing::{check_contract, query, record_calls, serve, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "header",
        config: "header {\n    response set ra\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

/// (flags of the reply, flags the next plugin saw) as `aa ra rd cd ad` letters.
fn flags(text: &str, rd: bool, cd: bool) -> (String, String) {
    let rec = record_calls();
    let mut chain: Vec<Arc<dyn Plugin>> = setup(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    chain.push(rec.clone());
    let mut req = query("example.org.", Rtype::A);
    req.header.set_rd(rd);
    req.header.set_cd(cd);
    let reply = serve(&chain, &mut req).expect("answers");
    let show = |h: &domain::base::Header| {
        [(h.aa(), "aa"), (h.ra(), "ra"), (h.rd(), "rd"), (h.cd(), "cd"), (h.ad(), "ad")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let seen = rec.last.lock().expect("lock").as_ref().expect("called").header;
    assert_eq!((req.header.rd(), req.header.cd()), (rd, cd), "the request is restored");
    (show(&reply.header), show(&seen))
}

#[test]
fn readme_examples_and_order() {
    let cases: &[(&str, bool, bool, &str, &str)] = &[
        ("header {\n    response set ra\n}", true, false, "ra rd", "rd"),
        ("header {\n    set ra aa\n    clear rd\n}", true, false, "aa ra", "rd"),
        ("header {\n    query clear cd\n}", true, true, "rd cd", "rd"),
        ("header {\n    query set cd\n    query clear rd\n}", true, false, "rd", "cd"),
        // The last rule about a flag wins.
        ("header {\n    set ra\n    clear ra\n}", false, false, "", ""),
        ("header {\n    clear ad\n    response set ad\n}", false, false, "ad", ""),
        ("header {\n    query clear rd\n    response clear rd\n}", true, false, "", ""),
    ];
    for (text, rd, cd, reply, seen) in cases {
        assert_eq!(flags(text, *rd, *cd), (reply.to_string(), seen.to_string()), "{text}");
    }
}

#[test]
fn rejects_bad_rules() {
    for (text, want) in [
        ("header", "at least one rule"),
        ("header x {\n    set ra\n}", "unexpected argument"),
        ("header {\n    set\n}", "at least one flag"),
        ("header {\n    query\n}", "expected set or clear"),
        ("header {\n    toggle ra\n}", "unknown action \"toggle\""),
        ("header {\n    set tc\n}", "unknown flag \"tc\""),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
