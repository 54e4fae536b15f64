//! The HTTP side of `simulate`: plays the fleet against a gateway in real time, sends its requests with the
//! credentials a real deployment hands out, retries what the SDKs retry, and tallies what the gateway answered.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chimewatch_gateway::auth::{AttendeeClaims, mint_token};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::fleet::{Fleet, FleetConfig, TICK_MS};
use super::scenario::{Phase, Scenario};
use super::session::{Credential, Endpoint, Request};

/// Longest one request may take, body and answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a gateway that answers `/readyz` with 503 (starting, or shutting down) is waited for.
const READY_WAIT: Duration = Duration::from_secs(30);
/// Attempts of a request answered 503 or 429 (each after its Retry-After) before it is given up.
const BUSY_ATTEMPTS: u32 = 10;
/// Attempts of a request that failed otherwise in a way worth retrying (408, 500, 502, 504, a lost connection).
const ERROR_ATTEMPTS: u32 = 5;
/// Rejected elements quoted in the summary (all are counted).
const REJECTED_EXAMPLES: usize = 20;
/// Seconds between two progress lines when stderr is not a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);

/// What to simulate, and against which gateway.
#[derive(Debug, Clone)]
pub struct Options {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Events per second, on average.
    pub rate: f64,
    /// How long to run in real time; `None` runs until `shutdown`.
    pub duration: Option<Duration>,
    /// The fleet starts this far in the past: that stretch is played at once (in order, stamped with its own
    /// times), then the fleet's clock follows the wall clock.
    pub backfill: Duration,
    pub seed: u64,
    pub scenario: Scenario,
    /// Sent by the customer's backend (attendee registrations, SIP records) and, without a token secret, by
    /// blog-style apps.
    pub api_key: Option<String>,
    /// The gateway's token secret: blog-style apps then post with attendee tokens minted with it.
    pub token_secret: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Show progress on stderr (a bar on a terminal, a line every few seconds otherwise).
    pub progress: bool,
}

