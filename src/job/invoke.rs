//! Parser for Quartz/RuoYi-style "invoke target" strings such as
//! `report.daily('eu', 3L, true)`.
//!
//! Users migrating from Quartz or RuoYi already write job targets in this
//! shape, so rota accepts it verbatim and turns it into a handler name plus
//! typed arguments. The grammar is deliberately a small, strict subset of
//! Java call syntax: anything ambiguous is rejected with a column-accurate
//! error instead of being guessed at.
//!
//! # Grammar
//!
//! ```text
//! target     = ws handler ws [ "(" ws [ args ] ws ")" ] ws
//! handler    = ident { "." ident }
//! ident      = ( letter | "_" ) { letter | digit | "_" | "-" }     (ASCII only)
//! args       = literal { ws "," ws literal }                       (no trailing comma)
//! literal    = string | number | "true" | "false" | "null"
//! string     = "'" { char | escape } "'" | '"' { char | escape } '"'
//! escape     = "\\" | "\'" | "\"" | "\n" | "\t" | "\r" | "\0" | "\u" hex hex hex hex
//! number     = [ "+" | "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ] [ suffix ]
//! suffix     = "L" | "l" | "D" | "d" | "F" | "f"
//! ws         = { whitespace }
//! ```
//!
//! A handler without parentheses (`noop`) and one with empty parentheses
//! (`noop()`) both mean "no arguments". `\uXXXX` escapes may form a UTF-16
//! surrogate pair (`\uD83D\uDE00`), as Java source would write them; an
//! unpaired surrogate is an error.
//!
//! # Literals as JSON
//!
//! | literal                                  | JSON value        |
//! |------------------------------------------|-------------------|
//! | `'text'`, `"text"`                       | string            |
//! | `42`, `-7`, `3L` (fits `i64`)            | integer number    |
//! | `1.5`, `1e3`, `2.5f`, `2D` (finite)      | floating number   |
//! | `true`, `false`                          | bool              |
//! | `null`                                   | null              |
//!
//! A number is a float if it has a `.`, an exponent or a `D`/`F` suffix;
//! otherwise it is an integer, and `L` is only allowed on integers.
//!
//! # Limits
//!
//! Inputs longer than [`MAX_INPUT_BYTES`] and calls with more than
//! [`MAX_ARGS`] arguments are rejected, so a hostile target costs at most a
//! few kilobytes of work. The parser never panics.
//!
//! Error columns are 1-based and count characters (not bytes) of the
//! original input, leading whitespace included, so they line up with what
//! the user typed.

use std::fmt;
use std::str::FromStr;

use serde_json::{Number, Value};

/// Longest accepted input, in bytes (checked before any parsing work).
pub const MAX_INPUT_BYTES: usize = 4096;

/// Most arguments a single target may carry.
pub const MAX_ARGS: usize = 64;

/// Echoed tokens are cut to this many characters so an error message stays
/// readable even when the offending token is kilobytes long.
const MAX_SNIPPET_CHARS: usize = 32;

/// A parsed invoke target: which handler to call and with what arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeTarget {
    pub handler: String,
    pub args: Vec<Value>,
}

/// Why an invoke target was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {reason}")]
pub struct InvokeError {
    /// 1-based, in characters of the original input.
    pub column: usize,
    pub reason: String,
}

/// Parses an invoke target such as `report.daily('eu', 3L, true)`.
///
/// # Errors
///
/// Returns an [`InvokeError`] pointing at the first character that does not
/// fit the grammar in the module docs, or at column 1 when the input is empty
/// or longer than [`MAX_INPUT_BYTES`].
pub fn parse(input: &str) -> Result<InvokeTarget, InvokeError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(InvokeError {
            column: 1,
            reason: format!("invoke target is {} bytes, at most {MAX_INPUT_BYTES} are allowed", input.len()),
        });
    }
    if input.trim().is_empty() {
        return Err(InvokeError { column: 1, reason: "empty invoke target".to_string() });
    }
    Parser::new(input).target()
}

