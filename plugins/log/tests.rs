use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::rdata::dnssec::Timestamp;

use super::*;
use crate::message::{Edns, Proto, Reply, Request};
use crate::plugin::{BoxFuture, Directive, Next, Plugin, ServeError};
use crate::testing::{check_contract, fail_with, query, record_calls, rr, serve, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "log", config: "log", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn parsed(text: &str) -> Result<Config, SetupError> {
    parse(&Directive::from_text(text)?)
}

#[test]
fn parses_corefile_syntax() {
    let common = || Config::default();
    let cases: &[(&str, Config)] = &[
        ("log", common()),
        ("log example.org", Config { names: vec!["example.org.".into()], ..common() }),
        (
            "log example.org. example.net",
            Config { names: vec!["example.org.".into(), "example.net.".into()], ..common() },
        ),
        ("log . {combined}", Config { format: "{combined}".into(), ..common() }),
        ("log \"{name} {type}\"", Config { format: "{name} {type}".into(), ..common() }),
        (
            "log . \"{proto} Request: {name} {type} {>id}\"",
            Config { format: "{proto} Request: {name} {type} {>id}".into(), ..common() },
        ),
        (
            "log example.org {\n class denial error\n class denial\n}",
            Config {
                names: vec!["example.org.".into()],
                classes: vec![ResponseClass::Denial, ResponseClass::Error],
                ..common()
            },
        ),
        ("log {\n minDuration\n}", Config { min_duration: Some("100ms".into()), ..common() }),
        (
            "log {\n class error\n minDuration 1s\n}",
            Config { classes: vec![ResponseClass::Error], min_duration: Some("1s".into()), ..common() },
        ),
        ("log {\n format json\n}", Config { json: true, ..common() }),
        ("log {\n format text\n}", common()),
    ];
    for (text, want) in cases {
        let got = parsed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(&got, want, "{text:?}");
    }
}

#[test]
fn rejects_bad_config_with_its_location() {
    // (directive, line, column, message part). The directive's first line is line 2 of the
    // Corefile that Directive::from_text builds around it.
    let cases = [
        ("log {\n    class bogus\n}", 3, 11, "invalid class \"bogus\""),
        ("log {\n    class\n}", 3, 5, "needs at least 1 argument"),
        ("log {\n    minDuration soon\n}", 3, 17, "expected a duration"),
        ("log {\n    minDuration 1s 2s\n}", 3, 20, "takes at most 1"),
        ("log {\n    format xml\n}", 3, 12, "unknown output format \"xml\""),
        ("log {\n    nosuch 1\n}", 3, 5, "unknown property \"nosuch\""),
        ("log a..b", 2, 5, "invalid zone \"a..b\""),
    ];
    for (text, line, col, msg) in cases {
        let e = parsed(text).expect_err(text);
        let loc = e.loc.as_ref().unwrap_or_else(|| panic!("{text:?}: no location in {e}"));
        assert_eq!((loc.line, loc.col), (line, col), "{text:?}: {e}");
        assert!(e.message.contains(msg), "{text:?}: {e}");
    }
}

#[test]
fn ron_config_is_checked_at_setup() {
    let bad = Config { min_duration: Some("soon".into()), ..Config::default() };
    assert!(Log::new(&bad, Arc::new(|_: &str| {})).is_err());
    let bad = Config { names: vec!["a..b".into()], ..Config::default() };
    assert!(Log::new(&bad, Arc::new(|_: &str| {})).is_err());
}

#[test]
fn parses_formats_into_parts() {
    use Part::*;
    let lit = |s: &str| Literal(s.to_string());
    let cases: Vec<(&str, Vec<Part>)> = vec![
        ("{name}", vec![Name]),
        ("A {type} B", vec![lit("A "), Type, lit(" B")]),
        // Unknown labels and stray braces stay literal text, as in CoreDNS's replacer.
        ("{foo} {name}", vec![lit("{foo} "), Name]),
        ("} {name} {", vec![lit("} "), Name, lit(" {")]),
        ("{ {name} }", vec![lit("{ "), Name, lit(" }")]),
        ("{/geoip/city}", vec![Metadata("geoip/city".into())]),
        ("{>rflags}{rsize}", vec![Rflags, Rsize]),
        ("no placeholders", vec![lit("no placeholders")]),
    ];
    for (text, want) in cases {
        assert_eq!(Format::parse(text, false).parts, want, "{text:?}");
    }
    // JSON keeps each placeholder once and drops the literals.
    assert_eq!(Format::parse("{name} x {type} {name}", true).parts, vec![Name, Type]);
}

/// The query of CoreDNS's README example: `[::1]:50759 - 29008 "A IN example.org. udp ..."`.
fn example_request() -> Request {
    let mut req = query("Example.ORG.", Rtype::A);
    req.client = "[::1]:50759".parse().expect("addr");
    req.header.set_id(29008);
    req.edns = Some(Edns { udp_size: 4096, version: 0, dnssec_ok: false, options: vec![] });
    req.size = 41;
    req
}

fn answered(req: &Request) -> Reply {
    let mut reply = Reply::for_request(req);
    reply.header.set_ra(true);
    reply.answer.push(rr("example.org. 300 IN A 192.0.2.1"));
    reply
}

#[test]
fn renders_text_lines() {
    let req = example_request();
    let reply = answered(&req);
    let d = Duration::from_nanos(37_990_251);
    // rsize: header 12 + question 13+4 + answer 2+10+4 + the OPT record the server adds, 11.
    let cases: &[(&str, &str)] = &[
        ("{common}", r#"[::1]:50759 - 29008 "A IN example.org. udp 41 false 4096" NOERROR qr,rd,ra 56 0.037990251s"#),
        (
            "{combined}",
            r#"[::1]:50759 - 29008 "A IN example.org. udp 41 false 4096" NOERROR qr,rd,ra 56 0.037990251s "0""#,
        ),
        ("{proto} Request: {name} {type} {>id}", "udp Request: example.org. A 29008"),
        ("{local} {/meta} {foo}", "- - {foo}"),
        ("{class}/{>opcode}/{>do}", "IN/0/false"),
    ];
    for (format, want) in cases {
        assert_eq!(Format::parse(format, false).render(&req, &reply, d), *want, "{format}");
    }
}

#[test]
fn renders_request_and_reply_details() {
    let fmt = Format::parse("{remote} {port} {proto} {>bufsize} {>do} {rcode} {>rflags} {rsize} {duration}", false);
    let mut req = query("example.org.", Rtype::AAAA);
    let plain = Reply::for_request(&req);
    // No EDNS over UDP: 512; header 12 + question 17.
    assert_eq!(fmt.render(&req, &plain, Duration::ZERO), "127.0.0.1 53000 udp 512 false NOERROR qr,rd 29 0s");
    req.proto = Proto::Tcp;
    req.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true, options: vec![] });
    let mut reply = Reply::error(&req, Rcode::NXDOMAIN);
    reply.header.set_aa(true);
    reply.header.set_rd(false);
    reply.header.set_ad(true);
    reply.header.set_cd(true);
    assert_eq!(
        fmt.render(&req, &reply, Duration::from_millis(1500)),
        "127.0.0.1 53000 tcp 65535 true NXDOMAIN qr,aa,ad,cd 40 1.5s"
    );
    // An extended rcode by name, an unknown one by number.
    let mut reply = Reply::for_request(&req);
    reply.rcode = OptRcode::BADVERS;
    assert!(fmt.render(&req, &reply, Duration::ZERO).contains(" BADVERS "));
    reply.rcode = OptRcode::masked_from_int(3000);
    assert!(fmt.render(&req, &reply, Duration::ZERO).contains(" 3000 "));
    // A reply too large for the client is sent truncated: TC set, the size is what is sent.
    let mut req = query("example.org.", Rtype::TXT);
    let mut big = Reply::for_request(&req);
    let txt = format!("example.org. 60 IN TXT \"{}\"", "x".repeat(200));
    for _ in 0..4 {
        big.answer.push(rr(&txt));
    }
    assert_eq!(Format::parse("{>rflags} {rsize}", false).render(&req, &big, Duration::ZERO), "qr,tc,rd 29");
    req.proto = Proto::Tcp;
    assert!(!Format::parse("{>rflags}", false).render(&req, &big, Duration::ZERO).contains("tc"));
}

