//! Reading zone files: RFC 1035 master-file text through domain's `zonefile::inplace` scanner,
//! with `$INCLUDE` followed here (the scanner hands it back) and `$GENERATE` (BIND's extension)
//! expanded before the scanner sees the text. Errors name the file, line and column.
//!
//! A file is read and scanned in pieces of about 256 KiB, so a large zone's text is never
//! held whole beside the records read from it. The pieces go to one scanner, which keeps the
//! state one entry hands to the next (`$ORIGIN`, `$TTL`, the last TTL, class and owner, and the
//! line count); a piece ends only where an entry may start: after a line end that is not inside
//! parentheses or a quoted string, nor escaped.

use std::io::Read;
use std::path::{Path, PathBuf};

use domain::base::iana::Class;
use domain::base::name::{FlattenInto, Name};
use domain::zonefile::inplace::{Entry, Zonefile};

use crate::plugin::Rr;

/// Includes nest at most this deep, so a file that includes itself fails instead of looping.
const MAX_INCLUDE_DEPTH: usize = 16;

/// About how much text is read and scanned at a time.
const PIECE: usize = 1 << 18;

/// Reads the records of `path` with `origin` as the initial origin.
pub fn read_records(path: &Path, origin: &Name<bytes::Bytes>) -> Result<Vec<Rr>, String> {
    let mut out = Vec::new();
    read_each(path, origin, &mut |r| out.push(r))?;
    Ok(out)
}

/// Reads the records of `path`, handing each one to `sink` as it is read, so the caller need
/// not hold them all (a zone's builder stores them far more compactly than `Rr` values).
pub fn read_each(path: &Path, origin: &Name<bytes::Bytes>, sink: &mut dyn FnMut(Rr)) -> Result<(), String> {
    read_into(path, origin, sink, 0)
}

fn read_into(path: &Path, origin: &Name<bytes::Bytes>, sink: &mut dyn FnMut(Rr), depth: usize) -> Result<(), String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!("{}: $INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep", path.display()));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // The text is wanted whole only to report an error: it is read again then.
    scan(file, &|| std::fs::read_to_string(path).unwrap_or_default(), path, origin, sink, depth, PIECE)
}

/// Parses zone-file text; `path` names it in errors and anchors relative `$INCLUDE`s.
pub fn parse_text(text: &str, path: &Path, origin: &Name<bytes::Bytes>, out: &mut Vec<Rr>, depth: usize) -> Result<(), String> {
    parse_text_in_pieces(text, path, origin, out, depth, PIECE)
}

/// `parse_text` with the text handed to the scanner about `piece` bytes at a time.
pub fn parse_text_in_pieces(text: &str, path: &Path, origin: &Name<bytes::Bytes>, out: &mut Vec<Rr>, depth: usize, piece: usize) -> Result<(), String> {
    scan(text.as_bytes(), &|| text.to_string(), path, origin, &mut |r| out.push(r), depth, piece)
}

/// Where zone-file text may be cut so that the scanner is between entries: the state of
/// `crate::message::unclosed_paren`, kept from one piece of text to the next.
#[derive(Default)]
struct Cuts {
    depth: u32,
    quoted: bool,
    comment: bool,
    escaped: bool,
    /// Lines seen so far.
    lines: usize,
}

