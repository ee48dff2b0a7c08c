//! The file plugin's zone file parser ($ORIGIN, $TTL, $GENERATE, every record type): errors,
//! never a panic.
#![no_main]

use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;
use ferrite::plugin::prelude::Name;
use ferrite::plugins::file::loader::parse_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // $INCLUDE reads the machine's files rather than testing the parser.
    if text.to_ascii_lowercase().contains("$include") {
        return;
    }
    let origin = Name::<Bytes>::from_str("example.org.").expect("name");
    let mut out = Vec::new();
    let _ = parse_text(text, Path::new("fuzz.zone"), &origin, &mut out, 0);
});
