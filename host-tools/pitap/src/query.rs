//! The query language: Graylog's (Lucene) search syntax over flow fields.
//!
//! ```text
//! from_internal:false AND action:ACCEPT
//! dst_addr:172.30.0.0/16 AND NOT dst_port:(22 OR 443)
//! bytes:>1000000 OR (src_group:databases AND to_internal:false)
//! dst_port:[1 TO 1023] proto:tcp          (terms side by side: AND)
//! src_mac:3c:22:* conn_state:REJ _exists_:src_group
//! ```
//!
//! Values: a word, a "quoted string", `*` and `?` wildcards, an address or
//! CIDR block for address fields, `>N`, `>=N`, `<N`, `<=N`, ranges
//! `[a TO b]` (inclusive) and `{a TO b}` (exclusive) with `*` for open ends,
//! and groups `field:(a OR b)`. Text matches ignore case. `AND`, `OR`,
//! `NOT` (also `&&`, `||`, `!`, and a leading `-`), parentheses. A parse
//! error names the column where the query went wrong. Hand-written: the
//! Lucene parsers in Rust belong to search engines (tantivy) and parse into
//! their own index types.

use std::net::IpAddr;

use crate::fields::{Field, FieldType, FieldValue};
use crate::flow::StoredFlow;
use crate::networks::Cidr;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    All,
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Term(Field, Match),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Match {
    Exists,
    Text(String),
    Glob(String),
    Addr(IpAddr),
    Cidr(Cidr),
    Num(u64),
    Bool(bool),
    /// Inclusive bounds; None is open.
    Range(Option<u64>, Option<u64>),
}

#[derive(Debug, PartialEq)]
pub struct QueryError {
    /// 1-based character column.
    pub column: usize,
    pub message: String,
    pub query: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "query error at column {}: {}", self.column, self.message)?;
        writeln!(f, "  {}", self.query)?;
        write!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

pub fn parse(query: &str) -> Result<Expr, QueryError> {
    let chars: Vec<char> = query.chars().collect();
    let mut p = Parser {
        chars,
        pos: 0,
        query,
    };
    p.skip_space();
    if p.at_end() {
        return Ok(Expr::All);
    }
    let expr = p.or_expr(None)?;
    p.skip_space();
    if !p.at_end() {
        return Err(p.error(if p.peek() == Some(')') {
            "a ')' without its '('".into()
        } else {
            "expected AND, OR or the end of the query".into()
        }));
    }
    Ok(expr)
}

struct Parser<'q> {
    chars: Vec<char>,
    pos: usize,
    query: &'q str,
}

