//! Metric math in metric widgets (`100 * failed / requested`), with the evaluator the alarms use
//! (`chimewatch_metrics::alarm::math`), so a dashboard and an alarm compute a ratio the same way.

use std::collections::BTreeMap;

use chimewatch_metrics::alarm::math::{self, Resolve, Value};

struct Inputs<'a>(&'a BTreeMap<String, Vec<(i64, f64)>>);

impl Resolve for Inputs<'_> {
    fn resolve(&mut self, id: &str) -> Result<Value, String> {
        self.0
            .get(id)
            .map(|points| Value::Series(points.iter().copied().collect()))
            .ok_or_else(|| format!("no metric with the id {id:?} comes before this expression"))
    }
}

/// The points of `expression` over `periods` (ascending period starts), reading ids from `by_id`.
pub fn evaluate(
    expression: &str,
    by_id: &BTreeMap<String, Vec<(i64, f64)>>,
    periods: &[i64],
) -> Result<Vec<(i64, f64)>, String> {
    let parsed = math::parse(expression).map_err(|e| e.to_string())?;
    Ok(match math::eval(&parsed, &mut Inputs(by_id), periods)? {
        Value::Series(points) => points.into_iter().collect(),
        // A constant is drawn at every period, as CloudWatch draws one.
        Value::Scalar(Some(v)) => periods.iter().map(|p| (*p, v)).collect(),
        Value::Scalar(None) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_of_two_series() {
        let by_id = BTreeMap::from([
            ("failed".to_owned(), vec![(0, 1.0), (60, 0.0)]),
            ("requested".to_owned(), vec![(0, 4.0), (60, 0.0), (120, 2.0)]),
        ]);
        // 0/0 has no value; a period without `failed` has none either, unless filled.
        assert_eq!(evaluate("100 * failed / requested", &by_id, &[0, 60, 120]).unwrap(), vec![(0, 25.0)]);
        assert_eq!(
            evaluate("100 * FILL(failed, 0) / requested", &by_id, &[0, 60, 120]).unwrap(),
            vec![(0, 25.0), (120, 0.0)]
        );
        assert!(evaluate("nope + 1", &by_id, &[0]).unwrap_err().contains("nope"));
        assert_eq!(evaluate("2", &by_id, &[0, 60]).unwrap(), vec![(0, 2.0), (60, 2.0)]);
    }
}
