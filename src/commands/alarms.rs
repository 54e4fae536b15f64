//! `chimewatch alarms list` and `chimewatch alarms history`: the alarms a running `up` evaluates, read from its
//! `/api/alarms`, since their states live in that process as CloudWatch's live in the service.

use std::io::Write;

use anyhow::{Context, bail};
use chimewatch_console::alarms::AlarmView;
use chimewatch_console::chart::clock;

use crate::cli::AlarmsArgs;
use crate::config::{GATEWAY_LISTEN, Settings};

async fn fetch(settings: &Settings) -> anyhow::Result<Vec<AlarmView>> {
    let url = format!("http://{}/api/alarms", settings.listen(GATEWAY_LISTEN));
    let response = reqwest::get(&url).await.with_context(|| {
        format!("reading {url}: is `chimewatch up` running there? (pass --listen to point elsewhere)")
    })?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    response.json().await.with_context(|| format!("{url} did not answer with alarms"))
}

fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |t| clock(t, true))
}

pub async fn list(args: AlarmsArgs, settings: &Settings) -> anyhow::Result<()> {
    let alarms = fetch(settings).await?;
    let mut out = std::io::stdout().lock();
    for a in &alarms {
        if args.json {
            let line = serde_json::json!({
                "name": a.name, "state": a.state, "sinceMs": a.since_ms, "reason": a.reason, "description": a.description,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{:<18} {:<40} {:<12} {}", a.state, a.name, when(a.since_ms), a.reason)?;
        }
    }
    Ok(())
}

pub async fn history(args: AlarmsArgs, settings: &Settings) -> anyhow::Result<()> {
    let alarms = fetch(settings).await?;
    let mut out = std::io::stdout().lock();
    for (name, h) in chimewatch_console::alarms::history(&alarms) {
        if args.json {
            let line =
                serde_json::json!({ "name": name, "atMs": h.at_ms, "from": h.from, "to": h.to, "reason": h.reason });
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{:<12} {:<40} {} -> {}  {}", when(Some(h.at_ms)), name, h.from, h.to, h.reason)?;
        }
    }
    Ok(())
}
