//! The subset of CloudWatch Logs Insights' `filter` syntax the embedded store answers, enough for the blog's
//! queries: `name = "meetingFailed" and attributes.attendeeId = "..."`, `name in ["audioInputFailed", ...]`,
//! `!=`, `<`, `<=`, `>`, `>=`, `not`, `or`, parentheses, dotted field paths into the JSON message.
//!
//! Its tokenizer and parser also serve [`crate::logs_insights`], which reads whole queries (`|`, `*`, backquoted
//! names and `#` comments are tokens here for that reason) and evaluates a filter on its own rows through
//! [`Filter::matches_by`].

use std::borrow::Cow;

use serde_json::Value;

/// An expression. `and` and `or` hold all their operands in one list, so a long chain of them is a flat list
/// rather than a deep tree (evaluating or dropping a deep tree could exhaust the stack).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare { field: Vec<String>, op: Op, value: Literal },
    In { field: Vec<String>, values: Vec<Literal> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter expression, at character {at}: {message}")]
pub struct FilterError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    Star,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// A token as an error message names it: `"foo"`, `"|"`, `the string "x"`, `the end of the query`.
pub(crate) fn describe(token: Option<&Token>) -> String {
    let symbol = |s: &str| format!("{s:?}");
    match token {
        None => "the end of the query".to_owned(),
        Some(Token::Ident(w)) => format!("{w:?}"),
        Some(Token::Str(s)) => format!("the string {s:?}"),
        Some(Token::Num(n)) => format!("the number {n}"),
        Some(Token::Op(op)) => symbol(op.symbol()),
        Some(Token::LParen) => symbol("("),
        Some(Token::RParen) => symbol(")"),
        Some(Token::LBracket) => symbol("["),
        Some(Token::RBracket) => symbol("]"),
        Some(Token::Comma) => symbol(","),
        Some(Token::Pipe) => symbol("|"),
        Some(Token::Star) => symbol("*"),
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, message: String| FilterError { at, message };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            c if c.is_whitespace() => i += 1,
            // A comment runs to the end of its line, as in Logs Insights.
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' | ')' | '[' | ']' | ',' | '|' | '*' => {
                out.push((
                    start,
                    match c {
                        '(' => Token::LParen,
                        ')' => Token::RParen,
                        '[' => Token::LBracket,
                        ']' => Token::RBracket,
                        '|' => Token::Pipe,
                        '*' => Token::Star,
                        _ => Token::Comma,
                    },
                ));
                i += 1;
            }
            // A backquoted field name may hold any character but a backquote (`detail-type`, `a b`).
            '`' => {
                let Some(len) = chars[i + 1..].iter().position(|&ch| ch == '`') else {
                    return Err(err(start, "unterminated `name`".into()));
                };
                out.push((start, Token::Ident(chars[i + 1..i + 1 + len].iter().collect())));
                i += len + 2;
            }
            '"' | '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some('\\') => {
                            s.extend(chars.get(i + 1));
                            i += 2;
                        }
                        Some(q) if *q == c => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Token::Str(s)));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(err(start, format!("unexpected {c:?}"))),
                };
                out.push((start, Token::Op(op)));
                i += len;
            }
            c if c.is_ascii_digit() || c == '-' => {
                while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | '-' | 'e' | 'E' | '+'))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text.parse().map_err(|_| err(start, format!("{text:?} is not a number")))?;
                out.push((start, Token::Num(n)));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '@' | '$' | '.') => {
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '$' | '.' | '-'))
                {
                    i += 1;
                }
                out.push((start, Token::Ident(chars[start..i].iter().collect())));
            }
            _ => return Err(err(start, format!("unexpected {c:?}"))),
        }
    }
    Ok(out)
}

/// How deep parentheses, `not`s and function calls may nest: recursion in the parser and in evaluation is bounded
/// by it, so no input can exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// A cursor over a text's tokens; positions are in characters, from 0.
pub(crate) struct Parser {
    tokens: Vec<(usize, Token)>,
    pub(crate) pos: usize,
    len: usize,
    depth: usize,
}

impl Parser {
    pub(crate) fn new(text: &str) -> Result<Self, FilterError> {
        Ok(Self { tokens: tokenize(text)?, pos: 0, len: text.chars().count(), depth: 0 })
    }

