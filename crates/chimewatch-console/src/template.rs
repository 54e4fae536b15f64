//! `${Name}` placeholders in the deployable dashboard and alarm files (`deploy/dashboards/`, `deploy/alarms/`).
//!
//! The files name the region, namespaces and log groups as placeholders because they differ per deployment: `up`
//! fills them from its settings, `dashboards put` and `alarms put` from their flags, and the CloudFormation template
//! with `Fn::Sub`, whose syntax this is. An unknown or unfilled placeholder is an error, never left in the output.

use std::collections::BTreeMap;

/// The placeholders the deploy files use, with what each stands for.
pub const PLACEHOLDERS: [(&str, &str); 5] = [
    ("Region", "the AWS region (any region name for `up`)"),
    ("MeetingNamespace", "the aggregator's meeting metric namespace"),
    ("VoiceNamespace", "the aggregator's Voice Connector metric namespace"),
    ("PipelineNamespace", "the services' own metric namespace"),
    ("MeetingLogGroup", "the log group of meeting events"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, at character {at}: {message}")]
pub struct TemplateError {
    pub file: String,
    pub at: usize,
    pub message: String,
}

/// The values of the placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// Fills every `${Name}` of `text` (a file called `file`, for errors). A value is inserted as JSON string
    /// content, so one cannot break the file's syntax.
    pub fn fill(&self, file: &str, text: &str) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let at = offset + start;
            let end = after.find('}').ok_or_else(|| TemplateError {
                file: file.to_owned(),
                at,
                message: "unterminated ${".into(),
            })?;
            let name = &after[..end];
            let value = self.0.get(name).ok_or_else(|| TemplateError {
                file: file.to_owned(),
                at,
                message: format!(
                    "unknown placeholder ${{{name}}}; the known ones are {}",
                    PLACEHOLDERS.iter().map(|(n, _)| format!("${{{n}}}")).collect::<Vec<_>>().join(", ")
                ),
            })?;
            let escaped = serde_json::to_string(value).unwrap_or_default();
            out.push_str(&escaped[1..escaped.len() - 1]);
            rest = &after[end + 1..];
            offset = at + 2 + end + 1;
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_refuses_unknown_names() {
        let v = Values::new().set("Region", "eu-west-1").set("MeetingNamespace", "A\"B");
        assert_eq!(
            v.fill("f", r#"{"r": "${Region}", "n": "${MeetingNamespace}"}"#).unwrap(),
            r#"{"r": "eu-west-1", "n": "A\"B"}"#
        );
        let e = v.fill("f.json", "ab ${Nope} c").unwrap_err();
        assert_eq!((e.at, e.file.as_str()), (3, "f.json"));
        assert!(e.message.contains("${MeetingLogGroup}"), "{e}");
        assert!(v.fill("f", "x ${Region").is_err());
    }
}
