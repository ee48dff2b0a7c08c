//! Inputs the fuzz targets (fuzz/) found to crash, kept as regression tests in the normal suite:
//! each goes through the same path as its target, and nothing may panic.
// The findings went through the template and file plugins; without them there is nothing to replay.
#![cfg(all(feature = "plugin-template", feature = "plugin-file"))]

use std::sync::atomic::{AtomicUsize, Ordering};

use ferrite::message::{Proto, Reply};
use ferrite::server::chain::{handle, Outcome};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics, which the server would catch and answer SERVFAIL: a caught panic is still a bug.
fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

/// chain target: a query name beginning with `(` rendered by template's `{{ .Name }}` into
/// record text with an unclosed parenthesis, on which domain's zone scanner panicked (index out
/// of bounds in `convert_charstr`). The first byte picks the client and transport.
const TEMPLATE_UNCLOSED_PAREN: &[u8] = &[
    0x00, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x28, 0x77, 0x77, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c,
    0x65, 0x03, 0x6f, 0x72, 0x00, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf2, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x11, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x01, 0x01, 0x01, 0x11, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39,
    0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x39, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x11, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x3e, 0x62, 0x69, 0x67, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x31, 0x00, 0x01,
    0x00, 0x80, 0x00, 0x00, 0x00, 0x01, 0x04, 0x74, 0x6d, 0x70, 0x6c, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x29,
    0x04, 0xd0, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x6d, 0x70, 0x6c, 0x00, 0x2c, 0x04, 0x00, 0x00, 0x01, 0x00, 0x01, 0xff, 0x34, 0x38,
    0x69, 0x72, 0x70, 0x61, 0x04, 0x00, 0xd5, 0x01,
];

