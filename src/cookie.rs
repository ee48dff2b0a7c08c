//! DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).
//!
//! A client puts an 8-byte client cookie in a COOKIE option; the server answers with that client
//! cookie and a 16-byte server cookie: version 1, three reserved bytes, a 32-bit timestamp and
//! SipHash-2-4 over client cookie | version | reserved | timestamp | client IP, keyed by the
//! server secret. A client that sends the server cookie back later has shown it receives
//! replies at its address; the rate limiter may trust it more (see [`CookieState`]).
//!
//! Every server block answers cookies. Its secret comes from the `cookie` plugin or, without
//! one, from a secret drawn at random when the process starts. Servers behind one anycast
//! address must share a secret, or a client's cookie is only valid at the instance that made it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher24;

/// The client cookie's length (RFC 7873 §4).
pub const CLIENT_LEN: usize = 8;
/// The length of an RFC 9018 server cookie.
pub const SERVER_LEN: usize = 16;
/// The COOKIE option we send back: client cookie and server cookie.
pub const REPLY_LEN: usize = CLIENT_LEN + SERVER_LEN;
/// RFC 9018 §4.3: a server cookie older than an hour is no longer valid...
pub const MAX_AGE: u32 = 3600;
/// ...nor one more than five minutes in the future (clock skew within an anycast set)...
pub const MAX_AHEAD: u32 = 300;
/// ...and one older than half an hour is replaced by a fresh one in the reply.
pub const RENEW_AFTER: u32 = 1800;

/// What a query's COOKIE option proved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CookieState {
    /// No COOKIE option (or no EDNS): a client that does not do cookies.
    #[default]
    None,
    /// A client cookie alone: the client has no server cookie of ours yet.
    ClientOnly,
    /// A server cookie that is not ours, not for this client address, or too old or too new.
    Bad,
    /// A server cookie we made for this client cookie and address, within its lifetime: the
    /// client receives replies at the address it sends from.
    Valid,
}

impl CookieState {
    pub fn is_valid(self) -> bool {
        self == CookieState::Valid
    }
}

/// A SipHash-2-4 key of 128 bits.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never in logs or `ferrite convert` output by accident.
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(key: [u8; 16]) -> Secret {
        Secret(key)
    }

    /// A secret from the OS's random generator.
    pub fn random() -> Secret {
        let mut key = [0u8; 16];
        if getrandom::fill(&mut key).is_err() {
            // NOTE: the getrandom crate can fail where the kernel's generator is there: in a
            // static binary it looks the system call's wrapper up at run time, finds nothing and
            // falls back to /dev/urandom, which a minimal container may not have. std seeds its
            // hash maps from the same kernel generator by its own route; its SipHash of a
            // counter under those random keys gives the 128 bits. A fixed key would make cookies
            // forgeable, so there is no other fallback.
            use std::hash::{BuildHasher, Hasher};
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_usize(i);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        Secret(key)
    }

    /// Parses 32 hex digits (RFC 9018's secrets are written so).
    pub fn from_hex(s: &str) -> Result<Secret, String> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("a cookie secret is 32 hex digits (128 bits), got {} characters", s.len()));
        }
        let mut key = [0u8; 16];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Secret(key))
    }

    /// The 8-byte hash of RFC 9018 §4.4 over the client cookie, the first 8 bytes of the
    /// server cookie (version, reserved, timestamp) and the client's address.
    fn hash(&self, client: &[u8], head: &[u8], ip: IpAddr) -> [u8; 8] {
        let mut h = SipHasher24::new_with_key(&self.0);
        // NOTE: `Hasher::write` of siphasher feeds the bytes as they are; `finish` is the
        // reference implementation's output read as a little-endian u64.
        std::hash::Hasher::write(&mut h, client);
        std::hash::Hasher::write(&mut h, head);
        match ip {
            IpAddr::V4(a) => std::hash::Hasher::write(&mut h, &a.octets()),
            IpAddr::V6(a) => std::hash::Hasher::write(&mut h, &a.octets()),
        }
        std::hash::Hasher::finish(&h).to_le_bytes()
    }

    /// A fresh server cookie for `client` at `ip`, stamped `now` (RFC 9018 §4).
    pub fn server_cookie(&self, client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
        let mut out = [0u8; SERVER_LEN];
        out[0] = 1;
        out[4..8].copy_from_slice(&now.to_be_bytes());
        let hash = self.hash(client, &out[..8], ip);
        out[8..].copy_from_slice(&hash);
        out
    }

    /// True when `server` is a cookie this secret made for `client` at `ip` (its age aside).
    pub fn made(&self, client: &[u8], server: &[u8], ip: IpAddr) -> bool {
        // RFC 9018 §4.2: version 1 is the only one defined; the reserved bytes are hashed as
        // they came.
        server.len() == SERVER_LEN && server[0] == 1 && self.hash(client, &server[..8], ip) == server[8..]
    }
}