/// What the run sent and what the gateway answered.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub url: String,
    pub seed: u64,
    pub scenario: &'static str,
    pub rate: f64,
    pub elapsed_secs: f64,
    /// Events and SIP records in requests the gateway answered with 2xx.
    pub events_sent: u64,
    pub events_per_sec: f64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Requests given up after their retries.
    pub failed_requests: u64,
    /// Responses by status code, retried ones included.
    pub statuses: BTreeMap<String, u64>,
    pub endpoints: BTreeMap<&'static str, EndpointSummary>,
    /// Elements the gateway rejected inside 2xx answers.
    pub rejected: u64,
    pub rejected_examples: Vec<RejectedExample>,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSummary {
    /// Requests answered with 2xx.
    pub requests: u64,
    /// Elements in them (events, SIP records, attendee registrations).
    pub events: u64,
    /// Elements the gateway accepted (or registered).
    pub accepted: u64,
    /// Events the gateway dropped as already delivered.
    pub duplicates: u64,
    pub rejected: u64,
    /// Elements by kind: event name, SIP method or status code.
    pub kinds: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedExample {
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub error: String,
}

/// A run that could not go on: why, and what it had done until then.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub summary: Summary,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// What went in the request's headers, to explain a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Nothing,
    ApiKey,
    JoinToken,
    AttendeeToken,
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    retries: u64,
    failed: u64,
    statuses: BTreeMap<u16, u64>,
    endpoints: BTreeMap<Endpoint, EndpointSummary>,
    rejected: u64,
    examples: Vec<RejectedExample>,
}

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    token_secret: Option<Vec<u8>>,
    /// Attendee tokens minted so far, by attendee id.
    tokens: Mutex<HashMap<String, String>>,
    tally: Mutex<Tally>,
    fatal: Mutex<Option<String>>,
    stop: CancellationToken,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An error with its causes, as one line ("error sending request: ... : Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Runs the fleet against the gateway until `options.duration` has passed or `shutdown` resolves, then lets the
/// clients flush what they hold and returns the summary. A gateway that cannot be reached, or that refuses a request
/// in a way no retry fixes (a 4xx), ends the run early with a [`Failure`].
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<Summary, Failure> {
    let started = Instant::now();
    let base = options.url.trim_end_matches('/').to_owned();
    let empty = || Summary {
        url: base.clone(),
        seed: options.seed,
        scenario: options.scenario.name(),
        rate: options.rate,
        phases: options.scenario.phases(),
        ..Summary::default()
    };
    let fail = |message: String| Failure { message, summary: empty() };
    if !(options.rate.is_finite() && options.rate > 0.0) {
        return Err(fail(format!("--rate must be a positive number of events per second, not {}", options.rate)));
    }
    if options.concurrency == 0 {
        return Err(fail("--concurrency must be at least 1".into()));
    }
    if !base.starts_with("http://") {
        return Err(fail(format!(
            "--url {:?}: simulate speaks plain HTTP (http://host:port), as `chimewatch up` serves it",
            options.url
        )));
    }
    let token_secret = options.token_secret.as_ref().map(|s| s.as_bytes().to_vec());
    if token_secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err(fail("--token-secret must be at least 32 bytes, like the gateway's".into()));
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| fail(format!("could not build the HTTP client: {}", chain(&e))))?;
    preflight(&client, &base).await.map_err(fail)?;

    let shared = Arc::new(Shared {
        client,
        base: base.clone(),
        api_key: options.api_key.clone().filter(|k| !k.is_empty()),
        token_secret,
        tokens: Mutex::default(),
        tally: Mutex::default(),
        fatal: Mutex::default(),
        stop: CancellationToken::new(),
    });
    let mut fleet = Fleet::new(FleetConfig { seed: options.seed, scenario: options.scenario, rate: options.rate });
    let mut progress = Progress::new(options.progress, options.duration);
    let permits = Arc::new(Semaphore::new(options.concurrency));
    let mut tasks = JoinSet::new();
    // The fleet's clock follows the wall clock tick by tick; when the gateway holds requests back, it waits.
    let mut ticks = tokio::time::interval(Duration::from_millis(TICK_MS as u64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let run_started = Instant::now();
    tokio::pin!(shutdown);
    // The backfill: as fast as the gateway takes it, stopping early (and still flushing) on shutdown.
    let backfill_ticks = options.backfill.as_millis() as i64 / TICK_MS;
    let backfill_from = wall_ms() - backfill_ticks * TICK_MS;
    let mut shut_down = false;
    for tick in 1..=backfill_ticks {
        tokio::select! {
            biased;
            () = &mut shutdown => { shut_down = true; break }
            () = std::future::ready(()) => {}
        }
        if !dispatch(&shared, &permits, &mut tasks, fleet.step(backfill_from + tick * TICK_MS)).await {
            break;
        }
        while tasks.try_join_next().is_some() {}
        progress.update(&shared, run_started.elapsed(), fleet.sessions());
    }
    let deadline = options.duration.map(|d| Instant::now() + d);
    while !shut_down && !shared.stop.is_cancelled() {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut shutdown => break,
            () = shared.stop.cancelled() => break,
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let requests = fleet.step(wall_ms());
        if !dispatch(&shared, &permits, &mut tasks, requests).await {
            break;
        }
        while tasks.try_join_next().is_some() {}
        progress.update(&shared, run_started.elapsed(), fleet.sessions());
    }
    if !shared.stop.is_cancelled() {
        let last = fleet.finish();
        dispatch(&shared, &permits, &mut tasks, last).await;
    }
    while tasks.join_next().await.is_some() {}
    progress.finish(&shared, run_started.elapsed());

    let elapsed = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *shared.tally.lock().unwrap_or_else(|e| e.into_inner()));
    let events_sent: u64 =
        tally.endpoints.iter().filter(|(e, _)| **e != Endpoint::Attendees).map(|(_, s)| s.events).sum();
    let summary = Summary {
        elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
        events_sent,
        events_per_sec: if elapsed > 0.0 { (events_sent as f64 / elapsed * 10.0).round() / 10.0 } else { 0.0 },
        requests: tally.requests,
        retries: tally.retries,
        failed_requests: tally.failed,
        statuses: tally.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        endpoints: tally.endpoints.into_iter().map(|(e, s)| (e.name(), s)).collect(),
        rejected: tally.rejected,
        rejected_examples: tally.examples,
        ..empty()
    };
    let fatal = shared.fatal.lock().unwrap_or_else(|e| e.into_inner()).take();
    match fatal {
        Some(message) => Err(Failure { message, summary }),
        None => Ok(summary),
    }
}

/// Checks that a gateway answers at `base` before the fleet starts, waiting while it says it is not ready.
async fn preflight(client: &reqwest::Client, base: &str) -> Result<(), String> {
    let waiting_since = Instant::now();
    loop {
        match client.get(format!("{base}/readyz")).send().await {
            Err(e) => {
                return Err(format!(
                    "could not reach the gateway at {base}: {} (is `chimewatch up` running there?)",
                    chain(&e)
                ));
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                if waiting_since.elapsed() >= READY_WAIT {
                    return Err(format!(
                        "the gateway at {base} has not been ready for {READY_WAIT:?} (GET /readyz: 503)"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // Ready, or something in front of the gateway that does not know /readyz: the requests will tell.
            Ok(_) => return Ok(()),
        }
    }
}

/// Sends one tick's requests: registrations at once and in order (the clients' requests rely on them), the others
/// concurrently within the permits. False once the run is stopping.
async fn dispatch(
    shared: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    requests: Vec<Request>,
) -> bool {
    for request in requests {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return false,
            },
            () = shared.stop.cancelled() => return false,
        };
        if request.endpoint == Endpoint::Attendees {
            deliver(shared, request).await;
            drop(permit);
        } else {
            let shared = shared.clone();
            tasks.spawn(async move {
                deliver(&shared, request).await;
                drop(permit);
            });
        }
    }
    !shared.stop.is_cancelled()
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, message: String) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(message);
        }
        self.stop.cancel();
    }

    /// The request's credentials, as the deployment hands them out.
    fn authorize(&self, builder: reqwest::RequestBuilder, credential: &Credential) -> (reqwest::RequestBuilder, Sent) {
        let api_key = |b: reqwest::RequestBuilder| match &self.api_key {
            Some(key) => (b.header("x-api-key", key), Sent::ApiKey),
            None => (b, Sent::Nothing),
        };
        match credential {
            Credential::None => (builder, Sent::JoinToken),
            Credential::ApiKey => api_key(builder),
            Credential::JoinToken(token) => (builder.bearer_auth(token), Sent::JoinToken),
            Credential::Attendee { meeting_id, attendee_id, external_user_id } => {
                let Some(secret) = &self.token_secret else { return api_key(builder) };
                let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                let token = match tokens.get(attendee_id) {
                    Some(t) => t.clone(),
                    None => {
                        let claims = AttendeeClaims {
                            meeting_id: meeting_id.clone(),
                            attendee_id: attendee_id.clone(),
                            exp: (wall_ms() / 1000) as u64 + 86_400,
                            external_user_id: Some(external_user_id.clone()),
                        };
                        match mint_token(secret, &claims) {
                            Ok(t) => {
                                tokens.insert(attendee_id.clone(), t.clone());
                                t
                            }
                            Err(e) => {
                                drop(tokens);
                                self.fail(format!("could not mint an attendee token: {e}"));
                                return (builder, Sent::AttendeeToken);
                            }
                        }
                    }
                };
                (builder.bearer_auth(token), Sent::AttendeeToken)
            }
        }
    }

    /// Counts a 2xx answer: its elements, and what the gateway accepted, dropped or rejected of them.
    fn answered(&self, request: &Request, body: &Value) {
        let mut tally = self.tally();
        let tally = &mut *tally;
        let e = tally.endpoints.entry(request.endpoint).or_default();
        e.requests += 1;
        e.events += request.kinds.len() as u64;
        for kind in &request.kinds {
            *e.kinds.entry(*kind).or_default() += 1;
        }
        let count = |k: &str| body.get(k).and_then(Value::as_u64).unwrap_or(0);
        e.accepted += if request.endpoint == Endpoint::Attendees { count("registered") } else { count("accepted") };
        e.duplicates += count("duplicates");
        for r in body.get("rejected").and_then(Value::as_array).into_iter().flatten() {
            e.rejected += 1;
            tally.rejected += 1;
            if tally.examples.len() < REJECTED_EXAMPLES {
                let index = r.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                tally.examples.push(RejectedExample {
                    endpoint: request.endpoint.name(),
                    kind: request.kinds.get(index).copied().unwrap_or("unknown"),
                    error: r.get("error").and_then(Value::as_str).unwrap_or_default().to_owned(),
                });
            }
        }
    }
}

