//! A full disk under `chimewatch up`: with its data directory on a small tmpfs, posts are refused with 503 once the
//! disk fills (never acknowledged unless durable), the process neither crashes nor hangs, and once there is room again
//! posting works and every acknowledged event is in the log exactly once, with no damaged frame.
//!
//! Mounting the tmpfs needs root (as on the development machines and in CI): without it the test fails, saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Server, dump};

const EVENTS_PER_REQUEST: usize = 100;
/// Posts that must fail in a row before the disk counts as full (a failure can free room: a cut partial write).
const FAILURES_IN_A_ROW: usize = 5;

/// A tmpfs mounted for the test, unmounted when dropped, even when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test needs root to mount a tmpfs (mount -t tmpfs -o size={size} tmpfs {}): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir: dir.to_owned() }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("running mount");
        assert!(out.status.success(), "remounting the tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open there (a failed test's server): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn batch(request: usize) -> (Vec<String>, Vec<u8>) {
    let seqs: Vec<String> = (0..EVENTS_PER_REQUEST).map(|i| format!("{request}-{i}")).collect();
    let events: Vec<Value> = seqs
        .iter()
        .enumerate()
        .map(|(i, seq)| {
            json!({"name": "meetingStartRequested", "attributes": {
                "meetingId": format!("full-disk-meeting-{}", (request + i) % 8),
                "attendeeId": format!("attendee-{i}"),
                "timestampMs": 1_763_712_000_000_i64 + (request * EVENTS_PER_REQUEST + i) as i64,
                "loadSeq": seq,
            }})
        })
        .collect();
    (seqs, serde_json::to_vec(&events).unwrap())
}

/// Posts one batch: the status, the `Retry-After` header and the body. A hang fails the test.
async fn post(http: &reqwest::Client, server: &Server, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let response = http
        .post(server.url("/v1/meeting-events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("posting to chimewatch on a full disk: {e} (did it hang or crash?)"));
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_full_disk_refuses_posts_with_503_and_loses_nothing_acknowledged() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Small segments, so that segments roll while the disk is full too.
    let config = base.path().join("chimewatch.toml");
    std::fs::write(&config, "[local]\nsegment_bytes = 65536\n").unwrap();
    let tmpfs = Tmpfs::mount(&data, "8m");
    let dir = data.to_str().unwrap();
    let mut server = Server::start(&["up", "--config", config.to_str().unwrap(), "--data-dir", dir], &[]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut request = 0;
    let mut in_a_row = 0;
    let mut refusals = Vec::new();
    while in_a_row < FAILURES_IN_A_ROW {
        assert!(request < 5_000, "8 MiB never filled up after {request} posts");
        let (seqs, body) = batch(request);
        request += 1;
        let (status, retry_after, resp) = post(&http, &server, body).await;
        match status {
            200 => {
                assert_eq!(resp["accepted"], EVENTS_PER_REQUEST, "{resp}");
                acked.extend(seqs);
                in_a_row = 0;
            }
            503 => {
                let error = resp["error"].as_str().unwrap_or_default().to_owned();
                assert!(error.contains("No space left on device"), "a clear reason: {resp}");
                assert!(retry_after.is_some(), "a 503 says when to retry: {resp}");
                refused.extend(seqs);
                refusals.push(error);
                in_a_row += 1;
            }
            other => panic!("a post on a full disk got {other}: {resp}"),
        }
    }
    assert!(acked.len() >= 10 * EVENTS_PER_REQUEST, "the disk took a few batches first: {}", acked.len());
    assert_eq!(server.child.try_wait().unwrap(), None, "chimewatch up is still running on a full disk");

    // Room again: posting works at once.
    tmpfs.resize("64m");
    for _ in 0..20 {
        let (seqs, body) = batch(request);
        request += 1;
        let (status, _, resp) = post(&http, &server, body).await;
        assert_eq!(status, 200, "posting once the disk has room again: {resp}");
        acked.extend(seqs);
    }

    // Read the log from another process while the server runs: every acknowledged event exactly once.
    let lines = dump(&["--data-dir", dir], &[]);
    assert!(lines.iter().all(|l| l.get("error").is_none()), "every record decodes");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let seq = l["record"]["event"]["attributes"]["loadSeq"].as_str().unwrap().to_owned();
        *counts.entry(seq).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|s| !counts.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "events stored twice: {:?}", &repeated[..repeated.len().min(5)]);
    let unknown: Vec<_> = counts.keys().filter(|s| !acked.contains(*s) && !refused.contains(*s)).collect();
    assert!(unknown.is_empty(), "records nobody sent: {unknown:?}");

    let printed = server.printed();
    assert!(!printed.iter().any(|l| l.contains("panicked")), "no panic: {printed:?}");
    assert!(!printed.iter().any(|l| l.contains("is damaged")), "no damaged frame: {printed:?}");
    let printed = server.terminate();
    eprintln!(
        "full disk: {} events acknowledged (all present once), {} refused in {} posts ({} of them durable anyway); \
         first refusal: {:?}; after stopping it printed {} lines",
        acked.len(),
        refused.len(),
        refusals.len(),
        counts.keys().filter(|s| refused.contains(*s)).count(),
        refusals.first(),
        printed.len()
    );
    drop(tmpfs);
}