/// How one server block treats cookies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookies {
    pub secret: Secret,
    /// Over UDP, a query with a COOKIE option but no valid server cookie gets BADCOOKIE (and a
    /// fresh server cookie to retry with) instead of an answer, as BIND's
    /// `require-server-cookie`. Queries without a COOKIE option and TCP are answered as usual.
    pub require: bool,
}

impl Default for Cookies {
    fn default() -> Self {
        Cookies { secret: process_secret().clone(), require: false }
    }
}

/// The secret of blocks that configure none: random, drawn once per process, so a reload keeps
/// the cookies clients hold valid.
pub fn process_secret() -> &'static Secret {
    static SECRET: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    SECRET.get_or_init(Secret::random)
}

/// Splits a COOKIE option into client and server cookie; `None` for a malformed option, which
/// RFC 7873 §5.2.2 answers with FORMERR: the whole option is 8 bytes (client cookie only) or
/// 16 to 40 (client cookie and a server cookie of 8 to 32 bytes).
pub fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    match data.len() {
        CLIENT_LEN | 16..=40 => Some(data.split_at(CLIENT_LEN)),
        _ => None,
    }
}

/// Seconds since the epoch modulo 2^32, as the cookie timestamp counts them (RFC 9018 §4.3).
pub fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// How old a timestamp is at `now`, in serial-number arithmetic so that the 2106 wrap is one
/// second like any other; negative when it is in the future.
fn age(stamp: u32, now: u32) -> i64 {
    i64::from(now.wrapping_sub(stamp) as i32)
}

