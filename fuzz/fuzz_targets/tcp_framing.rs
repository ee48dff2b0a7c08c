//! The TCP length-prefix reader, fed in chunks of every size: it gives back exactly the
//! messages in the stream, in order, and never reads past what arrived.
#![no_main]

use bytes::BytesMut;
use ferrite::server::framing::next_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut buf = BytesMut::new();
    let mut rebuilt = Vec::new();
    for part in stream.chunks(chunk) {
        buf.extend_from_slice(part);
        while let Some(frame) = next_frame(&mut buf) {
            rebuilt.extend_from_slice(&(frame.len() as u16).to_be_bytes());
            rebuilt.extend_from_slice(&frame);
        }
    }
    rebuilt.extend_from_slice(&buf);
    assert_eq!(rebuilt, stream, "frames and the rest are the stream");
    assert!(buf.len() < 2 || buf.len() < 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]])), "a whole frame was left");
});
