//! Metric math for alarms: the part of CloudWatch's expression language chimewatch evaluates, over the periods of
//! one alarm's evaluation range.
//!
//! Supported (CloudWatch's syntax and meaning, "Using math expressions with CloudWatch metrics"):
//! - numbers (`3`, `0.5`, `1e3`), the `Id`s of the alarm's other queries, parentheses;
//! - `+ - * /` and unary `-`; comparisons `< <= > >= == !=` (1 or 0); `AND`/`&&`, `OR`/`||`, `NOT`;
//! - `FILL(x, v)` with a number `v` (a constant expression such as `-1` too), `FILL(x, REPEAT)` (the latest earlier
//!   value) and `FILL(x, LINEAR)` (interpolated between the values either side of a gap);
//! - `IF(condition, a)` and `IF(condition, a, b)`.
//!
//! Between two series an operation yields a value only where both have one; with a number, it applies to every
//! value. A division by zero, or any result that is not a finite number, yields no value for that period, as
//! CloudWatch drops such datapoints. Function names are upper case as CloudWatch writes them; ids start with a lower
//! case letter. Anything else (`^`, `METRICS()`, `SUM`, `SEARCH`, `ANOMALY_DETECTION_BAND`, ...) is a parse error
//! that names the position.

use std::collections::BTreeMap;
use std::fmt;

/// Nesting beyond this is refused, so a hostile expression cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Id(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Fill(Box<Expr>, Fill),
    If(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// What `FILL` puts in a period without a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Value(f64),
    Repeat,
    Linear,
}

