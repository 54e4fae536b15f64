//! A load run of the archiver's memory with many open partitions: spools ROWS meeting-event rows spread over
//! PARTITIONS hourly partitions (as one shard would between two cuts), then prints the process's peak resident set.
//! Run it with 1 partition for the baseline: `cargo run --release -p chimewatch-archiver --example spool_memory -- 1 200000`.

use chimewatch_archiver::rows::{MeetingEventRow, Row, Source};
use chimewatch_archiver::spool::Spool;
use chimewatch_model::{Ingest, MeetingEvent, MeetingEventRecord};
use chimewatch_stream::consumer::Position;

const DAY: i64 = 1_763_596_800_000;

fn row(i: u64, partitions: u64) -> Row {
    let hour = (i % partitions) as i64;
    let attributes = serde_json::json!({
        "meetingId": format!("m-{}", i / 30), "attendeeId": format!("a-{i}"), "sdkName": "amazon-chime-sdk-js",
        "sdkVersion": "3.32.0", "browserName": "firefox", "osName": "Mac OS",
        "timestampMs": DAY - hour * 3_600_000, "meetingStartDurationMs": 1_500 + i % 900,
    });
    let record = MeetingEventRecord {
        v: 1,
        received_at_ms: DAY,
        ingest: Ingest::Batch,
        event: MeetingEvent {
            name: "meetingStartSucceeded".into(),
            attributes: attributes.as_object().cloned().unwrap_or_default(),
        },
        original: Default::default(),
        truncation: Default::default(),
        delivery: None,
    };
    let source = Source {
        shard_id: "shardId-000000000001".into(),
        sequence_number: (49_000_000_000_000_000_000u128 + u128::from(i)).to_string(),
        sub_sequence_number: 0,
        log_event_index: 0,
    };
    Row::Meeting(MeetingEventRow::new(&record.into(), source))
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let partitions: u64 = args.next().as_deref().unwrap_or("1").parse()?;
    let rows: u64 = args.next().as_deref().unwrap_or("200000").parse()?;
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::new(dir.path())?;
    for i in 0..rows {
        let position = Position::parse(&(49_000_000_000_000_000_000u128 + u128::from(i)).to_string(), 0)?;
        spool.append(&row(i, partitions.max(1)), position, DAY)?;
    }
    println!(
        "{rows} rows ({} MB spooled on disk) in {} partitions: peak RSS {} MB",
        spool.bytes() / 1_000_000,
        spool.partitions(),
        peak_rss_kb().unwrap_or(0) / 1000
    );
    Ok(())
}
