-- The meeting_events table of a chimewatch archive, for Amazon Athena (Parquet with ZSTD, the archiver's default).
-- Replace YOUR-BUCKET and YOUR-PREFIX with the archiver's --bucket and --prefix (drop "YOUR-PREFIX/" if empty).
-- Partition projection: no crawler and no MSCK REPAIR TABLE; an hour is queryable as soon as its files land.
-- The columns match crates/chimewatch-archiver/src/schema.rs (a unit test checks it); filter on dt (and hour) to
-- read only the partitions a query needs.
CREATE EXTERNAL TABLE IF NOT EXISTS meeting_events (
  event_time timestamp,                    -- when the event happened (timestampMs), UTC
  received_at timestamp,                   -- when the gateway received it, UTC
  event_name string,                       -- meetingStartSucceeded, meetingStartFailed, ...
  meeting_id string,
  attendee_id string,
  external_meeting_id string,
  external_user_id string,
  sdk_name string,
  sdk_version string,
  os_name string,
  os_version string,
  browser_name string,
  browser_major_version string,
  device_name string,
  meeting_status string,
  meeting_error_message string,
  audio_input_error_message string,
  video_input_error_message string,
  meeting_start_duration_ms bigint,
  meeting_duration_ms bigint,
  signaling_open_duration_ms bigint,
  ice_gathering_duration_ms bigint,
  attendee_presence_duration_ms bigint,
  poor_connection_count bigint,
  retry_count bigint,
  ingest string,                           -- batch, sdkIngestion, ...
  attributes string,                       -- every attribute as normalized, JSON: json_extract_scalar(attributes, '$.x')
  original string,                         -- values normalization changed, as sent, JSON
  shard_id string,                         -- Kinesis shard the record was read from
  sequence_number string,                  -- its sequence number (a decimal of up to 129 digits)
  sub_sequence_number bigint,              -- user record index in a KPL aggregate
  log_event_index bigint                   -- index in a CloudWatch Logs envelope; with the three above, unique per row
)
PARTITIONED BY (dt string, hour string)
STORED AS PARQUET
LOCATION 's3://YOUR-BUCKET/YOUR-PREFIX/meeting_events/'
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
  'storage.location.template' = 's3://YOUR-BUCKET/YOUR-PREFIX/meeting_events/dt=${dt}/hour=${hour}/'
);
