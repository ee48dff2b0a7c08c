//! The Corefile syntax as CoreDNS (Caddy 1) accepts it.
//!
//! Lexing splits words on white space, keeps quoted strings whole (`\"` escapes a quote) and drops
//! `#` comments. Each word then has `{$VAR}` and `{%VAR%}` replaced from the environment; a bare
//! word that becomes empty is dropped, so `cache {$TTL}` with TTL unset reads as `cache`.
//! `import` splices in a snippet `(name) { ... }` or files matching a glob (relative to the file
//! that imports), with `{args[N]}` replaced by the import's arguments. Then the token stream
//! becomes server blocks: keys, then `{`, then one directive per line, where a `{` that ends a
//! line opens a nested block.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::directive::{Directive, Line, Loc, Token};
use crate::plugin::SetupError;

/// A server block before its directives are handed to plugins.
#[derive(Clone, Debug)]
pub struct RawBlock {
    pub keys: Vec<Token>,
    pub directives: Vec<Directive>,
}

const MAX_IMPORT_DEPTH: usize = 10;

/// Snippet definitions by name: `(name) { tokens }`.
type Snippets = HashMap<String, Vec<Token>>;

/// Reads and parses a Corefile; imports are resolved relative to its directory.
pub fn parse_file(path: &Path) -> Result<Vec<RawBlock>, SetupError> {
    parse_file_with_sources(path).map(|(b, _)| b)
}

/// Like [`parse_file`], and also returns every file read (the Corefile and its imports).
pub fn parse_file_with_sources(path: &Path) -> Result<(Vec<RawBlock>, Vec<PathBuf>), SetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SetupError::new(format!("{}: cannot read: {e}", path.display())))?;
    let mut p = Parser::default();
    let tokens = p.lex_file(&text, path)?;
    let blocks = p.parse(tokens)?;
    Ok((blocks, p.files))
}

/// Parses Corefile text; `name` is used in error locations. Imports are relative to the current
/// directory.
pub fn parse_str(text: &str, name: &str) -> Result<Vec<RawBlock>, SetupError> {
    let mut p = Parser::default();
    let tokens = p.lex(text, name, Path::new("."))?;
    p.parse(tokens)
}

#[derive(Default)]
struct Parser {
    next_line_id: u64,
    /// Directory of the file each token came from, for relative imports.
    dirs: HashMap<Arc<str>, PathBuf>,
    /// Every file read, in order.
    files: Vec<PathBuf>,
}

impl Parser {
    fn lex_file(&mut self, text: &str, path: &Path) -> Result<Vec<Token>, SetupError> {
        self.files.push(path.to_path_buf());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.lex(text, &path.display().to_string(), &dir)
    }

    fn lex(&mut self, text: &str, file: &str, dir: &Path) -> Result<Vec<Token>, SetupError> {
        let file: Arc<str> = Arc::from(file);
        self.dirs.insert(file.clone(), dir.to_path_buf());
        let base_id = self.next_line_id;
        let mut max_line = 0;
        let mut out = Vec::new();
        let mut chars = text.chars().peekable();
        let (mut line, mut col) = (1u32, 0u32);
        while let Some(c) = chars.next() {
            col += 1;
            if c == '\n' {
                line += 1;
                col = 0;
                continue;
            }
            if c.is_whitespace() {
                continue;
            }
            if c == '#' {
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    chars.next();
                }
                continue;
            }
            let loc = Loc { file: file.clone(), line, col };
            let mut word = String::new();
            let quoted = c == '"';
            if quoted {
                let mut closed = false;
                while let Some(n) = chars.next() {
                    col += 1;
                    match n {
                        '\\' if chars.peek() == Some(&'"') => {
                            chars.next();
                            col += 1;
                            word.push('"');
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => {
                            line += 1;
                            col = 0;
                            word.push('\n');
                        }
                        _ => word.push(n),
                    }
                }
                if !closed {
                    return Err(SetupError::at(&loc, "unterminated quoted string"));
                }
            } else {
                word.push(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() {
                        break;
                    }
                    chars.next();
                    col += 1;
                    word.push(n);
                }
            }
            let replaced = replace_env(&word);
            if replaced.is_empty() && !quoted && !word.is_empty() {
                continue;
            }
            max_line = max_line.max(loc.line as u64);
            let line_id = base_id + loc.line as u64;
            out.push(Token { text: replaced, loc, quoted, line_id });
        }
        self.next_line_id = base_id + max_line + 1;
        Ok(out)
    }