/// Renders a target back to the canonical text form (strings single-quoted
/// with escapes, integers as-is, floats with a '.', booleans, null).
/// `parse(render(t)) == t` for every `t` that `parse` can produce.
///
/// Targets built by hand can hold values the grammar cannot express: an
/// array or object is rendered as its JSON text and an integer above
/// `i64::MAX` as its digits, so the output stays readable for logs but will
/// not parse back. An invalid handler name is likewise emitted unchanged.
#[must_use]
pub fn render(t: &InvokeTarget) -> String {
    let mut out = t.handler.clone();
    // RuoYi writes argument-less targets without parentheses; keep that form.
    if t.args.is_empty() {
        return out;
    }
    out.push('(');
    for (i, arg) in t.args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        render_value(arg, &mut out);
    }
    out.push(')');
    out
}

impl FromStr for InvokeTarget {
    type Err = InvokeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for InvokeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(self))
    }
}

fn render_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => render_string(s, out),
        Value::Number(n) => render_number(n, out),
        Value::Array(_) | Value::Object(_) => out.push_str(&v.to_string()),
    }
}

fn render_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        // Debug gives the shortest text that reads back to the same f64, but
        // may omit the '.' ("1e100"); add one so the value reads back as a
        // float rather than looking like an integer.
        let s = format!("{f:?}");
        if s.contains('.') {
            out.push_str(&s);
        } else if let Some((mantissa, exp)) = s.split_once('e') {
            out.push_str(mantissa);
            out.push_str(".0e");
            out.push_str(exp);
        } else {
            out.push_str(&s);
            out.push_str(".0");
        }
    }
}

fn render_string(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            // Raw control characters would make the rendered target hard to
            // read in logs and UIs; all of them lie in the BMP, so \uXXXX fits.
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Characters that glue onto a bad token, so the error can quote the whole
/// word the user wrote (`foo.bar`, `3abc`) instead of its first character.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn describe(c: Option<char>) -> String {
    match c {
        Some(c) => format!("'{}'", c.escape_debug()),
        None => "end of input".to_string(),
    }
}

fn snippet(chars: &[char]) -> String {
    let shown: String = chars.iter().take(MAX_SNIPPET_CHARS).flat_map(|c| c.escape_debug()).collect();
    if chars.len() > MAX_SNIPPET_CHARS {
        format!("'{shown}…'")
    } else {
        format!("'{shown}'")
    }
}

enum NumberKind {
    Int,
    Float,
}