    /// Where the current token starts (the text's length at its end).
    pub(crate) fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.len, |(at, _)| *at)
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    pub(crate) fn peek_at(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.pos + ahead).map(|(_, t)| t)
    }

    pub(crate) fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    pub(crate) fn error<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError { at: self.at(), message: message.into() })
    }

    /// `expected <what>, found <the current token>`, as the caller's error type.
    pub(crate) fn expected<T, E: From<FilterError>>(&self, what: &str) -> Result<T, E> {
        Err(FilterError { at: self.at(), message: format!("expected {what}, found {}", describe(self.peek())) }.into())
    }

    /// Runs `f` one nesting level deeper, or fails if that is deeper than [`MAX_DEPTH`].
    pub(crate) fn nest<T, E: From<FilterError>>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        if self.depth >= MAX_DEPTH {
            return Err(FilterError { at: self.at(), message: format!("nested more than {MAX_DEPTH} deep") }.into());
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// A whole expression (`a = 1 and not b in [2, 3]`), stopping before the first token that cannot continue it.
    pub(crate) fn expression(&mut self) -> Result<Filter, FilterError> {
        self.or()
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut operands = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            operands.push(self.and()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Filter::Or(operands) })
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut operands = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            operands.push(self.unary()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Filter::And(operands) })
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            return self.nest(|p| {
                p.pos += 1;
                Ok(Filter::Not(Box::new(p.unary()?)))
            });
        }
        if self.peek() == Some(&Token::LParen) {
            return self.nest(|p| {
                p.pos += 1;
                let inner = p.or()?;
                if p.peek() != Some(&Token::RParen) {
                    return p.expected(")");
                }
                p.pos += 1;
                Ok(inner)
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        let field = match self.peek() {
            Some(Token::Ident(f)) if !["and", "or", "not", "in"].contains(&f.to_ascii_lowercase().as_str()) => {
                f.split('.').map(str::to_owned).collect::<Vec<_>>()
            }
            _ => return self.expected("a field name"),
        };
        self.pos += 1;
        let negated = self.keyword("not");
        if negated {
            self.pos += 1;
        }
        if self.keyword("in") {
            self.pos += 1;
            let values = self.list()?;
            let f = Filter::In { field, values };
            return Ok(if negated { Filter::Not(Box::new(f)) } else { f });
        }
        if negated {
            return self.expected("`in` after `not`");
        }
        let Some(Token::Op(op)) = self.peek().cloned() else { return self.expected("=, !=, <, <=, >, >= or in") };
        self.pos += 1;
        let value = self.literal()?;
        Ok(Filter::Compare { field, op, value })
    }

    fn list(&mut self) -> Result<Vec<Literal>, FilterError> {
        if self.peek() != Some(&Token::LBracket) {
            return self.expected("[ after in");
        }
        self.pos += 1;
        let mut values = vec![self.literal()?];
        loop {
            match self.peek() {
                Some(Token::Comma) => {
                    self.pos += 1;
                    values.push(self.literal()?);
                }
                Some(Token::RBracket) => {
                    self.pos += 1;
                    return Ok(values);
                }
                _ => return self.expected(", or ]"),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, FilterError> {
        let value = match self.peek() {
            Some(Token::Str(s)) => Literal::Str(s.clone()),
            Some(Token::Num(n)) => Literal::Num(*n),
            Some(Token::Ident(w)) if w == "true" || w == "false" => Literal::Bool(w == "true"),
            _ => return self.expected("a string, a number, true or false"),
        };
        self.pos += 1;
        Ok(value)
    }
}

impl Filter {
    /// Parses a filter expression; a leading `filter` keyword (as in a Logs Insights query) is allowed.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let mut p = Parser::new(text)?;
        if p.keyword("filter") {
            p.pos += 1;
        }
        let f = p.or()?;
        if p.pos < p.tokens.len() {
            return p.error(format!("unexpected text after the expression: {}", describe(p.peek())));
        }
        Ok(f)
    }

    /// Whether a JSON log message matches, its fields found by their dotted paths.
    pub fn matches(&self, message: &Value) -> bool {
        self.matches_by(&|path| lookup(message, path.iter().map(String::as_str)).map(Cow::Borrowed))
    }

    /// Whether a row matches, `get` giving the value of a field by its path (`None` when the row lacks it).
    pub fn matches_by<'v>(&self, get: &dyn Fn(&[String]) -> Option<Cow<'v, Value>>) -> bool {
        match self {
            Self::And(all) => all.iter().all(|f| f.matches_by(get)),
            Self::Or(any) => any.iter().any(|f| f.matches_by(get)),
            Self::Not(f) => !f.matches_by(get),
            Self::Compare { field, op, value } => match (op, get(field)) {
                (Op::Ne, None) => true,
                (_, None) => false,
                (op, Some(v)) => compare(&v, *op, value),
            },
            Self::In { field, values } => get(field).is_some_and(|v| values.iter().any(|l| compare(&v, Op::Eq, l))),
        }
    }
}

/// The value at a dotted path in a JSON message; a number steps into an array (`meetingHistory.0.name`), as Logs
/// Insights flattens arrays. A JSON `null` is no value.
pub(crate) fn lookup<'a, 'p>(message: &'a Value, mut path: impl Iterator<Item = &'p str>) -> Option<&'a Value> {
    let found = path.try_fold(message, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })?;
    (!found.is_null()).then_some(found)
}

