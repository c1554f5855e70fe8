-- Watchloop schema, version 2: reference profiles and monitor results (drift/).

-- Reference profiles: one row per column (feature, prediction or label) of a profile. A
-- profile is built once per model version, from training data or from a window of the store,
-- and never updated: a newer profile for the same version supersedes it, and "as of t" reads
-- take the newest one ingested by t. Numeric columns keep quantile bin edges with the count,
-- the sum and the count of values equal to the left edge of each bin (what a KS statistic, a
-- Wasserstein integral need), plus counts over a fine equal-width grid (to re-bin the
-- reference onto Evidently's equal-width bins for PSI and Jensen-Shannon); categorical
-- columns keep value frequencies with an "other" count for values beyond the top categories.
CREATE TABLE IF NOT EXISTS reference_profiles
(
    profile_id String,
    model LowCardinality(String),
    model_version LowCardinality(String),
    created_at DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    source LowCardinality(String),
    window_start Nullable(DateTime64(3, 'UTC')),
    window_end Nullable(DateTime64(3, 'UTC')),
    rows UInt64,
    task LowCardinality(String),
    column_name String,
    role LowCardinality(String),
    kind LowCardinality(String),
    n UInt64,
    missing UInt64,
    n_distinct UInt64,
    mean Float64,
    std Float64,
    min_value Float64,
    max_value Float64,
    exact UInt8,
    edges Array(Float64),
    bin_counts Array(UInt64),
    bin_sums Array(Float64),
    bin_edge_counts Array(UInt64),
    grid_counts Array(UInt64),
    categories Array(String),
    category_counts Array(UInt64),
    other_count UInt64
)
ENGINE = MergeTree
ORDER BY (model, model_version, created_at, profile_id, column_name);

-- Results of the quality, latency and SLO monitors as time series: one row per metric per
-- evaluation. Drift results go to drift_results (migration 0001). Alert rules, the console
-- and backtests all read these rows, so they see the same numbers.
CREATE TABLE IF NOT EXISTS monitor_results
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    monitor LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    metric LowCardinality(String),
    value Float64,
    labels Map(LowCardinality(String), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, model_version, monitor, metric, ts)
TTL toDateTime(ts) + INTERVAL 400 DAY;
