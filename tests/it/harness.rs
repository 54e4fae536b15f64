//! Running the real binary: spawning it on free ports, waiting until it listens, posting to it, reading its stream.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_chimewatch");

/// A file under the repository's `fixtures/`.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A running `chimewatch` server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `chimewatch <args> --listen 127.0.0.1:0` and waits until it prints its address.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("CHIMEWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self::spawn(cmd)
    }

    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("spawning chimewatch");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                        return Self { child, addr, stderr: rx };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chimewatch did not start listening; it printed:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("posting to chimewatch");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// What the process printed since it started listening (or since the last call), without waiting.
    pub fn printed(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Sends SIGTERM and waits for a clean exit, returning what the process printed after starting.
    pub fn terminate(self) -> Vec<String> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.terminate_after_signal()
    }

    /// Waits for a clean exit after a signal was sent, returning what the process printed after starting: to the
    /// end of its output, which the reader thread may still be taking from the pipe when the process has exited.
    pub fn terminate_after_signal(mut self) -> Vec<String> {
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "chimewatch exited with {exit}");
        let mut printed = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(10)) {
            printed.push(line);
        }
        printed
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `chimewatch stream dump ... --from-start` and returns its JSON lines.
pub fn dump(args: &[&str], envs: &[(&str, &str)]) -> Vec<Value> {
    let mut cmd = Command::new(BIN);
    cmd.args(["stream", "dump", "--from-start"]).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running stream dump");
    assert!(out.status.success(), "stream dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A name for an emulator resource (stream, table) that no earlier run against the same emulator used.
pub fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The moto server started by `scripts/test.sh`.
pub fn moto_url() -> String {
    std::env::var("CHIMEWATCH_TEST_MOTO_URL").expect(
        "CHIMEWATCH_TEST_MOTO_URL is not set: run `scripts/test.sh`, which installs and starts moto for these tests",
    )
}

/// The environment that points the AWS SDK at moto.
pub fn aws_env(moto: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

pub fn borrow<'a>(envs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The events of a `{name, attributes}` fixture as (meetingId, attendeeId, name, timestampMs) keys.
pub fn event_keys(batch: &[u8]) -> Vec<(String, String, String, i64)> {
    let events: Vec<Value> = serde_json::from_slice(batch).unwrap();
    events
        .iter()
        .map(|e| {
            let a = &e["attributes"];
            let ts =
                a["timestampMs"].as_i64().or_else(|| a["timestampMs"].as_str().and_then(|s| s.parse().ok())).unwrap();
            (
                a["meetingId"].as_str().unwrap().into(),
                a["attendeeId"].as_str().unwrap().into(),
                e["name"].as_str().unwrap().into(),
                ts,
            )
        })
        .collect()
}

/// The same keys, read from dumped records.
pub fn dumped_keys(lines: &[Value]) -> Vec<(String, String, String, i64)> {
    lines
        .iter()
        .filter(|l| l["record"]["kind"] == "meetingEvent")
        .map(|l| {
            let e = &l["record"]["event"];
            let a = &e["attributes"];
            (
                a["meetingId"].as_str().unwrap().into(),
                a["attendeeId"].as_str().unwrap().into(),
                e["name"].as_str().unwrap().into(),
                a["timestampMs"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A CloudWatch Logs client for moto.
pub fn logs_client(moto: &str) -> aws_sdk_cloudwatchlogs::Client {
    use aws_sdk_cloudwatchlogs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_cloudwatchlogs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_cloudwatchlogs::Client::from_conf(config)
}

/// Every event of a log group as (stream, message parsed as JSON), stream by stream.
pub async fn all_log_events(client: &aws_sdk_cloudwatchlogs::Client, group: &str) -> Vec<(String, Value)> {
    // DescribeLogStreams answers 50 streams a page; a group with a stream per shard and worker has more.
    let mut names = Vec::new();
    let mut pages = client.describe_log_streams().log_group_name(group).into_paginator().send();
    while let Some(page) = pages.next().await {
        let Ok(page) = page else { return Vec::new() };
        names.extend(page.log_streams().iter().filter_map(|s| s.log_stream_name().map(str::to_owned)));
    }
    let mut out = Vec::new();
    for name in names {
        let mut token: Option<String> = None;
        loop {
            let page = client
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(&name)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            if page.events().is_empty() {
                break;
            }
            out.extend(
                page.events()
                    .iter()
                    .map(|e| (name.clone(), serde_json::from_str(e.message().unwrap_or_default()).unwrap())),
            );
            let next = page.next_forward_token().map(str::to_owned);
            if next == token {
                break;
            }
            token = next;
        }
    }
    out
}

/// The metric datums of every PutMetricData into `namespace` that the test's CloudWatch bridge forwarded (moto cannot
/// compute percentiles, so the tests read the published Values/Counts themselves).
pub async fn captured_datums(bridge: &str, namespace: &str) -> Vec<Value> {
    let url = format!("{bridge}/captured?namespace={}", namespace.replace('/', "%2F"));
    let requests: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
    requests.into_iter().flat_map(|r| r["MetricData"].as_array().cloned().unwrap_or_default()).collect()
}