struct Parser {
    // Indexing by char keeps every error column a plain `index + 1`; the
    // input is capped at 4 KiB, so the copy is cheap.
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(input: &str) -> Self {
        Self { chars: input.chars().collect(), pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_is(&self, pred: impl Fn(char) -> bool) -> bool {
        self.peek().is_some_and(pred)
    }

    fn err(&self, at: usize, reason: impl Into<String>) -> InvokeError {
        InvokeError { column: at + 1, reason: reason.into() }
    }

    fn skip_ws(&mut self) {
        while self.peek_is(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn skip_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek_is(&pred) {
            self.pos += 1;
        }
    }

    fn word_end(&self, from: usize) -> usize {
        let mut end = from;
        while self.chars.get(end).copied().is_some_and(is_word_char) {
            end += 1;
        }
        end
    }

    fn target(mut self) -> Result<InvokeTarget, InvokeError> {
        self.skip_ws();
        let handler = self.handler()?;
        self.skip_ws();
        let args = match self.peek() {
            None => Vec::new(),
            Some('(') => {
                let open = self.pos;
                self.pos += 1;
                let args = self.args(open)?;
                self.skip_ws();
                if let Some(c) = self.peek() {
                    return Err(self.err(self.pos, format!("unexpected {} after ')'", describe(Some(c)))));
                }
                args
            }
            found => {
                return Err(self.err(
                    self.pos,
                    format!("expected '(' or end of input after the handler name, found {}", describe(found)),
                ))
            }
        };
        Ok(InvokeTarget { handler, args })
    }

    fn handler(&mut self) -> Result<String, InvokeError> {
        let start = self.pos;
        if !self.peek_is(is_ident_start) {
            return Err(self.err(
                self.pos,
                format!("expected a handler name (starting with a letter or '_'), found {}", describe(self.peek())),
            ));
        }
        loop {
            self.pos += 1;
            self.skip_while(is_ident_continue);
            if self.peek() != Some('.') {
                break;
            }
            self.pos += 1;
            if !self.peek_is(is_ident_start) {
                return Err(
                    self.err(self.pos, format!("expected an identifier after '.', found {}", describe(self.peek())))
                );
            }
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// Parses the argument list after the '(' at `open`, consuming the ')'.
    fn args(&mut self, open: usize) -> Result<Vec<Value>, InvokeError> {
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            self.skip_ws();
            if self.peek().is_none() {
                return Err(self.missing_close(open));
            }
            if args.len() == MAX_ARGS {
                return Err(self.err(self.pos, format!("too many arguments (at most {MAX_ARGS})")));
            }
            args.push(self.literal()?);
            self.skip_ws();
            match self.peek() {
                Some(')') => {
                    self.pos += 1;
                    return Ok(args);
                }
                Some(',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(')') {
                        return Err(self.err(comma, "trailing comma before ')'"));
                    }
                }
                None => return Err(self.missing_close(open)),
                found => {
                    return Err(
                        self.err(self.pos, format!("expected ',' or ')' after an argument, found {}", describe(found)))
                    )
                }
            }
        }
    }

    fn missing_close(&self, open: usize) -> InvokeError {
        self.err(self.pos, format!("missing ')' to close '(' at column {}", open + 1))
    }

    fn literal(&mut self) -> Result<Value, InvokeError> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => self.string(q),
            Some(c) if c.is_ascii_digit() || c == '+' || c == '-' => self.number(),
            found => {
                let start = self.pos;
                let end = self.word_end(start);
                let word = &self.chars[start..end];
                let value = match word {
                    ['t', 'r', 'u', 'e'] => Some(Value::Bool(true)),
                    ['f', 'a', 'l', 's', 'e'] => Some(Value::Bool(false)),
                    ['n', 'u', 'l', 'l'] => Some(Value::Null),
                    _ => None,
                };
                if let Some(v) = value {
                    self.pos = end;
                    return Ok(v);
                }
                let shown = if word.is_empty() { describe(found) } else { snippet(word) };
                Err(self.err(start, format!("expected a literal (string, number, true, false or null), found {shown}")))
            }
        }
    }

