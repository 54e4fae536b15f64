//! The subset of CloudWatch's `SEARCH` expression the dashboards use: every series of one metric with exactly one
//! dimension set, e.g. `SEARCH('{AmazonChimeSDKMeetingEvents,sdkName} MetricName="meetingStartDurationMs"', 'p95', 300)`.
//!
//! As in CloudWatch's search expression syntax, `{Namespace,Dim1,Dim2}` is a schema: it matches the series whose
//! dimension names are exactly `Dim1` and `Dim2`, whatever their values. That is how a dashboard shows one line per
//! SDK, connector or service without naming them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub namespace: String,
    /// The schema's dimension names, sorted.
    pub dimension_names: Vec<String>,
    pub metric: String,
    pub stat: String,
    pub period_s: u64,
}

const SHAPE: &str =
    "the console understands SEARCH('{Namespace,DimensionName,...} MetricName=\"name\"', 'Statistic', period)";

/// `Ok(None)` when `expression` is not a SEARCH (it is metric math), an error when it is one the console cannot run.
pub fn parse(expression: &str) -> Result<Option<Search>, String> {
    let Some(rest) = expression.trim().strip_prefix("SEARCH(") else { return Ok(None) };
    let fail = |what: &str| format!("{what}: {SHAPE}");
    let (query, rest) = quoted(rest).ok_or_else(|| fail("expected a quoted search string"))?;
    let rest = rest.trim_start().strip_prefix(',').ok_or_else(|| fail("expected , after the search string"))?;
    let (stat, rest) = quoted(rest).ok_or_else(|| fail("expected a quoted statistic"))?;
    let rest = rest.trim_start().strip_prefix(',').ok_or_else(|| fail("expected , after the statistic"))?;
    let (period, rest) = rest.split_once(')').ok_or_else(|| fail("expected ) after the period"))?;
    if !rest.trim().is_empty() {
        return Err(fail("unexpected text after SEARCH(...)"));
    }
    let period_s: u64 = period.trim().parse().map_err(|_| fail("the period must be a number of seconds"))?;
    let query = query.trim();
    let schema = query.strip_prefix('{').ok_or_else(|| fail("the search string starts with a {schema}"))?;
    let (schema, term) = schema.split_once('}').ok_or_else(|| fail("unterminated {schema"))?;
    let mut names = schema.split(',').map(str::trim);
    let namespace = names.next().filter(|n| !n.is_empty()).ok_or_else(|| fail("the schema starts with a namespace"))?;
    let mut dimension_names: Vec<String> = names.map(str::to_owned).collect();
    if dimension_names.iter().any(String::is_empty) {
        return Err(fail("an empty dimension name in the schema"));
    }
    dimension_names.sort();
    let metric = term
        .trim()
        .strip_prefix("MetricName=")
        .and_then(|m| m.strip_prefix('"'))
        .and_then(|m| m.strip_suffix('"'))
        .filter(|m| !m.is_empty() && !m.contains('"'))
        .ok_or_else(|| fail("after the schema, MetricName=\"name\" and nothing else"))?;
    Ok(Some(Search {
        namespace: namespace.to_owned(),
        dimension_names,
        metric: metric.to_owned(),
        stat: stat.to_owned(),
        period_s,
    }))
}

/// A single-quoted string at the start of `s` and what follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('\'')?;
    let end = s.find('\'')?;
    Some((&s[..end], &s[end + 1..]))
}

impl Search {
    /// Whether a stored series' dimensions fit the schema.
    pub fn matches(&self, dimensions: &[(String, String)]) -> bool {
        let mut names: Vec<&str> = dimensions.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names == self.dimension_names.iter().map(String::as_str).collect::<Vec<_>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_dashboards_searches() {
        let s = parse(r#"SEARCH('{ChimeWatch/Pipeline,Service} MetricName="Requests"', 'Sum', 60)"#).unwrap().unwrap();
        assert_eq!(s.namespace, "ChimeWatch/Pipeline");
        assert_eq!(s.dimension_names, ["Service"]);
        assert_eq!((s.metric.as_str(), s.stat.as_str(), s.period_s), ("Requests", "Sum", 60));
        assert!(s.matches(&[("Service".into(), "gateway".into())]));
        assert!(!s.matches(&[]));
        assert!(!s.matches(&[("Service".into(), "x".into()), ("Region".into(), "y".into())]));
        assert_eq!(parse("100 * a / b").unwrap(), None);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for bad in [
            "SEARCH('{Ns} MetricName=\"a\" OR MetricName=\"b\"', 'Sum', 60)",
            "SEARCH('Ns MetricName=\"a\"', 'Sum', 60)",
            "SEARCH('{Ns} MetricName=\"a\"', 'Sum')",
            "SEARCH('{Ns} MetricName=\"a\"', 'Sum', 60) + 1",
            "SEARCH('{,a} MetricName=\"a\"', 'Sum', 60)",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("SEARCH("), "{e}");
        }
    }
}
