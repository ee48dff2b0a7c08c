//! whoami: answers every query with the client's address, port and transport, in the
//! additional section, as CoreDNS's whoami does. Useful to test that a server is reachable and
//! what it sees of the client.

use std::net::IpAddr;

use domain::rdata::{Aaaa, Srv, A};

use crate::plugin::prelude::*;

/// whoami takes no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    d.no_args()?;
    d.no_block()?;
    Ok(Config {})
}

pub fn setup(_: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    ctx.add_handler(Arc::new(Whoami));
    Ok(())
}

pub struct Whoami;

impl Plugin for Whoami {
    fn name(&self) -> &'static str {
        "whoami"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(std::future::ready(Ok(answer(req))))
    }
}

fn answer(req: &Request) -> Reply {
    let mut reply = Reply::for_request(req);
    reply.header.set_aa(true);
    // CoreDNS names the records after the lower-cased question; the SRV adds `_udp`/`_tcp`.
    let label: &[u8] = match req.proto {
        crate::message::Proto::Udp => b"\x04_udp",
        crate::message::Proto::Tcp => b"\x04_tcp",
    };
    let qname = req.qname.as_slice();
    let mut wire = Vec::with_capacity(label.len() + qname.len());
    wire.extend_from_slice(label);
    wire.extend_from_slice(qname);
    wire.make_ascii_lowercase();
    let wire = Bytes::from(wire);
    let owner = Name::from_octets(wire.slice(label.len()..)).expect("a lower-cased name is a name");
    let data = match req.client.ip() {
        IpAddr::V4(a) => ZoneRecordData::A(A::new(a)),
        IpAddr::V6(a) => ZoneRecordData::Aaaa(Aaaa::new(a)),
    };
    reply.additional.reserve(2);
    reply.additional.push(Record::new(owner, req.qclass, Ttl::ZERO, data));
    // A name of 255 octets has no room for the label: then there is no SRV, as there can be none.
    if let Ok(srv_owner) = Name::from_octets(wire) {
        let srv = Srv::new(0, 0, req.client.port(), Name::root_bytes());
        reply.additional.push(Record::new(srv_owner, req.qclass, Ttl::ZERO, ZoneRecordData::Srv(srv)));
    }
    reply
}

#[cfg(test)]
mod tests;
