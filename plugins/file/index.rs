//! An exact-name index over a zone's sorted keys, so a lookup costs a hash and a probe or two
//! instead of a bisection (a dozen or more key comparisons, most of them cache misses).
//!
//! Open addressing with linear probing at a load of 4/5: each slot is 0 (empty) or a node's
//! index plus one in its low 24 bits, and 8 bits of the key's hash above them, so a probe
//! compares a key only when the tags agree. Four bytes a slot, five a name. A zone of more
//! names than 24 bits number has no index and is searched by bisection.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

pub struct Index {
    slots: Box<[u32]>,
    /// Seeded per zone: which names collide cannot be known from outside.
    hasher: RandomState,
}

impl Index {
    /// The index of `count` keys, key `i` given by `key_of(i)`; keys are distinct. Empty (see
    /// `get`) when there are none or too many.
    pub fn build<'a>(count: usize, key_of: impl Fn(usize) -> &'a [u8]) -> Index {
        let hasher = RandomState::default();
        if count == 0 || count >= INDEX_MASK as usize {
            return Index { slots: Box::new([]), hasher };
        }
        let mut slots = vec![0u32; count + count / 4 + 1].into_boxed_slice();
        let len = slots.len();
        for i in 0..count {
            let h = hasher.hash_one(key_of(i));
            let mut p = place(h, len);
            while slots[p] != 0 {
                p = if p + 1 == len { 0 } else { p + 1 };
            }
            slots[p] = tag(h) | (i as u32 + 1);
        }
        Index { slots, hasher }
    }

    /// `Some(Some(i))`: key `i` is `key`; `Some(None)`: no key is; `None`: the index is empty
    /// and cannot tell.
    #[inline]
    pub fn get<'a>(&self, key: &[u8], key_of: impl Fn(usize) -> &'a [u8]) -> Option<Option<usize>> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let h = self.hasher.hash_one(key);
        let t = tag(h);
        let mut p = place(h, len);
        loop {
            let s = self.slots[p];
            if s == 0 {
                return Some(None);
            }
            if s & !INDEX_MASK == t {
                let i = (s & INDEX_MASK) as usize - 1;
                if key_of(i) == key {
                    return Some(Some(i));
                }
            }
            p = if p + 1 == len { 0 } else { p + 1 };
        }
    }

    pub fn heap_size(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

/// The first slot to probe: the hash's high half scaled to the table (no division).
#[inline]
fn place(h: u64, len: usize) -> usize {
    (((h >> 32) * len as u64) >> 32) as usize
}

/// Bits of the hash other than those `place` uses.
#[inline]
fn tag(h: u64) -> u32 {
    (h as u32) & !INDEX_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_key_and_no_other() {
        let keys: Vec<Vec<u8>> = (0..5000u32).map(|i| format!("h{i}\0").into_bytes()).collect();
        let index = Index::build(keys.len(), |i| &keys[i]);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.get(k, |j| &keys[j]), Some(Some(i)));
        }
        for i in 5000..6000u32 {
            assert_eq!(index.get(format!("h{i}\0").as_bytes(), |j| &keys[j]), Some(None));
        }
        assert_eq!(index.get(b"", |j| &keys[j]), Some(None));
    }

    #[test]
    fn no_keys_no_index() {
        let index = Index::build(0, |_| &[]);
        assert_eq!(index.get(b"x\0", |_| &[]), None);
        assert_eq!(index.heap_size(), 0);
    }
}
