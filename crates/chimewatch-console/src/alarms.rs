//! The alarms `up` evaluates: the deploy files' definitions, evaluated every few seconds against the embedded store
//! with CloudWatch's semantics (`chimewatch_metrics::alarm`), their states and history for the console and
//! `chimewatch alarms`, and each state change posted to a webhook as CloudWatch's notification JSON.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chimewatch_metrics::alarm::{AlarmSet, AlarmState, MetricSource, StatQuery, StateChange, Statistic};
use chimewatch_sinks::embedded::{EmbeddedStore, Stat};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use crate::chart;

/// An alarm as the console and `alarms list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmView {
    pub name: String,
    pub description: String,
    pub state: String,
    pub reason: String,
    /// When the state last changed (ms); `None` while it never has.
    pub since_ms: Option<i64>,
    pub history: Vec<HistoryItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    pub at_ms: i64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// The embedded store as the alarm evaluator's metric source.
#[derive(Debug, Clone)]
pub struct StoreSource<'a>(pub &'a EmbeddedStore);

impl MetricSource for StoreSource<'_> {
    fn datapoints(&self, q: &StatQuery) -> Result<Vec<(i64, f64)>, String> {
        let stat = match q.stat {
            Statistic::SampleCount => Stat::SampleCount,
            Statistic::Sum => Stat::Sum,
            Statistic::Minimum => Stat::Min,
            Statistic::Maximum => Stat::Max,
            Statistic::Average => Stat::Average,
            Statistic::Percentile(p) => Stat::Percentile(p),
        };
        let series = (q.namespace.as_str(), q.metric_name.as_str(), q.dimensions.as_slice());
        crate::data::points(self.0, series, stat, q.period_ms, (q.start_ms, q.end_ms))
    }
}

/// The alarm set `up` steps, behind a lock shared by the evaluation loop and the console.
#[derive(Debug)]
pub struct Alarms {
    set: Mutex<AlarmSet>,
}

impl Alarms {
    pub fn new(set: AlarmSet) -> Self {
        Self { set: Mutex::new(set) }
    }

    /// Evaluates every alarm at `now_ms`; the state changes, oldest first.
    pub fn step(&self, store: &EmbeddedStore, now_ms: i64) -> Vec<StateChange> {
        match self.set.lock() {
            Ok(mut set) => set.step(&StoreSource(store), now_ms),
            Err(_) => Vec::new(),
        }
    }

    pub fn views(&self) -> Vec<AlarmView> {
        let Ok(set) = self.set.lock() else { return Vec::new() };
        set.iter()
            .map(|a| AlarmView {
                name: a.definition.name().to_owned(),
                description: a.definition.description().unwrap_or_default().to_owned(),
                state: a.state.as_str().to_owned(),
                reason: a.reason.clone(),
                since_ms: (a.history().len() > 0).then_some(a.state_updated_ms),
                history: a
                    .history()
                    .rev()
                    .map(|c| HistoryItem {
                        at_ms: c.time_ms,
                        from: c.old_state.as_str().to_owned(),
                        to: c.new_state.as_str().to_owned(),
                        reason: c.reason.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Where state changes are announced: the log, and optionally a webhook.
#[derive(Debug, Clone)]
pub struct Notify {
    pub webhook: Option<reqwest::Url>,
    /// Region and account the notification names (`up` has neither; it says so with `local` and zeros).
    pub region: String,
    pub account: String,
}

/// Posts attempts per notification; a webhook that is down does not hold up the evaluation for long.
const WEBHOOK_ATTEMPTS: u32 = 3;

async fn post(client: &reqwest::Client, url: &reqwest::Url, body: &serde_json::Value) -> Result<(), String> {
    let mut wait = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        match client.post(url.clone()).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last)
}

/// Evaluates the alarms every `interval` until `stop`, announcing each state change.
pub async fn run(
    alarms: Arc<Alarms>,
    store: EmbeddedStore,
    interval: Duration,
    notify: Notify,
    now: fn() -> i64,
    stop: impl std::future::Future<Output = ()>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        let (alarms, store) = (alarms.clone(), store.clone());
        let changes = match tokio::task::spawn_blocking(move || alarms.step(&store, now())).await {
            Ok(changes) => changes,
            Err(e) => {
                tracing::error!(error = %e, "Evaluating the alarms failed.");
                continue;
            }
        };
        for change in changes {
            let (alarm, from, to) = (&change.alarm_name, change.old_state.as_str(), change.new_state.as_str());
            if change.new_state == AlarmState::Alarm {
                tracing::warn!(alarm, from, to, reason = %change.reason, "Alarm state changed.");
            } else {
                tracing::info!(alarm, from, to, reason = %change.reason, "Alarm state changed.");
            }
            if let Some(url) = &notify.webhook {
                let body = change.notification(&notify.region, &notify.account);
                if let Err(e) = post(&client, url, &body).await {
                    tracing::error!(alarm, %url, error = %e, "The alarm webhook did not take the notification; the state change is on the console and in `chimewatch alarms history`.");
                }
            }
        }
    }
}

pub fn page(alarms: &[AlarmView]) -> Markup {
    html! {
        div.page {
            section {
                h2 { "Alarms" }
                @if alarms.is_empty() { p.empty { "No alarms are defined." } }
                table {
                    thead { tr { th { "state" } th { "alarm" } th { "since (UTC)" } th { "reason" } } }
                    tbody {
                        @for a in alarms {
                            tr data-alarm=(a.name) data-state=(a.state) {
                                td { span class=(format!("state {}", a.state)) { (a.state) } }
                                td { b { (a.name) } br; span.muted { (a.description) } }
                                td { (a.since_ms.map(|t| chart::clock(t, true)).unwrap_or_default()) }
                                td { (a.reason) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "History" }
                table {
                    thead { tr { th { "time (UTC)" } th { "alarm" } th { "change" } th { "reason" } } }
                    tbody {
                        @for (a, h) in history(alarms) {
                            tr data-history=(a) {
                                td { (chart::clock(h.at_ms, true)) }
                                td { (a) }
                                td { span class=(format!("state {}", h.from)) { (h.from) } " → " span class=(format!("state {}", h.to)) { (h.to) } }
                                td { (h.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Every alarm's history, newest first.
pub fn history(alarms: &[AlarmView]) -> Vec<(&str, &HistoryItem)> {
    let mut all: Vec<(&str, &HistoryItem)> =
        alarms.iter().flat_map(|a| a.history.iter().map(move |h| (a.name.as_str(), h))).collect();
    all.sort_by_key(|(_, h)| std::cmp::Reverse(h.at_ms));
    all
}
