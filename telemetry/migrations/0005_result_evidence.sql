-- Watchloop schema, version 5: every monitor result carries its evidence. ``status`` is
-- ok, insufficient_data (fewer rows or labels than the monitor's minimum: no score) or
-- no_data (the window held nothing); ``window_rows`` counts the requests in the window,
-- ``sample_size`` what the number was computed from (the column's values, the labels joined,
-- the requests of a burn window), ``coverage`` the share of the window that data covers
-- (from its first event to its end). A score or metric that is undefined is NULL.
ALTER TABLE drift_results
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'ok',
    ADD COLUMN IF NOT EXISTS window_rows UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS sample_size UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS coverage Nullable(Float64),
    MODIFY COLUMN score Nullable(Float64);

ALTER TABLE monitor_results
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'ok',
    ADD COLUMN IF NOT EXISTS window_rows UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS sample_size UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS coverage Nullable(Float64),
    MODIFY COLUMN value Nullable(Float64);