    fn parse(&mut self, tokens: Vec<Token>) -> Result<Vec<RawBlock>, SetupError> {
        let (snippets, rest) = self.take_snippets(tokens)?;
        let tokens = self.expand(rest, &snippets, 0)?;
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            // Keys: the words of one line (and following lines while a key ends with a comma).
            let first = &tokens[i];
            let start = i;
            let mut keys = Vec::new();
            let mut line_id = first.line_id;
            while i < tokens.len() && tokens[i].line_id == line_id && !is_open(&tokens[i]) {
                if tokens[i].text == "}" {
                    return Err(tokens[i].err("unexpected '}'"));
                }
                for part in tokens[i].text.split(',').filter(|s| !s.is_empty()) {
                    let mut t = tokens[i].clone();
                    t.text = part.to_string();
                    keys.push(t);
                }
                let comma = tokens[i].text.ends_with(',');
                i += 1;
                if comma && i < tokens.len() {
                    line_id = tokens[i].line_id;
                }
            }
            if keys.is_empty() {
                // NOTE: the token at `i` may be past the end (a line of commas alone).
                return Err(tokens.get(i).unwrap_or(&tokens[start]).err("expected server block keys before '{'"));
            }
            let directives = if i < tokens.len() && is_open(&tokens[i]) {
                let open = i;
                i += 1;
                let (lines, next) = parse_lines(&tokens, i, Some(&tokens[open]))?;
                i = next;
                lines
            } else if blocks.is_empty() {
                // One server block may leave out its braces: the rest of the file is its body.
                let (lines, next) = parse_lines(&tokens, i, None)?;
                i = next;
                lines
            } else {
                let at = tokens.get(i).unwrap_or(&tokens[tokens.len() - 1]);
                return Err(at.err(format!("expected '{{' after server block keys, got {:?}", at.text)));
            };
            let directives = directives
                .into_iter()
                .map(|l| {
                    let mut toks = l.tokens.into_iter();
                    let name = toks.next().expect("a line has a first token");
                    Directive { name, args: toks.collect(), block: l.block }
                })
                .collect();
            blocks.push(RawBlock { keys, directives });
        }
        Ok(blocks)
    }

    /// Removes `(name) { ... }` snippet definitions from the top level.
    fn take_snippets(&self, tokens: Vec<Token>) -> Result<(Snippets, Vec<Token>), SetupError> {
        let mut snippets = HashMap::new();
        let mut rest = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            let is_def = depth == 0
                && t.text.starts_with('(')
                && t.text.ends_with(')')
                && t.text.len() > 2
                && !t.quoted
                && tokens.get(i + 1).is_some_and(is_open);
            if is_def {
                let name = t.text[1..t.text.len() - 1].to_string();
                let mut d = 1usize;
                let mut j = i + 2;
                let mut body = Vec::new();
                while j < tokens.len() {
                    if is_open(&tokens[j]) {
                        d += 1;
                    } else if is_close(&tokens[j]) {
                        d -= 1;
                        if d == 0 {
                            break;
                        }
                    }
                    body.push(tokens[j].clone());
                    j += 1;
                }
                if j >= tokens.len() {
                    return Err(t.err(format!("snippet {name:?} has no closing '}}'")));
                }
                if snippets.insert(name.clone(), body).is_some() {
                    return Err(t.err(format!("snippet {name:?} is defined twice")));
                }
                i = j + 1;
                continue;
            }
            if is_open(t) {
                depth += 1;
            } else if is_close(t) {
                depth = depth.saturating_sub(1);
            }
            rest.push(t.clone());
            i += 1;
        }
        Ok((snippets, rest))
    }

    /// Replaces `import` lines by the snippet or files they name.
    fn expand(&mut self, tokens: Vec<Token>, snippets: &HashMap<String, Vec<Token>>, depth: usize) -> Result<Vec<Token>, SetupError> {
        let mut out = Vec::with_capacity(tokens.len());
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            let starts_line = i == 0 || tokens[i - 1].line_id != t.line_id;
            if !(starts_line && t.text == "import" && !t.quoted) {
                out.push(t.clone());
                i += 1;
                continue;
            }
            if depth >= MAX_IMPORT_DEPTH {
                return Err(t.err(format!("imports nested more than {MAX_IMPORT_DEPTH} deep (an import cycle?)")));
            }
            let mut args = Vec::new();
            let mut j = i + 1;
            while j < tokens.len() && tokens[j].line_id == t.line_id {
                args.push(tokens[j].clone());
                j += 1;
            }
            let Some(target) = args.first() else {
                return Err(t.err("import needs a snippet name or a file pattern"));
            };
            let imported = if let Some(body) = snippets.get(&target.text) {
                self.renumber(body.clone())
            } else {
                let dir = self.dirs.get(&target.loc.file).cloned().unwrap_or_default();
                let pattern = if Path::new(&target.text).is_absolute() {
                    PathBuf::from(&target.text)
                } else {
                    dir.join(&target.text)
                };
                let paths = glob::glob(&pattern.to_string_lossy())
                    .map_err(|e| target.err(format!("bad import pattern: {e}")))?
                    .filter_map(Result::ok)
                    .collect::<Vec<_>>();
                let has_glob = target.text.contains(['*', '?', '[']);
                if paths.is_empty() && !has_glob {
                    return Err(target.err(format!("import {:?}: no such snippet or file", target.text)));
                }
                let mut all = Vec::new();
                for p in paths {
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| target.err(format!("import {}: {e}", p.display())))?;
                    all.extend(self.lex_file(&text, &p)?);
                }
                all
            };
            let imported = substitute_args(imported, &args[1..]);
            let (inner_snippets, body) = self.take_snippets(imported)?;
            let mut merged = snippets.clone();
            merged.extend(inner_snippets);
            out.extend(self.expand(body, &merged, depth + 1)?);
            i = j;
        }
        Ok(out)
    }

    /// Gives tokens spliced in from a snippet fresh line ids, so they never join a line of the
    /// place they are imported into.
    fn renumber(&mut self, mut tokens: Vec<Token>) -> Vec<Token> {
        let mut map = HashMap::new();
        for t in &mut tokens {
            let next = &mut self.next_line_id;
            let id = *map.entry(t.line_id).or_insert_with(|| {
                *next += 1;
                *next
            });
            t.line_id = id;
        }
        tokens
    }
}

