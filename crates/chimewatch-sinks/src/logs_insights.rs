//! The subset of CloudWatch Logs Insights the dashboards need, parsed here and run by the embedded store
//! ([`crate::embedded::EmbeddedStore::insights`]): a pipeline of `fields`, `filter`, `stats`, `sort`, `limit` and
//! `display` commands separated by `|`, with `as` aliases, the functions `concat`, `coalesce`, `toupper`,
//! `tolower`, `strlen` and `trim`, and the stats functions `count`, `sum`, `avg`, `min` and `max`. The filter
//! expression is [`crate::logs_filter`]'s, parsed by the same parser.
//!
//! What it does the way the service does, from the CloudWatch Logs documentation (query syntax pages for `fields`,
//! `display`, `limit`, `sort`, aliases, and "Supported logs and discovered fields"), restated:
//! - Every event has the system fields `@timestamp`, `@message`, `@logStream` and `@log` (`account-id:group`; the
//!   embedded store has no account, so [`LOCAL_ACCOUNT`] stands in). A JSON message's fields are reached by dotted
//!   paths (`attributes.sdkName`, `attributes.meetingHistory.0.name`); a field an event lacks is left out of its
//!   row, as GetQueryResults leaves it out. Values are strings; `@timestamp` reads `2026-12-01 17:00:00.000` (UTC).
//! - Several `fields` commands add up; `display` picks the columns, and only the last `display` counts. A query
//!   without either shows `@timestamp`, `@message`, `@logStream` and `@log`. `as` renames in `fields` and `stats`.
//! - Without `limit`, a query returns at most 10,000 rows ([`DEFAULT_LIMIT`]); `limit` takes up to 100,000
//!   ([`MAX_LIMIT`]). (An older console default was 1,000 rows; the documentation now says 10,000.)
//! - `sort` uses a natural order: ascending, every non-number value comes before every number, numbers compare as
//!   numbers, and other text compares in chunks, runs of digits by length and then value, the rest by code point;
//!   `desc` is the reverse.
//! - `#` starts a comment; backquotes quote a field name.
//!
//! Where the documentation is silent, these are this module's choices: without `sort`, events come newest first
//! (the order of the console's default query, `sort @timestamp desc`); `sort` without `asc`/`desc` is ascending;
//! rows lacking a sort field come last either way; `stats` groups come in the order of their `by` values (ascending
//! text) until a `sort` orders them; a `stats` over no events gives no rows; numeric strings count as numbers in
//! `sum`, `avg`, `min` and `max`; a JSON object or array is shown as its JSON text. Parentheses, `not` and function
//! calls nest at most 64 deep (deeper is a parse error, never a stack overflow).
//!
//! A query without a command keyword is a bare filter (`name = "meetingFailed"` is `filter name = "meetingFailed"`),
//! as `logs query --filter` always took one.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde_json::Value;

use crate::logs_filter::{Filter, FilterError, Literal, Parser, Token, lookup};

/// Rows a query returns when it has no `limit` of its own (StartQuery's default).
pub const DEFAULT_LIMIT: usize = 10_000;
/// The largest `limit` the service takes.
pub const MAX_LIMIT: usize = 100_000;
/// The account id in `@log` (`account-id:log-group-name`): the embedded store belongs to no AWS account.
pub const LOCAL_ACCOUNT: &str = "000000000000";

const COMMANDS: &str = "fields, filter, stats, sort, limit and display";
const FUNCTIONS: &str = "concat, coalesce, toupper, tolower, strlen and trim";
const STATS_FUNCTIONS: &str = "count, sum, avg, min and max";
/// Logs Insights commands this subset does not run: named as unsupported rather than unknown.
const OTHER_COMMANDS: [&str; 12] = [
    "parse",
    "dedup",
    "unmask",
    "pattern",
    "diff",
    "anomaly",
    "unnest",
    "lookup",
    "filterindex",
    "source",
    "join",
    "countfrequent",
];
const DEFAULT_COLUMNS: [&str; 4] = ["@timestamp", "@message", "@logStream", "@log"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query, at character {at}: {message}")]
pub struct QueryError {
    /// Where the problem is, in characters from 0 (the query's length when it ended too soon).
    pub at: usize,
    pub message: String,
}

impl From<FilterError> for QueryError {
    fn from(e: FilterError) -> Self {
        Self { at: e.at, message: e.message }
    }
}

/// What a query returns, as GetQueryResults does: rows of (field, value) pairs in column order, a field a row
/// lacks left out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResults {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<(String, String)>>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsQuery {
    commands: Vec<Command>,
    columns: Vec<String>,
    default_limit: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Fields(Vec<Item>),
    Display(Vec<String>),
    Filter(Filter),
    Stats(Stats),
    Sort(Vec<SortKey>),
    Limit(usize),
}

/// An expression with the name its value goes by (its alias, or its own text).
#[derive(Debug, Clone, PartialEq)]
struct Item {
    expr: Expr,
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Field(String),
    Literal(Literal),
    Call(Function, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Concat,
    Coalesce,
    ToUpper,
    ToLower,
    Strlen,
    Trim,
}

#[derive(Debug, Clone, PartialEq)]
struct Stats {
    aggregates: Vec<Aggregate>,
    by: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
struct Aggregate {
    function: StatsFunction,
    /// `None` for `count(*)`.
    arg: Option<Expr>,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatsFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SortKey {
    field: String,
    desc: bool,
}

impl Function {
    fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "concat" => Self::Concat,
            "coalesce" => Self::Coalesce,
            "toupper" => Self::ToUpper,
            "tolower" => Self::ToLower,
            "strlen" => Self::Strlen,
            "trim" => Self::Trim,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Concat => "concat",
            Self::Coalesce => "coalesce",
            Self::ToUpper => "toupper",
            Self::ToLower => "tolower",
            Self::Strlen => "strlen",
            Self::Trim => "trim",
        }
    }