#[test]
fn renders_json_lines() {
    let req = example_request();
    let reply = answered(&req);
    let d = Duration::from_nanos(112_000);
    assert_eq!(
        Format::parse("{common}", true).render(&req, &reply, d),
        concat!(
            r#"{"remote":"::1","port":50759,"id":29008,"type":"A","class":"IN","name":"example.org.","proto":"udp","#,
            r#""size":41,"do":false,"bufsize":4096,"rcode":"NOERROR","rflags":"qr,rd,ra","rsize":56,"duration":0.000112}"#
        )
    );
    assert_eq!(
        Format::parse("{name} {local} {/a\"b} {>opcode}", true).render(&req, &reply, d),
        r#"{"name":"example.org.","local":null,"a\"b":null,"opcode":0}"#
    );
}

#[test]
fn metadata_labels_are_read_from_the_request() {
    let mut req = query("example.org.", Rtype::A);
    let reply = Reply::for_request(&req);
    let d = Duration::from_millis(1);
    req.metadata.enable();
    req.metadata.set("geoip/city", "Zürich \"Altstadt\"");
    req.metadata.set("view/name", "");
    assert_eq!(Format::parse("{/geoip/city} {/view/name} {/x/y}", false).render(&req, &reply, d), "Zürich \"Altstadt\" - -");
    assert_eq!(
        Format::parse("{/geoip/city} {/x/y}", true).render(&req, &reply, d),
        r#"{"geoip/city":"Zürich \"Altstadt\"","x/y":null}"#
    );
}

