//! Name compression for replies (RFC 1035 §4.1.4), cheaper than a general compressor.
//!
//! Every name written is remembered once, lower-cased and uncompressed, with the offset of each
//! of its label suffixes. A new name is matched suffix by suffix against those by length and
//! bytes, so a lookup is a few short comparisons and never follows pointers in the message.

use domain::base::name::ToName;
use domain::base::wire::Composer;
use octseq::builder::{FreezeBuilder, OctetsBuilder, Truncate};

/// Offsets past this cannot be the target of a compression pointer.
const MAX_POINTER: usize = 0x3FFF;
/// Suffixes remembered; beyond this, names are still written, only less compressed.
const MAX_SUFFIXES: usize = 96;

/// A `Vec<u8>` message target that compresses names.
#[derive(Default)]
pub struct Compressor {
    target: Vec<u8>,
    /// Lower-cased, uncompressed wire forms of the names written.
    names: Vec<u8>,
    /// (offset in the message, start in `names`, length) of each remembered suffix.
    suffixes: Vec<(u16, u16, u8)>,
}

impl Compressor {
    pub fn with_capacity(n: usize) -> Self {
        Compressor { target: Vec::with_capacity(n), names: Vec::with_capacity(256), suffixes: Vec::with_capacity(32) }
    }

    pub fn into_target(self) -> Vec<u8> {
        self.target
    }

    fn find(&self, lower: &[u8]) -> Option<u16> {
        self.suffixes.iter().find_map(|&(pos, start, len)| {
            let start = start as usize;
            (len as usize == lower.len() && &self.names[start..start + len as usize] == lower).then_some(pos)
        })
    }
}

impl AsRef<[u8]> for Compressor {
    fn as_ref(&self) -> &[u8] {
        &self.target
    }
}

impl AsMut<[u8]> for Compressor {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.target
    }
}

impl OctetsBuilder for Compressor {
    type AppendError = std::convert::Infallible;

    fn append_slice(&mut self, slice: &[u8]) -> Result<(), Self::AppendError> {
        self.target.extend_from_slice(slice);
        Ok(())
    }
}

impl Truncate for Compressor {
    fn truncate(&mut self, len: usize) {
        self.target.truncate(len);
        // NOTE: a rewind must forget names written past the new end, or a later pointer would
        // point into bytes that are no longer there.
        self.suffixes.retain(|&(pos, _, _)| (pos as usize) < len);
    }
}

impl FreezeBuilder for Compressor {
    type Octets = Vec<u8>;

    fn freeze(self) -> Vec<u8> {
        self.target
    }
}

impl Composer for Compressor {
    fn append_compressed_name<N: ToName + ?Sized>(&mut self, name: &N) -> Result<(), Self::AppendError> {
        let mut flat = [0u8; 255];
        let wire: &[u8] = match name.as_flat_slice() {
            Some(s) => s,
            None => {
                let mut n = 0;
                for label in name.iter_labels() {
                    let l = label.as_slice();
                    flat[n] = l.len() as u8;
                    flat[n + 1..n + 1 + l.len()].copy_from_slice(l);
                    n += 1 + l.len();
                }
                &flat[..n]
            }
        };
        let mut lower = [0u8; 255];
        let lower = &mut lower[..wire.len()];
        lower.copy_from_slice(wire);
        lower.make_ascii_lowercase();
        // Label boundaries, excluding the root label at the end.
        let mut at = 0;
        let mut hit = None;
        let mut boundaries = [0u8; 128];
        let mut nb = 0;
        while at + 1 < wire.len() {
            if let Some(pos) = self.find(&lower[at..]) {
                hit = Some((at, pos));
                break;
            }
            boundaries[nb] = at as u8;
            nb += 1;
            at += 1 + wire[at] as usize;
        }
        let base = self.target.len();
        let names_start = self.names.len();
        match hit {
            Some((at, pos)) => {
                self.target.extend_from_slice(&wire[..at]);
                self.target.extend_from_slice(&(0xC000 | pos).to_be_bytes());
            }
            None => self.target.extend_from_slice(wire),
        }
        if nb > 0 {
            self.names.extend_from_slice(lower);
        }
        for &b in &boundaries[..nb] {
            let off = base + b as usize;
            if off > MAX_POINTER || self.suffixes.len() >= MAX_SUFFIXES {
                break;
            }
            self.suffixes.push((off as u16, (names_start + b as usize) as u16, (lower.len() - b as usize) as u8));
        }
        Ok(())
    }

    fn can_compress(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::message::Reply;
    use crate::testing::{query, rr};
    use domain::base::iana::Rtype;

    #[test]
    fn compresses_against_earlier_names_and_round_trips() {
        let req = query("www.Example.org.", Rtype::MX);
        let mut r = Reply::for_request(&req);
        r.answer.push(rr("www.example.org. 60 IN MX 10 mail.example.org."));
        r.answer.push(rr("www.example.org. 60 IN MX 20 mail.other.net."));
        r.additional.push(rr("mail.example.org. 60 IN A 192.0.2.1"));
        r.additional.push(rr("mail.other.net. 60 IN A 192.0.2.2"));
        let wire = r.to_wire(65535);
        let back = Reply::from_wire(&wire).expect("parses");
        let got: Vec<String> = back.answer.iter().chain(&back.additional).map(|r| r.to_string().to_lowercase()).collect();
        assert_eq!(
            got,
            [
                "www.example.org. 60 in mx 10 mail.example.org.",
                "www.example.org. 60 in mx 20 mail.other.net.",
                "mail.example.org. 60 in a 192.0.2.1",
                "mail.other.net. 60 in a 192.0.2.2"
            ]
        );
        // Owners point at the question (2 bytes each); uncompressed the message is far longer.
        assert!(wire.len() < 140, "{} bytes", wire.len());
    }
}
