//! The length-prefixed framing of DNS over TCP (RFC 1035 §4.2.2, RFC 7766 §8): each message is
//! preceded by its length as two bytes in network order.

use bytes::{Buf, Bytes, BytesMut};

/// Takes the next complete message off the front of `buf`; `None` (leaving `buf` as it is)
/// until all of it has arrived. A zero length is an empty message, which the parser drops.
pub fn next_frame(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 2 {
        return None;
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if buf.len() < 2 + len {
        return None;
    }
    buf.advance(2);
    Some(buf.split_to(len).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_whole_and_in_order() {
        let mut buf = BytesMut::new();
        assert_eq!(next_frame(&mut buf), None);
        buf.extend_from_slice(&[0, 3, b'a', b'b']);
        assert_eq!(next_frame(&mut buf), None, "one byte missing");
        buf.extend_from_slice(&[b'c', 0, 0, 0, 1, b'x', 0]);
        assert_eq!(next_frame(&mut buf).as_deref(), Some(&b"abc"[..]));
        assert_eq!(next_frame(&mut buf).as_deref(), Some(&b""[..]));
        assert_eq!(next_frame(&mut buf).as_deref(), Some(&b"x"[..]));
        assert_eq!(next_frame(&mut buf), None, "half a length");
        assert_eq!(&buf[..], &[0]);
    }
}