impl Cuts {
    /// Reads `text` on from the state left by the text before it; returns the end of the last
    /// line after which an entry may start, and the lines up to there.
    fn last_cut(&mut self, text: &[u8]) -> Option<(usize, usize)> {
        let mut cut = None;
        for (i, &c) in text.iter().enumerate() {
            if c == b'\n' {
                self.lines += 1;
                self.comment = false;
                if self.escaped {
                    self.escaped = false;
                } else if self.depth == 0 && !self.quoted {
                    cut = Some((i + 1, self.lines));
                }
                continue;
            }
            if self.comment {
                continue;
            }
            if self.escaped {
                self.escaped = false;
                continue;
            }
            match c {
                b'\\' => self.escaped = true,
                b'"' => self.quoted = !self.quoted,
                b';' if !self.quoted => self.comment = true,
                b'(' if !self.quoted => self.depth += 1,
                b')' if !self.quoted => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        cut
    }
}

/// Scans the text `input` gives, handing each record to `sink`; `again` gives the whole text
/// once more, to report an error.
fn scan(mut input: impl Read, again: &dyn Fn() -> String, path: &Path, origin: &Name<bytes::Bytes>, sink: &mut dyn FnMut(Rr), depth: usize, piece: usize) -> Result<(), String> {
    let piece = piece.max(1);
    let mut z = Zonefile::with_capacity(piece.min(PIECE) + 1).allow_invalid();
    z.set_default_class(Class::IN);
    z.set_origin(origin.clone());
    // Bytes read and not yet split into lines; the line of the file they start on.
    let mut raw: Vec<u8> = Vec::new();
    let mut raw_line = 1;
    // Lines ($GENERATE expanded) not yet handed to the scanner, and the lines handed so far.
    let mut text: Vec<u8> = Vec::new();
    let mut cuts = Cuts::default();
    let mut checked = 0;
    let mut fed_lines = 0;
    let mut eof = false;
    while !eof {
        let old = raw.len();
        raw.resize(old + piece, 0);
        let n = loop {
            match input.read(&mut raw[old..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| format!("{}: {e}", path.display()))?,
            }
        };
        raw.truncate(old + n);
        eof = n == 0;
        // Whole lines (all that is left, at the end) go on, $GENERATE expanded.
        let end = if eof { raw.len() } else { raw.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1) };
        let lines = std::str::from_utf8(&raw[..end]).map_err(|_| format!("{}: stream did not contain valid UTF-8", path.display()))?;
        if has_generate(lines) {
            let (expanded, _) = expand_generate(lines).map_err(|(line, m)| format!("{}:{}:1: {m}", path.display(), raw_line + line - 1))?;
            text.extend_from_slice(expanded.as_bytes());
        } else {
            text.extend_from_slice(lines.as_bytes());
        }
        raw_line += raw[..end].iter().filter(|&&c| c == b'\n').count();
        raw.drain(..end);
        // Hand the scanner what ends where an entry may start; at the end, all of it.
        let to = if eof {
            // NOTE: domain's scanner panics on some text left open in parentheses; refuse it
            // first. What was handed over before ends outside parentheses, so only the rest can
            // leave one open.
            if let Err(line) = crate::message::unclosed_paren(std::str::from_utf8(&text).expect("whole lines of UTF-8")) {
                let (_, map) = expand_generate_owned(again()).unwrap_or_default();
                let line = fed_lines + line;
                return Err(format!("{}:{}:1: '(' is never closed", path.display(), map.get(line - 1).copied().unwrap_or(line)));
            }
            // A last line without a newline is still a line.
            text.push(b'\n');
            text.len()
        } else {
            let from = checked;
            let cut = cuts.last_cut(&text[from..]);
            checked = text.len();
            let Some((at, lines)) = cut else { continue };
            fed_lines = lines;
            from + at
        };
        z.extend_from_slice(&text[..to]);
        text.drain(..to);
        checked -= to.min(checked);
        entries(&mut z, again, path, sink, depth)?;
    }
    Ok(())
}

/// Scans the entries `z` holds, up to the end of what it was given.
fn entries(z: &mut Zonefile, again: &dyn Fn() -> String, path: &Path, sink: &mut dyn FnMut(Rr), depth: usize) -> Result<(), String> {
    loop {
        let start = z.current_offset();
        match z.next_entry() {
            Ok(None) => return Ok(()),
            Ok(Some(Entry::Record(r))) => sink(r.flatten_into()),
            Ok(Some(Entry::Include { path: inc, origin: inc_origin })) => {
                let inc = inc.to_string();
                let inc_path = match Path::new(&inc) {
                    p if p.is_absolute() => p.to_path_buf(),
                    p => path.parent().map_or_else(|| PathBuf::from(p), |d| d.join(p)),
                };
                // RFC 1035 §5.1: without an origin argument, the included file starts with the
                // origin in effect where $INCLUDE appears; the including file's origin is
                // unchanged afterwards.
                let o = match inc_origin {
                    Some(o) => o,
                    None => z.origin().map_err(|e| format!("{}: {e}", path.display()))?,
                };
                read_into(&inc_path, &o, sink, depth + 1)?;
            }
            Err(e) => {
                // The scanner says `LINE:COL: message`, but it has often read past the end of the
                // line by then: name the line the failing entry starts on, and the scanner's column
                // when it is on that line. Lines map back through $GENERATE.
                let (text, line_map) = expand_generate_owned(again()).unwrap_or_default();
                let s = e.to_string();
                let mut parts = s.splitn(3, ':');
                let (dl, dc) = (parts.next().and_then(|l| l.parse::<usize>().ok()), parts.next().and_then(|c| c.parse::<usize>().ok()));
                let msg = parts.next().unwrap_or(&s).trim();
                let p = entry_start(&text, start);
                let line = text[..p].matches('\n').count() + 1;
                let col = match (dl, dc) {
                    (Some(l), Some(c)) if l == line => c,
                    _ => p - text[..p].rfind('\n').map_or(0, |i| i + 1) + 1,
                };
                let line = line_map.get(line - 1).copied().unwrap_or(line);
                return Err(format!("{}:{line}:{col}: {msg}", path.display()));
            }
        }
    }
}

/// `expand_generate` without copying text that has no `$GENERATE`.
fn expand_generate_owned(text: String) -> Result<(String, Vec<usize>), (usize, String)> {
    if !has_generate(&text) {
        let n = text.lines().count() + 1;
        return Ok((text, (1..=n).collect()));
    }
    expand_generate(&text)
}

fn has_generate(text: &str) -> bool {
    text.contains("$GENERATE") || text.contains("$generate")
}

/// The offset of the first character of the entry that starts scanning at `from`: blanks,
/// empty lines and comments skipped.
fn entry_start(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let mut p = from.min(b.len());
    while p < b.len() {
        match b[p] {
            b' ' | b'\t' | b'\r' | b'\n' => p += 1,
            b';' => {
                while p < b.len() && b[p] != b'\n' {
                    p += 1;
                }
            }
            _ => break,
        }
    }
    p
}

/// Expands `$GENERATE RANGE LHS [TTL] [CLASS] TYPE RHS` lines (BIND's syntax: RANGE is
/// `start-stop[/step]`, `$` is the iterator, `${offset,width,base}` formats it, `\$` is a
/// dollar sign). Returns the new text and, for each of its lines, the line of the input it
/// came from (1-based).
pub fn expand_generate(text: &str) -> Result<(String, Vec<usize>), (usize, String)> {
    if !has_generate(text) {
        let n = text.lines().count() + 1;
        return Ok((text.to_string(), (1..=n).collect()));
    }
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::new();
    // Other lines are kept as they are, line ends included, so that text expanded a piece at a
    // time is the same as the text expanded whole.
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        // NOTE: `get`, not indexing: the ninth byte may fall inside a multi-byte character.
        let is_gen = trimmed.get(..9).is_some_and(|w| w.eq_ignore_ascii_case("$GENERATE")) && line.starts_with('$');
        if !is_gen {
            out.push_str(line);
            map.push(i + 1);
            continue;
        }
        let body = trimmed[9..].split(';').next().unwrap_or("");
        let mut words = body.split_whitespace();
        let range = words.next().ok_or((i + 1, "$GENERATE needs a range".to_string()))?;
        let rest: Vec<&str> = words.collect();
        if rest.len() < 3 {
            return Err((i + 1, "$GENERATE needs a range, an owner, a type and data".into()));
        }
        let (start, stop, step) = parse_range(range).ok_or((i + 1, format!("invalid $GENERATE range {range:?}")))?;
        if stop.saturating_sub(start) / step > 65535 {
            return Err((i + 1, "$GENERATE range too large (more than 65536 records)".into()));
        }
        let mut n = start;
        while n <= stop {
            let mut first = true;
            for w in &rest {
                if !first {
                    out.push(' ');
                }
                first = false;
                out.push_str(&substitute(w, n).map_err(|m| (i + 1, m))?);
            }
            out.push('\n');
            map.push(i + 1);
            n = match n.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
    }
    map.push(text.lines().count() + 1);
    Ok((out, map))
}

fn parse_range(r: &str) -> Option<(u64, u64, u64)> {
    let (range, step) = match r.split_once('/') {
        Some((a, s)) => (a, s.parse().ok()?),
        None => (r, 1),
    };
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && step > 0).then_some((a, b, step))
}