#[test]
fn escapes_json_strings() {
    let mut out = String::new();
    json_string(&mut out, "a\"b\\c\nd\u{1}é");
    assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
}

#[test]
fn classifies_replies_as_coredns() {
    let soa = "example.org. 300 IN SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 300";
    let now = Timestamp::now();
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, Rtype, Rcode, &[&str], &[&str], ResponseType)] = &[
        ("answer", Rtype::A, Rcode::NOERROR, &["example.org. 60 IN A 192.0.2.1"], &[], ResponseType::NoError),
        (
            "mx answer",
            Rtype::MX,
            Rcode::NOERROR,
            &["example.org. 60 IN MX 10 mx.example.org."],
            &[],
            ResponseType::NoError,
        ),
        (
            "cname only",
            Rtype::A,
            Rcode::NOERROR,
            &["example.org. 60 IN CNAME other.example."],
            &[],
            ResponseType::NoData,
        ),
        ("nodata", Rtype::A, Rcode::NOERROR, &[], &[soa], ResponseType::NoData),
        ("nxdomain", Rtype::A, Rcode::NXDOMAIN, &[], &[soa], ResponseType::NameError),
        ("nxdomain without soa", Rtype::A, Rcode::NXDOMAIN, &[], &[], ResponseType::OtherError),
        ("servfail", Rtype::A, Rcode::SERVFAIL, &[], &[], ResponseType::ServerError),
        ("notimp", Rtype::A, Rcode::NOTIMP, &[], &[], ResponseType::ServerError),
        ("refused", Rtype::A, Rcode::REFUSED, &[], &[], ResponseType::OtherError),
        (
            "referral",
            Rtype::A,
            Rcode::NOERROR,
            &[],
            &["sub.example.org. 60 IN NS ns.sub.example.org."],
            ResponseType::Delegation,
        ),
        ("empty", Rtype::A, Rcode::NOERROR, &[], &[], ResponseType::NoError),
        ("axfr", Rtype::AXFR, Rcode::NOERROR, &[], &[], ResponseType::Meta),
    ];
    for (what, qtype, rcode, answer, authority, want) in cases {
        let req = query("example.org.", *qtype);
        let mut reply = Reply::error(&req, *rcode);
        reply.answer = answer.iter().map(|t| rr(t)).collect();
        reply.authority = authority.iter().map(|t| rr(t)).collect();
        assert_eq!(typify(&reply, false, now), *want, "{what}");
    }
    let req = query("example.org.", Rtype::SOA);
    let mut reply = Reply::for_request(&req);
    reply.header.set_opcode(Opcode::UPDATE);
    assert_eq!(typify(&reply, false, now), ResponseType::Update);
    reply.header.set_opcode(Opcode::NOTIFY);
    assert_eq!(typify(&reply, false, now), ResponseType::Meta);

    // An expired signature matters only to a client that asked for DNSSEC.
    let mut reply = Reply::for_request(&query("example.org.", Rtype::A));
    reply.answer.push(rr("example.org. 60 IN A 192.0.2.1"));
    reply.answer.push(rr("example.org. 60 IN RRSIG A 13 2 60 20000101000000 19990101000000 1 example.org. AAAA"));
    assert_eq!(typify(&reply, false, now), ResponseType::NoError);
    assert_eq!(typify(&reply, true, now), ResponseType::OtherError);

    assert_eq!(classify(ResponseType::NoError), ResponseClass::Success);
    assert_eq!(classify(ResponseType::Delegation), ResponseClass::Success);
    assert_eq!(classify(ResponseType::NameError), ResponseClass::Denial);
    assert_eq!(classify(ResponseType::NoData), ResponseClass::Denial);
    for t in [ResponseType::ServerError, ResponseType::OtherError, ResponseType::Meta, ResponseType::Update] {
        assert_eq!(classify(t), ResponseClass::Error, "{t:?}");
    }
}

/// A next plugin that answers by a function of the request.
struct Answer(fn(&Request) -> Reply);

