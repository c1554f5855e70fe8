-- Watchloop schema, version 1.
-- Every fact table carries its event time and its ingest time: "as of t" reads filter on
-- ingest_time so that backtests and gates only see what was known at t.

-- Inference logs. ReplacingMergeTree collapses a redelivered record (same model, version,
-- event time and request id) into one row. Its version column keeps the row with the
-- HIGHEST value, so we store the complement of the ingest time: the earliest delivery wins
-- and an "as of t" read between two deliveries still sees the record.
CREATE TABLE IF NOT EXISTS inference_logs
(
    request_id String,
    model LowCardinality(String),
    model_version LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    latency_ms Float64,
    status LowCardinality(String),
    error String,
    numeric_features Map(LowCardinality(String), Float64),
    categorical_features Map(LowCardinality(String), String),
    prediction Nullable(Float64),
    prediction_label String,
    source LowCardinality(String),
    first_delivery UInt64 MATERIALIZED 18446744073709551615 - toUInt64(toUnixTimestamp64Milli(ingest_time)),
    INDEX idx_request_id request_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(first_delivery)
PARTITION BY toYYYYMMDD(event_time)
ORDER BY (model, model_version, event_time, request_id)
TTL toDateTime(event_time) + INTERVAL 90 DAY;

-- Delayed ground-truth labels, joined to inference logs by request id. A label may be
-- corrected later: readers take the newest one ingested as of t (argMax over ingest_time).
CREATE TABLE IF NOT EXISTS labels
(
    request_id String,
    label String,
    label_value Nullable(Float64),
    label_time DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    source LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(label_time)
ORDER BY (request_id, ingest_time)
TTL toDateTime(label_time) + INTERVAL 180 DAY;

-- Per-minute rollup of latency quantiles, counts and errors per model and version, kept up
-- to date by a materialized view on every insert into inference_logs.
CREATE TABLE IF NOT EXISTS inference_rollup_1m
(
    minute DateTime('UTC'),
    model LowCardinality(String),
    model_version LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    latency_sum_ms SimpleAggregateFunction(sum, Float64),
    latency_max_ms SimpleAggregateFunction(max, Float64),
    latency_quantiles AggregateFunction(quantiles(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (model, model_version, minute)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS inference_rollup_1m_mv TO inference_rollup_1m AS
SELECT
    toStartOfMinute(event_time) AS minute,
    model,
    model_version,
    count() AS requests,
    countIf(status != 'ok') AS errors,
    sum(latency_ms) AS latency_sum_ms,
    max(latency_ms) AS latency_max_ms,
    quantilesState(0.5, 0.9, 0.95, 0.99)(latency_ms) AS latency_quantiles
FROM inference_logs
GROUP BY minute, model, model_version;

-- Serving metrics scraped from TorchServe and Triton, one row per sample.
CREATE TABLE IF NOT EXISTS serving_metrics
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    server LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    labels Map(LowCardinality(String), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (model, model_version, metric, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY;

-- GPU metrics from NVML or a DCGM exporter, one row per sample.
CREATE TABLE IF NOT EXISTS gpu_metrics
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    host LowCardinality(String),
    gpu UInt16,
    gpu_uuid LowCardinality(String),
    metric LowCardinality(String),
    value Float64,
    labels Map(LowCardinality(String), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (host, gpu, metric, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY;

-- Kafka consumer lag per group, topic and partition, with a Burrow-style status.
CREATE TABLE IF NOT EXISTS kafka_lag
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    cluster LowCardinality(String),
    consumer_group LowCardinality(String),
    topic LowCardinality(String),
    partition UInt32,
    committed_offset Int64,
    log_end_offset Int64,
    lag_messages Int64,
    lag_seconds Float64,
    status LowCardinality(String),
    reason String
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (consumer_group, topic, partition, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY;

-- Drift results per model version, window and feature.
CREATE TABLE IF NOT EXISTS drift_results
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    model LowCardinality(String),
    model_version LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    feature LowCardinality(String),
    kind LowCardinality(String),
    method LowCardinality(String),
    score Float64,
    threshold Float64,
    drifted UInt8,
    p_value Nullable(Float64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, model_version, feature, method, ts)
TTL toDateTime(ts) + INTERVAL 400 DAY;

-- Alert lifecycle events (pending, firing, resolved, silenced, notified).
CREATE TABLE IF NOT EXISTS alert_events
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    fingerprint String,
    rule LowCardinality(String),
    severity LowCardinality(String),
    state LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    value Nullable(Float64),
    summary String,
    labels Map(LowCardinality(String), String),
    actor String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (rule, fingerprint, ts)
TTL toDateTime(ts) + INTERVAL 400 DAY;

-- Retraining runs, from trigger to gate decision.
CREATE TABLE IF NOT EXISTS retrain_runs
(
    run_id String,
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    model LowCardinality(String),
    trigger LowCardinality(String),
    reason String,
    status LowCardinality(String),
    base_version String,
    candidate_version String,
    mlflow_run_id String,
    metrics Map(LowCardinality(String), Float64),
    actor String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, run_id, ts);

-- Every change to production serving: deploy, promote, rollback, retire, with who did it.
CREATE TABLE IF NOT EXISTS deployments
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    model LowCardinality(String),
    model_version String,
    server LowCardinality(String),
    action LowCardinality(String),
    status LowCardinality(String),
    actor String,
    reason String,
    details String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, ts);

-- Records that could not be stored, with the reason; nothing is silently dropped.
CREATE TABLE IF NOT EXISTS dead_letters
(
    ingest_time DateTime64(3, 'UTC'),
    source LowCardinality(String),
    kind LowCardinality(String),
    reason String,
    payload String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_time)
ORDER BY (source, ingest_time)
TTL toDateTime(ingest_time) + INTERVAL 30 DAY;
