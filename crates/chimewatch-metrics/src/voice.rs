//! The Voice Connector metrics, from the call tracker's facts: the 15 that Amazon publishes in
//! `AWS/ChimeVoiceConnector` (by `VoiceConnectorId` and `Region`), and what it does not publish - call setup time,
//! post-dial delay and call duration as distributions, active calls as a count per minute of each call up, cancellations, failures by status code and reason, and
//! teardowns by `Reason` header. Attempts, failures and status classes are also counted fleet-wide (no dimensions),
//! so one alarm covers every connector (an alarm names one series and cannot search).
//!
//! The telecom KPIs, by connector and region and fleet-wide, over the attempts DECIDED in the window (a call counts
//! in the window its outcome was known, as every other outcome metric does), each a mean CloudWatch averages exactly
//! across workers (`Average` is the figure; see [`FactValue::Mean`]):
//! - `ASR` (answer-seizure ratio, %): answered / attempts;
//! - `NER` (network effectiveness ratio, ITU-T E.425, %): answered, user busy (486, 600), no answer (480; 408 or a
//!   caller's cancel once the far end rang) and terminal reject (603 Decline) / attempts. A failure of the
//!   network or the far end's equipment (a 5xx, a 404, a 403) counts against it; a busy or unanswered phone does not;
//! - `ACD` (average call duration, seconds): total duration / calls answered, over the calls that ended.

use std::borrow::Cow;

use chimewatch_sip::{CallFact, Direction, Observed};

use crate::catalogue::{Dimension, Fact, FactValue, Unit};
use crate::dimension::first_chars;

fn base(o: &Observed) -> Vec<Dimension<'_>> {
    vec![("VoiceConnectorId".into(), o.voice_connector_id.as_str().into()), ("Region".into(), o.region.as_str().into())]
}

fn with<'a>(
    mut dims: Vec<Dimension<'a>>,
    more: impl IntoIterator<Item = (&'static str, Cow<'a, str>)>,
) -> Vec<Dimension<'a>> {
    dims.extend(more.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)));
    dims
}

fn count<'a>(metric: &'static str, dimensions: Vec<Dimension<'a>>) -> Fact<'a> {
    Fact { metric, unit: Unit::Count, dimensions, value: FactValue::Occurrence }
}

/// Distributions go by connector and region, and also by direction.
fn sample<'a>(metric: &'static str, o: &'a Observed, direction: Direction, ms: i64) -> Vec<Fact<'a>> {
    let value = FactValue::Sample(ms.max(0) as u64);
    vec![
        Fact { metric, unit: Unit::Milliseconds, dimensions: base(o), value },
        Fact {
            metric,
            unit: Unit::Milliseconds,
            dimensions: with(base(o), [("Direction", direction.as_str().into())]),
            value,
        },
    ]
}

fn by_direction(direction: Direction, inbound: &'static str, outbound: &'static str) -> &'static str {
    match direction {
        Direction::Inbound => inbound,
        Direction::Outbound => outbound,
    }
}

/// A KPI's value, by connector and region and fleet-wide.
fn kpi<'a>(metric: &'static str, unit: Unit, o: &'a Observed, value: f64) -> [Fact<'a>; 2] {
    let value = FactValue::Mean(value);
    [Fact { metric, unit, dimensions: base(o), value }, Fact { metric, unit, dimensions: Vec::new(), value }]
}

/// Final statuses that say the network did its part (ITU-T E.425): user busy, no answer, terminal reject.
pub const NER_EFFECTIVE_STATUSES: [u16; 5] = [486, 600, 408, 480, 603];

/// A failure the network is not to blame for: a busy, unanswered or declining far end. A 408 counts only when the
/// far end rang (the tracker gives 408 to any call left without a final response, reached or not).
fn ner_effective(status: u16, rang: bool) -> bool {
    NER_EFFECTIVE_STATUSES.contains(&status) && (status != 408 || rang)
}

fn ratio(yes: bool) -> f64 {
    if yes { 100.0 } else { 0.0 }
}

/// Status class metric names, 1xx to 6xx.
const CLASSES: [&str; 6] = ["Sip1xxCodes", "Sip2xxCodes", "Sip3xxCodes", "Sip4xxCodes", "Sip5xxCodes", "Sip6xxCodes"];

