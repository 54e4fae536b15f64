//! `chimewatch explain`: one attendee, meeting or call, from `up`'s embedded store (or its local archive when the
//! store has nothing) or from the S3 archive with `--bucket`, printed as a timeline or SIP ladder with a verdict.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, bail};
use chimewatch_aggregator::config::{DEFAULT_LOG_GROUP, DEFAULT_SIP_LOG_GROUP};
use chimewatch_archiver::lookup::{self, Key};
use chimewatch_console::timeline;
use chimewatch_metrics::explain::{self, AttendeeExplanation, MeetingExplanation, clock, duration};
use chimewatch_model::MeetingEvent;
use chimewatch_sinks::embedded::EmbeddedStore;
use chimewatch_sinks::s3::S3Objects;
use chimewatch_sinks::{LocalObjects, ObjectStore};
use chimewatch_sip::CallExplanation;
use serde_json::json;

use super::archiver::ARCHIVE_DIR;
use super::up::STORE_FILE;
use crate::cli::ExplainArgs;
use crate::config::Settings;

/// What was found, and where.
struct Found {
    source: String,
    events: Vec<MeetingEvent>,
    /// (capture time, connector, region, message)
    calls: Vec<(i64, String, String, String)>,
}

pub async fn run(args: ExplainArgs, settings: &Settings) -> anyhow::Result<()> {
    let now = chimewatch_stream::system_clock().as_i64();
    let since = now.saturating_sub(i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX));
    // Client clocks run ahead of this one: CloudWatch takes events up to two hours ahead, so look that far.
    let until = now + 2 * 3600 * 1000;
    let w = &args.what;
    let key = match (&w.attendee, &w.meeting, &w.call) {
        (Some(id), _, _) => Key::Attendee(id),
        (_, Some(id), _) => Key::Meeting(id),
        (_, _, Some(id)) => Key::Call(id),
        _ => bail!("say what to explain: --attendee, --meeting or --call"),
    };
    let found = match &settings.archiver.bucket {
        Some(bucket) => {
            let sdk = crate::aws::sdk_config().await;
            let store = Arc::new(S3Objects::new(chimewatch_sinks::s3::client(&sdk, &[]), bucket));
            from_archive(store.as_ref(), &settings.archive_prefix(), key, since, until).await?
        }
        None => from_data_dir(settings, key, since, until).await?,
    };
    let mut out = std::io::stdout().lock();
    let nothing = |what: &str, id: &str| {
        anyhow::anyhow!(
            "no {what} {id:?} in {} between {} and now: check the id, or look further back with --since",
            found.source,
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(since as u64))
        )
    };
    match key {
        Key::Attendee(id) => {
            let (events, others) = explain::latest_attendee(&found.events);
            if others > 0 {
                eprintln!(
                    "chimewatch explain: {id} names {} attendees (an external user id across meetings); this is the latest",
                    others + 1
                );
            }
            let x = explain::attendee(&events).ok_or_else(|| nothing("events of attendee", id))?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&x)?)?;
            } else {
                write!(out, "{}", attendee_text(&x, &found.source))?;
            }
        }
        Key::Meeting(id) => {
            let m = explain::meeting(&found.events).ok_or_else(|| nothing("events of meeting", id))?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&m)?)?;
            } else {
                write!(out, "{}", meeting_text(&m, &found.source))?;
            }
        }
        Key::Call(id) => {
            let messages: Vec<(i64, String)> = found.calls.iter().map(|(t, _, _, text)| (*t, text.clone())).collect();
            let x = chimewatch_console::explain::explain_call(&messages, now)
                .ok_or_else(|| nothing("SIP messages of call", id))?;
            let (connector, region) =
                found.calls.first().map(|(_, c, r, _)| (c.as_str(), r.as_str())).unwrap_or_default();
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&call_json(id, connector, region, &x))?)?;
            } else {
                writeln!(out, "Call {id} on Voice Connector {connector} ({region}), from {}", found.source)?;
                writeln!(out, "Verdict: {}", x.summary())?;
                writeln!(out)?;
                write!(out, "{}", chimewatch_sip::explain::ladder_text(&x))?;
            }
        }
    }
    Ok(())
}

