//! A growing array kept in chunks of about a megabyte, for a zone's arrays while it loads.
//!
//! A `Vec` that grows copies itself into an allocation twice as large and holds both while it
//! does: near the end of a large load that is most of what the zone takes, held twice. Chunks
//! are never copied while the array grows; `into_vec` makes one array of exactly the length,
//! freeing each chunk once it is copied, so at no time is more than a chunk held twice.

use std::ops::{Index, IndexMut};

/// About how large a chunk is.
const CHUNK_BYTES: usize = 1 << 20;

pub struct Chunked<T> {
    /// Full chunks of `1 << SHIFT` elements, then the one being filled.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> Chunked<T> {
    /// Elements in a chunk, as a power of two so that an index splits with a shift.
    const SHIFT: u32 = (CHUNK_BYTES / std::mem::size_of::<T>()).ilog2();
    const MASK: usize = (1 << Self::SHIFT) - 1;

    pub fn new() -> Chunked<T> {
        Chunked { chunks: Vec::new(), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() <= Self::MASK => c.push(v),
            // NOTE: a chunk grows as a Vec up to its full size, so a small zone takes little;
            // it is never grown past it, so no chunk is copied once full.
            _ => {
                let mut c = Vec::with_capacity(16);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    pub fn extend_from_slice(&mut self, mut s: &[T]) {
        while !s.is_empty() {
            if self.chunks.last().is_none_or(|c| c.len() > Self::MASK) {
                self.chunks.push(Vec::with_capacity(16));
            }
            let c = self.chunks.last_mut().expect("a chunk was just pushed if there was none");
            let n = s.len().min(Self::MASK + 1 - c.len());
            c.extend_from_slice(&s[..n]);
            self.len += n;
            s = &s[n..];
        }
    }

    /// Drops the elements from `len` on, and the chunks that held only those.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let full = len.div_ceil(Self::MASK + 1);
        self.chunks.truncate(full);
        if let Some(c) = self.chunks.last_mut() {
            c.truncate(len - ((full - 1) << Self::SHIFT));
        }
        self.len = len;
    }

    /// One array of exactly `len` elements (its capacity is its length).
    pub fn into_vec(self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.len);
        for c in self.chunks {
            v.extend_from_slice(&c);
        }
        v
    }
}

impl<T: Copy> Default for Chunked<T> {
    fn default() -> Self {
        Chunked::new()
    }
}

impl<T: Copy> Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> Self::SHIFT][i & Self::MASK]
    }
}

impl<T: Copy> IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> Self::SHIFT][i & Self::MASK]
    }
}

#[cfg(test)]
mod tests {
    use super::Chunked;

    #[test]
    fn indexes_truncates_and_flattens_across_chunks() {
        let mut c: Chunked<u64> = Chunked::new();
        let per = 1 << Chunked::<u64>::SHIFT;
        let n = 2 * per + 5;
        for i in 0..n {
            c.push(i as u64);
        }
        assert_eq!(c.len(), n);
        assert_eq!((c[0], c[per - 1], c[per], c[n - 1]), (0, per as u64 - 1, per as u64, n as u64 - 1));
        (c[1], c[per + 1]) = (c[per + 1], c[1]);
        assert_eq!((c[1], c[per + 1]), (per as u64 + 1, 1));
        c.truncate(per + 2);
        let v = c.into_vec();
        assert_eq!((v.len(), v.capacity()), (per + 2, per + 2));
        assert_eq!((v[1], v[per], v[per + 1]), (per as u64 + 1, per as u64, 1));

        let mut b: Chunked<u8> = Chunked::new();
        let whole: Vec<u8> = (0..3 * (1 << 20) + 7).map(|i| (i % 251) as u8).collect();
        for part in whole.chunks(100_003) {
            b.extend_from_slice(part);
        }
        b.truncate(whole.len() - 7);
        assert_eq!(b.into_vec(), whole[..whole.len() - 7]);
        let empty: Chunked<u8> = Chunked::new();
        assert!(empty.into_vec().is_empty());
    }
}