fn is_open(t: &Token) -> bool {
    t.text == "{" && !t.quoted
}

fn is_close(t: &Token) -> bool {
    t.text == "}" && !t.quoted
}

/// Parses lines from `i` until the `}` that closes `open` (or the end of input when `open` is
/// `None`). Returns the lines and the index after the closing brace.
fn parse_lines(tokens: &[Token], mut i: usize, open: Option<&Token>) -> Result<(Vec<Line>, usize), SetupError> {
    let mut lines = Vec::new();
    loop {
        let Some(t) = tokens.get(i) else {
            return match open {
                Some(o) => Err(o.err("this '{' is never closed")),
                None => Ok((lines, i)),
            };
        };
        if is_close(t) {
            return match open {
                Some(_) => Ok((lines, i + 1)),
                None => Err(t.err("unexpected '}'")),
            };
        }
        if is_open(t) {
            return Err(t.err("unexpected '{' at the start of a line"));
        }
        let line_id = t.line_id;
        let mut words = Vec::new();
        let mut block = None;
        while let Some(t) = tokens.get(i) {
            if t.line_id != line_id || is_close(t) {
                break;
            }
            if is_open(t) {
                let (inner, next) = parse_lines(tokens, i + 1, Some(t))?;
                block = Some(inner);
                i = next;
                break;
            }
            words.push(t.clone());
            i += 1;
        }
        lines.push(Line { tokens: words, block });
    }
}

/// Replaces `{args[N]}` (and `{args[:]}`, all of them) in imported tokens.
fn substitute_args(tokens: Vec<Token>, args: &[Token]) -> Vec<Token> {
    if !tokens.iter().any(|t| t.text.contains("{args[")) {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len());
    for mut t in tokens {
        if t.text == "{args[:]}" {
            for a in args {
                let mut n = t.clone();
                n.text = a.text.clone();
                out.push(n);
            }
            continue;
        }
        for (n, a) in args.iter().enumerate() {
            t.text = t.text.replace(&format!("{{args[{n}]}}"), &a.text);
        }
        out.push(t);
    }
    out
}