impl Cookies {
    /// Judges a well-formed COOKIE option from `ip` at `now`, and makes the option to answer
    /// with: the client cookie and either the server cookie it sent (valid and younger than
    /// half an hour) or a fresh one.
    pub fn check(&self, option: &[u8], ip: IpAddr, now: u32) -> (CookieState, [u8; REPLY_LEN]) {
        let mut out = [0u8; REPLY_LEN];
        let Some((client, server)) = split(option) else {
            return (CookieState::Bad, out);
        };
        out[..CLIENT_LEN].copy_from_slice(client);
        let client: &[u8; CLIENT_LEN] = client.try_into().expect("split gives 8 bytes");
        let state = if server.is_empty() {
            CookieState::ClientOnly
        } else if self.secret.made(client, server, ip) {
            let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
            let age = age(stamp, now);
            if age > i64::from(MAX_AGE) || age < -i64::from(MAX_AHEAD) {
                CookieState::Bad
            } else {
                if age <= i64::from(RENEW_AFTER) && server[1..4] == [0, 0, 0] {
                    out[CLIENT_LEN..].copy_from_slice(server);
                    return (CookieState::Valid, out);
                }
                CookieState::Valid
            }
        } else {
            CookieState::Bad
        };
        out[CLIENT_LEN..].copy_from_slice(&self.secret.server_cookie(client, ip, now));
        (state, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn secret(s: &str) -> Secret {
        Secret::from_hex(s).expect("32 hex digits")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    /// RFC 9018 Appendix A: the server cookies each example's server returns.
    #[test]
    fn rfc9018_appendix_a_server_cookies() {
        let cases = [
            // A.1: learning a new server cookie.
            ("e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"),
            // A.2: the same client, 40 minutes later, gets a renewed one.
            ("e5e973e5a6b2a43f48e7dc849e37bfcf", "2464c4abcf10c957", "198.51.100.100", 1559734385, "010000005cf7a871d4a564a1442aca77"),
            // A.3: another client learning a renewed server cookie.
            ("e5e973e5a6b2a43f48e7dc849e37bfcf", "fc93fc62807ddb86", "203.0.113.203", 1559734700, "010000005cf7a9acf73a7810aca2381e"),
            // A.4: IPv6, after a secret rollover.
            ("445536bcd2513298075a5d379663c962", "22681ab97d52c298", "2001:db8:220:1:59de:d0f4:8769:82b8", 1559741961, "010000005cf7c609a6bb79d16625507a"),
        ];
        for (key, client, addr, now, want) in cases {
            let client: [u8; 8] = hex(client).try_into().expect("8 bytes");
            assert_eq!(secret(key).server_cookie(&client, ip(addr), now).to_vec(), hex(want), "{addr} at {now}");
        }
    }

    /// RFC 9018 Appendix A: the cookies the example clients send back are recognised, with their
    /// reserved bytes hashed as sent (A.3), and only under the secret that made them (A.4).
    #[test]
    fn rfc9018_appendix_a_received_cookies() {
        let a3 = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        let s = secret("e5e973e5a6b2a43f48e7dc849e37bfcf");
        assert!(s.made(&a3[..8], &a3[8..], ip("203.0.113.203")));
        assert!(!s.made(&a3[..8], &a3[8..], ip("203.0.113.204")), "another address");
        let a4 = hex("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
        let v6 = ip("2001:db8:220:1:59de:d0f4:8769:82b8");
        assert!(secret("dd3bdf9344b678b185a6f5cb60fca715").made(&a4[..8], &a4[8..], v6), "the old secret made it");
        assert!(!secret("445536bcd2513298075a5d379663c962").made(&a4[..8], &a4[8..], v6), "the new one did not");
    }

    #[test]
    fn check_judges_and_renews() {
        let c = Cookies { secret: secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), require: false };
        let addr = ip("198.51.100.100");
        let client = hex("2464c4abcf10c957");
        // A.1: a client cookie alone gets a fresh server cookie.
        let (state, out) = c.check(&client, addr, 1559731985);
        assert_eq!(state, CookieState::ClientOnly);
        assert_eq!(out.to_vec(), hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480"));
        // Sent back 10 minutes later: valid, and echoed as it is.
        let (state, again) = c.check(&out, addr, 1559731985 + 600);
        assert_eq!((state, again), (CookieState::Valid, out));
        // A.2: 40 minutes later still valid, but renewed.
        let (state, renewed) = c.check(&out, addr, 1559734385);
        assert_eq!(state, CookieState::Valid);
        assert_eq!(renewed.to_vec(), hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77"));
        // The window: an hour old holds, a second more does not; five minutes ahead holds.
        assert_eq!(c.check(&out, addr, 1559731985 + 3600).0, CookieState::Valid);
        assert_eq!(c.check(&out, addr, 1559731985 + 3601).0, CookieState::Bad);
        assert_eq!(c.check(&out, addr, 1559731985 - 300).0, CookieState::Valid);
        assert_eq!(c.check(&out, addr, 1559731985 - 301).0, CookieState::Bad);
        // From another address, or altered: bad, and a fresh cookie for the sender.
        let (state, fresh) = c.check(&out, ip("198.51.100.101"), 1559731985);
        assert_eq!(state, CookieState::Bad);
        assert_eq!(fresh[..8], out[..8]);
        assert_ne!(fresh[8..], out[8..]);
        let mut forged = out;
        forged[23] ^= 1;
        assert_eq!(c.check(&forged, addr, 1559731985).0, CookieState::Bad);
        // A server cookie of another length (another server's scheme) is not ours.
        let mut other = client.clone();
        other.extend_from_slice(&[7; 12]);
        assert_eq!(c.check(&other, addr, 1559731985).0, CookieState::Bad);
    }

    #[test]
    fn timestamps_wrap_in_2106() {
        let c = Cookies { secret: secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), require: false };
        let addr = ip("192.0.2.1");
        let (_, out) = c.check(&[1; 8], addr, u32::MAX - 100);
        assert_eq!(c.check(&out, addr, 1000).0, CookieState::Valid, "1101 seconds later, across the wrap");
        assert_eq!(c.check(&out, addr, 4000).0, CookieState::Bad, "4101 seconds later");
    }

    #[test]
    fn option_lengths() {
        for len in 0..50 {
            let ok = len == 8 || (16..=40).contains(&len);
            assert_eq!(split(&vec![0; len]).is_some(), ok, "length {len}");
        }
    }

    #[test]
    fn secrets_parse_from_hex_and_stay_out_of_debug_output() {
        assert!(Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfc").is_err());
        assert!(Secret::from_hex("e5e973e5a6b2a43f48e7dc849e37bfcg").is_err());
        assert_eq!(format!("{:?}", secret("e5e973e5a6b2a43f48e7dc849e37bfcf")), "Secret(..)");
        assert_ne!(Secret::random(), Secret::random());
    }
}
