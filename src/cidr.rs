//! IP networks in CIDR notation, as plugins match client addresses against them (acl, view)
//! and build addresses from them (dns64).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: `10.0.0.0/8`, `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// The network of `addr` with `len` prefix bits; host bits are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then(|| Cidr { addr: mask(addr, len), len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True when `ip` is in the network. An IPv4 network holds only IPv4 addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) };
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    }
}

/// Why a network did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(format!("invalid network {s:?}: expected an address or ADDRESS/BITS"));
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr::new(addr, len.unwrap_or(max)).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The address a reverse name stands for: `4.3.2.1.in-addr.arpa.` or 32 one-nibble labels
/// before `.ip6.arpa.` (lower case, fully qualified); `None` for any other name.
pub fn reverse_name_ip(lower: &str) -> Option<IpAddr> {
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa.") {
        let mut o: Vec<&str> = rest.split('.').collect();
        if o.len() != 4 {
            return None;
        }
        o.reverse();
        return IpAddr::from_str(&o.join(".")).ok();
    }
    let rest = lower.strip_suffix(".ip6.arpa.")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 || nibbles.iter().any(|n| n.len() != 1) {
        return None;
    }
    let mut s = String::with_capacity(39);
    for (i, n) in nibbles.iter().rev().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push(':');
        }
        s.push_str(n);
    }
    IpAddr::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn parses_and_contains() {
        let n: Cidr = "10.1.2.3/8".parse().expect("parses");
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert!(n.contains(ip("10.255.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::ffff:10.0.0.1")), "IPv6 addresses are not in IPv4 networks");
        let h: Cidr = "192.0.2.1".parse().expect("parses");
        assert!(h.contains(ip("192.0.2.1")) && !h.contains(ip("192.0.2.2")));
        let all: Cidr = "0.0.0.0/0".parse().expect("parses");
        assert!(all.contains(ip("203.0.113.9")));
        let v6: Cidr = "2001:db8::/33".parse().expect("parses");
        assert!(v6.contains(ip("2001:db8:7fff::1")) && !v6.contains(ip("2001:db8:8000::1")));
        assert!("::/0".parse::<Cidr>().expect("parses").contains(ip("::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reverse_names_give_their_addresses() {
        assert_eq!(reverse_name_ip("4.3.2.10.in-addr.arpa."), Some(ip("10.2.3.4")));
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(reverse_name_ip(v6), Some(ip("2001:db8::1")));
        for bad in ["3.2.10.in-addr.arpa.", "x.3.2.10.in-addr.arpa.", "1.0.ip6.arpa.", "10.2.3.4.example.", "ab.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."] {
            assert_eq!(reverse_name_ip(bad), None, "{bad}");
        }
    }
}