    /// Whether it takes any number of arguments (at least one) rather than exactly one.
    fn variadic(self) -> bool {
        matches!(self, Self::Concat | Self::Coalesce)
    }
}

impl StatsFunction {
    fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

impl Expr {
    /// The expression as its column is named when it has no alias: `attributes.sdkName`, `concat(a, " ", b)`.
    fn text(&self) -> String {
        match self {
            Self::Field(name) => name.clone(),
            Self::Literal(Literal::Str(s)) => format!("{s:?}"),
            Self::Literal(Literal::Num(n)) => n.to_string(),
            Self::Literal(Literal::Bool(b)) => b.to_string(),
            Self::Call(f, args) => {
                format!("{}({})", f.name(), args.iter().map(Self::text).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

fn is_command(word: &str) -> bool {
    ["fields", "filter", "stats", "sort", "limit", "display"].contains(&word.to_ascii_lowercase().as_str())
}

/// Whether the query opens with a bare filter expression rather than a command: `name = "x"`, `a in [...]`,
/// `not ...`, `(...)`.
fn opens_with_expression(p: &Parser) -> bool {
    match (p.peek(), p.peek_at(1)) {
        (Some(Token::LParen), _) => true,
        (Some(Token::Ident(w)), _) if w.eq_ignore_ascii_case("not") => true,
        (Some(Token::Ident(_)), Some(Token::Op(_))) => true,
        (Some(Token::Ident(w)), Some(Token::Ident(next))) => {
            !is_command(w) && (next.eq_ignore_ascii_case("in") || next.eq_ignore_ascii_case("not"))
        }
        _ => false,
    }
}

/// After a command: the end of the query or `|`; anything else is an error naming what could have come.
fn end_of_command(p: &Parser, expected: &str) -> Result<(), QueryError> {
    match p.peek() {
        None | Some(Token::Pipe) => Ok(()),
        Some(_) => p.expected(expected),
    }
}

fn name(p: &mut Parser) -> Result<String, QueryError> {
    match p.peek() {
        Some(Token::Ident(w)) => {
            let w = w.clone();
            p.pos += 1;
            Ok(w)
        }
        _ => p.expected("a name after \"as\""),
    }
}

fn alias(p: &mut Parser, expr: &Expr) -> Result<String, QueryError> {
    if p.keyword("as") {
        p.pos += 1;
        name(p)
    } else {
        Ok(expr.text())
    }
}

fn expr(p: &mut Parser) -> Result<Expr, QueryError> {
    let at = p.at();
    match p.peek().cloned() {
        Some(Token::Ident(w)) if p.peek_at(1) == Some(&Token::LParen) => {
            let Some(function) = Function::named(&w) else {
                let message = match StatsFunction::named(&w) {
                    Some(_) => format!("{w:?} is a stats function: use it in stats"),
                    None => format!("unknown function {w:?}: the functions are {FUNCTIONS}"),
                };
                return Err(QueryError { at, message });
            };
            let args = p.nest(|p| {
                p.pos += 2;
                arguments(p, function)
            })?;
            let arity_ok = if function.variadic() { !args.is_empty() } else { args.len() == 1 };
            if !arity_ok {
                let takes = if function.variadic() { "at least one argument" } else { "one argument" };
                return Err(QueryError {
                    at,
                    message: format!("{} takes {takes}, not {}", function.name(), args.len()),
                });
            }
            Ok(Expr::Call(function, args))
        }
        Some(Token::Ident(w)) => {
            p.pos += 1;
            Ok(match w.as_str() {
                "true" | "false" => Expr::Literal(Literal::Bool(w == "true")),
                _ => Expr::Field(w),
            })
        }
        Some(Token::Str(s)) => {
            p.pos += 1;
            Ok(Expr::Literal(Literal::Str(s)))
        }
        Some(Token::Num(n)) => {
            p.pos += 1;
            Ok(Expr::Literal(Literal::Num(n)))
        }
        _ => p.expected("a field name, a function or a value"),
    }
}

/// A function's arguments, after its `(` and up to its `)`.
fn arguments(p: &mut Parser, function: Function) -> Result<Vec<Expr>, QueryError> {
    let mut args = Vec::new();
    if p.peek() == Some(&Token::RParen) {
        p.pos += 1;
        return Ok(args);
    }
    loop {
        args.push(expr(p)?);
        match p.peek() {
            Some(Token::Comma) => p.pos += 1,
            Some(Token::RParen) => {
                p.pos += 1;
                return Ok(args);
            }
            _ => return p.expected(&format!("\",\" or \")\" in the arguments of {}", function.name())),
        }
    }
}

/// `expr [as name], ...` up to the end of the command.
fn items(p: &mut Parser, after: &str) -> Result<Vec<Item>, QueryError> {
    let mut items = Vec::new();
    loop {
        let expr = expr(p)?;
        let name = alias(p, &expr)?;
        items.push(Item { expr, name });
        if p.peek() != Some(&Token::Comma) {
            end_of_command(p, after)?;
            return Ok(items);
        }
        p.pos += 1;
    }
}

fn stats(p: &mut Parser) -> Result<Stats, QueryError> {
    let mut aggregates = Vec::new();
    loop {
        let at = p.at();
        let (Some(Token::Ident(w)), Some(Token::LParen)) = (p.peek().cloned(), p.peek_at(1)) else {
            return p.expected(&format!("a stats function ({STATS_FUNCTIONS})"));
        };
        let Some(function) = StatsFunction::named(&w) else {
            let message = match Function::named(&w) {
                Some(_) => format!("{w:?} is not a stats function: the stats functions are {STATS_FUNCTIONS}"),
                None => format!("unknown stats function {w:?}: the stats functions are {STATS_FUNCTIONS}"),
            };
            return Err(QueryError { at, message });
        };
        p.pos += 2;
        let arg = match p.peek() {
            Some(Token::Star) if function == StatsFunction::Count => {
                p.pos += 1;
                None
            }
            _ => Some(expr(p)?),
        };
        if p.peek() != Some(&Token::RParen) {
            return p.expected(&format!("\")\" after the argument of {}", function.name()));
        }
        p.pos += 1;
        let name = match p.keyword("as") {
            true => {
                p.pos += 1;
                name(p)?
            }
            false => format!("{}({})", function.name(), arg.as_ref().map_or_else(|| "*".to_owned(), Expr::text)),
        };
        aggregates.push(Aggregate { function, arg, name });
        if p.peek() == Some(&Token::Comma) {
            p.pos += 1;
            continue;
        }
        if p.keyword("by") {
            p.pos += 1;
            let by = items(p, "\",\", \"as\" or \"|\" after a stats group")?;
            return Ok(Stats { aggregates, by });
        }
        end_of_command(p, "\"by\" or \"|\" after stats function")?;
        return Ok(Stats { aggregates, by: Vec::new() });
    }
}

fn sort(p: &mut Parser) -> Result<Vec<SortKey>, QueryError> {
    let mut keys = Vec::new();
    loop {
        let Some(Token::Ident(field)) = p.peek().cloned() else { return p.expected("a field to sort by") };
        p.pos += 1;
        let desc = p.keyword("desc");
        if desc || p.keyword("asc") {
            p.pos += 1;
        }
        keys.push(SortKey { field, desc });
        if p.peek() != Some(&Token::Comma) {
            end_of_command(p, "\"asc\", \"desc\", \",\" or \"|\" after a sort field")?;
            return Ok(keys);
        }
        p.pos += 1;
    }
}

fn limit(p: &mut Parser) -> Result<usize, QueryError> {
    let rows = match p.peek() {
        Some(Token::Num(n)) if n.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(n) => *n as usize,
        _ => return p.expected(&format!("a number of rows from 1 to {MAX_LIMIT} after limit")),
    };
    p.pos += 1;
    end_of_command(p, "\"|\" after limit")?;
    Ok(rows)
}

fn display(p: &mut Parser) -> Result<Vec<String>, QueryError> {
    let mut names = Vec::new();
    loop {
        let Some(Token::Ident(field)) = p.peek().cloned() else { return p.expected("a field to display") };
        p.pos += 1;
        names.push(field);
        if p.peek() != Some(&Token::Comma) {
            end_of_command(p, "\",\" or \"|\" after a field")?;
            return Ok(names);
        }
        p.pos += 1;
    }
}

fn command(p: &mut Parser) -> Result<Command, QueryError> {
    let at = p.at();
    let Some(Token::Ident(word)) = p.peek().cloned() else {
        return p.expected(&format!("a command ({COMMANDS})"));
    };
    let lower = word.to_ascii_lowercase();
    if !is_command(&lower) {
        let message = match OTHER_COMMANDS.contains(&lower.as_str()) {
            true => format!("the {word:?} command is not supported here: the commands are {COMMANDS}"),
            false => format!("unknown command {word:?}: the commands are {COMMANDS}"),
        };
        return Err(QueryError { at, message });
    }
    p.pos += 1;
    Ok(match lower.as_str() {
        "fields" => Command::Fields(items(p, "\",\", \"as\" or \"|\" after a field")?),
        "display" => Command::Display(display(p)?),
        "stats" => Command::Stats(stats(p)?),
        "sort" => Command::Sort(sort(p)?),
        "limit" => Command::Limit(limit(p)?),
        _ => {
            let filter = p.expression()?;
            end_of_command(p, "\"and\", \"or\" or \"|\" after the filter expression")?;
            Command::Filter(filter)
        }
    })
}

/// The columns of the results: the last `display`'s, else those `fields` and `stats` made (a `stats` starts them
/// anew), else the default four.
fn columns(commands: &[Command]) -> Vec<String> {
    let (mut made, mut display, mut stats) = (Vec::<String>::new(), None, false);
    let add = |made: &mut Vec<String>, name: &str| {
        if !made.iter().any(|c| c == name) {
            made.push(name.to_owned());
        }
    };
    for command in commands {
        match command {
            Command::Fields(items) => items.iter().for_each(|i| add(&mut made, &i.name)),
            Command::Display(names) => display = Some(names.clone()),
            Command::Stats(s) => {
                made.clear();
                display = None;
                stats = true;
                s.by.iter().for_each(|i| add(&mut made, &i.name));
                s.aggregates.iter().for_each(|a| add(&mut made, &a.name));
            }
            Command::Filter(_) | Command::Sort(_) | Command::Limit(_) => {}
        }
    }
    match display {
        Some(names) => names,
        None if made.is_empty() && !stats => DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        None => made,
    }
}

impl InsightsQuery {
    /// Parses a query: commands separated by `|`, or a bare filter expression (then optionally more commands).
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let mut p = Parser::new(text)?;
        let mut commands = Vec::new();
        loop {
            if commands.is_empty() && opens_with_expression(&p) {
                let filter = p.expression()?;
                end_of_command(&p, "\"and\", \"or\" or \"|\" after the filter expression")?;
                commands.push(Command::Filter(filter));
            } else {
                commands.push(command(&mut p)?);
            }
            match p.peek() {
                None => break,
                // `end_of_command` let only the end or a `|` through.
                _ => p.pos += 1,
            }
        }
        let columns = columns(&commands);
        Ok(Self { commands, columns, default_limit: DEFAULT_LIMIT })
    }

    /// Whether it aggregates (has a `stats` command): its rows are groups, not events.
    pub fn is_stats(&self) -> bool {
        self.commands.iter().any(|c| matches!(c, Command::Stats(_)))
    }

    /// The columns its results have, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rows it returns when it has no `limit` command, like StartQuery's `limit` parameter (1 to
    /// [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] unless set).
    pub fn with_default_limit(mut self, rows: usize) -> Result<Self, QueryError> {
        if !(1..=MAX_LIMIT).contains(&rows) {
            return Err(QueryError { at: 0, message: format!("the limit must be from 1 to {MAX_LIMIT}, not {rows}") });
        }
        self.default_limit = rows;
        Ok(self)
    }

    /// Starts a run: events go in through [`Execution::push`], results come out of [`Execution::finish`].
    pub(crate) fn start(&self) -> Execution<'_> {
        let mut ops = Vec::new();
        // Whether rows arriving at this point carry sort keys a later `limit` or the end must order them by.
        let mut sorted = false;
        for command in &self.commands {
            match command {
                Command::Fields(items) => ops.push(Op::Fields(items)),
                Command::Filter(f) => ops.push(Op::Filter(f)),
                Command::Display(_) => {}
                Command::Sort(keys) => {
                    ops.push(Op::Sort(keys));
                    sorted = true;
                }
                Command::Limit(n) => ops.push(limit_op(*n, std::mem::take(&mut sorted))),
                Command::Stats(stats) => {
                    ops.push(Op::Stats { stats, groups: BTreeMap::new() });
                    sorted = false;
                }
            }
        }
        if !self.commands.iter().any(|c| matches!(c, Command::Limit(_))) {
            ops.push(limit_op(self.default_limit, std::mem::take(&mut sorted)));
        }
        // Event order matters unless every event goes into a `stats` before any `limit` sees it.
        let first_barrier = ops.iter().find(|op| matches!(op, Op::Stats { .. } | Op::Limit { .. } | Op::Top { .. }));
        let newest_first = !matches!(first_barrier, Some(Op::Stats { .. }));
        ops.push(Op::Collect { rows: Vec::new(), sorted });
        Execution { ops, columns: &self.columns, newest_first, stopped: false }
    }
}

fn limit_op<'q>(n: usize, sorted: bool) -> Op<'q> {
    match sorted {
        // Sorted rows are kept to the best `n` as they come, so that memory is bounded by the limit.
        true => Op::Top { n, rows: Vec::new(), seq: 0 },
        false => Op::Limit { n, seen: 0 },
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Values and rows

/// A field's value: borrowed from an event where it can be.
#[derive(Debug, Clone)]
enum Val<'a> {
    Json(Cow<'a, Value>),
    Text(Cow<'a, str>),
    /// Milliseconds since the epoch, shown as Logs Insights shows `@timestamp`.
    Time(i64),
}

impl<'a> Val<'a> {
    fn reborrow(&self) -> Val<'_> {
        match self {
            Self::Json(v) => Val::Json(Cow::Borrowed(v.as_ref())),
            Self::Text(s) => Val::Text(Cow::Borrowed(s.as_ref())),
            Self::Time(t) => Val::Time(*t),
        }
    }

    fn into_owned(self) -> Val<'static> {
        match self {
            Self::Json(v) => Val::Json(Cow::Owned(v.into_owned())),
            Self::Text(s) => Val::Text(Cow::Owned(s.into_owned())),
            Self::Time(t) => Val::Time(t),
        }
    }

    fn into_json(self) -> Cow<'a, Value> {
        match self {
            Self::Json(v) => v,
            Self::Text(s) => Cow::Owned(Value::String(s.into_owned())),
            Self::Time(t) => Cow::Owned(Value::from(t)),
        }
    }

    fn render(&self) -> Cow<'_, str> {
        match self {
            Self::Json(v) => match v.as_ref() {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_string()),
            },
            Self::Text(s) => Cow::Borrowed(s.as_ref()),
            Self::Time(t) => Cow::Owned(format_timestamp(*t)),
        }
    }

    /// The value as a number, for `sum`, `avg`, `min` and `max`: a JSON number, a numeric string, a time.
    fn number(&self) -> Option<f64> {
        match self {
            Self::Json(v) => match v.as_ref() {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => number_text(s),
                _ => None,
            },
            Self::Text(s) => number_text(s),
            Self::Time(t) => Some(*t as f64),
        }
    }
}

/// A string that holds only a number (`12`, `-0.5`, `01`): what the sort calls a number value.
fn number_text(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = digits.chars().any(|c| c.is_ascii_digit()) && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    plain.then(|| s.parse::<f64>().ok()).flatten()
}

/// A number as a value: integral ones print without a fraction (`3`, not `3.0`).
fn number(n: f64) -> Option<Val<'static>> {
    if !n.is_finite() {
        return None;
    }
    let value = match n.fract() == 0.0 && n.abs() < 9.0e15 {
        true => Value::from(n as i64),
        false => Value::Number(serde_json::Number::from_f64(n)?),
    };
    Some(Val::Json(Cow::Owned(value)))
}

/// `2026-12-01 17:00:00.000`: how Logs Insights shows a time, in UTC.
pub fn format_timestamp(ms: i64) -> String {
    let c = chimewatch_model::Civil::of(ms);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}", c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis)
}

/// A log event as the store reads it.
#[derive(Debug)]
pub(crate) struct SourceEvent {
    pub group: Rc<str>,
    pub stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

#[derive(Debug)]
struct Event {
    source: SourceEvent,
    /// The message as JSON, parsed on first use (`None`: not JSON); dropped while the row waits in a buffer.
    json: OnceCell<Option<Value>>,
}

impl Event {
    fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| serde_json::from_str(&self.source.message).ok()).as_ref()
    }
}