/// A parse error at a 1-based character position of the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Expr {
    /// The ids the expression reads, in order of appearance, with repeats.
    pub fn ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Id(id) = e {
                out.push(id.as_str());
            }
        });
        out
    }

    /// Whether a `FILL(.., REPEAT|LINEAR)` needs values from before the evaluation range.
    pub fn fills_from_history(&self) -> bool {
        let mut found = false;
        self.visit(&mut |e| found |= matches!(e, Expr::Fill(_, Fill::Repeat | Fill::Linear)));
        found
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Number(_) | Expr::Id(_) => {}
            Expr::Neg(e) | Expr::Not(e) | Expr::Fill(e, _) => e.visit(f),
            Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::If(c, a, b) => {
                c.visit(f);
                a.visit(f);
                if let Some(b) = b {
                    b.visit(f);
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Sym(&'static str),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Name(n) => write!(f, "{n:?}"),
            Tok::Sym(s) => write!(f, "'{s}'"),
            Tok::End => f.write_str("the end of the expression"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let err = |pos: usize, message: String| ParseError { position: pos, message };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let digit_at = |j: usize| chars.get(j).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || (c == '.' && digit_at(i + 1)) {
            let start = i;
            while digit_at(i) {
                i += 1;
            }
            if chars.get(i) == Some(&'.') {
                i += 1;
                while digit_at(i) {
                    i += 1;
                }
            }
            // An exponent only when digits follow it, so `2e` stays a number and a name (an error later).
            if matches!(chars.get(i), Some('e' | 'E')) {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                if digit_at(i + 1 + sign) {
                    i += 1 + sign;
                    while digit_at(i) {
                        i += 1;
                    }
                }
            }
            let s: String = chars[start..i].iter().collect();
            let n = s.parse::<f64>().map_err(|_| err(pos, format!("malformed number {s:?}")))?;
            if !n.is_finite() {
                return Err(err(pos, format!("number {s:?} is too large")));
            }
            out.push(Token { tok: Tok::Num(n), pos });
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                i += 1;
            }
            out.push(Token { tok: Tok::Name(chars[start..i].iter().collect()), pos });
            continue;
        }
        let two = |second: char| chars.get(i + 1) == Some(&second);
        let (sym, len) = match c {
            '(' => ("(", 1),
            ')' => (")", 1),
            ',' => (",", 1),
            '+' => ("+", 1),
            '-' => ("-", 1),
            '*' => ("*", 1),
            '/' => ("/", 1),
            '<' if two('=') => ("<=", 2),
            '<' => ("<", 1),
            '>' if two('=') => (">=", 2),
            '>' => (">", 1),
            '=' if two('=') => ("==", 2),
            '!' if two('=') => ("!=", 2),
            '&' if two('&') => ("&&", 2),
            '|' if two('|') => ("||", 2),
            '^' => return Err(err(pos, "the exponent operator '^' is not supported".into())),
            _ => return Err(err(pos, format!("unexpected character {c:?}"))),
        };
        out.push(Token { tok: Tok::Sym(sym), pos });
        i += len;
    }
    out.push(Token { tok: Tok::End, pos: chars.len() + 1 });
    Ok(out)
}

/// Names with a meaning of their own: never ids.
const KEYWORDS: [&str; 7] = ["FILL", "IF", "REPEAT", "LINEAR", "AND", "OR", "NOT"];

struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends with `End`, and the parser never moves past it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn at_sym(&self, sym: &str) -> bool {
        matches!(&self.peek().tok, Tok::Sym(s) if *s == sym)
    }

    fn at_name(&self, name: &str) -> bool {
        matches!(&self.peek().tok, Tok::Name(n) if n == name)
    }

    fn expect(&mut self, sym: &'static str, context: &str) -> Result<Token, ParseError> {
        if self.at_sym(sym) {
            return Ok(self.bump());
        }
        let t = self.peek();
        Err(ParseError { position: t.pos, message: format!("expected '{sym}' {context}, found {}", t.tok) })
    }

    fn deeper(&mut self, pos: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError { position: pos, message: format!("nested more than {MAX_DEPTH} deep") });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let pos = self.peek().pos;
        self.deeper(pos)?;
        let e = self.or();
        self.depth -= 1;
        e
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.at_sym("||") || self.at_name("OR") {
            self.bump();
            left = Expr::Binary(BinOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.at_sym("&&") || self.at_name("AND") {
            self.bump();
            left = Expr::Binary(BinOp::And, Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.at_name("NOT") {
            let pos = self.bump().pos;
            self.deeper(pos)?;
            let e = self.not();
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.sum()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("<") => BinOp::Lt,
                Tok::Sym("<=") => BinOp::Le,
                Tok::Sym(">") => BinOp::Gt,
                Tok::Sym(">=") => BinOp::Ge,
                Tok::Sym("==") => BinOp::Eq,
                Tok::Sym("!=") => BinOp::Ne,
                _ => return Ok(left),
            };
            self.bump();
            left = Expr::Binary(op, Box::new(left), Box::new(self.sum()?));
        }
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match &self.peek().tok {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                _ => return Ok(left),
            };
            self.bump();
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.at_sym("-") || self.at_sym("+") {
            let t = self.bump();
            self.deeper(t.pos)?;
            let e = self.unary();
            self.depth -= 1;
            return Ok(if t.tok == Tok::Sym("-") { Expr::Neg(Box::new(e?)) } else { e? });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.bump();
        match t.tok {
            Tok::Num(n) => Ok(Expr::Number(n)),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect(")", &format!("to close the '(' at character {}", t.pos))?;
                Ok(e)
            }
            Tok::Name(name) if self.at_sym("(") => match name.as_str() {
                "FILL" => self.fill(t.pos),
                "IF" => self.if_(t.pos),
                _ => Err(ParseError {
                    position: t.pos,
                    message: format!("function {name} is not supported (supported: FILL, IF)"),
                }),
            },
            Tok::Name(name) if KEYWORDS.contains(&name.as_str()) => {
                Err(ParseError { position: t.pos, message: format!("{name} cannot stand here") })
            }
            Tok::Name(name) if name.starts_with(|c: char| c.is_ascii_lowercase()) => Ok(Expr::Id(name)),
            Tok::Name(name) => Err(ParseError {
                position: t.pos,
                message: format!("{name:?} is neither an id (ids start with a lower case letter) nor a function"),
            }),
            other => Err(ParseError {
                position: t.pos,
                message: format!("expected a number, an id, a function or '(', found {other}"),
            }),
        }
    }

    fn fill(&mut self, pos: usize) -> Result<Expr, ParseError> {
        self.expect("(", "after FILL")?;
        let series = self.expr()?;
        self.expect(",", "between FILL's arguments")?;
        let arg_pos = self.peek().pos;
        let how = if self.at_name("REPEAT") {
            self.bump();
            Fill::Repeat
        } else if self.at_name("LINEAR") {
            self.bump();
            Fill::Linear
        } else {
            let value = self.expr()?;
            let constant = if value.ids().is_empty() { constant(&value) } else { None };
            match constant {
                Some(v) => Fill::Value(v),
                None => {
                    return Err(ParseError {
                        position: arg_pos,
                        message: "FILL's second argument must be a number, REPEAT or LINEAR".into(),
                    });
                }
            }
        };
        self.expect(")", &format!("to close the FILL at character {pos}"))?;
        Ok(Expr::Fill(Box::new(series), how))
    }

    fn if_(&mut self, pos: usize) -> Result<Expr, ParseError> {
        self.expect("(", "after IF")?;
        let condition = self.expr()?;
        self.expect(",", "between IF's arguments")?;
        let then = self.expr()?;
        let otherwise = if self.at_sym(",") {
            self.bump();
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect(")", &format!("to close the IF at character {pos}"))?;
        Ok(Expr::If(Box::new(condition), Box::new(then), otherwise))
    }
}

/// Parses a metric math expression (see the module documentation for what is supported).
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { toks: lex(text)?, at: 0, depth: 0 };
    if p.peek().tok == Tok::End {
        return Err(ParseError { position: 1, message: "the expression is empty".into() });
    }
    let e = p.expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        return Err(ParseError { position: t.pos, message: format!("expected an operator, found {}", t.tok) });
    }
    Ok(e)
}

/// The value of an expression: one number for all periods, or a value per period start (ms) for some periods.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None` is no value at all (a constant division by zero).
    Scalar(Option<f64>),
    Series(BTreeMap<i64, f64>),
}

/// Where evaluation finds the series an id names.
pub trait Resolve {
    fn resolve(&mut self, id: &str) -> Result<Value, String>;
}

/// The value of a number-only expression.
fn constant(e: &Expr) -> Option<f64> {
    struct NoIds;
    impl Resolve for NoIds {
        fn resolve(&mut self, id: &str) -> Result<Value, String> {
            Err(format!("{id} is not a constant"))
        }
    }
    match eval(e, &mut NoIds, &[]) {
        Ok(Value::Scalar(v)) => v,
        _ => None,
    }
}

fn truth(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn apply(op: BinOp, a: f64, b: f64) -> Option<f64> {
    let v = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div if b == 0.0 => return None,
        BinOp::Div => a / b,
        BinOp::Lt => truth(a < b),
        BinOp::Le => truth(a <= b),
        BinOp::Gt => truth(a > b),
        BinOp::Ge => truth(a >= b),
        BinOp::Eq => truth(a == b),
        BinOp::Ne => truth(a != b),
        BinOp::And => truth(a != 0.0 && b != 0.0),
        BinOp::Or => truth(a != 0.0 || b != 0.0),
    };
    v.is_finite().then_some(v)
}

fn combine(a: Value, b: Value, f: impl Fn(f64, f64) -> Option<f64>) -> Value {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => Value::Scalar(x.zip(y).and_then(|(x, y)| f(x, y))),
        (Value::Series(s), Value::Scalar(y)) => {
            Value::Series(s.into_iter().filter_map(|(t, x)| y.and_then(|y| f(x, y)).map(|v| (t, v))).collect())
        }
        (Value::Scalar(x), Value::Series(s)) => {
            Value::Series(s.into_iter().filter_map(|(t, y)| x.and_then(|x| f(x, y)).map(|v| (t, v))).collect())
        }
        (Value::Series(s), Value::Series(r)) => {
            Value::Series(s.into_iter().filter_map(|(t, x)| r.get(&t).and_then(|y| f(x, *y)).map(|v| (t, v))).collect())
        }
    }
}

