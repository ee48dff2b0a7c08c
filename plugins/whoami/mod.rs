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
    // CoreDNS names the records after the lower-cased question.
    let owner: Name<Bytes> = lower(&req.qname);
    let ip = req.client.ip();
    let data = match ip {
        IpAddr::V4(a) => ZoneRecordData::A(A::new(a)),
        IpAddr::V6(a) => ZoneRecordData::Aaaa(Aaaa::new(a)),
    };
    reply.additional.push(Record::new(owner.clone(), req.qclass, Ttl::ZERO, data));
    let label = format!("_{}", req.proto.as_str());
    let srv_owner = Name::<Bytes>::from_str_relative(&label, &owner);
    if let Some(srv_owner) = srv_owner {
        let srv = Srv::new(0, 0, req.client.port(), Name::root_bytes());
        reply.additional.push(Record::new(srv_owner, req.qclass, Ttl::ZERO, ZoneRecordData::Srv(srv)));
    }
    reply
}

fn lower(n: &Name<Bytes>) -> Name<Bytes> {
    let mut v = n.as_slice().to_vec();
    v.make_ascii_lowercase();
    Name::from_octets(Bytes::from(v)).expect("lower-casing keeps a name valid")
}

/// `_udp` + `.` + owner, or `None` when the result would be too long.
trait Relative: Sized {
    fn from_str_relative(label: &str, origin: &Name<Bytes>) -> Option<Self>;
}

impl Relative for Name<Bytes> {
    fn from_str_relative(label: &str, origin: &Name<Bytes>) -> Option<Self> {
        let mut v = Vec::with_capacity(1 + label.len() + origin.len());
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
        v.extend_from_slice(origin.as_slice());
        Name::from_octets(Bytes::from(v)).ok()
    }
}

#[cfg(test)]
mod tests;