/// A row on its way through the pipeline: an event (none after `stats`) and the fields the commands made.
#[derive(Debug)]
struct Row {
    event: Option<Event>,
    /// In the order made; a later one of the same name hides an earlier one, and `None` hides the event's own.
    fields: Vec<(String, Option<Val<'static>>)>,
    /// Keys of the `sort`s it went through, the latest first, for the next `limit` (or the end) to order by.
    keys: Vec<(SortVal, bool)>,
}

impl Row {
    /// A field by its dotted name, given as its parts.
    fn get<'p>(&self, path: impl Iterator<Item = &'p str> + Clone) -> Option<Val<'_>> {
        if let Some((_, made)) = self.fields.iter().rev().find(|(name, _)| name.split('.').eq(path.clone())) {
            return made.as_ref().map(Val::reborrow);
        }
        let event = self.event.as_ref()?;
        let mut parts = path.clone();
        if let (Some(first), None) = (parts.next(), parts.next()) {
            let e = &event.source;
            match first {
                "@timestamp" => return Some(Val::Time(e.timestamp_ms)),
                "@message" => return Some(Val::Text(Cow::Borrowed(&e.message))),
                "@logStream" => return Some(Val::Text(Cow::Borrowed(&e.stream))),
                "@log" => return Some(Val::Text(Cow::Owned(format!("{LOCAL_ACCOUNT}:{}", e.group)))),
                _ => {}
            }
        }
        lookup(event.json()?, path).map(|v| Val::Json(Cow::Borrowed(v)))
    }

    fn get_named(&self, name: &str) -> Option<Val<'_>> {
        self.get(name.split('.'))
    }

    fn matches(&self, filter: &Filter) -> bool {
        filter.matches_by(&|path: &[String]| self.get(path.iter().map(String::as_str)).map(Val::into_json))
    }
}