/// The facts of one observation.
pub fn facts(o: &Observed) -> Vec<Fact<'_>> {
    match &o.fact {
        CallFact::Attempt { direction } => {
            let metric = by_direction(*direction, "InboundCallAttempts", "OutboundCallAttempts");
            vec![count(metric, base(o)), count(metric, Vec::new())]
        }
        CallFact::Answered { direction, setup_ms } => {
            let mut out =
                vec![count(by_direction(*direction, "InboundCallsAnswered", "OutboundCallsAnswered"), base(o))];
            out.extend(sample("CallSetupTimeMs", o, *direction, *setup_ms));
            out.extend(kpi("ASR", Unit::Percent, o, 100.0));
            out.extend(kpi("NER", Unit::Percent, o, 100.0));
            out
        }
        CallFact::Ringing { direction, post_dial_delay_ms } => {
            sample("PostDialDelayMs", o, *direction, *post_dial_delay_ms)
        }
        CallFact::Failed { direction, status, reason, rang } => [
            count(by_direction(*direction, "InboundCallFailures", "OutboundCallFailures"), base(o)),
            count(by_direction(*direction, "InboundCallFailures", "OutboundCallFailures"), Vec::new()),
            count(
                "CallFailuresByStatus",
                with(
                    base(o),
                    [
                        ("Direction", direction.as_str().into()),
                        ("StatusCode", status.to_string().into()),
                        ("Reason", first_chars(reason, 128).into()),
                    ],
                ),
            ),
        ]
        .into_iter()
        .chain(kpi("ASR", Unit::Percent, o, 0.0))
        .chain(kpi("NER", Unit::Percent, o, ratio(ner_effective(*status, *rang))))
        .collect(),
        CallFact::Cancelled { direction, rang } => [
            count("CallsCancelled", base(o)),
            count("CallsCancelled", with(base(o), [("Direction", direction.as_str().into())])),
        ]
        .into_iter()
        .chain(kpi("ASR", Unit::Percent, o, 0.0))
        .chain(kpi("NER", Unit::Percent, o, ratio(*rang)))
        .collect(),
        CallFact::Ended { direction, duration_ms, reason, .. } => {
            let mut out = sample("CallDurationMs", o, *direction, *duration_ms);
            out.extend(kpi("ACD", Unit::Seconds, o, *duration_ms.max(&0) as f64 / 1000.0));
            if let Some(reason) = reason {
                out.push(count("CallTeardowns", with(base(o), [("Reason", first_chars(reason, 128).into())])));
            }
            out
        }
        CallFact::Throttled => vec![count("Throttles", base(o))],
        CallFact::Active { direction } => {
            vec![count(by_direction(*direction, "InboundCallsActive", "OutboundCallsActive"), base(o))]
        }
        CallFact::Response { class, method } => match CLASSES.get(usize::from(*class).wrapping_sub(1)) {
            Some(metric) => vec![
                count(metric, base(o)),
                count(metric, with(base(o), [("Method", method.as_str().into())])),
                count(metric, Vec::new()),
            ],
            None => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(fact: CallFact) -> Observed {
        Observed { at_ms: 0, voice_connector_id: "vc1".into(), region: "us-east-1".into(), fact }
    }

    #[test]
    fn each_fact_feeds_amazons_metric_and_the_extra_ones() {
        let names = |f: CallFact| facts(&observed(f)).iter().map(|f| f.metric).collect::<Vec<_>>();
        assert_eq!(
            names(CallFact::Attempt { direction: Direction::Outbound }),
            ["OutboundCallAttempts", "OutboundCallAttempts"]
        );
        let attempt = observed(CallFact::Attempt { direction: Direction::Inbound });
        let fleet_wide = facts(&attempt);
        assert!(fleet_wide[1].dimensions.is_empty(), "the second series is fleet-wide: {fleet_wide:?}");
        assert_eq!(
            names(CallFact::Answered { direction: Direction::Inbound, setup_ms: 4_200 }),
            ["InboundCallsAnswered", "CallSetupTimeMs", "CallSetupTimeMs", "ASR", "ASR", "NER", "NER"]
        );
        assert_eq!(
            names(CallFact::Failed {
                direction: Direction::Outbound,
                status: 503,
                reason: "Service Unavailable".into(),
                rang: false
            }),
            ["OutboundCallFailures", "OutboundCallFailures", "CallFailuresByStatus", "ASR", "ASR", "NER", "NER"]
        );
        assert_eq!(
            names(CallFact::Response { class: 4, method: "INVITE".into() }),
            ["Sip4xxCodes", "Sip4xxCodes", "Sip4xxCodes"]
        );
        assert!(names(CallFact::Response { class: 9, method: "X".into() }).is_empty());
        assert_eq!(names(CallFact::Throttled), ["Throttles"]);
        let ended = observed(CallFact::Ended {
            direction: Direction::Inbound,
            duration_ms: 180_000,
            reason: Some("ACK timeout".into()),
            timed_out: false,
        });
        let ended = facts(&ended);
        assert_eq!(ended.last().unwrap().dimensions[2], ("Reason".into(), "ACK timeout".into()));
        assert_eq!(ended[0].value, FactValue::Sample(180_000));
        assert_eq!((ended[2].metric, ended[2].value), ("ACD", FactValue::Mean(180.0)));
        assert_eq!(names(CallFact::Active { direction: Direction::Outbound }), ["OutboundCallsActive"]);
    }

    #[test]
    fn the_kpis_count_what_e425_counts() {
        let kpis = |f: CallFact| -> Vec<(&str, FactValue)> {
            facts(&observed(f))
                .into_iter()
                .filter(|f| f.dimensions.is_empty() && ["ASR", "NER"].contains(&f.metric))
                .map(|f| (f.metric, f.value))
                .collect()
        };
        let failed =
            |status| CallFact::Failed { direction: Direction::Outbound, status, reason: String::new(), rang: true };
        let (yes, no) = (FactValue::Mean(100.0), FactValue::Mean(0.0));
        assert_eq!(
            kpis(CallFact::Answered { direction: Direction::Inbound, setup_ms: 1 }),
            [("ASR", yes), ("NER", yes)]
        );
        for status in NER_EFFECTIVE_STATUSES {
            assert_eq!(kpis(failed(status)), [("ASR", no), ("NER", yes)], "{status}");
        }
        for status in [404, 403, 500, 503, 302] {
            assert_eq!(kpis(failed(status)), [("ASR", no), ("NER", no)], "{status}");
        }
        let unreached =
            CallFact::Failed { direction: Direction::Outbound, status: 408, reason: String::new(), rang: false };
        assert_eq!(kpis(unreached), [("ASR", no), ("NER", no)], "no final response and no ringing: the network");
        assert_eq!(
            kpis(CallFact::Cancelled { direction: Direction::Inbound, rang: true }),
            [("ASR", no), ("NER", yes)]
        );
        assert_eq!(
            kpis(CallFact::Cancelled { direction: Direction::Inbound, rang: false }),
            [("ASR", no), ("NER", no)]
        );
    }
}