impl Plugin for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(std::future::ready(Ok((self.0)(req))))
    }
}

/// Answers by qname: `nx.*` NXDOMAIN with an SOA, `fail.*` SERVFAIL, anything else an A record.
fn by_name(req: &Request) -> Reply {
    let name = req.name_lower();
    if name.starts_with("nx.") {
        let mut r = Reply::error(req, Rcode::NXDOMAIN);
        r.authority.push(rr("example.org. 300 IN SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 300"));
        r
    } else if name.starts_with("fail.") {
        Reply::error(req, Rcode::SERVFAIL)
    } else {
        let mut r = Reply::for_request(req);
        r.answer.push(rr(&format!("{name} 60 IN A 192.0.2.1")));
        r
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// A log handler from directive text whose lines go to the returned buffer.
fn capturing(text: &str) -> (Arc<dyn Plugin>, Lines) {
    let lines: Lines = Arc::default();
    let sink_lines = lines.clone();
    let cfg = parsed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let sink: Sink = Arc::new(move |l: &str| sink_lines.lock().expect("not poisoned").push(l.to_string()));
    (Arc::new(Log::new(&cfg, sink).expect("sets up")), lines)
}

/// Runs each query through `text`'s log and `next`; returns the names that were logged.
fn logged(text: &str, next: Arc<dyn Plugin>, names: &[&str]) -> Vec<String> {
    let (log, lines) = capturing(text);
    let chain = [log, next];
    for n in names {
        let _ = serve(&chain, &mut query(n, Rtype::A));
    }
    let lines = lines.lock().expect("not poisoned");
    lines.clone()
}

#[test]
fn filters_by_class() {
    let names = ["www.example.org.", "nx.example.org.", "fail.example.org."];
    let cases: &[(&str, &[&str])] = &[
        ("log . {name}", &["www.example.org.", "nx.example.org.", "fail.example.org."]),
        ("log . {name} {\n class all denial\n}", &["www.example.org.", "nx.example.org.", "fail.example.org."]),
        ("log . {name} {\n class success\n}", &["www.example.org."]),
        ("log . {name} {\n class denial\n}", &["nx.example.org."]),
        ("log . {name} {\n class error\n}", &["fail.example.org."]),
        ("log . {name} {\n class denial\n class error\n}", &["nx.example.org.", "fail.example.org."]),
    ];
    for (text, want) in cases {
        assert_eq!(logged(text, Arc::new(Answer(by_name)), &names), *want, "{text:?}");
    }
}

#[test]
fn filters_by_zone_and_passes_every_query_on() {
    let rec = record_calls();
    let got = logged(
        "log example.org EXAMPLE.net {name}",
        rec.clone(),
        &["www.example.org.", "example.com.", "www.Example.NET.", "org."],
    );
    assert_eq!(got, ["www.example.org.", "www.example.net."]);
    assert_eq!(rec.count(), 4, "queries outside NAMES still reach next");
}

#[test]
fn logs_the_rcode_of_an_error_and_passes_the_error_on() {
    let (log, lines) = capturing("log . \"{name} {rcode} {rsize}\" {\n class error\n}");
    let chain = [log, fail_with(Rcode::REFUSED, "upstream said no")];
    let e = serve(&chain, &mut query("example.org.", Rtype::A)).expect_err("the error passes through");
    assert_eq!(e.rcode, Rcode::REFUSED);
    assert_eq!(e.message, "upstream said no");
    assert_eq!(*lines.lock().expect("not poisoned"), ["example.org. REFUSED 29"]);
}

/// A next plugin that takes two seconds to answer.
struct Slow;

impl Plugin for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(Reply::for_request(req))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn min_duration_logs_slow_replies_of_any_class() {
    for (text, want) in [
        ("log . {duration} {\n class error\n minDuration 1s\n}", vec!["2s"]),
        ("log . {duration} {\n class error\n minDuration 3s\n}", vec![]),
        ("log . {duration} {\n class error\n}", vec![]),
    ] {
        let (log, lines) = capturing(text);
        let chain: [Arc<dyn Plugin>; 2] = [log, Arc::new(Slow)];
        Next::new(&chain).serve(&mut query("example.org.", Rtype::A)).await.expect("answers");
        assert_eq!(*lines.lock().expect("not poisoned"), want, "{text:?}");
    }
}

#[cfg(feature = "plugin-whoami")]

#[test]
fn zone_names_are_compared_without_case() {
    let n = Name::<Bytes>::from_str("WWW.Example.ORG.").expect("name");
    assert!(n.ends_with(&Name::<Bytes>::from_str("example.org.").expect("zone")));
}
