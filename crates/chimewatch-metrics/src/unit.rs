//! The units of every metric chimewatch publishes, named as CloudWatch names them (`StandardUnit`).

/// A metric's unit: the aggregator's meeting and call metrics, and the services' own figures alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    Bytes,
    Percent,
    None,
}

impl Unit {
    /// The name CloudWatch gives the unit (PutMetricData's `Unit`, EMF's `Unit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::Percent => "Percent",
            Unit::None => "None",
        }
    }
}