fn eval<'r>(expr: &Expr, row: &'r Row) -> Option<Val<'r>> {
    match expr {
        Expr::Field(name) => row.get_named(name),
        Expr::Literal(Literal::Str(s)) => Some(Val::Text(Cow::Owned(s.clone()))),
        Expr::Literal(Literal::Num(n)) => number(*n),
        Expr::Literal(Literal::Bool(b)) => Some(Val::Json(Cow::Owned(Value::Bool(*b)))),
        Expr::Call(function, args) => {
            let first = || args.first().and_then(|a| eval(a, row));
            let text = |f: fn(&str) -> String| first().map(|v| Val::Text(Cow::Owned(f(&v.render()))));
            match function {
                // A missing argument adds nothing, as if it were "".
                Function::Concat => Some(Val::Text(Cow::Owned(
                    args.iter().filter_map(|a| eval(a, row)).map(|v| v.render().into_owned()).collect(),
                ))),
                Function::Coalesce => args.iter().find_map(|a| eval(a, row)),
                Function::ToUpper => text(str::to_uppercase),
                Function::ToLower => text(str::to_lowercase),
                Function::Trim => text(|s| s.trim().to_owned()),
                Function::Strlen => first().and_then(|v| number(v.render().chars().count() as f64)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Sorting

#[derive(Debug, Clone)]
enum SortVal {
    Missing,
    Text(String),
    Number(f64, String),
}

impl SortVal {
    fn of(v: Option<Val<'_>>) -> Self {
        let Some(v) = v else { return Self::Missing };
        let text = v.render().into_owned();
        let n = match &v {
            Val::Json(j) if j.is_number() => j.as_f64(),
            Val::Time(t) => Some(*t as f64),
            _ => number_text(&text),
        };
        match n {
            Some(n) => Self::Number(n, text),
            None => Self::Text(text),
        }
    }
}

/// The ascending natural order of two present values (see the module's notes).
fn natural(a: &SortVal, b: &SortVal) -> Ordering {
    match (a, b) {
        (SortVal::Number(x, xs), SortVal::Number(y, ys)) => x.total_cmp(y).then_with(|| xs.cmp(ys)),
        (SortVal::Text(_), SortVal::Number(..)) => Ordering::Less,
        (SortVal::Number(..), SortVal::Text(_)) => Ordering::Greater,
        (SortVal::Text(x), SortVal::Text(y)) => natural_text(x, y),
        // Missing values are placed by `compare_keys`.
        (SortVal::Missing, _) | (_, SortVal::Missing) => Ordering::Equal,
    }
}

/// Runs of digits and runs of other characters.
fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest.find(|c: char| c.is_ascii_digit() != digits).unwrap_or(rest.len());
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

fn natural_text(a: &str, b: &str) -> Ordering {
    let numeric = |c: &str| c.starts_with(|ch: char| ch.is_ascii_digit());
    let mut ordering = Ordering::Equal;
    for pair in chunks(a).zip(chunks(b)) {
        ordering = match pair {
            (x, y) if numeric(x) && numeric(y) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
            (x, y) => x.cmp(y),
        };
        if ordering.is_ne() {
            return ordering;
        }
    }
    ordering.then_with(|| a.cmp(b))
}

fn compare_keys(a: &[(SortVal, bool)], b: &[(SortVal, bool)]) -> Ordering {
    for ((x, desc), (y, _)) in a.iter().zip(b) {
        let ordering = match (x, y) {
            (SortVal::Missing, SortVal::Missing) => Ordering::Equal,
            (SortVal::Missing, _) => Ordering::Greater,
            (_, SortVal::Missing) => Ordering::Less,
            _ if *desc => natural(y, x),
            _ => natural(x, y),
        };
        if ordering.is_ne() {
            return ordering;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------------------------------------------------------
// Running

/// Whether a run takes more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    More,
    /// Nothing more can change the results: the source may stop reading.
    Done,
}

#[derive(Debug)]
struct Group {
    by: Vec<Option<Val<'static>>>,
    accumulators: Vec<Accumulator>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Accumulator {
    count: u64,
    numbers: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Accumulator {
    fn add(&mut self, n: f64) {
        (self.min, self.max) = match self.numbers {
            0 => (n, n),
            _ => (self.min.min(n), self.max.max(n)),
        };
        self.numbers += 1;
        self.sum += n;
    }

    fn result(&self, function: StatsFunction) -> Option<Val<'static>> {
        if function == StatsFunction::Count {
            return Some(Val::Json(Cow::Owned(Value::from(self.count))));
        }
        if self.numbers == 0 {
            return None;
        }
        number(match function {
            StatsFunction::Sum => self.sum,
            StatsFunction::Avg => self.sum / self.numbers as f64,
            StatsFunction::Min => self.min,
            StatsFunction::Max => self.max,
            StatsFunction::Count => self.count as f64,
        })
    }
}

/// One step of a run. Events and rows are pushed through them in order; `Top`, `Stats` and `Collect` hold rows
/// until the run finishes.
#[derive(Debug)]
enum Op<'q> {
    Filter(&'q Filter),
    Fields(&'q [Item]),
    Sort(&'q [SortKey]),
    Limit {
        n: usize,
        seen: usize,
    },
    /// A `limit` after a `sort`: the best `n` rows, kept as they come.
    Top {
        n: usize,
        rows: Vec<(Row, u64)>,
        seq: u64,
    },
    Stats {
        stats: &'q Stats,
        groups: BTreeMap<Vec<Option<String>>, Group>,
    },
    Collect {
        rows: Vec<Row>,
        sorted: bool,
    },
}

fn push(ops: &mut [Op<'_>], mut row: Row) -> Flow {
    let Some((op, rest)) = ops.split_first_mut() else { return Flow::More };
    match op {
        Op::Filter(f) => match row.matches(f) {
            true => push(rest, row),
            false => Flow::More,
        },
        Op::Fields(items) => {
            for item in *items {
                let value = eval(&item.expr, &row).map(Val::into_owned);
                row.fields.push((item.name.clone(), value));
            }
            push(rest, row)
        }
        Op::Sort(keys) => {
            let new: Vec<_> = keys.iter().map(|k| (SortVal::of(row.get_named(&k.field)), k.desc)).collect();
            // A later sort decides first; the earlier one only breaks its ties.
            row.keys.splice(0..0, new);
            push(rest, row)
        }
        Op::Limit { n, seen } => {
            if *seen >= *n {
                return Flow::Done;
            }
            *seen += 1;
            let flow = push(rest, row);
            if *seen >= *n { Flow::Done } else { flow }
        }
        Op::Top { n, rows, seq } => {
            if let Some(e) = row.event.as_mut() {
                e.json.take();
            }
            rows.push((row, *seq));
            *seq += 1;
            if rows.len() >= 2 * *n {
                keep_best(rows, *n);
            }
            Flow::More
        }
        Op::Stats { stats, groups } => {
            let by: Vec<Option<Val<'_>>> = stats.by.iter().map(|i| eval(&i.expr, &row)).collect();
            let key: Vec<Option<String>> = by.iter().map(|v| v.as_ref().map(|v| v.render().into_owned())).collect();
            let aggregates = &stats.aggregates;
            let group = groups.entry(key).or_insert_with(|| Group {
                by: by.into_iter().map(|v| v.map(Val::into_owned)).collect(),
                accumulators: vec![Accumulator::default(); aggregates.len()],
            });
            for (aggregate, acc) in aggregates.iter().zip(&mut group.accumulators) {
                let Some(arg) = &aggregate.arg else {
                    acc.count += 1;
                    continue;
                };
                if let Some(v) = eval(arg, &row) {
                    acc.count += 1;
                    if let Some(n) = v.number() {
                        acc.add(n);
                    }
                }
            }
            Flow::More
        }
        Op::Collect { rows, .. } => {
            rows.push(row);
            Flow::More
        }
    }
}

fn keep_best(rows: &mut Vec<(Row, u64)>, n: usize) {
    rows.sort_by(|(a, sa), (b, sb)| compare_keys(&a.keys, &b.keys).then(sa.cmp(sb)));
    rows.truncate(n);
}

/// A run of a query over events pushed in (newest first when [`Execution::newest_first`] says so).
#[derive(Debug)]
pub(crate) struct Execution<'q> {
    ops: Vec<Op<'q>>,
    columns: &'q [String],
    newest_first: bool,
    stopped: bool,
}

impl Execution<'_> {
    /// Whether the events must come newest first (otherwise any order will do: they all go into a `stats`).
    pub(crate) fn newest_first(&self) -> bool {
        self.newest_first
    }

    pub(crate) fn push(&mut self, event: SourceEvent) -> Flow {
        if self.stopped {
            return Flow::Done;
        }
        let row =
            Row { event: Some(Event { source: event, json: OnceCell::new() }), fields: Vec::new(), keys: Vec::new() };
        let flow = push(&mut self.ops, row);
        self.stopped = flow == Flow::Done;
        flow
    }

    pub(crate) fn finish(mut self) -> QueryResults {
        // Each holding step lets its rows go on in turn, in order, through the steps after it.
        for i in 0..self.ops.len() {
            let (head, rest) = self.ops.split_at_mut(i + 1);
            let out: Vec<Row> = match &mut head[i] {
                Op::Top { n, rows, .. } => {
                    keep_best(rows, *n);
                    std::mem::take(rows)
                        .into_iter()
                        .map(|(mut row, _)| {
                            row.keys.clear();
                            row
                        })
                        .collect()
                }
                Op::Stats { stats, groups } => std::mem::take(groups)
                    .into_values()
                    .map(|g| {
                        let by = stats.by.iter().map(|i| i.name.clone()).zip(g.by);
                        let aggregates = stats.aggregates.iter().zip(&g.accumulators);
                        let results = aggregates.map(|(a, acc)| (a.name.clone(), acc.result(a.function)));
                        Row { event: None, fields: by.chain(results).collect(), keys: Vec::new() }
                    })
                    .collect(),
                _ => continue,
            };
            for row in out {
                if push(rest, row) == Flow::Done {
                    break;
                }
            }
        }
        let rows = match self.ops.pop() {
            Some(Op::Collect { mut rows, sorted }) => {
                if sorted {
                    rows.sort_by(|a, b| compare_keys(&a.keys, &b.keys));
                }
                rows
            }
            _ => Vec::new(),
        };
        let columns = self.columns.to_vec();
        let rows = rows
            .iter()
            .map(|row| {
                let present = columns.iter().filter_map(|c| Some((c.clone(), row.get_named(c)?.render().into_owned())));
                present.collect()
            })
            .collect();
        QueryResults { columns, rows }
    }
}

#[cfg(test)]
mod tests {
    use chimewatch_model::UnixMillis;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::logs::{LogEvent, LogSink};

    const MEETINGS: &str = "/chimewatch/meeting-events";
    const VOICE: &str = "/chimewatch/voice-connector-sip";
    /// 2026-12-01 17:00:00.000 UTC.
    const T: i64 = 1_796_144_400_000;

    fn event(name: &str, attributes: Value) -> Value {
        json!({ "name": name, "attributes": attributes })
    }

    fn js(extra: Value) -> Value {
        let mut a = json!({ "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0", "osName": "Mac OS",
            "osVersion": "10.15.7", "attendeeId": "a-1" });
        a.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        a
    }

    /// Twelve events a second apart from `T + 1 s`, as the aggregator logs them, and one non-JSON line.
    fn meeting_events() -> Vec<Value> {
        let chrome = |major: &str, os: &str, version: &str| {
            js(json!({ "browserName": "chrome", "browserMajorVersion": major, "osName": os, "osVersion": version }))
        };
        vec![
            event("meetingStartRequested", chrome("142", "Mac OS", "10.15.7")),
            event("meetingStartRequested", chrome("142", "Windows", "10")),
            event(
                "meetingStartRequested",
                js(json!({ "sdkVersion": "3.31.0", "browserName": "firefox", "browserMajorVersion": "145",
                    "osName": "Windows", "osVersion": "10" })),
            ),
            event(
                "meetingStartRequested",
                json!({ "sdkName": "amazon-chime-sdk-android", "sdkVersion": "0.25.0", "osName": "Android",
                    "osVersion": "14", "timestampMs": T + 4000 }),
            ),
            // iOS uploads turn every value into a string.
            event(
                "meetingStartRequested",
                json!({ "sdkName": "amazon-chime-sdk-ios", "sdkVersion": "0.27.0", "osName": "iOS",
                    "osVersion": "17.2", "timestampMs": (T + 5000).to_string() }),
            ),
            event("meetingStartRequested", chrome("141", "Windows", "11")),
            event(
                "meetingStartFailed",
                js(json!({ "browserName": "chrome", "meetingStatus": "SignalingBadRequest", "retryCount": 2 })),
            ),
            event(
                "meetingStartFailed",
                json!({ "sdkName": "amazon-chime-sdk-android", "osName": "Android", "osVersion": "14",
                    "meetingStatus": "AudioServiceUnavailable", "retryCount": 1 }),
            ),
            event("audioInputFailed", js(json!({ "audioInputErrorMessage": "NotAllowedError: Permission denied" }))),
            event(
                "videoInputFailed",
                js(json!({ "videoInputErrorMessage": "NotReadableError: Could not start video source" })),
            ),
            event("meetingEnded", js(json!({ "meetingDurationMs": 61000, "meetingStatus": "Left" }))),
        ]
    }

    async fn store(dir: &tempfile::TempDir) -> EmbeddedStore {
        let store = EmbeddedStore::open(dir.path().join("embedded.sqlite")).unwrap();
        let events: Vec<LogEvent> = meeting_events()
            .iter()
            .zip(1..)
            .map(|(e, i)| LogEvent { timestamp: UnixMillis(T + i * 1000), message: e.to_string().into() })
            .collect();
        assert!(store.put(MEETINGS, "w1/shard-0000", &events).await.is_settled());
        let line = LogEvent { timestamp: UnixMillis(T + 12_000), message: "not JSON at all".into() };
        assert!(store.put(MEETINGS, "w1/shard-0001", &[line]).await.is_settled());
        let sip = |call: &str, t: i64| LogEvent {
            timestamp: UnixMillis(t),
            message: json!({ "voice_connector_id": "abcdef1ghij2klmno3pqr4", "aws_region": "us-east-1",
                "event_timestamp": t, "call_id": call, "sip_message": "INVITE sip:+16185550100@203.0.113.10 SIP/2.0" })
            .to_string()
            .into(),
        };
        let calls = [sip("vc-call-0001", T + 500), sip("vc-call-0001", T + 600), sip("vc-call-0002", T + 700)];
        assert!(store.put(VOICE, "w1/shard-0000", &calls).await.is_settled());
        store
    }

    fn query(store: &EmbeddedStore, text: &str) -> QueryResults {
        let q = InsightsQuery::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        store.insights(&[MEETINGS.to_owned()], T, T + 3_600_000, &q).unwrap()
    }

    /// Rows as `[[field, value], ...]` literals.
    fn rows(expected: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
        expected.iter().map(|r| r.iter().map(|(f, v)| ((*f).to_owned(), (*v).to_owned())).collect()).collect()
    }

    fn column(results: &QueryResults, field: &str) -> Vec<String> {
        results.rows.iter().filter_map(|r| r.iter().find(|(f, _)| f == field).map(|(_, v)| v.clone())).collect()
    }

    #[tokio::test]
    async fn the_blog_dashboards_four_queries_give_its_widgets_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;

        let platforms = query(
            &store,
            r#"filter name in ["meetingStartRequested"] | stats count(*) as platform by attributes.sdkName"#,
        );
        assert_eq!(platforms.columns, ["attributes.sdkName", "platform"]);
        assert_eq!(
            platforms.rows,
            rows(&[
                &[("attributes.sdkName", "amazon-chime-sdk-android"), ("platform", "1")],
                &[("attributes.sdkName", "amazon-chime-sdk-ios"), ("platform", "1")],
                &[("attributes.sdkName", "amazon-chime-sdk-js"), ("platform", "4")],
            ])
        );

        let versions = query(
            &store,
            r#"filter name in ["meetingStartRequested"] | stats count(*) as startRequested by attributes.sdkName as SDK, attributes.sdkVersion as version"#,
        );
        assert_eq!(versions.columns, ["SDK", "version", "startRequested"]);
        assert_eq!(
            versions.rows,
            rows(&[
                &[("SDK", "amazon-chime-sdk-android"), ("version", "0.25.0"), ("startRequested", "1")],
                &[("SDK", "amazon-chime-sdk-ios"), ("version", "0.27.0"), ("startRequested", "1")],
                &[("SDK", "amazon-chime-sdk-js"), ("version", "3.31.0"), ("startRequested", "1")],
                &[("SDK", "amazon-chime-sdk-js"), ("version", "3.32.0"), ("startRequested", "3")],
            ])
        );

        let systems = query(
            &store,
            r#"filter name in ["meetingStartRequested"] | stats count(*) as startRequested by attributes.osName as operatingSystem | sort startRequested desc | limit 10"#,
        );
        assert_eq!(systems.columns, ["operatingSystem", "startRequested"]);
        assert_eq!(
            systems.rows,
            rows(&[
                &[("operatingSystem", "Windows"), ("startRequested", "3")],
                &[("operatingSystem", "Android"), ("startRequested", "1")],
                &[("operatingSystem", "Mac OS"), ("startRequested", "1")],
                &[("operatingSystem", "iOS"), ("startRequested", "1")],
            ])
        );

        let browsers = query(
            &store,
            r#"filter name = "meetingStartRequested" and attributes.sdkName = "amazon-chime-sdk-js" | stats count(*) as startRequested by attributes.browserName as browser, attributes.browserMajorVersion as version | sort startRequested desc | limit 10"#,
        );
        assert_eq!(browsers.columns, ["browser", "version", "startRequested"]);
        assert_eq!(
            browsers.rows,
            rows(&[
                &[("browser", "chrome"), ("version", "142"), ("startRequested", "2")],
                &[("browser", "chrome"), ("version", "141"), ("startRequested", "1")],
                &[("browser", "firefox"), ("version", "145"), ("startRequested", "1")],
            ])
        );
    }

    #[tokio::test]
    async fn the_failure_widgets_list_events_newest_first_with_concatenated_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let failures = query(
            &store,
            r#"fields @timestamp, attributes.sdkName as sdk, concat(attributes.osName, " ", attributes.osVersion) as os, attributes.meetingStatus as status | filter name in ["meetingStartFailed"] | sort @timestamp desc | limit 100"#,
        );
        assert_eq!(failures.columns, ["@timestamp", "sdk", "os", "status"]);
        assert_eq!(
            failures.rows,
            rows(&[
                &[
                    ("@timestamp", "2026-12-01 17:00:08.000"),
                    ("sdk", "amazon-chime-sdk-android"),
                    ("os", "Android 14"),
                    ("status", "AudioServiceUnavailable"),
                ],
                &[
                    ("@timestamp", "2026-12-01 17:00:07.000"),
                    ("sdk", "amazon-chime-sdk-js"),
                    ("os", "Mac OS 10.15.7"),
                    ("status", "SignalingBadRequest"),
                ],
            ])
        );

        // No sort: newest first all the same, and the missing one of the two messages counts as "".
        let devices = query(
            &store,
            r#"fields @timestamp, name, concat(attributes.audioInputErrorMessage, attributes.videoInputErrorMessage) as reason | filter name in ["audioInputFailed", "videoInputFailed"]"#,
        );
        assert_eq!(devices.columns, ["@timestamp", "name", "reason"]);
        assert_eq!(
            devices.rows,
            rows(&[
                &[
                    ("@timestamp", "2026-12-01 17:00:10.000"),
                    ("name", "videoInputFailed"),
                    ("reason", "NotReadableError: Could not start video source"),
                ],
                &[
                    ("@timestamp", "2026-12-01 17:00:09.000"),
                    ("name", "audioInputFailed"),
                    ("reason", "NotAllowedError: Permission denied"),
                ],
            ])
        );
    }

    #[tokio::test]
    async fn without_fields_rows_have_the_four_system_fields_and_a_bare_filter_is_a_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let ended = query(&store, r#"filter name = "meetingEnded""#);
        assert_eq!(ended.columns, ["@timestamp", "@message", "@logStream", "@log"]);
        let message = event("meetingEnded", js(json!({ "meetingDurationMs": 61000, "meetingStatus": "Left" })));
        assert_eq!(
            ended.rows,
            rows(&[&[
                ("@timestamp", "2026-12-01 17:00:11.000"),
                ("@message", &message.to_string()),
                ("@logStream", "w1/shard-0000"),
                ("@log", "000000000000:/chimewatch/meeting-events"),
            ]])
        );
        assert_eq!(query(&store, r#"name = "meetingEnded""#), ended, "the old --filter form");
        assert_eq!(query(&store, r#"not name != "meetingEnded""#), ended);
        assert_eq!(query(&store, r#"(name = "meetingEnded")"#), ended);
        let everything = query(&store, "fields @timestamp, @logStream");
        assert_eq!(everything.rows.len(), 12, "a line that is not JSON is an event too");
        assert_eq!(
            everything.rows[0],
            rows(&[&[("@timestamp", "2026-12-01 17:00:12.000"), ("@logStream", "w1/shard-0001")]])[0]
        );
    }

    #[tokio::test]
    async fn fields_leave_out_what_an_event_lacks_and_aliases_serve_later_commands() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mobile = query(
            &store,
            r#"fields name, attributes.browserName as browser | filter name = "meetingStartRequested" and attributes.sdkName != "amazon-chime-sdk-js""#,
        );
        assert_eq!(mobile.columns, ["name", "browser"]);
        assert_eq!(mobile.rows, rows(&[&[("name", "meetingStartRequested")], &[("name", "meetingStartRequested")]]));

        let windows = query(
            &store,
            r#"fields attributes.osName as os | filter os = "Windows" | filter name = "meetingStartRequested" | fields attributes.osVersion as v, attributes.meetingHistory.0.name as first"#,
        );
        assert_eq!(windows.columns, ["os", "v", "first"]);
        assert_eq!(column(&windows, "v"), ["11", "10", "10"]);
        assert_eq!(column(&windows, "first"), Vec::<String>::new());

        // An alias hides the message's own field of that name, even when its value is missing.
        let hidden = query(&store, r#"fields attributes.nothing as name | filter name = "meetingEnded""#);
        assert!(hidden.rows.is_empty());
        let sip = InsightsQuery::parse(
            "fields call_id, `voice_connector_id` as vc # the Voice Connector\n| filter call_id = 'vc-call-0001'",
        )
        .unwrap();
        let calls = store.insights(&[VOICE.to_owned()], T, T + 1000, &sip).unwrap();
        assert_eq!(
            calls.rows,
            rows(&[
                &[("call_id", "vc-call-0001"), ("vc", "abcdef1ghij2klmno3pqr4")],
                &[("call_id", "vc-call-0001"), ("vc", "abcdef1ghij2klmno3pqr4")],
            ])
        );
    }

    #[tokio::test]
    async fn display_picks_the_columns_and_only_the_last_one_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let shown = query(&store, "fields name, attributes.sdkName as sdk | display name | display sdk | limit 2");
        assert_eq!(shown.columns, ["sdk"]);
        // The newest event is the line that is not JSON: a row without the field, as GetQueryResults gives it.
        assert_eq!(shown.rows, rows(&[&[], &[("sdk", "amazon-chime-sdk-js")]]));
    }

    #[tokio::test]
    async fn sort_orders_naturally_by_several_keys_and_puts_missing_values_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let by_sdk = query(
            &store,
            r#"filter name = "meetingStartRequested" | sort attributes.sdkName desc, @timestamp asc | fields attributes.sdkName as sdk, @timestamp"#,
        );
        assert_eq!(
            column(&by_sdk, "@timestamp"),
            ["01", "02", "03", "06", "05", "04"].map(|s| format!("2026-12-01 17:00:{s}.000"))
        );
        let majors = query(
            &store,
            r#"filter name = "meetingStartRequested" | sort attributes.browserMajorVersion | fields attributes.browserMajorVersion as v, @timestamp as t"#,
        );
        assert_eq!(column(&majors, "v"), ["141", "142", "142", "145"], "numbers, ascending by default");
        assert_eq!(majors.rows.len(), 6, "the two without a version come last");
        assert_eq!(
            column(&majors, "t")[1..3],
            ["2026-12-01 17:00:02.000", "2026-12-01 17:00:01.000"],
            "ties stay newest first"
        );
        let majors_desc = query(
            &store,
            r#"filter name = "meetingStartRequested" | sort attributes.browserMajorVersion desc | display attributes.browserMajorVersion"#,
        );
        assert_eq!(column(&majors_desc, "attributes.browserMajorVersion"), ["145", "142", "142", "141"]);
        assert_eq!(majors_desc.rows.len(), 6, "missing values last in descending order too");
        // A later sort decides, an earlier one breaks its ties.
        let both = query(
            &store,
            r#"filter name = "meetingStartRequested" | sort @timestamp desc | sort attributes.osName | display attributes.osName, @timestamp"#,
        );
        assert_eq!(column(&both, "attributes.osName"), ["Android", "Mac OS", "Windows", "Windows", "Windows", "iOS"]);
        assert_eq!(column(&both, "@timestamp")[2], "2026-12-01 17:00:06.000");
    }

    #[test]
    fn the_natural_order_is_the_documented_one() {
        // The ascending example of the `sort` documentation.
        let expected = [
            "!:",
            "#",
            "*%04",
            "0#",
            "5A",
            "111A",
            "2345_",
            "@",
            "@_",
            "A",
            "A9876fghj",
            "a12345hfh",
            "0",
            "01",
            "1",
            "2",
            "3",
        ];
        let mut values: Vec<SortVal> =
            expected.iter().rev().map(|s| SortVal::of(Some(Val::Text(Cow::Borrowed(*s))))).collect();
        values.sort_by(natural);
        let texts: Vec<&str> = values
            .iter()
            .map(|v| match v {
                SortVal::Text(t) | SortVal::Number(_, t) => t.as_str(),
                SortVal::Missing => "",
            })
            .collect();
        assert_eq!(texts, expected);
    }

    #[tokio::test]
    async fn limit_and_the_default_limit_cut_the_newest_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let two = query(&store, "fields @timestamp | limit 2");
        assert_eq!(column(&two, "@timestamp"), ["2026-12-01 17:00:12.000", "2026-12-01 17:00:11.000"]);
        let q = InsightsQuery::parse("fields @timestamp").unwrap().with_default_limit(3).unwrap();
        assert_eq!(store.insights(&[MEETINGS.to_owned()], T, T + 3_600_000, &q).unwrap().rows.len(), 3);
        let q = InsightsQuery::parse("fields @timestamp | limit 5").unwrap().with_default_limit(3).unwrap();
        assert_eq!(
            store.insights(&[MEETINGS.to_owned()], T, T + 3_600_000, &q).unwrap().rows.len(),
            5,
            "the query's own wins"
        );
        let oldest = query(&store, "sort @timestamp asc | limit 1 | fields @timestamp");
        assert_eq!(column(&oldest, "@timestamp"), ["2026-12-01 17:00:01.000"]);
        assert!(InsightsQuery::parse("fields a").unwrap().with_default_limit(0).is_err());
        assert!(InsightsQuery::parse("fields a").unwrap().with_default_limit(MAX_LIMIT + 1).is_err());
    }

    #[test]
    fn an_unsorted_limit_stops_reading_and_a_stats_query_needs_no_order() {
        let q = InsightsQuery::parse("filter name = 'x' | limit 2").unwrap();
        let mut run = q.start();
        assert!(run.newest_first());
        let event = |t: i64, name: &str| SourceEvent {
            group: Rc::from(MEETINGS),
            stream: "s".into(),
            timestamp_ms: t,
            message: json!({ "name": name }).to_string(),
        };
        assert_eq!(run.push(event(3, "x")), Flow::More);
        assert_eq!(run.push(event(2, "y")), Flow::More);
        assert_eq!(run.push(event(1, "x")), Flow::Done, "two rows: nothing more can change the results");
        assert_eq!(run.finish().rows.len(), 2);
        let sorted = InsightsQuery::parse("sort name | limit 1").unwrap();
        let mut run = sorted.start();
        assert_eq!(run.push(event(3, "b")), Flow::More);
        assert_eq!(run.push(event(2, "a")), Flow::More, "a sort must see every event");
        assert_eq!(run.finish().rows.len(), 1);
        assert!(!InsightsQuery::parse("stats count(*) | limit 1").unwrap().start().newest_first());
        assert!(InsightsQuery::parse("limit 1 | stats count(*)").unwrap().start().newest_first());
    }

    #[tokio::test]
    async fn stats_count_sum_avg_min_max_by_groups_with_and_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let failed = query(
            &store,
            concat!(
                r#"filter name = "meetingStartFailed" | stats count(*) as n, count(attributes.meetingStatus) as "#,
                "withStatus, count(attributes.nothing) as none, sum(attributes.retryCount) as retries, ",
                "avg(attributes.retryCount) as avgRetries, min(attributes.retryCount) as least, ",
                "max(attributes.retryCount), avg(attributes.nothing) as gone",
            ),
        );
        assert_eq!(
            failed.columns,
            ["n", "withStatus", "none", "retries", "avgRetries", "least", "max(attributes.retryCount)", "gone"]
        );
        assert_eq!(
            failed.rows,
            rows(&[&[
                ("n", "2"),
                ("withStatus", "2"),
                ("none", "0"),
                ("retries", "3"),
                ("avgRetries", "1.5"),
                ("least", "1"),
                ("max(attributes.retryCount)", "2"),
            ]])
        );
        let all = query(&store, "stats count(*)");
        assert_eq!(all.rows, rows(&[&[("count(*)", "12")]]));
        assert!(query(&store, r#"filter name = "nothing" | stats count(*)"#).rows.is_empty());
        // A group of the events that lack the field: the field is left out of its row.
        let by_browser = query(&store, "stats count(*) as n by attributes.browserName as browser");
        assert_eq!(
            by_browser.rows,
            rows(&[&[("n", "7")], &[("browser", "chrome"), ("n", "4")], &[("browser", "firefox"), ("n", "1")]])
        );
        // Aggregates can be filtered, sorted and shown again; iOS's numeric strings add up as numbers.
        let busy = query(
            &store,
            "stats count(*) as n by name | filter n > 1 | sort n asc | fields concat(name, ':', n) as line",
        );
        assert_eq!(column(&busy, "line"), ["meetingStartFailed:2", "meetingStartRequested:6"]);
        let ios = query(
            &store,
            r#"filter attributes.sdkName = "amazon-chime-sdk-ios" | stats sum(attributes.timestampMs) as t"#,
        );
        assert_eq!(column(&ios, "t"), [(T + 5000).to_string()]);
        let twice = query(&store, "stats count(*) as n by name | stats count(*) as names, max(n) as most");
        assert_eq!(twice.rows, rows(&[&[("names", "6"), ("most", "6")]]));
    }

    #[tokio::test]
    async fn functions_concat_coalesce_toupper_tolower_strlen_trim() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let row = query(
            &store,
            concat!(
                r#"filter name = "meetingStartFailed" and attributes.sdkName = "amazon-chime-sdk-js" | fields "#,
                r#"concat(name, "/", attributes.retryCount, attributes.nothing, 1.5, true) as c, "#,
                "coalesce(attributes.nothing, attributes.osName, name) as co, coalesce(attributes.nothing) as none, ",
                "toupper(attributes.osName) as up, tolower(name) as low, strlen(attributes.osName) as len, ",
                r#"trim(concat("  ", name, " ")) as t, toupper(attributes.nothing) as gone, concat(@timestamp) as at"#,
            ),
        );
        assert_eq!(
            row.rows,
            rows(&[&[
                ("c", "meetingStartFailed/21.5true"),
                ("co", "Mac OS"),
                ("up", "MAC OS"),
                ("low", "meetingstartfailed"),
                ("len", "6"),
                ("t", "meetingStartFailed"),
                ("at", "2026-12-01 17:00:07.000"),
            ]])
        );
        let named = query(&store, r#"fields concat(name, "-", attributes.osName), strlen(name) | limit 1"#);
        assert_eq!(named.columns, [r#"concat(name, "-", attributes.osName)"#, "strlen(name)"]);
    }

    #[tokio::test]
    async fn it_reads_several_groups_within_the_time_range_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let q = InsightsQuery::parse("stats count(*) as n by @log").unwrap();
        let both = store.insights(&[MEETINGS.to_owned(), VOICE.to_owned(), MEETINGS.to_owned()], T, T + 3_600_000, &q);
        assert_eq!(
            both.unwrap().rows,
            rows(&[
                &[("@log", "000000000000:/chimewatch/meeting-events"), ("n", "12")],
                &[("@log", "000000000000:/chimewatch/voice-connector-sip"), ("n", "3")],
            ])
        );
        let window = store.insights(&[MEETINGS.to_owned()], T + 5000, T + 8000, &q).unwrap();
        assert_eq!(column(&window, "n"), ["3"], "from the start, up to the end");
        let calls =
            InsightsQuery::parse("filter call_id = 'vc-call-0001' | stats count(*) as messages by voice_connector_id")
                .unwrap();
        let calls = store.insights(&[VOICE.to_owned()], T, T + 1000, &calls).unwrap();
        assert_eq!(calls.rows, rows(&[&[("voice_connector_id", "abcdef1ghij2klmno3pqr4"), ("messages", "2")]]));
        let none = store.insights(&[], T, T + 1000, &q).unwrap();
        assert_eq!((none.columns, none.rows.len()), (vec!["@log".to_owned(), "n".to_owned()], 0));
        assert!(store.insights(&["/other".to_owned()], T, T + 3_600_000, &q).unwrap().rows.is_empty());
    }

    #[test]
    fn timestamps_read_as_logs_insights_shows_them() {
        assert_eq!(format_timestamp(T), "2026-12-01 17:00:00.000");
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
        assert_eq!(format_timestamp(951_827_696_789), "2000-02-29 12:34:56.789");
        let _ = (format_timestamp(i64::MIN), format_timestamp(i64::MAX));
    }

    #[test]
    fn bad_queries_say_where_and_what_was_expected() {
        for (text, at, message) in [
            (
                r#"filter name in ["x"] | stats count(*) foo"#,
                38,
                r#"expected "by" or "|" after stats function, found "foo""#,
            ),
            (
                "feilds a",
                0,
                r#"unknown command "feilds": the commands are fields, filter, stats, sort, limit and display"#,
            ),
            ("filter a = 1 | parse @message 'x'", 15, r#"the "parse" command is not supported here"#),
            ("stats count(*) by", 17, "expected a field name, a function or a value, found the end of the query"),
            ("stats count(*) as", 17, r#"expected a name after "as", found the end of the query"#),
            ("limit 0", 6, "expected a number of rows from 1 to 100000 after limit, found the number 0"),
            ("limit 2.5", 6, "expected a number of rows"),
            ("sort", 4, "expected a field to sort by"),
            ("sort a up", 7, r#"expected "asc", "desc", "," or "|" after a sort field, found "up""#),
            ("fields concat()", 7, "concat takes at least one argument, not 0"),
            ("fields toupper(a, b)", 7, "toupper takes one argument, not 2"),
            ("fields foo(x)", 7, r#"unknown function "foo""#),
            ("fields count(*)", 7, r#""count" is a stats function"#),
            ("fields concat(a b)", 16, r#"expected "," or ")" in the arguments of concat, found "b""#),
            ("fields a b", 9, r#"expected ",", "as" or "|" after a field, found "b""#),
            ("stats concat(a)", 6, r#""concat" is not a stats function"#),
            ("stats median(a)", 6, r#"unknown stats function "median""#),
            ("stats sum(*)", 10, r#"expected a field name, a function or a value, found "*""#),
            ("stats count(a", 13, r#"expected ")" after the argument of count"#),
            ("stats n", 6, "expected a stats function (count, sum, avg, min and max)"),
            ("display a(", 9, r#"expected "," or "|" after a field, found "(""#),
            (
                r#"filter name = "a" |"#,
                19,
                "expected a command (fields, filter, stats, sort, limit and display), found the end",
            ),
            ("", 0, "expected a command"),
            ("| filter a = 1", 0, r#"expected a command (fields, filter, stats, sort, limit and display), found "|""#),
            ("filter name =", 13, "expected a string, a number, true or false, found the end of the query"),
            (
                r#"filter name = "a" "b""#,
                18,
                r#"expected "and", "or" or "|" after the filter expression, found the string "b""#,
            ),
            (r#"fields a | filter b = "open"#, 22, "unterminated string"),
            ("fields `a", 7, "unterminated `name`"),
            ("fields a | filter b ~ 1", 20, "unexpected '~'"),
        ] {
            let e = InsightsQuery::parse(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
            assert!(e.message.starts_with(message), "{text}: {e}");
        }
        for deep in [
            format!("filter {}a = 1", "(".repeat(10_000)),
            format!("filter {}a = 1", "not ".repeat(10_000)),
            format!("fields {}a", "concat(".repeat(10_000)),
        ] {
            let e = InsightsQuery::parse(&deep).unwrap_err();
            assert!(e.message.starts_with("nested more than 64 deep"), "{e}");
            assert!(e.at > 64 && e.at <= 7 + 64 * 7, "{e}");
        }
        let long = format!("filter {}", vec!["name = 'x'"; 100_000].join(" or "));
        let results = run(&InsightsQuery::parse(&long).unwrap(), &[json!({ "name": "x" }).to_string()]);
        assert_eq!(results.rows.len(), 1, "a long chain is a flat list, evaluated without deep recursion");
        let e = InsightsQuery::parse(r#"filter name in ["x"] | stats count(*) foo"#).unwrap_err();
        assert_eq!(e.to_string(), r#"query, at character 38: expected "by" or "|" after stats function, found "foo""#);
    }

    #[test]
    fn what_a_query_is() {
        let q = InsightsQuery::parse("FILTER a = 1 | Stats count(*) by b | sort b DESC").unwrap();
        assert!(q.is_stats());
        assert_eq!(q.columns(), ["b", "count(*)"]);
        let q = InsightsQuery::parse("fields a, b as c | fields a, d").unwrap();
        assert!(!q.is_stats());
        assert_eq!(q.columns(), ["a", "c", "d"]);
        assert_eq!(
            InsightsQuery::parse("limit = 3").unwrap().columns(),
            DEFAULT_COLUMNS,
            "a field named like a command"
        );
    }

    /// Runs a query over JSON messages a second apart, the last one newest, without a store.
    fn run(q: &InsightsQuery, messages: &[String]) -> QueryResults {
        let mut run = q.start();
        for (i, message) in messages.iter().enumerate().rev() {
            let event = SourceEvent {
                group: Rc::from(MEETINGS),
                stream: "s".into(),
                timestamp_ms: i as i64 * 1000,
                message: message.clone(),
            };
            if run.push(event) == Flow::Done {
                break;
            }
        }
        run.finish()
    }

    fn words() -> impl Strategy<Value = String> {
        let words = [
            "fields",
            "filter",
            "stats",
            "sort",
            "limit",
            "display",
            "|",
            ",",
            "(",
            ")",
            "*",
            "as",
            "by",
            "asc",
            "desc",
            "count",
            "sum",
            "avg",
            "min",
            "max",
            "concat",
            "coalesce",
            "strlen",
            "toupper",
            "trim",
            "name",
            "attributes.sdkName",
            "attributes.n",
            "@timestamp",
            "@message",
            "=",
            "!=",
            ">",
            "in",
            "[",
            "]",
            "\"x\"",
            "'meetingEnded'",
            "1",
            "10",
            "0",
            "and",
            "or",
            "not",
            "n",
            "#",
            "\n",
            "`a b`",
        ];
        prop::collection::vec(prop::sample::select(words.to_vec()), 0..24).prop_map(|w| w.join(" "))
    }

    proptest! {
        #[test]
        fn parsing_any_text_returns_a_query_or_an_error(text in ".{0,120}") {
            if let Err(e) = InsightsQuery::parse(&text) {
                prop_assert!(e.at <= text.chars().count());
            }
        }

        #[test]
        fn any_query_of_the_language_runs(text in words()) {
            let odd = [r#"{"attributes": {"n": "7"}}"#.to_owned(), "[1, 2".to_owned()];
            let messages: Vec<String> = meeting_events().iter().map(Value::to_string).chain(odd).collect();
            if let Ok(q) = InsightsQuery::parse(&text) {
                let results = run(&q, &messages);
                prop_assert!(results.rows.iter().all(|r| r.iter().all(|(f, _)| q.columns().contains(f))));
            }
        }
    }
}