/// Replaces `$`, `${offset[,width[,base]]}` and `\$` in one word.
fn substitute(w: &str, n: u64) -> Result<String, String> {
    let b = w.as_bytes();
    let mut out = String::with_capacity(w.len() + 8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if b.get(i + 1) == Some(&b'$') => {
                out.push_str("\\$");
                i += 2;
            }
            b'$' if b.get(i + 1) == Some(&b'{') => {
                let end = w[i..].find('}').ok_or_else(|| format!("unclosed ${{ in {w:?}"))? + i;
                let spec: Vec<&str> = w[i + 2..end].split(',').collect();
                let offset: i64 = spec.first().unwrap_or(&"0").trim().parse().map_err(|_| format!("bad offset in {w:?}"))?;
                let width: usize = spec.get(1).map_or(Ok(0), |s| s.trim().parse()).map_err(|_| format!("bad width in {w:?}"))?;
                // A label holds 63 bytes: a wider field can only be a mistake (or a way to make
                // the server allocate without bound).
                if width > 63 {
                    return Err(format!("width {width} in {w:?} is more than a label holds"));
                }
                let v = (n as i64).saturating_add(offset).max(0) as u64;
                let s = match spec.get(2).map(|s| s.trim()).unwrap_or("d") {
                    "d" => format!("{v:0width$}"),
                    "o" => format!("{v:0width$o}"),
                    "x" => format!("{v:0width$x}"),
                    "X" => format!("{v:0width$X}"),
                    // Nibbles in reverse order, for ip6.arpa names.
                    "n" | "N" => {
                        let hex = format!("{v:0width$x}");
                        let mut s = String::new();
                        for (k, c) in hex.chars().rev().enumerate() {
                            if k > 0 {
                                s.push('.');
                            }
                            s.push(c);
                        }
                        if spec[2].trim() == "N" {
                            s.make_ascii_uppercase();
                        }
                        s
                    }
                    other => return Err(format!("bad base {other:?} in {w:?}")),
                };
                out.push_str(&s);
                i = end + 1;
            }
            b'$' => {
                out.push_str(&n.to_string());
                i += 1;
            }
            _ => {
                let c = w[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out)
}
