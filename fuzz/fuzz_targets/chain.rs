//! Whole server blocks fed arbitrary packets through the server's own entry point
//! (`server::chain::handle`): parse, route, cookies, the chain of the usual plugins, reply.
//! Every packet is dropped or answered with a message that parses, carries the query's ID and
//! fits the client's size; a plugin panic (which the server would turn into SERVFAIL) aborts.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use ferrite::message::{Proto, Reply};
use ferrite::server::chain::{handle, Outcome, Router};
use libfuzzer_sys::fuzz_target;

const ZONE: &str = r#"$ORIGIN example.org.
$TTL 3600
@       IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300
        IN NS ns1
        IN NS ns2.example.net.
        IN MX 10 mail
        IN TXT "v=spf1 -all"
ns1     IN A 192.0.2.53
mail    IN A 192.0.2.25
        IN AAAA 2001:db8::25
www     IN CNAME @
@       IN A 192.0.2.1
*.wild  IN A 192.0.2.99
loop    IN CNAME loop
sub     IN NS ns.sub
ns.sub  IN A 192.0.2.54
big     IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "1123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "2123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "3123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "4123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "5123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "6123456789012345678901234567890123456789012345678901234567890123456789"
big     IN TXT "7123456789012345678901234567890123456789012345678901234567890123456789"
"#;

struct World {
    router: Router,
    rt: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferrite-fuzz-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let zone = dir.join("db.example.org");
        std::fs::write(&zone, ZONE).expect("zone file");
        let corefile = format!(
            r#"example.org {{
    cookie {{
        secret 000102030405060708090a0b0c0d0e0f
    }}
    errors
    cache 30
    rewrite name suffix .rw.example.org. .example.org. answer auto
    minimal
    file {zone} example.org
}}
. {{
    cookie {{
        secret 0f0e0d0c0b0a09080706050403020100
        require
    }}
    nsid fuzz
    bufsize 1232
    any
    chaos ferrite-fuzz
    local
    dns64
    filter
    acl {{
        block type A net 192.0.2.0/24
    }}
    header {{
        response set ra
    }}
    loadbalance
    template IN TXT tmpl.test {{
        answer "{{{{ .Name }}}} 60 IN TXT {{{{ .Type }}}}"
        fallthrough
    }}
    hosts {{
        192.0.2.1 h.test
        2001:db8::1 h.test
        fallthrough
    }}
    whoami
}}
"#,
            zone = zone.display()
        );
        let router = ferrite::testing::corefile_router(&corefile);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        World { router, rt }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, packet)) = data.split_first() else { return };
    let w = world();
    let _guard = w.rt.enter();
    let client: SocketAddr = match pick & 3 {
        0 => "127.0.0.1:5353",
        1 => "192.0.2.7:5353",
        2 => "[::1]:5353",
        _ => "[::ffff:192.0.2.7]:5353",
    }
    .parse()
    .expect("address");
    let proto = if pick & 4 == 0 { Proto::Udp } else { Proto::Tcp };
    let out = match handle(Bytes::copy_from_slice(packet), client, proto, &w.router) {
        Outcome::Drop => None,
        Outcome::Reply(b) => Some(b),
        Outcome::Pending(f) => w.rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), f).await.ok().flatten() }),
    };
    let Some(out) = out else { return };
    let reply = Reply::from_wire(&out).expect("every reply parses");
    assert_eq!(&out[..2], &packet[..2], "the reply has the query's ID");
    assert!(reply.header.qr());
    let max = match ferrite::message::parse_query(Bytes::copy_from_slice(packet), client, proto) {
        Ok(req) => req.max_reply_size(),
        Err(ferrite::message::Rejected::CookieOnly(req)) => req.max_reply_size(),
        Err(_) => 512,
    };
    assert!(out.len() <= max, "a reply of {} bytes for a client that takes {max}", out.len());
});
