-- Join failure rate by SDK version and browser, per day, over the local archive of `chimewatch up`.
-- Run from the directory `up` was started in (its data directory is ./chimewatch-data):
--   duckdb < deploy/duckdb/join-failure-rate.sql
-- Against S3, read 's3://BUCKET/PREFIX/meeting_events/*/*/*.parquet' instead (DuckDB's httpfs extension).
SELECT
    dt AS day,
    sdk_version,
    browser_name,
    count(*) AS join_attempts,
    count(*) FILTER (WHERE event_name = 'meetingStartFailed') AS failed_joins,
    round(100.0 * count(*) FILTER (WHERE event_name = 'meetingStartFailed') / count(*), 1) AS failure_rate_pct
FROM read_parquet('chimewatch-data/archive/meeting_events/*/*/*.parquet', hive_partitioning = true)
WHERE event_name IN ('meetingStartSucceeded', 'meetingStartFailed')
GROUP BY ALL
ORDER BY day, failure_rate_pct DESC, sdk_version, browser_name;