fn compare(v: &Value, op: Op, literal: &Literal) -> bool {
    let ordering = match (v, literal) {
        (Value::String(s), Literal::Str(l)) => s.as_str().cmp(l.as_str()),
        (Value::Number(n), Literal::Num(l)) => match n.as_f64().and_then(|n| n.partial_cmp(l)) {
            Some(o) => o,
            None => return false,
        },
        // Logs Insights compares a numeric string with a number as a number.
        (Value::String(s), Literal::Num(l)) => match s.parse::<f64>().ok().and_then(|n| n.partial_cmp(l)) {
            Some(o) => o,
            None => return op == Op::Ne,
        },
        (Value::Bool(b), Literal::Bool(l)) => b.cmp(l),
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ordering.is_eq(),
        Op::Ne => ordering.is_ne(),
        Op::Lt => ordering.is_lt(),
        Op::Le => ordering.is_le(),
        Op::Gt => ordering.is_gt(),
        Op::Ge => ordering.is_ge(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn check(filter: &str, message: Value, expect: bool) {
        let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(f.matches(&message), expect, "{filter} on {message}");
    }

    #[test]
    fn the_blogs_queries_select_what_logs_insights_would() {
        let ended = json!({ "name": "meetingEnded", "attributes": { "attendeeId": "a-1", "sdkName": "amazon-chime-sdk-js", "meetingDurationMs": 61000 } });
        check(r#"filter name = "meetingEnded" and attributes.attendeeId = "a-1""#, ended.clone(), true);
        check(r#"name = "meetingEnded" and attributes.attendeeId = "a-2""#, ended.clone(), false);
        check(r#"name in ["meetingStartRequested"]"#, ended.clone(), false);
        check(r#"name in ["audioInputFailed", "meetingEnded"]"#, ended.clone(), true);
        check(r#"name not in ["meetingEnded"]"#, ended.clone(), false);
        check(
            r#"attributes.meetingDurationMs >= 60000 and not (attributes.sdkName != 'amazon-chime-sdk-js')"#,
            ended.clone(),
            true,
        );
        check(r#"attributes.missing = "x" or name == "meetingEnded""#, ended.clone(), true);
        check(r#"attributes.missing != "x""#, ended, true);
        check(r#"attributes.timestampMs > 5"#, json!({ "attributes": { "timestampMs": "1612166400000" } }), true);
    }

    #[test]
    fn bad_expressions_name_what_is_wrong_and_where() {
        for (text, at, message) in [
            (r#"name = "unterminated"#, 7, "unterminated string"),
            ("name ~ 3", 5, "unexpected '~'"),
            ("name =", 6, "expected a string"),
            (r#"name = "a" xor"#, 11, "unexpected text"),
            ("(name = 1", 9, "expected )"),
            (r#"name in "a""#, 8, "expected [ after in"),
            ("= 3", 0, "expected a field name"),
            (&format!("{}a = 1", "(".repeat(100)), 64, "nested more than 64 deep"),
        ] {
            let e = Filter::parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.starts_with(message), "{text}: {e}");
        }
    }

    proptest! {
        #[test]
        fn parsing_any_text_returns_a_filter_or_an_error(text in ".{0,80}") {
            let _ = Filter::parse(&text);
        }
    }
}
