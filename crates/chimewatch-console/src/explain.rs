//! The explanations behind the console's search box: an attendee's verdict and evidence, a meeting's attendees and
//! what their failures had in common, and a call's SIP ladder drawn as SVG, from the same sans-IO explanations
//! `chimewatch explain` prints.

use chimewatch_metrics::explain::{AttendeeExplanation, MeetingExplanation, clock, duration};
use chimewatch_sip::{CallExplanation, Message};
use maud::{Markup, PreEscaped, html};

use crate::chart;
use crate::page::search_link;

fn verdict_color(failure: bool, trouble: bool) -> String {
    chart::css_color(if failure {
        3
    } else if trouble {
        1
    } else {
        2
    })
}

/// The verdict box of one attendee.
pub fn attendee(x: &AttendeeExplanation) -> Markup {
    let v = &x.verdict;
    let trouble = !v.cause.is_expected() || x.outcome.reconnects > 0;
    html! {
        section.verdict data-cause=(v.cause.as_str()) style=(format!("border-left:6px solid {}", verdict_color(v.failure, trouble))) {
            h2 { "Attendee " code { (x.attendee_id) } " in meeting " a href=(search_link(&x.meeting_id)) { code { (x.meeting_id) } } }
            p { strong { (v.headline) } }
            p.muted { (x.sdk) " · " (x.platform) @if let Some(u) = &x.external_user_id { " · external user " (u) } }
            @if !v.evidence.is_empty() {
                h3 { "Evidence" }
                ul { @for line in &v.evidence { li { (line) } } }
            }
            h3 { "What to do" }
            p { (v.next) }
        }
    }
}

/// A meeting: what its failures had in common, then one row per attendee linking to its explanation.
pub fn meeting(m: &MeetingExplanation) -> Markup {
    html! {
        section.verdict data-attendees=(m.attendees.len()) {
            h2 { "Meeting " code { (m.meeting_id) } ": " (m.attendees.len()) " attendee(s)" }
            ul { @for f in &m.findings { li { strong { (f) } } } }
            table.timeline {
                thead { tr { th { "attendee" } th { "SDK" } th { "platform" } th { "joined" } th { "start" } th { "outcome" } th { "reconnects" } th { "likely cause" } } }
                tbody {
                    @for a in &m.attendees {
                        tr {
                            td { a href=(search_link(&a.attendee_id)) { (a.attendee_id) } @if let Some(u) = &a.external_user_id { br; span.muted { (u) } } }
                            td { (a.sdk) }
                            td { (a.platform) }
                            td { (a.outcome.started_at_ms.map(clock).unwrap_or_default()) }
                            td { (a.outcome.meeting_start_duration_ms.map(duration).unwrap_or_default()) }
                            td { (a.verdict.headline.split(':').next().unwrap_or_default()) }
                            td { (a.outcome.reconnects) }
                            td { span.state style=(format!("background:{}", verdict_color(a.verdict.failure, !a.verdict.cause.is_expected()))) { (a.verdict.cause.as_str()) } }
                        }
                    }
                }
            }
        }
    }
}

/// A call: its verdict and figures, and the ladder.
pub fn call(call_id: &str, x: &CallExplanation) -> Markup {
    html! {
        section.verdict data-verdict=(x.verdict.as_str()) {
            h2 { "Call " code { (call_id) } }
            p { strong { (x.summary()) } }
            (PreEscaped(ladder_svg(x)))
        }
    }
}

/// The SIP ladder as SVG: the caller's side left, the callee's right, one arrow per message, retransmissions dashed.
pub fn ladder_svg(x: &CallExplanation) -> String {
    const ROW: usize = 30;
    let (width, left, right) = (760, 230.0, 650.0);
    let height = 50 + ROW * x.steps.len();
    let text = |s: &str| html! { (s) }.into_string();
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" role="img" font-size="12"><defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#16191f"/></marker></defs><text x="{left}" y="16" text-anchor="middle" font-weight="bold">{}</text><text x="{right}" y="16" text-anchor="middle" font-weight="bold">{}</text><line x1="{left}" y1="24" x2="{left}" y2="{height}" stroke="#aab7b8"/><line x1="{right}" y1="24" x2="{right}" y2="{height}" stroke="#aab7b8"/>"##,
        text(x.sides.0),
        text(x.sides.1)
    );
    for (i, s) in x.steps.iter().enumerate() {
        let y = 48 + ROW * i;
        let (from, to) = if s.towards_callee { (left, right) } else { (right, left) };
        let status = s.label.split(' ').next().and_then(|c| c.parse::<u16>().ok());
        let color = match status {
            Some(c) if c >= 300 => chart::css_color(3),
            Some(c) if c >= 200 => chart::css_color(2),
            _ => "#16191f".to_owned(),
        };
        let dash = if s.retransmission { r#" stroke-dasharray="5,4""# } else { "" };
        let label = if s.retransmission { format!("{} (retransmitted)", s.label) } else { s.label.clone() };
        svg.push_str(&format!(
            r##"<text x="8" y="{}" fill="#687078">+{} ms</text><line x1="{from}" y1="{y}" x2="{to}" y2="{y}" stroke="{color}" stroke-width="1.5"{dash} marker-end="url(#head)"/><text x="{}" y="{}" text-anchor="middle" fill="{color}">{}</text>"##,
            y + 4,
            s.offset_ms,
            (left + right) / 2.0,
            y - 5,
            text(&label),
        ));
        if let Some(reason) = &s.reason {
            svg.push_str(&format!(
                r#"<text x="{}" y="{}" fill="{}">Reason: {}</text>"#,
                right + 8.0,
                y + 4,
                chart::css_color(1),
                text(reason)
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Explains call `call_id` from its captured messages (capture time, text); `None` when none parses.
pub fn explain_call(messages: &[(i64, String)], now_ms: i64) -> Option<CallExplanation> {
    let parsed: Vec<(i64, Message)> =
        messages.iter().filter_map(|(t, text)| Message::parse(text.as_bytes()).ok().map(|m| (*t, m))).collect();
    (!parsed.is_empty()).then(|| chimewatch_sip::explain::explain(&parsed, now_ms))
}
