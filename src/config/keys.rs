//! Server block keys: `[scheme://]zone[:port]`, with reverse-zone CIDR keys expanded.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use bytes::Bytes;
use domain::base::name::Name;

use super::directive::Token;
use crate::plugin::SetupError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Dns,
    Tls,
    Https,
    Quic,
    Grpc,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dns => "dns",
            Scheme::Tls => "tls",
            Scheme::Https => "https",
            Scheme::Quic => "quic",
            Scheme::Grpc => "grpc",
        }
    }

    fn default_port(self, dns_port: u16) -> u16 {
        match self {
            Scheme::Dns => dns_port,
            Scheme::Tls | Scheme::Quic => 853,
            Scheme::Https | Scheme::Grpc => 443,
        }
    }
}

/// One zone on one port over one transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub scheme: Scheme,
    /// Lower case, fully qualified.
    pub zone: Name<Bytes>,
    pub port: u16,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.zone.fmt_with_dot(), self.port)
    }
}

/// Parses one key token; a CIDR key gives one key per reverse zone it covers.
pub fn parse_key(tok: &Token, dns_port: u16) -> Result<Vec<Key>, SetupError> {
    let text = tok.text.as_str();
    let (scheme, rest) = match text.split_once("://") {
        Some((s, rest)) => {
            let scheme = match s.to_ascii_lowercase().as_str() {
                "dns" => Scheme::Dns,
                "tls" => Scheme::Tls,
                "https" => Scheme::Https,
                "quic" => Scheme::Quic,
                "grpc" => Scheme::Grpc,
                other => return Err(tok.err(format!("unknown scheme {other:?}: expected dns, tls, https, quic or grpc"))),
            };
            (scheme, rest)
        }
        None => (Scheme::Dns, text),
    };
    // The port is after the last ':' unless that colon is part of an IPv6 CIDR.
    let (host, port) = split_port(rest);
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| tok.err(format!("invalid port {p:?} in server block key")))?,
        None => scheme.default_port(dns_port),
    };
    let zones = if host.contains('/') {
        cidr_zones(host).ok_or_else(|| tok.err(format!("invalid CIDR {host:?} in server block key")))?
    } else {
        let host = if host.is_empty() { "." } else { host };
        let mut z = host.to_ascii_lowercase();
        if !z.ends_with('.') {
            z.push('.');
        }
        let name = Name::<Bytes>::from_str(&z).map_err(|e| tok.err(format!("invalid zone {host:?}: {e}")))?;
        vec![name]
    };
    Ok(zones.into_iter().map(|zone| Key { scheme, zone, port }).collect())
}

fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        // [2001:db8::/32]:53
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':'));
        }
    }
    if let Some(slash) = s.find('/') {
        return match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
            None => (s, None),
        };
    }
    match s.rfind(':') {
        Some(i) if s[..i].parse::<Ipv6Addr>().is_err() => (&s[..i], Some(&s[i + 1..])),
        Some(_) => (s, None),
        None => (s, None),
    }
}

/// The reverse zones that cover a CIDR: whole octets (IPv4) or nibbles (IPv6). A prefix that
/// does not end on a boundary expands into every zone at the next boundary.
pub fn cidr_zones(cidr: &str) -> Option<Vec<Name<Bytes>>> {
    let (addr, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    let ip: IpAddr = addr.parse().ok()?;
    let (bits, unit, total): (u128, u32, u32) = match ip {
        IpAddr::V4(a) => (u32::from(a) as u128, 8, 32),
        IpAddr::V6(a) => (u128::from(a), 4, 128),
    };
    if len > total {
        return None;
    }
    let boundary = len.div_ceil(unit) * unit;
    let boundary = boundary.max(unit);
    let extra = boundary - len;
    if extra > 8 {
        return None;
    }
    let mask = if len == 0 { 0 } else { (!0u128 >> (128 - total)) << (total - len) & (!0u128 >> (128 - total)) };
    let base = bits & mask;
    let mut zones = Vec::new();
    for i in 0..(1u128 << extra) {
        let net = base | (i << (total - boundary));
        let labels = boundary / unit;
        let mut s = String::new();
        for l in (0..labels).rev() {
            let shift = total - (l + 1) * unit;
            let v = (net >> shift) & ((1 << unit) - 1);
            if unit == 8 {
                s.push_str(&format!("{v}."));
            } else {
                s.push_str(&format!("{v:x}."));
            }
        }
        s.push_str(if unit == 8 { "in-addr.arpa." } else { "ip6.arpa." });
        zones.push(Name::from_str(&s).ok()?);
    }
    let _ = Ipv4Addr::UNSPECIFIED;
    Some(zones)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directive::Loc;

    fn keys(s: &str) -> Vec<String> {
        let t = Token::new(s, Loc { file: "t".into(), line: 1, col: 1 });
        parse_key(&t, 53).expect("valid key").iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn plain_keys() {
        assert_eq!(keys("."), ["dns://.:53"]);
        assert_eq!(keys(":1053"), ["dns://.:1053"]);
        assert_eq!(keys("Example.ORG:1053"), ["dns://example.org.:1053"]);
        assert_eq!(keys("tls://.:8853"), ["tls://.:8853"]);
        assert_eq!(keys("https://example.org"), ["https://example.org.:443"]);
        assert_eq!(keys("quic://."), ["quic://.:853"]);
    }

    #[test]
    fn cidr_keys() {
        assert_eq!(keys("10.0.0.0/24:1053"), ["dns://0.0.10.in-addr.arpa.:1053"]);
        assert_eq!(keys("10.0.0.0/8"), ["dns://10.in-addr.arpa.:53"]);
        assert_eq!(keys("10.0.0.0/23").len(), 2);
        assert_eq!(keys("10.0.0.0/23")[1], "dns://1.0.10.in-addr.arpa.:53");
        assert_eq!(keys("[2001:db8::/32]:53"), ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]);
        assert_eq!(keys("2001:db8::/32"), ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]);
    }

    #[test]
    fn bad_keys() {
        let t = Token::new("foo://.", Loc { file: "C".into(), line: 2, col: 1 });
        assert!(parse_key(&t, 53).is_err());
        let t = Token::new(".:99999", Loc { file: "C".into(), line: 2, col: 1 });
        assert_eq!(parse_key(&t, 53).expect_err("bad port").to_string(), "C:2:1: invalid port \"99999\" in server block key");
    }
}