/// Replaces `{$NAME}` and `{%NAME%}` with the environment's value (empty when unset).
pub fn replace_env(s: &str) -> String {
    if !s.contains("{$") && !s.contains("{%") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let parsed = if let Some(body) = tail.strip_prefix("{$") {
            body.find('}').map(|end| (&body[..end], end + 3))
        } else if let Some(body) = tail.strip_prefix("{%") {
            body.find("%}").map(|end| (&body[..end], end + 4))
        } else {
            None
        };
        match parsed {
            Some((name, len)) if !name.is_empty() => {
                out.push_str(&std::env::var(name).unwrap_or_default());
                rest = &tail[len..];
            }
            _ => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(d: &Directive) -> Vec<String> {
        std::iter::once(&d.name).chain(&d.args).map(|t| t.text.clone()).collect()
    }

    #[test]
    fn blocks_keys_and_nesting() {
        let b = parse_str(
            "# comment\nexample.org:1053 example.net {\n  log . \"a b\" {\n    class denial\n  }\n  whoami # trailing\n}\n.:53, .:54 {\n chaos\n}\n",
            "Corefile",
        )
        .expect("parses");
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].keys.iter().map(|k| k.text.as_str()).collect::<Vec<_>>(), ["example.org:1053", "example.net"]);
        assert_eq!(words(&b[0].directives[0]), ["log", ".", "a b"]);
        let inner = b[0].directives[0].block.as_ref().expect("block");
        assert_eq!(inner[0].tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), ["class", "denial"]);
        assert_eq!(words(&b[0].directives[1]), ["whoami"]);
        assert_eq!(b[1].keys.len(), 2);
        assert_eq!(b[0].directives[1].name.loc.line, 6);
        assert_eq!(b[0].directives[1].name.loc.col, 3);
    }

    #[test]
    fn snippets_with_args_and_env() {
        std::env::set_var("FERRITE_TEST_TTL", "30");
        let b = parse_str(
            "(common) {\n  errors\n  log {args[0]}\n}\n. {\n  import common .\n  cache {$FERRITE_TEST_TTL}\n  cache {$FERRITE_UNSET_VAR}\n  nsid {%FERRITE_TEST_TTL%}\n}\n",
            "Corefile",
        )
        .expect("parses");
        let d: Vec<Vec<String>> = b[0].directives.iter().map(words).collect();
        assert_eq!(d, vec![vec!["errors"], vec!["log", "."], vec!["cache", "30"], vec!["cache"], vec!["nsid", "30"]]);
    }

    #[test]
    fn single_block_without_braces() {
        let b = parse_str(".:1053\nwhoami\nlog\n", "Corefile").expect("parses");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].directives.len(), 2);
    }

    #[test]
    fn errors_have_locations() {
        let e = parse_str(". {\n  log {\n", "Corefile").expect_err("unclosed");
        assert_eq!(e.to_string(), "Corefile:2:7: this '{' is never closed");
        let e = parse_str(". {\n}\n}\n", "Corefile").expect_err("extra close");
        assert_eq!(e.to_string(), "Corefile:3:1: unexpected '}'");
        let e = parse_str(". {\n log \"x\n}\n", "Corefile").expect_err("quote");
        assert_eq!(e.to_string(), "Corefile:2:6: unterminated quoted string");
        let e = parse_str(". {\n import nothing_here\n}\n", "Corefile").expect_err("import");
        assert!(e.to_string().starts_with("Corefile:2:9: import \"nothing_here\""), "{e}");
        let e = parse_str(". {\n}\nexample.org\nwhoami\n", "Corefile").expect_err("no brace");
        assert!(e.to_string().starts_with("Corefile:4:1: expected '{'"), "{e}");
    }

    #[test]
    fn import_files_by_glob() {
        let dir = std::env::temp_dir().join(format!("ferrite-import-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
        std::fs::write(dir.join("conf.d/a.conf"), "whoami\n").expect("write");
        std::fs::write(dir.join("conf.d/b.conf"), "chaos\n").expect("write");
        std::fs::write(dir.join("Corefile"), ". {\n  import conf.d/*.conf\n  log\n}\n").expect("write");
        let b = parse_file(&dir.join("Corefile")).expect("parses");
        let names: Vec<_> = b[0].directives.iter().map(|d| d.name.text.clone()).collect();
        assert_eq!(names, ["whoami", "chaos", "log"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
