-- Health of each collector, written periodically by the collector runner: what it read,
-- stored and dead-lettered, how far behind its source it is, and its last error.
CREATE TABLE IF NOT EXISTS collector_health
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    collector LowCardinality(String),
    kind LowCardinality(String),
    rows_in UInt64,
    rows_out UInt64,
    dead_letters UInt64,
    duplicates UInt64,
    store_retries UInt64,
    lag Nullable(Float64),
    last_success Nullable(DateTime64(3, 'UTC')),
    last_error String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (collector, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY;
