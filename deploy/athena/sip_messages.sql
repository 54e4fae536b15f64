-- The sip_messages table of a chimewatch archive, for Amazon Athena (Parquet with ZSTD, the archiver's default).
-- Replace YOUR-BUCKET and YOUR-PREFIX with the archiver's --bucket and --prefix (drop "YOUR-PREFIX/" if empty).
-- Partition projection: no crawler and no MSCK REPAIR TABLE; an hour is queryable as soon as its files land.
-- The columns match crates/chimewatch-archiver/src/schema.rs (a unit test checks it); filter on dt (and hour) to
-- read only the partitions a query needs.
CREATE EXTERNAL TABLE IF NOT EXISTS sip_messages (
  event_time timestamp,          -- event_timestamp of the SIP log record, UTC
  received_at timestamp,         -- when chimewatch received it, UTC
  voice_connector_id string,
  region string,
  call_id string,                -- Voice Connector call id
  sip_method string,             -- request method; null for a response
  sip_status int,                -- response status; null for a request
  cseq_method string,            -- the method a response answers
  sip_call_id string,            -- the SIP Call-ID header
  sip_message string,            -- the message as captured
  ingest string,
  shard_id string,               -- Kinesis shard the record was read from
  sequence_number string,        -- its sequence number (a decimal of up to 129 digits)
  sub_sequence_number bigint,    -- user record index in a KPL aggregate
  log_event_index bigint         -- index in a CloudWatch Logs envelope; with the three above, unique per row
)
PARTITIONED BY (dt string, hour string)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/YOUR-PREFIX/sip_messages/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2024-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'storage.location.template' = 's3://YOUR-BUCKET/YOUR-PREFIX/sip_messages/dt=${dt}/hour=${hour}/'
);
