//! Reading a whole Kinesis stream shard by shard, de-aggregated (for `stream dump`; the lease-based consumer
//! runtime is a separate piece).

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use chimewatch_model::kpl;

use super::KinesisError;
use super::errors::classify;
use super::shard_map::list_shards;
use crate::UnixMillis;
use crate::ports::{SequenceNumber, StreamRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The oldest retained record.
    Start,
    /// Only records put from now on.
    Latest,
}

/// Reads every shard, calling `emit` for each user record (or for each record that fails to de-aggregate, with
/// its error). Without `follow`, returns once every shard is caught up.
pub async fn read_stream(
    client: &Client,
    stream: &str,
    from: ReadFrom,
    follow: bool,
    mut emit: impl FnMut(Result<StreamRecord, (StreamRecord, String)>),
) -> Result<(), KinesisError> {
    let shards = list_shards(client, stream).await?;
    let iterator_type = match from {
        ReadFrom::Start => ShardIteratorType::TrimHorizon,
        ReadFrom::Latest => ShardIteratorType::Latest,
    };
    let mut iterators = Vec::new();
    for shard in &shards {
        let out = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard.shard_id)
            .shard_iterator_type(iterator_type.clone())
            .send()
            .await
            .map_err(|e| classify("GetShardIterator", stream, &e))?;
        iterators.push((shard.shard_id.clone(), out.shard_iterator().map(str::to_owned)));
    }
    loop {
        let mut progressed = false;
        let mut open = 0;
        for (shard_id, iterator) in &mut iterators {
            let Some(it) = iterator.clone() else { continue };
            open += 1;
            let out = client
                .get_records()
                .shard_iterator(&it)
                .limit(1000)
                .send()
                .await
                .map_err(|e| classify("GetRecords", stream, &e))?;
            for record in out.records() {
                let outer = StreamRecord {
                    shard_id: shard_id.clone(),
                    sequence_number: SequenceNumber::parse(record.sequence_number())
                        .map_err(|e| KinesisError::Fatal { operation: "GetRecords", message: e.to_string() })?,
                    sub_sequence_number: 0,
                    partition_key: record.partition_key().unwrap_or_default().to_owned(),
                    arrival: UnixMillis(
                        record.approximate_arrival_timestamp().map_or(0, |t| t.to_millis().unwrap_or(0)),
                    ),
                    data: record.data().as_ref().to_vec(),
                };
                match kpl::deaggregate(&outer.data, &outer.partition_key) {
                    Ok(users) => {
                        for (i, u) in users.into_iter().enumerate() {
                            emit(Ok(StreamRecord {
                                sub_sequence_number: i as u64,
                                partition_key: u.partition_key,
                                data: u.data,
                                ..outer.clone()
                            }));
                        }
                    }
                    Err(e) => emit(Err((outer, e.to_string()))),
                }
            }
            progressed |= !out.records().is_empty();
            let caught_up = out.records().is_empty() && out.millis_behind_latest().is_none_or(|m| m == 0);
            *iterator = out.next_shard_iterator().map(str::to_owned);
            if caught_up && !follow {
                *iterator = None;
            }
        }
        if open == 0 {
            return Ok(());
        }
        if !progressed {
            // Each shard allows 5 GetRecords calls a second.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