fn map(v: Value, f: impl Fn(f64) -> f64) -> Value {
    combine(v, Value::Scalar(Some(0.0)), |x, _| Some(f(x)).filter(|v| v.is_finite()))
}

fn at(v: &Value, t: i64) -> Option<f64> {
    match v {
        Value::Scalar(x) => *x,
        Value::Series(s) => s.get(&t).copied(),
    }
}

fn fill(v: Value, how: Fill, periods: &[i64]) -> Value {
    let mut s = match v {
        Value::Scalar(x) => {
            return Value::Scalar(match how {
                Fill::Value(f) => x.or(Some(f)),
                Fill::Repeat | Fill::Linear => x,
            });
        }
        Value::Series(s) => s,
    };
    match how {
        Fill::Value(f) => {
            for p in periods {
                s.entry(*p).or_insert(f);
            }
        }
        Fill::Repeat => {
            let mut last = None;
            for p in periods {
                match s.get(p) {
                    Some(v) => last = Some(*v),
                    None => {
                        if let Some(l) = last {
                            s.insert(*p, l);
                        }
                    }
                }
            }
        }
        Fill::Linear => {
            let known: Vec<(usize, f64)> =
                periods.iter().enumerate().filter_map(|(i, p)| s.get(p).map(|v| (i, *v))).collect();
            for pair in known.windows(2) {
                let ((i0, v0), (i1, v1)) = (pair[0], pair[1]);
                for (j, p) in periods.iter().enumerate().take(i1).skip(i0 + 1) {
                    let v = v0 + (v1 - v0) * (j - i0) as f64 / (i1 - i0) as f64;
                    s.insert(*p, v);
                }
            }
        }
    }
    Value::Series(s)
}