#[test]
fn fuzz_findings_do_not_panic() {
    count_panics();
    let router = ferrite::testing::corefile_router(
        "tmpl.test {\n    template IN TXT tmpl.test {\n        answer \"{{ .Name }} 60 IN TXT {{ .Type }}\"\n    }\n}\n",
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let packet = &TEMPLATE_UNCLOSED_PAREN[1..];
    let reply = match handle(packet, "127.0.0.1:5353".parse().expect("addr"), Proto::Udp, &router) {
        Outcome::Reply(b) => Reply::from_wire(&b).expect("the reply parses"),
        _ => panic!("an immediate reply"),
    };
    assert_eq!(&reply.header.id().to_be_bytes(), &packet[..2]);
    // The name is escaped as CoreDNS escapes it, so the record reads back with the query's name;
    // record text with an unclosed parenthesis is an error, not a panic.
    assert_eq!(reply.rcode, domain::base::iana::OptRcode::NOERROR);
    assert_eq!(reply.answer.len(), 1);
    let asked = ferrite::message::parse_query(packet, "127.0.0.1:5353".parse().expect("addr"), Proto::Udp)
        .expect("a query");
    assert_eq!(reply.answer[0].owner().to_string().to_lowercase(), asked.qname.to_string().to_lowercase());
    assert!(ferrite::message::parse_rr("(ww.example.or 60 IN TXT TXT", 60).is_err());
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no panic on the way");
}

/// ron target: a duration of 10^52 ms in `reload` panicked in `Duration::from_secs_f64`.
const RON_HUGE_DURATION: &[u8] = b"(\n\
    servers: [\n\
        (\n\
            keys: [\n\
                \"example.org\",\n\
            ],\n\
            plugins: [\n\
                file((\n\
                    file: \"plugins/file/testdata/db.example.org\",\n\
                    reload: \"1005555555555555555555555555555555555555555555555555500ms\",\n\
                    fallthrough: [],\n\
                )),\n\
                whoami(()),\n\
            \x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03],\n\
        ),\n\
        (\n\
            keys: [\n\
                \"generate.ex1mple.org\",\n\
            ],\n\
            plugins: [\n\
            ],\n\
        ),\n\
        (\n\
            keys: [\n\
                \"generate.example.org\",\n\
            ],\n\
            plugins: [\n\
                file((\n\
                    file: \"plugins/file/testdata/db  whoami(()),\n\
            ],\n\
        ),\n\
    ],\n\
)";

/// zonefile target: `$GENERATE` detection sliced a line at byte 9, inside a multi-byte
/// character.
const ZONE_GENERATE_CHAR_BOUNDARY: &[u8] = b"$ORIWWWWWWWWWWWWWWWWWWWWWWWWWWWWIN NS ns2.example.net.\n\
        IN MX 10 mail\n\
        IN TXT \"v=spf1 -all\"\n\
ns1     IN A 193.0.2.53\n\
mail    IN A 192.0.2.25\n\
 $GENERAloop    IN CNAME loop\n\
sub     IN NS ns.sub\n\
ns.sub  IN A 192.0.2.54\n\
big     IN TXT \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n\
big     IN TXT \"112345678)0123456789012345678901234567890ch's $GENERATE \x00\x00\x00\x00\x00\x00\x00\x00       IN MX 10 mail\n\
        IN TXT \"v=s0.2.1\n\
*.wild  IN A 192.0.2.99\n\
loop    IN CNAME loop\n\
sub     IN NS ns.sub\n\
ns.sub  IN A 192.0.2.54\n\
big     IN TXT \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n\
big     IN TXT \"112345678)012345678901234567890123456789012345678901234567890123456789\"\n\
big     IN TXT \"2123456789012345678901234567890123456789012345678901234567890123456789\"  IN TXT \"v=spf1!-all\"\n\
ns1     IN A 192.0.2.53\n\
mail    I$ORIG%IN example.org.\n\
$TTL 3600\n\
@       IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
        IN NS53\xf3\x92\x9e\x96l    IN IN TXT \"61234567890123ddddddddddddddddddddd$ORIGIN N A 192.0.2.2exampleddddddddddddddddddddddddg.\n\
5\n\
      ; The zone the file plugin's tests, READ$TTME examples ta ndhe differential tes     IN TXT \"61234567890123456789012345678901234dddL 567890123456789:123456789012345d6789\"\n\
big  56789\"\n\
";

#[test]
fn config_and_zone_findings_are_errors() {
    count_panics();
    // corefile target: a line of a comma alone indexed past the end of the tokens.
    let Err(e) = ferrite::config::from_corefile_str(",", "Corefile") else { panic!("a comma alone was accepted") };
    assert!(e.iter().any(|p| p.to_string().contains("expected server block keys")), "{e:?}");
    let ron = std::str::from_utf8(RON_HUGE_DURATION).expect("utf-8");
    assert!(ferrite::config::from_ron(ron, "fuzz.ron").is_err());
    let zone = std::str::from_utf8(ZONE_GENERATE_CHAR_BOUNDARY).expect("utf-8");
    let origin = std::str::FromStr::from_str("example.org.").expect("name");
    let mut out = Vec::new();
    let r = ferrite::plugins::file::loader::parse_text(zone, std::path::Path::new("fuzz.zone"), &origin, &mut out, 0);
    assert!(r.is_err(), "the zone has errors");
    // $GENERATE fields that would overflow or allocate without bound are errors too.
    // $GENERATE ranges that end at u64::MAX, and offsets at i64::MAX, overflowed.
    for (text, records) in [
        ("$GENERATE 18446744073709551610-18446744073709551615 a$ A 192.0.2.1", 6),
        ("$GENERATE 1-2 a${9223372036854775807} A 192.0.2.1", 2),
    ] {
        let mut out = Vec::new();
        ferrite::plugins::file::loader::parse_text(text, std::path::Path::new("fuzz.zone"), &origin, &mut out, 0).expect(text);
        assert_eq!(out.len(), records, "{text}");
    }
    let e = ferrite::plugins::file::loader::expand_generate("$GENERATE 1-2 a${0,100000000} A 192.0.2.1").expect_err("too wide");
    assert!(e.1.contains("more than a label holds"), "{e:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no panic on the way");
}
