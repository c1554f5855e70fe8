-- Watchloop schema, version 4: a dead letter carries a key of what was refused (its kind and
-- payload), so a bad record delivered again (a Kafka or Redis redelivery after a crash) is
-- dead-lettered once.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS record_key String DEFAULT '';

ALTER TABLE dead_letters ADD INDEX IF NOT EXISTS idx_record_key record_key
    TYPE bloom_filter(0.01) GRANULARITY 4;