/// Sends one request until it is answered for good, retrying as the SDKs do: 503 and 429 after their Retry-After,
/// 408 and other 5xx and lost connections with backoff. A 4xx that no retry fixes stops the run.
async fn deliver(shared: &Shared, request: Request) {
    let path = request.endpoint.path();
    let url = format!("{}{path}", shared.base);
    let mut attempt = 0u32;
    loop {
        if shared.stop.is_cancelled() && shared.fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
            return;
        }
        attempt += 1;
        if attempt > 1 {
            shared.tally().retries += 1;
        }
        let builder = shared
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body.clone());
        let (builder, sent) = shared.authorize(builder, &request.credential);
        let backoff = Duration::from_millis(200 << attempt.min(6));
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) if attempt < ERROR_ATTEMPTS => {
                tracing::debug!(error = %chain(&e), path, "A request failed; retrying.");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                shared.tally().failed += 1;
                shared.fail(format!("could not reach the gateway at {}: {}", shared.base, chain(&e)));
                return;
            }
        };
        let status = response.status();
        {
            let mut tally = shared.tally();
            tally.requests += 1;
            *tally.statuses.entry(status.as_u16()).or_default() += 1;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = body.get("error").and_then(Value::as_str).unwrap_or("").to_owned();
        if status.is_success() {
            shared.answered(&request, &body);
            return;
        }
        let code = status.as_u16();
        match code {
            429 | 503 if attempt < BUSY_ATTEMPTS => {
                tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
            }
            408 | 500 | 502 | 504 if attempt < ERROR_ATTEMPTS => tokio::time::sleep(backoff).await,
            429 | 503 | 408 | 500 | 502 | 504 => {
                tracing::warn!(path, status = code, error, "The gateway kept refusing a request; gave it up.");
                shared.tally().failed += 1;
                return;
            }
            401 => {
                let message = match sent {
                    Sent::Nothing => "the gateway wants an API key: pass --api-key".to_owned(),
                    Sent::ApiKey => format!("the gateway refused the API key given with --api-key: {error}"),
                    Sent::AttendeeToken => format!(
                        "the gateway refused an attendee token minted with --token-secret (is it the gateway's?): {error}"
                    ),
                    Sent::JoinToken => {
                        format!("the gateway refused a JoinToken registered at /v1/admin/attendees: {error}")
                    }
                };
                shared.tally().failed += 1;
                shared.fail(format!("{message} (POST {path} answered 401)"));
                return;
            }
            _ => {
                shared.tally().failed += 1;
                shared.fail(format!("the gateway answered {status} to POST {path}: {error}"));
                return;
            }
        }
    }
}