impl Parser<'_> {
    fn error(&self, message: String) -> QueryError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: String) -> QueryError {
        QueryError {
            column: pos + 1,
            message,
            query: self.query.to_string(),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Consumes `word` if it stands here as a keyword (followed by a space,
    /// a parenthesis or the end).
    fn keyword(&mut self, word: &str) -> bool {
        let n = word.chars().count();
        let here: String = self.chars.iter().skip(self.pos).take(n).collect();
        let next = self.chars.get(self.pos + n).copied();
        let symbolic = !word.chars().all(char::is_alphabetic);
        if here == word && (symbolic || next.is_none_or(|c| c.is_whitespace() || c == '(')) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    /// OR of ANDs. `field` is set inside a value group `field:(...)`.
    fn or_expr(&mut self, field: Option<Field>) -> Result<Expr, QueryError> {
        let mut left = self.and_expr(field)?;
        loop {
            self.skip_space();
            if self.keyword("OR") || self.keyword("||") {
                let right = self.and_expr(field)?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self, field: Option<Field>) -> Result<Expr, QueryError> {
        let mut left = self.unary(field)?;
        loop {
            self.skip_space();
            if self.at_end() || self.peek() == Some(')') {
                return Ok(left);
            }
            let save = self.pos;
            if self.keyword("OR") || self.keyword("||") {
                self.pos = save;
                return Ok(left);
            }
            // AND, or terms side by side (Graylog's default operator).
            let _ = self.keyword("AND") || self.keyword("&&");
            let right = self.unary(field)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self, field: Option<Field>) -> Result<Expr, QueryError> {
        self.skip_space();
        if self.keyword("NOT") || self.keyword("!") || self.keyword("-") {
            return Ok(Expr::Not(Box::new(self.unary(field)?)));
        }
        if self.at_end() {
            return Err(self.error("the query ends where a term was expected".into()));
        }
        if self.peek() == Some('(') {
            let open = self.pos;
            self.pos += 1;
            let inner = self.or_expr(field)?;
            self.skip_space();
            if self.peek() != Some(')') {
                return Err(self.error_at(open, "this '(' is never closed".into()));
            }
            self.pos += 1;
            return Ok(inner);
        }
        match field {
            Some(f) => self.value(f),
            None => self.term(),
        }
    }

    /// `field:value`.
    fn term(&mut self) -> Result<Expr, QueryError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if self.peek() != Some(':') || name.is_empty() {
            return Err(self.error_at(
                start,
                "expected field:value (for example dst_port:443)".into(),
            ));
        }
        self.pos += 1;
        if name == "_exists_" {
            let fstart = self.pos;
            let word = self.word();
            let field = Field::parse(&word)
                .ok_or_else(|| self.error_at(fstart, format!("unknown field {word:?}")))?;
            return Ok(Expr::Term(field, Match::Exists));
        }
        let field = Field::parse(&name).ok_or_else(|| {
            self.error_at(
                start,
                format!(
                    "unknown field {name:?}; fields: {}",
                    Field::names().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        if self.peek().is_none_or(char::is_whitespace) {
            return Err(self.error(format!("{name}: a value must follow the ':'")));
        }
        if self.peek() == Some('(') {
            return self.unary(Some(field));
        }
        self.value(field)
    }

    /// A bare word: up to a space or a parenthesis.
    fn word(&mut self) -> String {
        self.word_before(&['(', ')'])
    }

    /// The characters up to a space or one of `ends`.
    fn word_before(&mut self, ends: &[char]) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !ends.contains(&c))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn value(&mut self, field: Field) -> Result<Expr, QueryError> {
        let start = self.pos;
        let kind = field.field_type();
        let term = |m: Match| Ok(Expr::Term(field, m));
        match self.peek() {
            Some('"') => {
                self.pos += 1;
                let mut text = String::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(self.error_at(start, "this quote is never closed".into()))
                        }
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some('\\') if self.chars.get(self.pos + 1).is_some() => {
                            text.push(self.chars[self.pos + 1]);
                            self.pos += 2;
                        }
                        Some(c) => {
                            text.push(c);
                            self.pos += 1;
                        }
                    }
                }
                self.literal(field, &text, start, false)
            }
            Some('[') | Some('{') => {
                let inclusive_lo = self.peek() == Some('[');
                self.pos += 1;
                self.skip_space();
                let lo_at = self.pos;
                let lo = self.range_word();
                self.skip_space();
                if !self.keyword("TO") {
                    return Err(self.error("expected TO in the range".into()));
                }
                self.skip_space();
                let hi_at = self.pos;
                let hi = self.range_word();
                self.skip_space();
                let inclusive_hi = match self.peek() {
                    Some(']') => true,
                    Some('}') => false,
                    _ => return Err(self.error("expected ']' or '}' to close the range".into())),
                };
                self.pos += 1;
                if kind != FieldType::Num {
                    return Err(self.error_at(
                        start,
                        format!("{}: ranges need a numeric field", field.name()),
                    ));
                }
                let lo = self
                    .bound(&lo, lo_at)?
                    .map(|v| v + u64::from(!inclusive_lo));
                let hi = match self.bound(&hi, hi_at)? {
                    Some(v) if !inclusive_hi => Some(v.checked_sub(1).ok_or_else(|| {
                        self.error_at(
                            hi_at,
                            "an exclusive upper bound of 0 matches nothing".into(),
                        )
                    })?),
                    v => v,
                };
                term(Match::Range(lo, hi))
            }
            Some('>') | Some('<') => {
                let greater = self.peek() == Some('>');
                self.pos += 1;
                let or_equal = self.peek() == Some('=');
                if or_equal {
                    self.pos += 1;
                }
                let at = self.pos;
                let word = self.word();
                if kind != FieldType::Num {
                    return Err(self.error_at(
                        start,
                        format!("{}: comparisons need a numeric field", field.name()),
                    ));
                }
                let n = self.number(&word, at)?;
                let m = match (greater, or_equal) {
                    (true, true) => Match::Range(Some(n), None),
                    (true, false) => Match::Range(Some(n.saturating_add(1)), None),
                    (false, true) => Match::Range(None, Some(n)),
                    (false, false) => match n.checked_sub(1) {
                        Some(n) => Match::Range(None, Some(n)),
                        None => return Err(self.error_at(at, "<0 matches nothing".into())),
                    },
                };
                term(m)
            }
            _ => {
                let word = self.word();
                if word.is_empty() {
                    return Err(
                        self.error(format!("{}: a value must follow the ':'", field.name()))
                    );
                }
                self.literal(field, &word, start, true)
            }
        }
    }

    fn range_word(&mut self) -> String {
        self.word_before(&[']', '}'])
    }

    fn bound(&self, word: &str, at: usize) -> Result<Option<u64>, QueryError> {
        if word == "*" {
            Ok(None)
        } else {
            self.number(word, at).map(Some)
        }
    }

    fn number(&self, word: &str, at: usize) -> Result<u64, QueryError> {
        word.parse::<u64>()
            .map_err(|_| self.error_at(at, format!("{word:?} is not a whole number")))
    }

    /// A value for `field`, checked against its kind.
    fn literal(&self, field: Field, text: &str, at: usize, bare: bool) -> Result<Expr, QueryError> {
        let wildcard = bare && (text.contains('*') || text.contains('?'));
        if bare && text == "*" {
            return Ok(Expr::Term(field, Match::Exists));
        }
        let m = match field.field_type() {
            FieldType::Text if wildcard => Match::Glob(text.to_ascii_lowercase()),
            FieldType::Text => Match::Text(text.to_ascii_lowercase()),
            FieldType::Addr if wildcard => Match::Glob(text.to_ascii_lowercase()),
            FieldType::Addr if text.contains('/') => Match::Cidr(
                Cidr::parse(text)
                    .map_err(|e| self.error_at(at, format!("{}: {e}", field.name())))?,
            ),
            FieldType::Addr => Match::Addr(text.parse().map_err(|_| {
                self.error_at(
                    at,
                    format!("{}: {text:?} is not an address or CIDR block", field.name()),
                )
            })?),
            FieldType::Num => Match::Num(self.number(text, at)?),
            FieldType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Match::Bool(true),
                "false" | "0" | "no" => Match::Bool(false),
                _ => {
                    return Err(
                        self.error_at(at, format!("{}: true or false, not {text:?}", field.name()))
                    )
                }
            },
        };
        Ok(Expr::Term(field, m))
    }
}

/// `*` any run, `?` one character; both sides already lower case.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Match {
    /// Does a field's value match? No value matches nothing (`NOT`
    /// inverts that).
    pub fn test(&self, value: Option<FieldValue<'_>>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match (self, value) {
            (Match::Exists, _) => true,
            // proto:6 means the number, proto:tcp the name.
            (Match::Text(want), FieldValue::Proto(p)) => match want.parse::<u8>() {
                Ok(n) => n == p,
                Err(_) => value.to_string().eq_ignore_ascii_case(want),
            },
            (Match::Text(want), FieldValue::Text(have)) => have.eq_ignore_ascii_case(want),
            (Match::Text(want), FieldValue::Mac(_)) => value.to_string().eq_ignore_ascii_case(want),
            (Match::Glob(p), v) => {
                glob(p.as_bytes(), v.to_string().to_ascii_lowercase().as_bytes())
            }
            (Match::Addr(want), FieldValue::Addr(have)) => {
                *want == have
                    || Cidr {
                        addr: *want,
                        prefix: if want.is_ipv4() { 32 } else { 128 },
                    }
                    .contains(&have)
            }
            (Match::Cidr(c), FieldValue::Addr(have)) => c.contains(&have),
            (Match::Num(want), FieldValue::Num(have)) => *want == have,
            (Match::Bool(want), FieldValue::Bool(have)) => *want == have,
            (Match::Range(lo, hi), FieldValue::Num(have)) => {
                lo.is_none_or(|lo| have >= lo) && hi.is_none_or(|hi| have <= hi)
            }
            _ => false,
        }
    }
}

impl Expr {
    /// The row evaluator: alerts run it on each flow as it arrives, and
    /// the store's compiled plans must agree with it.
    pub fn matches(&self, flow: &StoredFlow) -> bool {
        match self {
            Expr::All => true,
            Expr::And(a, b) => a.matches(flow) && b.matches(flow),
            Expr::Or(a, b) => a.matches(flow) || b.matches(flow),
            Expr::Not(a) => !a.matches(flow),
            Expr::Term(field, m) => match field.sides() {
                Some(sides) => sides.iter().any(|f| m.test(f.value(flow))),
                None => field.with_value(flow, |v| m.test(v)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_column() {
        let e = parse("action:ACCEPT AND bytes:>lots").unwrap_err();
        assert_eq!(e.column, 26, "{e}");
        let e = parse("action:ACCEPT AND colour:red").unwrap_err();
        assert_eq!(e.column, 19, "{e}");
        assert!(e.message.contains("unknown field \"colour\""));
        let e = parse("(action:ACCEPT OR action:REJECT").unwrap_err();
        assert_eq!(e.column, 1, "{e}");
        let e = parse("dst_addr:10.0.0.0/40").unwrap_err();
        assert_eq!(e.column, 10, "{e}");
        let e = parse("dst_port:443)").unwrap_err();
        assert_eq!(e.column, 13, "{e}");
        let e = parse("from_internal:maybe").unwrap_err();
        assert_eq!(e.column, 15);
        let e = parse("action:").unwrap_err();
        assert_eq!(e.column, 8);
        let e = parse("src_group:[a TO b]").unwrap_err();
        assert!(e.message.contains("numeric"), "{e}");
        assert!(e.to_string().ends_with("^"));
    }

    #[test]
    fn precedence_and_implicit_and() {
        let a = parse("action:ACCEPT dst_port:22 OR dst_port:23").unwrap();
        let b = parse("(action:ACCEPT AND dst_port:22) OR dst_port:23").unwrap();
        assert_eq!(a, b);
        let c = parse("NOT action:ACCEPT AND proto:tcp").unwrap();
        let d = parse("(NOT action:ACCEPT) AND proto:tcp").unwrap();
        assert_eq!(c, d);
        assert_eq!(
            parse("-dst_port:22").unwrap(),
            parse("NOT dst_port:22").unwrap()
        );
        assert_eq!(
            parse("dst_port:(22 OR 23)").unwrap(),
            parse("dst_port:22 OR dst_port:23").unwrap()
        );
        assert_eq!(
            parse("bytes:>10").unwrap(),
            parse("bytes:[11 TO *]").unwrap()
        );
        assert_eq!(
            parse("bytes:{10 TO 20}").unwrap(),
            parse("bytes:[11 TO 19]").unwrap()
        );
        assert_eq!(parse("  ").unwrap(), Expr::All);
    }

    #[test]
    fn globs() {
        assert!(glob(b"3c:22:*", b"3c:22:fb:01:02:03"));
        assert!(glob(b"*.example.net", b"c2.example.net"));
        assert!(!glob(b"*.example.net", b"example.net"));
        assert!(glob(b"a?c", b"abc") && !glob(b"a?c", b"ac"));
        assert!(glob(b"*", b""));
    }
}
