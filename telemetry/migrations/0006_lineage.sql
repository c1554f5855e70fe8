-- Watchloop schema, version 6: the feedback loop's lineage.

-- One row per step of a retraining, from the alert or person that triggered it to the
-- version it produced and what became of it: alert, trigger, run, register, gate, promote,
-- alias, rollback. ``trigger_id`` links the steps of one retraining; deployments of the
-- version it produced are in ``deployments`` (joined by model and version). ``ref`` is the
-- step's outside reference: an alert fingerprint, an MLflow run id.
CREATE TABLE IF NOT EXISTS lineage
(
    ts DateTime64(3, 'UTC'),
    ingest_time DateTime64(3, 'UTC'),
    model LowCardinality(String),
    model_version String,
    trigger_id String,
    step LowCardinality(String),
    status LowCardinality(String),
    actor String,
    reason String,
    ref String,
    details String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (model, trigger_id, ts);
