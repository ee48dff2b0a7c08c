//! NSEC3 (RFC 5155): the hashed-owner chain of a zone signed with NSEC3, and the lookups its
//! denial proofs need: the record that matches a name's hash, and the one that covers it.

use sha1::{Digest, Sha1};

/// The zone's NSEC3 parameters (from its NSEC3PARAM) and its chain, sorted by hash.
pub struct Chain {
    iterations: u16,
    salt: Box<[u8]>,
    /// Each NSEC3 record's owner hash and its node in the zone.
    hashes: Box<[([u8; 20], u32)]>,
}

pub type Hash = [u8; 20];

impl Chain {
    pub fn new(iterations: u16, salt: &[u8], mut hashes: Vec<(Hash, u32)>) -> Chain {
        hashes.sort_unstable();
        hashes.dedup_by_key(|h| h.0);
        Chain { iterations, salt: salt.into(), hashes: hashes.into_boxed_slice() }
    }

    /// Whether an NSEC3 or NSEC3PARAM record's parameters (RDATA from the hash algorithm on) are
    /// this chain's: SHA-1, the same iterations and salt. Flags are not compared.
    pub fn same_params(iterations: u16, salt: &[u8], rdata: &[u8]) -> bool {
        rdata.len() >= 5
            && rdata[0] == 1
            && u16::from_be_bytes([rdata[2], rdata[3]]) == iterations
            && rdata.get(5..5 + rdata[4] as usize) == Some(salt)
    }

    /// The hash of the name made of `labels` (leftmost first, the root left off), optionally
    /// below a `*` label: IH(salt, name, iterations) over the name in canonical form.
    pub fn hash(&self, wildcard: bool, labels: &[&[u8]]) -> Hash {
        let mut wire = [0u8; 260];
        let mut n = 0;
        if wildcard {
            wire[..2].copy_from_slice(&[1, b'*']);
            n = 2;
        }
        for l in labels {
            if n + 1 + l.len() > 255 {
                break;
            }
            wire[n] = l.len() as u8;
            for (d, c) in wire[n + 1..].iter_mut().zip(l.iter()) {
                *d = c.to_ascii_lowercase();
            }
            n += 1 + l.len();
        }
        wire[n] = 0;
        n += 1;
        let mut h: Hash = Sha1::new().chain_update(&wire[..n]).chain_update(&self.salt).finalize().into();
        for _ in 0..self.iterations {
            h = Sha1::new().chain_update(h).chain_update(&self.salt).finalize().into();
        }
        h
    }

    /// The node of the NSEC3 whose owner hash is `h`.
    pub fn matching(&self, h: &Hash) -> Option<u32> {
        self.hashes.binary_search_by(|e| e.0.cmp(h)).ok().map(|i| self.hashes[i].1)
    }

    /// The node of the NSEC3 that covers `h`: the last one before it, wrapping around to the last
    /// of the chain (RFC 5155 §3.1.7).
    pub fn covering(&self, h: &Hash) -> Option<u32> {
        let i = self.hashes.partition_point(|e| e.0 < *h);
        let i = if i == 0 { self.hashes.len().checked_sub(1)? } else { i - 1 };
        Some(self.hashes[i].1)
    }
}

/// The 20-octet hash an NSEC3 owner's first label spells in base32hex (RFC 4648 §7).
pub fn owner_hash(label: &[u8]) -> Option<Hash> {
    let s = std::str::from_utf8(label).ok()?.to_ascii_uppercase();
    let v: Vec<u8> = domain::utils::base32::decode_hex(&s).ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5155 Appendix A: salt aabbccdd, 12 iterations.
    #[test]
    fn hashes_as_rfc_5155_appendix_a() {
        let c = Chain::new(12, &[0xaa, 0xbb, 0xcc, 0xdd], Vec::new());
        let cases: &[(&[&[u8]], &str)] = &[
            (&[b"example"], "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"),
            (&[b"a", b"example"], "35mthgpgcu1qg68fab165klnsnk3dpvl"),
            (&[b"ai", b"example"], "gjeqe526plbf1g8mklp59enfd789njgi"),
            (&[b"x", b"w", b"example"], "b4um86eghhds6nea196smvmlo4ors995"),
        ];
        for (labels, want) in cases {
            let h = c.hash(false, labels);
            assert_eq!(owner_hash(want.as_bytes()), Some(h), "{labels:?}");
        }
        assert_eq!(owner_hash(b"2t7b4g4vsa5smi47k61mv5bv1a22bojr"), Some(c.hash(false, &[b"NS1", b"Example"])));
        assert_eq!(owner_hash(b"r53bq7cc2uvmubfu5ocmm6pers9tk9en"), Some(c.hash(true, &[b"w", b"example"])));
    }

    #[test]
    fn covering_wraps_around() {
        let h = |b: u8| [b; 20];
        let c = Chain::new(0, &[], vec![(h(10), 1), (h(20), 2), (h(30), 3)]);
        assert_eq!(c.matching(&h(20)), Some(2));
        assert_eq!(c.matching(&h(21)), None);
        assert_eq!(c.covering(&h(25)), Some(2));
        assert_eq!(c.covering(&h(5)), Some(3));
        assert_eq!(c.covering(&h(35)), Some(3));
        assert!(Chain::same_params(0, &[], &[1, 1, 0, 0, 0]));
        assert!(!Chain::same_params(1, &[], &[1, 0, 0, 0, 0]));
    }
}