/// `up`'s store first; its local archive when the store has nothing (retention, or another data directory's copy).
async fn from_data_dir(settings: &Settings, key: Key<'_>, since: i64, until: i64) -> anyhow::Result<Found> {
    let dir = settings.data_dir();
    let path = dir.join(STORE_FILE);
    if path.exists() {
        let store = EmbeddedStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let group = settings.aggregator.log_group.clone().unwrap_or_else(|| DEFAULT_LOG_GROUP.to_owned());
        let sip_group = settings.aggregator.sip_log_group.clone().unwrap_or_else(|| DEFAULT_SIP_LOG_GROUP.to_owned());
        let wanted = key_owned(key);
        let found = tokio::task::spawn_blocking(move || -> Result<Found, String> {
            let (events, calls) = match wanted {
                (Some(fields), id) => (
                    timeline::meeting_events(&timeline::find_in(&store, &group, fields, &id, since, until)?),
                    Vec::new(),
                ),
                (None, id) => {
                    let records = timeline::find_call(&store, &sip_group, &id, since, until)?;
                    let calls = records
                        .into_iter()
                        .map(|r| (r.event_timestamp, r.voice_connector_id, r.aws_region, r.sip_message))
                        .collect();
                    (Vec::new(), calls)
                }
            };
            Ok(Found { source: String::new(), events, calls })
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        if found.events.len() >= timeline::MAX_EVENTS || found.calls.len() >= timeline::MAX_EVENTS {
            eprintln!(
                "chimewatch explain: only the first {} events were read; narrow --since to see the latest",
                timeline::MAX_EVENTS
            );
        }
        if !found.events.is_empty() || !found.calls.is_empty() {
            return Ok(Found { source: format!("the embedded store {}", path.display()), ..found });
        }
    }
    let archive = dir.join(ARCHIVE_DIR);
    if !archive.is_dir() {
        if !path.exists() {
            bail!(
                "no embedded store or archive under {}: run `chimewatch up` first (or pass --data-dir, or --bucket)",
                dir.display()
            );
        }
        return Ok(Found {
            source: format!("the embedded store {}", path.display()),
            events: Vec::new(),
            calls: Vec::new(),
        });
    }
    let found = from_archive(&LocalObjects::new(&archive), &settings.archive_prefix(), key, since, until).await?;
    Ok(Found { source: format!("the store {} and {}", path.display(), found.source), ..found })
}

/// The attribute fields a key searches (none for a call), and its id.
fn key_owned(key: Key<'_>) -> (Option<&'static [&'static str]>, String) {
    match key {
        Key::Attendee(id) => (Some(&timeline::ATTENDEE_FIELDS), id.to_owned()),
        Key::Meeting(id) => (Some(&timeline::MEETING_FIELDS), id.to_owned()),
        Key::Call(id) => (None, id.to_owned()),
    }
}

async fn from_archive(
    store: &dyn ObjectStore,
    prefix: &str,
    key: Key<'_>,
    since: i64,
    until: i64,
) -> anyhow::Result<Found> {
    eprintln!("chimewatch explain: reading the archive in {}", store.location());
    let found = lookup::find(store, prefix, key, since, until, |file| eprintln!("  {file}")).await?;
    Ok(Found {
        source: format!("the archive {} ({} files)", store.location(), found.files_read),
        events: found.meeting_events,
        calls: found
            .sip_messages
            .into_iter()
            .map(|m| (m.event_time_ms, m.voice_connector_id, m.region, m.sip_message))
            .collect(),
    })
}

fn attendee_text(x: &AttendeeExplanation, source: &str) -> String {
    let mut s = format!("Attendee {} in meeting {}", x.attendee_id, x.meeting_id);
    if let Some(u) = &x.external_user_id {
        s.push_str(&format!(" (external user {u})"));
    }
    s.push_str(&format!("\n{} · {}\nFrom {source}\n\nTimeline (UTC)\n", x.sdk, x.platform));
    for step in &x.timeline {
        let mut line = format!("  {}  {:<28} {}", clock(step.at_ms), step.name, step.detail);
        if step.from_history {
            line.push_str("(from meetingHistory)");
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    let v = &x.verdict;
    s.push_str(&format!("\nVerdict: {}\n", v.headline));
    if !v.evidence.is_empty() {
        s.push_str("Evidence:\n");
        for line in &v.evidence {
            s.push_str(&format!("  - {line}\n"));
        }
    }
    s.push_str(&format!("What to do: {}\n", v.next));
    s
}

fn meeting_text(m: &MeetingExplanation, source: &str) -> String {
    let mut s = format!("Meeting {}: {} attendee(s), from {source}\n\n", m.meeting_id, m.attendees.len());
    s.push_str(&format!(
        "  {:<38} {:<32} {:<30} {:>8}  {:<26} {:>10}  {}\n",
        "attendee", "SDK", "platform", "start", "outcome", "reconnects", "likely cause"
    ));
    for a in &m.attendees {
        let outcome = a.verdict.headline.split(':').next().unwrap_or_default();
        s.push_str(&format!(
            "  {:<38} {:<32} {:<30} {:>8}  {:<26} {:>10}  {}\n",
            a.attendee_id,
            a.sdk,
            a.platform,
            a.outcome.meeting_start_duration_ms.map(duration).unwrap_or_default(),
            outcome,
            a.outcome.reconnects,
            a.verdict.cause.as_str()
        ));
    }
    s.push_str("\nFindings:\n");
    for f in &m.findings {
        s.push_str(&format!("  - {f}\n"));
    }
    s.push_str("\nEach attendee: chimewatch explain --attendee <id>\n");
    s
}

fn call_json(id: &str, connector: &str, region: &str, x: &CallExplanation) -> serde_json::Value {
    json!({
        "callId": id,
        "voiceConnectorId": connector,
        "region": region,
        "direction": x.direction.map(|d| d.as_str()),
        "verdict": x.verdict.as_str(),
        "summary": x.summary(),
        "setupMs": x.setup_ms,
        "postDialDelayMs": x.post_dial_delay_ms,
        "finalResponse": x.final_response.as_ref().map(|(status, reason)| json!({ "status": status, "reason": reason })),
        "retryAfterSeconds": x.retry_after_s,
        "teardown": x.teardown,
        "durationMs": x.duration_ms,
        "countedAsThrottle": x.counted_as_throttle,
        "retransmissions": x.retransmissions,
        "sides": [x.sides.0, x.sides.1],
        "ladder": x.steps.iter().map(|s| json!({
            "atMs": s.at_ms,
            "offsetMs": s.offset_ms,
            "towardsCallee": s.towards_callee,
            "label": s.label,
            "cseq": s.cseq,
            "retransmission": s.retransmission,
            "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}
