//! Tokens and directives of a Corefile, with the helpers plugins parse their arguments with.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::plugin::SetupError;

/// Where a token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One word of a Corefile, after quotes and environment variables are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub loc: Loc,
    pub quoted: bool,
    /// Tokens with the same `line_id` are on one logical line (imports renumber them).
    pub(crate) line_id: u64,
}

impl Token {
    pub fn new(text: impl Into<String>, loc: Loc) -> Token {
        Token { text: text.into(), loc, quoted: false, line_id: 0 }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn err(&self, message: impl Into<String>) -> SetupError {
        SetupError::at(&self.loc, message)
    }

    /// Parses the token as `T`; the error says what was expected.
    pub fn parse<T: FromStr>(&self, what: &str) -> Result<T, SetupError> {
        self.text.parse().map_err(|_| self.err(format!("expected {what}, got {:?}", self.text)))
    }

    pub fn duration(&self) -> Result<Duration, SetupError> {
        parse_duration(&self.text).ok_or_else(|| self.err(format!("expected a duration such as 5s or 1m, got {:?}", self.text)))
    }
}

/// A line inside a directive's block: a key, its arguments, and perhaps a nested block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub tokens: Vec<Token>,
    pub block: Option<Vec<Line>>,
}

impl Line {
    pub fn key(&self) -> &Token {
        &self.tokens[0]
    }

    pub fn args(&self) -> &[Token] {
        &self.tokens[1..]
    }

    pub fn err(&self, message: impl Into<String>) -> SetupError {
        self.key().err(message)
    }

    /// The error for a key the plugin does not know.
    pub fn unknown(&self) -> SetupError {
        self.err(format!("unknown property {:?}", self.key().text))
    }

    pub fn no_block(&self) -> Result<(), SetupError> {
        match &self.block {
            Some(_) => Err(self.err(format!("{:?} takes no block", self.key().text))),
            None => Ok(()),
        }
    }

    /// Checks the number of arguments is within `min..=max`.
    pub fn nargs(&self, min: usize, max: usize) -> Result<&[Token], SetupError> {
        let n = self.args().len();
        if n < min {
            return Err(self.err(format!("{:?} needs at least {min} argument(s), got {n}", self.key().text)));
        }
        if n > max {
            return Err(self.args()[max].err(format!("{:?} takes at most {max} argument(s)", self.key().text)));
        }
        self.no_block()?;
        Ok(self.args())
    }
}

/// One plugin's directive in a server block: `name args... [{ lines }]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    pub block: Option<Vec<Line>>,
}

impl Directive {
    pub fn loc(&self) -> &Loc {
        &self.name.loc
    }

    pub fn err(&self, message: impl Into<String>) -> SetupError {
        self.name.err(message)
    }

    /// The lines of the block, or none.
    pub fn lines(&self) -> &[Line] {
        self.block.as_deref().unwrap_or(&[])
    }

    pub fn no_args(&self) -> Result<(), SetupError> {
        self.max_args(0)
    }

    pub fn max_args(&self, max: usize) -> Result<(), SetupError> {
        match self.args.get(max) {
            Some(t) => Err(t.err(format!("unexpected argument {:?}: takes at most {max}", t.text))),
            None => Ok(()),
        }
    }

    pub fn no_block(&self) -> Result<(), SetupError> {
        match self.lines().first() {
            Some(l) => Err(l.unknown()),
            None => Ok(()),
        }
    }

    /// Builds a directive from Corefile text such as `log . "{name}" { class denial }`
    /// (for tests and for the README-example checks).
    pub fn from_text(text: &str) -> Result<Directive, SetupError> {
        let src = format!(". {{\n{text}\n}}\n");
        let blocks = crate::config::corefile::parse_str(&src, "<directive>")?;
        let mut ds = blocks.into_iter().next().map(|b| b.directives).unwrap_or_default();
        if ds.len() != 1 {
            return Err(SetupError::new(format!("expected one directive, got {}", ds.len())));
        }
        Ok(ds.remove(0))
    }
}

/// Parses a Go-style duration: `300ms`, `5s`, `1m30s`, `2h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        // `try_`/`checked_`: `1e300h` is text, not a reason to panic.
        total = total.checked_add(Duration::try_from_secs_f64(value * unit).ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        // Found by fuzzing (fuzz/ ron target): these panicked in Duration's constructors.
        for huge in ["1e300s", "99999999999999999999999h", "18446744073709551615s18446744073709551615s"] {
            assert_eq!(parse_duration(huge), None, "{huge}");
        }
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
    }
}
