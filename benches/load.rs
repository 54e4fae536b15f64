//! Load run against a running gateway: N clients post batches of realistic JS meeting events for D seconds and the
//! run prints throughput and latency percentiles as one JSON line. `--empty` posts `[]` instead: the baseline of
//! HTTP and request handling without parsing, normalization or durability, measured the same way. For a soak,
//! `--rate` paces the load, `--now` stamps events with the wall clock (so the aggregator's windows close as in
//! production), and `--watch-pid` prints the server's resident memory every `--report-every` seconds and puts its
//! CPU time, and the events each CPU-second carried, in the summary.
//!
//! `cargo bench --bench load -- --url http://127.0.0.1:8080 --clients 16 --seconds 20 --batch 20`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Events per request.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Post empty batches (the baseline).
    #[arg(long)]
    empty: bool,
    /// Requests per second across all clients (0: as fast as the server answers).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stamp events with the wall clock instead of a fixed past day.
    #[arg(long)]
    now: bool,
    /// A process (the server) whose resident memory is reported while the load runs, and whose CPU time over the run
    /// is in the summary (Linux).
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Seconds between two progress lines.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// CPU seconds (user and system) a process has used, from `/proc/<pid>/stat`. Its times are in USER_HZ ticks, which
/// Linux fixes at 100 a second for every userspace ABI.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at the state, field 3: utime and stime are
    // fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// A JS SDK event with the common attributes and a short history, about 1 KB of JSON.
fn event(client: usize, request: u64, i: usize, now: bool) -> serde_json::Value {
    let ts = if now {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    } else {
        1_795_000_000_000_i64 + (request as i64) * 1000 + i as i64
    };
    let history: Vec<_> = (0..8).map(|h| json!({"name": "audioInputSelected", "timestampMs": ts - 1000 + h})).collect();
    json!({"name": if i.is_multiple_of(5) { "meetingStartSucceeded" } else { "attendeePresenceReceived" }, "attributes": {
        "attendeeId": format!("attendee-{client}"), "meetingId": format!("meeting-{}", request % 50),
        "externalMeetingId": "load", "externalUserId": format!("user-{client}"),
        "browserName": "Chrome", "browserMajorVersion": "142", "browserVersion": "142.0.7444.59",
        "deviceName": "Unavailable", "osName": "Mac OS", "osVersion": "10.15.7",
        "sdkName": "amazon-chime-sdk-js", "sdkVersion": "3.32.0", "timestampMs": ts,
        "meetingStartDurationMs": 800 + (i * 37) % 3000, "attendeePresenceDurationMs": 300 + i,
        "retryCount": 0, "poorConnectionCount": i % 3, "meetingHistory": history,
    }})
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let url = format!("{}/v1/meeting-events", args.url.trim_end_matches('/'));
    let events = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let cpu_before = args.watch_pid.and_then(cpu_secs);
    let tasks: Vec<_> = (0..args.clients)
        .map(|client| {
            let (url, events, bytes, errors) = (url.clone(), events.clone(), bytes.clone(), errors.clone());
            let (batch, empty, now) = (args.batch, args.empty, args.now);
            // Each client's share of the rate, as a fixed interval between its requests.
            let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut ticks = interval.map(|i| {
                    let mut t = tokio::time::interval(i);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                for request in 0.. {
                    if let Some(t) = ticks.as_mut() {
                        t.tick().await;
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    let body = if empty {
                        b"[]".to_vec()
                    } else {
                        serde_json::to_vec(&(0..batch).map(|i| event(client, request, i, now)).collect::<Vec<_>>())
                            .expect("json")
                    };
                    let len = body.len() as u64;
                    let sent = Instant::now();
                    let response = http.post(&url).header("content-type", "application/json").body(body).send().await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latency.saturating_record(sent.elapsed().as_micros() as u64);
                            events.fetch_add(if empty { 0 } else { batch as u64 }, Ordering::Relaxed);
                            bytes.fetch_add(len, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latency
            })
        })
        .collect();
    let reporter = tokio::spawn({
        let (events, errors) = (events.clone(), errors.clone());
        let (every, pid) = (Duration::from_secs(args.report_every.max(1)), args.watch_pid);
        async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let line = json!({
                    "elapsed_secs": started.elapsed().as_secs(), "events": events.load(Ordering::Relaxed),
                    "errors": errors.load(Ordering::Relaxed), "server_rss_kib": pid.and_then(rss_kib),
                });
                eprintln!("{line}");
            }
        }
    });
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        latency.add(t.await?)?;
    }
    reporter.abort();
    let secs = started.elapsed().as_secs_f64();
    // The server's CPU over the run, and what each CPU-second of it carried.
    let cpu = cpu_before.zip(args.watch_pid.and_then(cpu_secs)).map(|(before, after)| after - before);
    let events_done = events.load(Ordering::Relaxed) as f64;
    let summary = json!({
        "mode": if args.empty { "baseline: empty batches" } else { "batches of events" },
        "server_rss_kib": args.watch_pid.and_then(rss_kib),
        "server_cpu_secs": cpu.map(|c| (c * 100.0).round() / 100.0),
        "events_per_server_cpu_sec": cpu.filter(|c| *c > 0.0).map(|c| (events_done / c).round()),
        "clients": args.clients, "batch": args.batch, "seconds": (secs * 10.0).round() / 10.0,
        "requests": latency.len(), "errors": errors.load(Ordering::Relaxed),
        "requests_per_sec": (latency.len() as f64 / secs).round(),
        "events_per_sec": (events.load(Ordering::Relaxed) as f64 / secs).round(),
        "mb_per_sec": ((bytes.load(Ordering::Relaxed) as f64 / secs / 1e6) * 100.0).round() / 100.0,
        "latency_ms": {
            "p50": latency.value_at_quantile(0.5) as f64 / 1000.0,
            "p90": latency.value_at_quantile(0.9) as f64 / 1000.0,
            "p99": latency.value_at_quantile(0.99) as f64 / 1000.0,
            "max": latency.max() as f64 / 1000.0,
        },
    });
    println!("{summary}");
    Ok(())
}
