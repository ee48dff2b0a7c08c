use std::net::SocketAddr;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, corefile_router, query, serve_routed, setup, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "metadata",
        config: "metadata {\n    map {{.Type}} t {\n        A a\n        default REFUSED\n    }\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

/// The labels a chain ending in a TXT echo of them sees, as `label=value` pairs.
fn labels(corefile_block: &str, qname: &str, qtype: Rtype, client: &str) -> Result<Vec<String>, Rcode> {
    // template's .Meta cannot list labels; a TXT record per map label is enough here.
    let corefile = format!(
        ". {{\n{corefile_block}\n    template ANY ANY {{\n        answer \"{{{{ .Name }}}} 0 IN TXT \\\"vrf={{{{ .Meta \\\"metadata/VRF\\\" }}}}\\\" \\\"comment={{{{ .Meta \\\"metadata/comment\\\" }}}}\\\" \\\"server={{{{ .Meta \\\"metadata/server\\\" }}}}\\\"\"\n    }}\n}}\n"
    );
    let router = corefile_router(&corefile);
    let mut req = query(qname, qtype);
    req.client = SocketAddr::new(client.parse().expect("ip"), 4000);
    let reply = serve_routed(&router, &mut req).expect("a reply");
    if reply.rcode.rcode() != Rcode::NOERROR {
        return Err(reply.rcode.rcode());
    }
    let txt = reply.answer[0].to_string();
    Ok(txt.split('"').filter(|s| s.contains('=')).map(str::to_string).collect())
}

#[test]
fn readme_maps() {
    let vrf = "    metadata {\n        map {{.IP}} VRF comment {\n            127.0.0.1 VRF1 local\n            ::1 VRF2 \"local IPv6\"\n            default VRF3 default\n        }\n    }";
    assert_eq!(labels(vrf, "a.example.", Rtype::A, "127.0.0.1"), Ok(vec!["vrf=VRF1".into(), "comment=local".into(), "server=".into()]));
    assert_eq!(labels(vrf, "a.example.", Rtype::A, "::1"), Ok(vec!["vrf=VRF2".into(), "comment=local IPv6".into(), "server=".into()]));
    assert_eq!(labels(vrf, "a.example.", Rtype::A, "192.0.2.1"), Ok(vec!["vrf=VRF3".into(), "comment=default".into(), "server=".into()]));
    let by_type = "    metadata {\n        map \"{{ .Type }}\" server {\n            A 192.0.2.53\n            AAAA 192.0.2.54\n        }\n    }";
    assert_eq!(labels(by_type, "a.example.", Rtype::AAAA, "127.0.0.1").expect("answers")[2], "server=192.0.2.54");
    assert_eq!(labels(by_type, "a.example.", Rtype::PTR, "127.0.0.1").expect("answers")[2], "server=");
    let servfail = "    metadata {\n        map \"{{ .Type }}\" server port {\n            A 192.0.2.53 53\n            AAAA 192.0.2.54 53\n            default SERVFAIL\n        }\n    }";
    assert_eq!(labels(servfail, "a.example.", Rtype::A, "127.0.0.1").expect("answers")[2], "server=192.0.2.53");
    assert_eq!(labels(servfail, "a.example.", Rtype::PTR, "127.0.0.1"), Err(Rcode::SERVFAIL));
}

#[test]
fn zones_and_no_metadata_without_the_plugin() {
    let map = "{\n        map {{.Proto}}-{{.Family}} VRF {\n            udp-1 v4\n        }\n    }";
    assert_eq!(labels(&format!("    metadata example.com {map}"), "www.example.com.", Rtype::A, "10.0.0.1").expect("answers")[0], "vrf=v4");
    assert_eq!(labels(&format!("    metadata example.com {map}"), "www.example.net.", Rtype::A, "10.0.0.1").expect("answers")[0], "vrf=");
    // Without metadata, nothing is collected even if a plugin sets labels.
    let mut req = query("x.", Rtype::A);
    req.metadata.set("a/b", "c");
    assert_eq!(req.metadata.get("a/b"), None);
}

#[test]
fn rejects_bad_maps() {
    for (text, want) in [
        ("metadata {\n    map {{.IP}}\n}", "needs a source and at least one label"),
        ("metadata {\n    map {{.IP}} a\n}", "needs a block"),
        ("metadata {\n    map {{.Nope}} a {\n        x y\n    }\n}", "unsupported field"),
        ("metadata {\n    map {{.IP}} a b {\n        x y\n    }\n}", "1 value(s) for 2 label(s)"),
        ("metadata {\n    map {{.IP}} a {\n        default x\n        default y\n    }\n}", "given twice"),
        ("metadata {\n    collect all\n}", "unknown property \"collect\""),
        ("metadata a..b", "invalid zone"),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
