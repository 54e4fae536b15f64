//! `chimewatch stream dump`: the records on a stream as JSON lines, de-aggregated and decoded.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use chimewatch_model::Record;
use chimewatch_model::envelope::{GZIP_MAGIC, decode_user_record};
use chimewatch_stream::StreamRecord;
use chimewatch_stream::kinesis::{ReadFrom, read_stream};
use chimewatch_stream::local;
use serde_json::{Value, json};

use crate::cli::DumpArgs;
use crate::config::Settings;

pub async fn run(args: DumpArgs, settings: &Settings) -> anyhow::Result<()> {
    let follow = args.follow || !args.from_start;
    let mut out = Output::default();
    match settings.stream.stream.clone() {
        Some(stream) => {
            let client = chimewatch_stream::kinesis::client(&crate::aws::sdk_config().await, &[]);
            let from = if args.from_start { ReadFrom::Start } else { ReadFrom::Latest };
            read_stream(&client, &stream, from, follow, |r| out.emit(r))
                .await
                .with_context(|| format!("reading stream {stream}"))?;
        }
        None => {
            let root = settings.data_dir().join("stream");
            tokio::task::spawn_blocking(move || dump_local(&root, args.from_start, follow, &mut out)).await??;
        }
    }
    Ok(())
}

fn dump_local(root: &std::path::Path, from_start: bool, follow: bool, out: &mut Output) -> anyhow::Result<()> {
    let shards = local::read_shard_count(root)?.with_context(|| format!("no embedded log in {}", root.display()))?;
    let mut readers = (0..shards)
        .map(|s| {
            let from = if from_start { 0 } else { local::end_of_shard(root, s)? };
            local::open_reader(root, s, from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    loop {
        let mut any = false;
        for reader in &mut readers {
            let records = match reader.read(1000, 16 << 20) {
                Ok(records) => records,
                // Damage is reported where the records it cost would have been, and the reader has moved past it.
                Err(damage @ local::LogError::Corrupt { .. }) => {
                    any = true;
                    out.flush();
                    eprintln!("chimewatch stream dump: {damage}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for r in records {
                any = true;
                out.emit(Ok(StreamRecord {
                    shard_id: local::shard_id(r.shard),
                    sequence_number: r.sequence.into(),
                    sub_sequence_number: 0,
                    partition_key: r.partition_key,
                    arrival: chimewatch_stream::UnixMillis(r.timestamp_ms),
                    data: r.data,
                }));
            }
        }
        out.flush();
        if !any {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Writes JSON lines to stdout; stops the process quietly when the reader goes away (`| head`).
#[derive(Debug, Default)]
struct Output {
    buffer: Vec<u8>,
}

impl Output {
    fn emit(&mut self, result: Result<StreamRecord, (StreamRecord, String)>) {
        let (record, error) = match result {
            Ok(r) => (r, None),
            Err((r, e)) => (r, Some(e)),
        };
        let line = json!({
            "shardId": record.shard_id,
            "sequenceNumber": record.sequence_number,
            "subSequenceNumber": record.sub_sequence_number,
            "partitionKey": record.partition_key,
            "arrivalMs": record.arrival.as_i64(),
        });
        // A CloudWatch Logs envelope holds many SIP records: one line each, numbered by their log event.
        let items = match error {
            Some(e) => vec![(0, Err(e))],
            None => decode_user_record::<Record>(&record.data, record.arrival.as_i64()),
        };
        let gzip = record.data.starts_with(&GZIP_MAGIC);
        for (log_event, decoded) in items {
            let mut line = line.clone();
            if gzip {
                line["logEvent"] = log_event.into();
            }
            match decoded {
                Ok(r) => line["record"] = serde_json::to_value(r).unwrap_or(Value::Null),
                Err(e) => {
                    line["error"] = e.into();
                    line["dataBase64"] = base64::engine::general_purpose::STANDARD.encode(&record.data).into();
                }
            }
            serde_json::to_writer(&mut self.buffer, &line).unwrap_or_default();
            self.buffer.push(b'\n');
        }
        if self.buffer.len() > 1 << 16 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(&self.buffer).and_then(|()| stdout.flush()).is_err() {
            std::process::exit(0);
        }
        self.buffer.clear();
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.flush();
    }
}