    fn string(&mut self, quote: char) -> Result<Value, InvokeError> {
        let start = self.pos;
        self.pos += 1;
        let unterminated = |p: &Self| p.err(p.pos, format!("unterminated string starting at column {}", start + 1));
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(unterminated(self));
            };
            self.pos += 1;
            if c == quote {
                return Ok(Value::String(out));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let backslash = self.pos - 1;
            let Some(e) = self.peek() else {
                return Err(unterminated(self));
            };
            self.pos += 1;
            let decoded = match e {
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'u' => self.unicode_escape(backslash)?,
                other => return Err(self.err(backslash, format!("unknown escape '\\{}'", other.escape_debug()))),
            };
            out.push(decoded);
        }
    }

    /// Reads the XXXX of a `\uXXXX` whose backslash is at `backslash`, plus a
    /// second `\uXXXX` when the first is a high surrogate.
    fn unicode_escape(&mut self, backslash: usize) -> Result<char, InvokeError> {
        let first = self.hex4(backslash)?;
        let code = match first {
            0xD800..=0xDBFF => {
                let low_at = self.pos;
                let has_low_escape = self.chars.get(low_at) == Some(&'\\') && self.chars.get(low_at + 1) == Some(&'u');
                if !has_low_escape {
                    return Err(self.unpaired(backslash, first));
                }
                self.pos += 2;
                let low = self.hex4(low_at)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.unpaired(backslash, first));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.unpaired(backslash, first)),
            other => other,
        };
        // Unreachable after the surrogate checks above, but a typed error
        // keeps the no-panic guarantee independent of that reasoning.
        char::from_u32(code)
            .ok_or_else(|| self.err(backslash, format!("\\u{code:04X} is not a valid Unicode scalar value")))
    }

    fn hex4(&mut self, backslash: usize) -> Result<u32, InvokeError> {
        let mut code = 0;
        for _ in 0..4 {
            let Some(d) = self.peek().and_then(|c| c.to_digit(16)) else {
                return Err(self.err(backslash, "expected 4 hex digits after '\\u'"));
            };
            code = code * 16 + d;
            self.pos += 1;
        }
        Ok(code)
    }

    fn unpaired(&self, backslash: usize, code: u32) -> InvokeError {
        self.err(backslash, format!("unpaired UTF-16 surrogate '\\u{code:04X}'"))
    }

    fn number(&mut self) -> Result<Value, InvokeError> {
        let start = self.pos;
        if let Some(sign @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            if !self.peek_is(|c| c.is_ascii_digit()) {
                return Err(
                    self.err(self.pos, format!("expected a digit after '{sign}', found {}", describe(self.peek())))
                );
            }
        }
        self.skip_while(|c| c.is_ascii_digit());
        let mut kind = NumberKind::Int;
        if self.peek() == Some('.') {
            self.pos += 1;
            if !self.peek_is(|c| c.is_ascii_digit()) {
                return Err(self.err(self.pos, format!("expected a digit after '.', found {}", describe(self.peek()))));
            }
            self.skip_while(|c| c.is_ascii_digit());
            kind = NumberKind::Float;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if !self.peek_is(|c| c.is_ascii_digit()) {
                return Err(
                    self.err(self.pos, format!("expected a digit in the exponent, found {}", describe(self.peek())))
                );
            }
            self.skip_while(|c| c.is_ascii_digit());
            kind = NumberKind::Float;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match (self.peek(), &kind) {
            (Some('L' | 'l'), NumberKind::Float) => {
                return Err(self.err(self.pos, "'L' suffix is only allowed on integers, not on floating-point numbers"))
            }
            (Some('L' | 'l'), NumberKind::Int) => self.pos += 1,
            (Some('D' | 'd' | 'F' | 'f'), _) => {
                self.pos += 1;
                kind = NumberKind::Float;
            }
            _ => {}
        }
        // Without this, `3abc` would fail later as "expected ',' or ')'",
        // which hides that the number itself is malformed.
        if self.peek_is(is_word_char) {
            let end = self.word_end(self.pos);
            return Err(self.err(start, format!("invalid number {}", snippet(&self.chars[start..end]))));
        }
        match kind {
            NumberKind::Int => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| self.err(start, "integer out of range (must fit in a signed 64-bit long)")),
            NumberKind::Float => text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| self.err(start, "floating-point number out of range (must be finite)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(handler: &str, args: Value) -> InvokeTarget {
        let Value::Array(args) = args else {
            panic!("test args must be a JSON array");
        };
        InvokeTarget { handler: handler.to_string(), args }
    }

    #[test]
    fn parses_valid_targets() {
        let cases: Vec<(&str, &str, Value)> = vec![
            ("report.daily('eu', 3L, true)", "report.daily", json!(["eu", 3, true])),
            ("noop", "noop", json!([])),
            ("ryTask.ryNoParams", "ryTask.ryNoParams", json!([])),
            ("noop()", "noop", json!([])),
            ("noop( )", "noop", json!([])),
            ("my-job.run_now", "my-job.run_now", json!([])),
            ("_a.b_.c-d", "_a.b_.c-d", json!([])),
            ("a.b.c.d(1)", "a.b.c.d", json!([1])),
            (r#"t("say \"hi\"\n\ttab\\ \'q\' \r\0")"#, "t", json!(["say \"hi\"\n\ttab\\ 'q' \r\0"])),
            (r#"t('it\'s', "a'b", 'a"b')"#, "t", json!(["it's", "a'b", "a\"b"])),
            (r"t('\u00e9\u4E2D')", "t", json!(["é中"])),
            (r"t('\uD83D\uDE00')", "t", json!(["😀"])),
            ("t('')", "t", json!([""])),
            (r#"t("")"#, "t", json!([""])),
            ("t('a,b)c')", "t", json!(["a,b)c"])),
            ("t(-1, -3L, +5, 0, -0)", "t", json!([-1, -3, 5, 0, 0])),
            ("t(007)", "t", json!([7])),
            ("t(9223372036854775807, -9223372036854775808L)", "t", json!([i64::MAX, i64::MIN])),
            ("t(1.5, 2D, 2.5f, 3F, -0.25d)", "t", json!([1.5, 2.0, 2.5, 3.0, -0.25])),
            ("t(1e3, 1.5E-3, -2e+2, 1e3D)", "t", json!([1000.0, 0.0015, -200.0, 1000.0])),
            ("t(1e-400)", "t", json!([0.0])),
            ("t(null, true, false)", "t", json!([null, true, false])),
            ("  report.daily ( 'eu' ,3L,  true )  ", "report.daily", json!(["eu", 3, true])),
            ("\tnoop\n", "noop", json!([])),
            ("a(\n1,\n2\n)", "a", json!([1, 2])),
            ("t('héllo 世界 😀')", "t", json!(["héllo 世界 😀"])),
            ("t('line\nbreak')", "t", json!(["line\nbreak"])),
        ];
        for (input, handler, args) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input:?} failed: {e}"));
            assert_eq!(got, target(handler, args), "input {input:?}");
        }
    }

    #[test]
    fn float_and_integer_stay_distinct() {
        let t = parse("t(2, 2D, 2L, 2.0)").unwrap();
        assert!(t.args[0].is_i64());
        assert!(t.args[1].is_f64());
        assert!(t.args[2].is_i64());
        assert!(t.args[3].is_f64());
    }

    #[test]
    fn rejects_invalid_targets() {
        let too_long = format!("a('{}')", "x".repeat(MAX_INPUT_BYTES));
        let max_args = format!("a({})", vec!["1"; MAX_ARGS].join(","));
        let too_many = format!("a({})", vec!["1"; MAX_ARGS + 1].join(","));
        let too_many_col = "a(".len() + 2 * MAX_ARGS + 1;
        assert!(parse(&max_args).is_ok());
        let big_float = format!("t(1{}.0)", "0".repeat(400));

        let cases: Vec<(&str, usize, String)> = vec![
            ("", 1, "empty invoke target".into()),
            ("   \t\n", 1, "empty invoke target".into()),
            (&too_long, 1, format!("invoke target is 4101 bytes, at most {MAX_INPUT_BYTES} are allowed")),
            (&too_many, too_many_col, format!("too many arguments (at most {MAX_ARGS})")),
            ("a('eu)", 7, "unterminated string starting at column 3".into()),
            (r#"a("eu')"#, 8, "unterminated string starting at column 3".into()),
            ("a('eu\\", 7, "unterminated string starting at column 3".into()),
            ("'", 1, "expected a handler name (starting with a letter or '_'), found '\\''".into()),
            ("a(1,)", 4, "trailing comma before ')'".into()),
            ("a(1 , )", 5, "trailing comma before ')'".into()),
            ("a(1", 4, "missing ')' to close '(' at column 2".into()),
            ("a(", 3, "missing ')' to close '(' at column 2".into()),
            ("a(1, ", 6, "missing ')' to close '(' at column 2".into()),
            ("  a ( 'x' ", 11, "missing ')' to close '(' at column 5".into()),
            ("a(1) x", 6, "unexpected 'x' after ')'".into()),
            ("a()()", 4, "unexpected '(' after ')'".into()),
            ("1abc", 1, "expected a handler name (starting with a letter or '_'), found '1'".into()),
            ("a..b", 3, "expected an identifier after '.', found '.'".into()),
            ("a.", 3, "expected an identifier after '.', found end of input".into()),
            ("a.1b()", 3, "expected an identifier after '.', found '1'".into()),
            ("report daily", 8, "expected '(' or end of input after the handler name, found 'd'".into()),
            ("caf\u{e9}()", 4, "expected '(' or end of input after the handler name, found 'é'".into()),
            ("a(99999999999999999999)", 3, "integer out of range (must fit in a signed 64-bit long)".into()),
            ("a(-9223372036854775809L)", 3, "integer out of range (must fit in a signed 64-bit long)".into()),
            (&big_float, 3, "floating-point number out of range (must be finite)".into()),
            ("a('x\\q')", 5, "unknown escape '\\q'".into()),
            ("a('\\u12')", 4, "expected 4 hex digits after '\\u'".into()),
            ("a('\\uD83D')", 4, "unpaired UTF-16 surrogate '\\uD83D'".into()),
            ("a('\\uDE00')", 4, "unpaired UTF-16 surrogate '\\uDE00'".into()),
            ("a(foo)", 3, "expected a literal (string, number, true, false or null), found 'foo'".into()),
            ("a(True)", 3, "expected a literal (string, number, true, false or null), found 'True'".into()),
            ("a(,1)", 3, "expected a literal (string, number, true, false or null), found ','".into()),
            ("a(1,,2)", 5, "expected a literal (string, number, true, false or null), found ','".into()),
            ("a(😀)", 3, "expected a literal (string, number, true, false or null), found '😀'".into()),
            ("a(1 2)", 5, "expected ',' or ')' after an argument, found '2'".into()),
            ("a(3abc)", 3, "invalid number '3abc'".into()),
            ("a(1.2.3)", 3, "invalid number '1.2.3'".into()),
            ("a(0x1F)", 3, "invalid number '0x1F'".into()),
            ("a(1.)", 5, "expected a digit after '.', found ')'".into()),
            ("a(1e)", 5, "expected a digit in the exponent, found ')'".into()),
            ("a(-)", 4, "expected a digit after '-', found ')'".into()),
            ("a(--1)", 4, "expected a digit after '-', found '-'".into()),
            ("a(1.5L)", 6, "'L' suffix is only allowed on integers, not on floating-point numbers".into()),
        ];
        for (input, column, reason) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err, InvokeError { column, reason }, "input {:?}", input.chars().take(60).collect::<String>());
        }
    }

    #[test]
    fn long_tokens_are_truncated_in_errors() {
        let input = format!("a({})", "z".repeat(100));
        let err = parse(&input).unwrap_err();
        assert_eq!(
            err.reason,
            format!(
                "expected a literal (string, number, true, false or null), found '{}…'",
                "z".repeat(MAX_SNIPPET_CHARS)
            )
        );
    }

    #[test]
    fn error_display_includes_column() {
        let err = parse("a(1,)").unwrap_err();
        assert_eq!(err.to_string(), "at column 4: trailing comma before ')'");
    }

    #[test]
    fn renders_canonical_form() {
        let cases: Vec<(InvokeTarget, &str)> = vec![
            (target("noop", json!([])), "noop"),
            (target("report.daily", json!(["eu", 3, true])), "report.daily('eu', 3, true)"),
            (target("t", json!(["it's \"q\" \\ \n\t\r\0 \u{1} é"])), r#"t('it\'s "q" \\ \n\t\r\0 \u0001 é')"#),
            (target("t", json!([2.0, -0.5, 1e100, 1e-7])), "t(2.0, -0.5, 1.0e100, 1.0e-7)"),
            (target("t", json!([null, false])), "t(null, false)"),
        ];
        for (t, want) in cases {
            assert_eq!(render(&t), want);
            assert_eq!(t.to_string(), want);
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let targets = vec![
            target("noop", json!([])),
            target("report.daily", json!(["eu", 3, true])),
            target("a.b-c._d", json!([null, false, true])),
            target("t", json!([i64::MIN, i64::MAX, 0, -1])),
            target("t", json!([0.0, -0.0, 1.5, 2.0, 1e100, 1e-300, f64::MAX, f64::MIN_POSITIVE, 5e-324, 0.1])),
            target("t", json!(["", "'", "\"", "\\", "\u{0}\u{7}\u{1b}\u{7f}\u{85}", "😀 é 中", "a,b)c("])),
        ];
        for t in targets {
            let text = render(&t);
            let back = parse(&text).unwrap_or_else(|e| panic!("{text:?} failed: {e}"));
            assert_eq!(back, t, "rendered as {text:?}");
        }
    }

    /// Deterministic xorshift64 so fuzz failures reproduce without extra crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn check_no_panic(input: &str) {
        let outcome = std::panic::catch_unwind(|| parse(input));
        let Ok(result) = outcome else {
            panic!("parse panicked on {input:?}");
        };
        match result {
            Ok(t) => {
                let text = render(&t);
                assert_eq!(parse(&text).as_ref(), Ok(&t), "round trip of {input:?}");
            }
            Err(e) => {
                let max_col = input.chars().count() + 1;
                assert!((1..=max_col).contains(&e.column), "column {} out of range for {input:?}", e.column);
            }
        }
    }

    #[test]
    fn fuzz_never_panics() {
        const SEEDS: &[&str] = &[
            "report.daily('eu', 3L, true)",
            r#"t("a\"b\n", -1.5e3f, null, false)"#,
            r"t('\uD83D\uDE00', 2D, +7l)",
            "noop",
            "a.b-c()",
        ];
        const PIECES: &[&str] = &[
            "(",
            ")",
            ",",
            "'",
            "\"",
            "\\",
            "\\u",
            "\\uD83D",
            "\\uDE00",
            "u",
            "L",
            "D",
            "f",
            ".",
            "e",
            "E",
            "-",
            "+",
            "0",
            "9",
            " ",
            "\n",
            "é",
            "😀",
            "true",
            "null",
            "a",
            "_",
            "99999999999999999999",
            "1e999",
            "\0",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for i in 0..20_000 {
            let input = match i % 3 {
                0 => {
                    let len = rng.below(40);
                    let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xFF) as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                1 => {
                    let n = rng.below(20);
                    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
                }
                _ => {
                    let mut chars: Vec<char> = SEEDS[rng.below(SEEDS.len())].chars().collect();
                    for _ in 0..=rng.below(4) {
                        let at = rng.below(chars.len() + 1);
                        match rng.below(3) {
                            0 if at < chars.len() => {
                                chars.remove(at);
                            }
                            1 if at < chars.len() => {
                                let piece = PIECES[rng.below(PIECES.len())];
                                chars.splice(at..=at, piece.chars());
                            }
                            _ => {
                                let piece = PIECES[rng.below(PIECES.len())];
                                chars.splice(at..at, piece.chars());
                            }
                        }
                    }
                    chars.into_iter().collect()
                }
            };
            check_no_panic(&input);
        }
        // The size limit sits at a boundary the random inputs never reach.
        check_no_panic(&"a".repeat(MAX_INPUT_BYTES));
        check_no_panic(&"a".repeat(MAX_INPUT_BYTES + 1));
        check_no_panic(&format!("a({}", "(".repeat(MAX_INPUT_BYTES - 2)));
    }
}