/// Evaluates `e` over `periods` (ascending period starts, the range `FILL` fills), reading ids through `ids`.
pub fn eval(e: &Expr, ids: &mut dyn Resolve, periods: &[i64]) -> Result<Value, String> {
    Ok(match e {
        Expr::Number(n) => Value::Scalar(Some(*n)),
        Expr::Id(id) => ids.resolve(id)?,
        Expr::Neg(x) => map(eval(x, ids, periods)?, |v| -v),
        Expr::Not(x) => map(eval(x, ids, periods)?, |v| truth(v == 0.0)),
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, ids, periods)?, eval(b, ids, periods)?);
            combine(a, b, |x, y| apply(*op, x, y))
        }
        Expr::Fill(x, how) => fill(eval(x, ids, periods)?, *how, periods),
        Expr::If(c, a, b) => {
            let c = eval(c, ids, periods)?;
            let a = eval(a, ids, periods)?;
            let b = match b {
                Some(b) => Some(eval(b, ids, periods)?),
                None => None,
            };
            let any_series =
                [Some(&c), Some(&a), b.as_ref()].into_iter().flatten().any(|v| matches!(v, Value::Series(_)));
            match c {
                Value::Series(cs) => Value::Series(
                    cs.into_iter()
                        .filter_map(|(t, cv)| {
                            let branch = if cv != 0.0 { Some(&a) } else { b.as_ref() };
                            branch.and_then(|v| at(v, t)).map(|v| (t, v))
                        })
                        .collect(),
                ),
                Value::Scalar(cv) => {
                    let branch = match cv {
                        Some(cv) if cv != 0.0 => Some(a),
                        Some(_) => b,
                        None => None,
                    };
                    match branch {
                        Some(v) => v,
                        None if any_series => Value::Series(BTreeMap::new()),
                        None => Value::Scalar(None),
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    struct Series(BTreeMap<&'static str, Value>);
    impl Resolve for Series {
        fn resolve(&mut self, id: &str) -> Result<Value, String> {
            self.0.get(id).cloned().ok_or_else(|| format!("no {id}"))
        }
    }

    fn series(points: &[(i64, f64)]) -> Value {
        Value::Series(points.iter().copied().collect())
    }

    fn run(text: &str, ids: &[(&'static str, Value)], periods: &[i64]) -> Value {
        let e = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        eval(&e, &mut Series(ids.iter().cloned().collect()), periods).unwrap()
    }

    #[test]
    fn precedence_and_parentheses() {
        assert_eq!(run("1 + 2 * 3", &[], &[]), Value::Scalar(Some(7.0)));
        assert_eq!(run("(1 + 2) * 3", &[], &[]), Value::Scalar(Some(9.0)));
        assert_eq!(run("10 - 4 - 3", &[], &[]), Value::Scalar(Some(3.0)));
        assert_eq!(run("12 / 3 / 2", &[], &[]), Value::Scalar(Some(2.0)));
        assert_eq!(run("-2 * -3", &[], &[]), Value::Scalar(Some(6.0)));
        assert_eq!(run("1 + 2 > 2 AND NOT 0", &[], &[]), Value::Scalar(Some(1.0)));
        assert_eq!(run("1 < 0 || 2 == 2 && 3 != 3", &[], &[]), Value::Scalar(Some(0.0)));
        assert_eq!(run(".5e1 + 1E1", &[], &[]), Value::Scalar(Some(15.0)));
        assert_eq!(run("1 / 0", &[], &[]), Value::Scalar(None));
    }

    #[test]
    fn series_combine_where_both_have_values() {
        let m1 = series(&[(0, 4.0), (60, 6.0), (120, 8.0)]);
        let m2 = series(&[(0, 2.0), (60, 0.0), (180, 1.0)]);
        // 60: division by zero drops the datapoint; 120 and 180: one side missing.
        assert_eq!(run("m1 / m2 * 100", &[("m1", m1.clone()), ("m2", m2)], &[]), series(&[(0, 200.0)]));
        assert_eq!(run("m1 - 1", &[("m1", m1.clone())], &[]), series(&[(0, 3.0), (60, 5.0), (120, 7.0)]));
        assert_eq!(run("1 / (m1 - 6)", &[("m1", m1)], &[]), series(&[(0, -0.5), (120, 0.5)]));
    }

    #[test]
    fn fill_puts_values_in_every_period_of_the_range() {
        let periods = [0, 60, 120, 180, 240];
        let m1 = series(&[(60, 5.0), (180, 9.0)]);
        let m = [("m1", m1)];
        assert_eq!(
            run("FILL(m1, 0)", &m, &periods),
            series(&[(0, 0.0), (60, 5.0), (120, 0.0), (180, 9.0), (240, 0.0)])
        );
        assert_eq!(
            run("FILL(m1, -1.5)", &m, &periods),
            series(&[(0, -1.5), (60, 5.0), (120, -1.5), (180, 9.0), (240, -1.5)])
        );
        assert_eq!(run("FILL(m1, REPEAT)", &m, &periods), series(&[(60, 5.0), (120, 5.0), (180, 9.0), (240, 9.0)]));
        assert_eq!(run("FILL(m1, LINEAR)", &m, &periods), series(&[(60, 5.0), (120, 7.0), (180, 9.0)]));
    }

    #[test]
    fn if_picks_per_period() {
        let periods = [0, 60, 120];
        let m1 = series(&[(0, 5.0), (60, 50.0), (120, 15.0)]);
        let m = [("m1", m1)];
        assert_eq!(run("IF(m1 > 10, m1, 0)", &m, &periods), series(&[(0, 0.0), (60, 50.0), (120, 15.0)]));
        assert_eq!(run("IF(m1 > 10, 1)", &m, &periods), series(&[(60, 1.0), (120, 1.0)]));
        assert_eq!(run("IF(0, m1)", &m, &periods), series(&[]));
    }

    #[test]
    fn parse_errors_name_the_position() {
        let err = |text: &str| parse(text).expect_err(text);
        let e = err("m1 + ");
        assert_eq!(
            (e.position, e.message.as_str()),
            (6, "expected a number, an id, a function or '(', found the end of the expression")
        );
        let e = err("(m1 + m2");
        assert_eq!(e.position, 9);
        assert!(e.message.contains("to close the '(' at character 1"), "{e}");
        let e = err("m1 / m2)");
        assert_eq!((e.position, e.message.as_str()), (8, "expected an operator, found ')'"));
        let e = err("SUM(METRICS())");
        assert_eq!((e.position, e.message.as_str()), (1, "function SUM is not supported (supported: FILL, IF)"));
        assert_eq!(err("m1 ^ 2").position, 4);
        assert_eq!(err("m1 $ 2").message, "unexpected character '$'");
        let e = err("FILL(m1, m2)");
        assert_eq!((e.position, e.message.as_str()), (10, "FILL's second argument must be a number, REPEAT or LINEAR"));
        assert_eq!(err("M1 + 1").position, 1);
        assert_eq!(err("").message, "the expression is empty");
        assert_eq!(err("REPEAT").message, "REPEAT cannot stand here");
        assert!(err(&"(".repeat(100)).message.contains("nested more than"));
        // Positions count characters, not bytes.
        assert_eq!(err("\u{e9} + 1").position, 1);
        assert_eq!(err("1 + \u{e9}").position, 5);
    }

    proptest! {
        #[test]
        fn the_parser_takes_any_text_without_panicking(text in "[ -~\u{e9}]{0,80}") {
            let _ = parse(&text);
        }

        #[test]
        fn a_ratio_is_pointwise_division_where_both_have_a_nonzero_divisor(
            a in proptest::collection::btree_map(0_i64..20, -5_i32..5, 0..20),
            b in proptest::collection::btree_map(0_i64..20, -5_i32..5, 0..20),
        ) {
            let to = |m: &BTreeMap<i64, i32>| Value::Series(m.iter().map(|(t, v)| (*t, f64::from(*v))).collect());
            let got = run("100 * a / b", &[("a", to(&a)), ("b", to(&b))], &[]);
            let want: BTreeMap<i64, f64> = a.iter()
                .filter_map(|(t, x)| b.get(t).filter(|y| **y != 0).map(|y| (*t, 100.0 * f64::from(*x) / f64::from(*y))))
                .collect();
            prop_assert_eq!(got, Value::Series(want));
        }
    }
}
