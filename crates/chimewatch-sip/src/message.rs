//! A SIP message parser for captured messages (RFC 3261 section 7): the start line, headers (case-insensitive, compact
//! forms such as `i` for `Call-ID`, continuation lines folded in, comma-separated `Via` values split), and the body
//! as long as `Content-Length` says. Any input gives a message or a [`ParseError`]; nothing panics.

/// What is wrong with a message, and where (a byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SIP message, at byte {at}: {reason}")]
pub struct ParseError {
    pub at: usize,
    pub reason: String,
}

fn error<T>(at: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { at, reason: reason.into() })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// Headers in order, names in their full lowercase form (compact forms expanded).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Longest message accepted: captured messages are a few kilobytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// RFC 3261 section 7.3.3 compact forms (and RFC 3515, 3891, 4028 additions).
fn full_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "x" => "session-expires",
        "u" => "allow-events",
        _ => return lower,
    };
    full.to_owned()
}

/// Headers whose comma-separated values are separate headers (and never hold commas inside a value).
const LIST_HEADERS: &[&str] = &["via"];

impl Message {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return error(MAX_MESSAGE_BYTES, format!("message of {} bytes is over {MAX_MESSAGE_BYTES}", bytes.len()));
        }
        // Header section: up to the first empty line (CRLF CRLF, or LF LF from captures that lost the CRs).
        let (head_end, body_start) = match find(bytes, b"\r\n\r\n") {
            Some(i) => (i, i + 4),
            None => match find(bytes, b"\n\n") {
                Some(i) => (i, i + 2),
                None => return error(bytes.len(), "no empty line ends the headers"),
            },
        };
        let head = std::str::from_utf8(&bytes[..head_end]).map_err(|e| ParseError {
            at: e.valid_up_to(),
            reason: "the start line and headers are not UTF-8".into(),
        })?;
        let mut lines = Vec::new();
        let mut offset = 0;
        for line in head.split('\n') {
            lines.push((offset, line.strip_suffix('\r').unwrap_or(line)));
            offset += line.len() + 1;
        }
        let (_, first) = lines[0];
        let start = parse_start_line(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for &(at, line) in &lines[1..] {
            if line.starts_with([' ', '\t']) {
                // Folding: a continuation of the previous header's value.
                match headers.last_mut() {
                    Some((_, value)) => {
                        value.push(' ');
                        value.push_str(line.trim());
                    }
                    None => return error(at, "a continuation line before any header"),
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return error(at, format!("header line without a colon: {:?}", truncate(line)));
            };
            let name = name.trim_end();
            if name.is_empty() || !name.bytes().all(is_token) {
                return error(at, format!("invalid header name {:?}", truncate(name)));
            }
            headers.push((full_name(name), value.trim().to_owned()));
        }
        // Split list headers written as one line: `Via: a, b`.
        let headers = headers
            .into_iter()
            .flat_map(|(name, value)| {
                if LIST_HEADERS.contains(&name.as_str()) && value.contains(',') {
                    value.split(',').map(|v| (name.clone(), v.trim().to_owned())).collect::<Vec<_>>()
                } else {
                    vec![(name, value)]
                }
            })
            .collect::<Vec<_>>();
        let rest = &bytes[body_start..];
        let body = match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, v)) => {
                let Ok(len) = v.parse::<usize>() else {
                    let at = lines
                        .iter()
                        .find(|(_, l)| {
                            l.split_once(':').is_some_and(|(n, _)| full_name(n.trim_end()) == "content-length")
                        })
                        .map_or(head_end, |(at, _)| *at);
                    return error(at, format!("Content-Length {v:?} is not a number"));
                };
                if rest.len() < len {
                    return error(
                        bytes.len(),
                        format!("body of {} bytes is shorter than its Content-Length {len}", rest.len()),
                    );
                }
                rest[..len].to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(Self { start, headers, body })
    }

    /// The first value of a header (any name form, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = full_name(name);
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = full_name(name);
        self.headers.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// `CSeq: 101 INVITE` as (101, "INVITE").
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, method) = self.header("cseq")?.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, method.trim()))
    }

    /// The `branch` parameter of the topmost Via: with the CSeq, it names the transaction.
    pub fn branch(&self) -> Option<&str> {
        param(self.header("via")?, "branch")
    }

    pub fn from_tag(&self) -> Option<&str> {
        param(self.header("from")?, "tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        param(self.header("to")?, "tag")
    }

    /// The host of a request's Request-URI (`sip:user@host:port;params` -> `host`).
    pub fn request_host(&self) -> Option<&str> {
        let StartLine::Request { uri, .. } = &self.start else { return None };
        let rest = uri.split_once(':').map_or(uri.as_str(), |(_, r)| r);
        let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let host = host_port.split([';', '?', ':']).next()?;
        (!host.is_empty()).then_some(host)
    }

    /// `Reason: SIP;cause=200;text="ACK timeout"` as its text, or else its cause.
    pub fn reason_text(&self) -> Option<String> {
        let reason = self.header("reason")?;
        if let Some(text) = param(reason, "text") {
            return Some(text.trim_matches('"').to_owned());
        }
        param(reason, "cause").map(|c| format!("cause {c}"))
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.header("retry-after")?.split([' ', ';', '(']).next()?.parse().ok()
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let Ok(status) = code.parse::<u16>() else {
            return error(8, format!("status code {:?} is not a number", truncate(code)));
        };
        if !(100..=699).contains(&status) {
            return error(8, format!("status code {status} is outside 100-699"));
        }
        return Ok(StartLine::Response { status, reason: reason.to_owned() });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return error(0, format!("start line is neither a request nor a status line: {:?}", truncate(line)));
    };
    if version != "SIP/2.0" {
        return error(line.len() - version.len(), format!("unsupported version {:?}", truncate(version)));
    }
    if method.is_empty() || !method.bytes().all(is_token) {
        return error(0, format!("invalid method {:?}", truncate(method)));
    }
    if uri.is_empty() {
        return error(method.len() + 1, "empty Request-URI");
    }
    Ok(StartLine::Request { method: method.to_owned(), uri: uri.to_owned() })
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A `;name=value` parameter of a header value (outside its `<...>` URI).
fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let outside = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    outside.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests;
