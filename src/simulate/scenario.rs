//! Scenarios: how the fleet's health changes over a run, as conditions that hold at each moment of fleet time.

use serde::Serialize;

/// What the fleet goes through. Times are from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Scenario {
    /// A healthy fleet: a few join failures, rare drops and reconnects.
    #[default]
    Steady,
    /// A service outage: after a calm start, join failures and dropped attendees jump (server-side statuses,
    /// slower joins, Voice Connector 503s), then the fleet recovers. Fires and resolves a failure-rate alarm.
    Incident,
    /// A network incident: after a calm start, attendees reconnect again and again (poor connections, dropped
    /// signaling), some give up, then the network settles.
    ReconnectStorm,
}

/// The fleet's health at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Probability that a join fails.
    pub join_failure: f64,
    /// Multiplier of join durations.
    pub start_slowdown: f64,
    /// Attendees dropped (meetingFailed) per attendee-minute.
    pub drops_per_minute: f64,
    /// Reconnections per attendee-minute.
    pub reconnects_per_minute: f64,
    /// Poor-connection episodes per attendee-minute.
    pub poor_per_minute: f64,
    /// Failures come from the service (5xx-like statuses) rather than from the attendees' side.
    pub outage: bool,
    /// Reconnections and drops come from the network.
    pub network: bool,
    /// Extra share of Voice Connector calls refused by the service (503, 500).
    pub sip_refused: f64,
}

const CALM: Conditions = Conditions {
    join_failure: 0.025,
    start_slowdown: 1.0,
    drops_per_minute: 0.006,
    reconnects_per_minute: 0.04,
    poor_per_minute: 0.05,
    outage: false,
    network: false,
    sip_refused: 0.0,
};

const OUTAGE: Conditions = Conditions {
    join_failure: 0.35,
    start_slowdown: 1.7,
    drops_per_minute: 0.15,
    reconnects_per_minute: 0.3,
    poor_per_minute: 0.2,
    outage: true,
    network: false,
    sip_refused: 0.3,
};

const STORM: Conditions = Conditions {
    join_failure: 0.06,
    start_slowdown: 1.3,
    drops_per_minute: 0.05,
    reconnects_per_minute: 3.0,
    poor_per_minute: 2.0,
    outage: false,
    network: true,
    sip_refused: 0.02,
};

/// One stretch of a scenario, for the summary (and for whoever waits for an alarm to fire and resolve).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: &'static str,
    pub from_secs: u64,
    /// `None`: to the end of the run.
    pub to_secs: Option<u64>,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Incident => "incident",
            Self::ReconnectStorm => "reconnect-storm",
        }
    }

    /// The scenario's stretches, in order.
    pub fn phases(self) -> Vec<Phase> {
        let phase = |name, from_secs, to_secs| Phase { name, from_secs, to_secs };
        match self {
            Self::Steady => vec![phase("steady", 0, None)],
            // Three minutes of outage: three one-minute windows over any failure-rate threshold.
            Self::Incident => {
                vec![phase("calm", 0, Some(90)), phase("outage", 90, Some(270)), phase("recovered", 270, None)]
            }
            Self::ReconnectStorm => {
                vec![phase("calm", 0, Some(60)), phase("storm", 60, Some(210)), phase("settled", 210, None)]
            }
        }
    }

    /// The conditions at `at_ms` of fleet time (negative: before the run, when the fleet was calm).
    pub fn conditions(self, at_ms: i64) -> Conditions {
        let phases = self.phases();
        let phase = phases.iter().rev().find(|p| at_ms >= p.from_secs as i64 * 1000).map_or("calm", |p| p.name);
        match phase {
            "outage" => OUTAGE,
            "storm" => STORM,
            _ => CALM,
        }
    }

    /// The highest rates any moment of the scenario has, to draw time-varying events by thinning.
    pub fn peak(self) -> Conditions {
        let mut peak = CALM;
        for c in [OUTAGE, STORM] {
            if self.phases().iter().any(|p| (p.name == "outage" && c == OUTAGE) || (p.name == "storm" && c == STORM)) {
                peak.drops_per_minute = peak.drops_per_minute.max(c.drops_per_minute);
                peak.reconnects_per_minute = peak.reconnects_per_minute.max(c.reconnects_per_minute);
                peak.poor_per_minute = peak.poor_per_minute.max(c.poor_per_minute);
            }
        }
        peak
    }
}