/// Progress on stderr: a bar on a terminal, otherwise a line every few seconds.
#[derive(Debug)]
enum Progress {
    Off,
    Bar(ProgressBar),
    Lines { next: Instant },
}

impl Progress {
    fn new(enabled: bool, duration: Option<Duration>) -> Self {
        if !enabled {
            return Self::Off;
        }
        if !std::io::stderr().is_terminal() {
            return Self::Lines { next: Instant::now() + PROGRESS_LINE_EVERY };
        }
        let bar = match duration {
            Some(d) => {
                let bar = ProgressBar::new(d.as_millis() as u64);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:20}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar
            }
            None => ProgressBar::new_spinner(),
        };
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn status_line(shared: &Shared, sessions: Option<usize>) -> String {
        let tally = shared.tally();
        let events: u64 =
            tally.endpoints.iter().filter(|(e, _)| **e != Endpoint::Attendees).map(|(_, s)| s.events).sum();
        let statuses: Vec<String> = tally.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        let attendees = sessions.map_or(String::new(), |n| format!(", {n} attending"));
        format!(
            "{events} events sent, {} requests ({}), {} rejected{attendees}",
            tally.requests,
            statuses.join(" "),
            tally.rejected
        )
    }

    fn update(&mut self, shared: &Shared, elapsed: Duration, sessions: usize) {
        match self {
            Self::Off => {}
            Self::Bar(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(Self::status_line(shared, Some(sessions)));
            }
            Self::Lines { next } => {
                if Instant::now() >= *next {
                    *next += PROGRESS_LINE_EVERY;
                    eprintln!(
                        "simulate: {:>5.0}s: {}",
                        elapsed.as_secs_f64(),
                        Self::status_line(shared, Some(sessions))
                    );
                }
            }
        }
    }

    /// Clears the bar, or prints the last line.
    fn finish(&self, shared: &Shared, elapsed: Duration) {
        match self {
            Self::Off => {}
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines { .. } => {
                eprintln!("simulate: {:>5.0}s: done: {}", elapsed.as_secs_f64(), Self::status_line(shared, None));
            }
        }
    }
}
