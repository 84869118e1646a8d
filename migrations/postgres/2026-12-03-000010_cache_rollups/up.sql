-- Cache analytics that outlive a restart: each instance's counters per minute
-- (resolution 60, kept 7 days) and per hour (3600, kept 90 days), per cache family,
-- per route and for the instance as a whole; merged across instances when read.
CREATE TABLE cache_rollups (
    id SERIAL PRIMARY KEY,
    resolution INTEGER NOT NULL,
    bucket TIMESTAMP NOT NULL,
    instance TEXT NOT NULL,
    series TEXT NOT NULL,
    name TEXT NOT NULL,
    hits BIGINT NOT NULL DEFAULT 0,
    misses BIGINT NOT NULL DEFAULT 0,
    stale BIGINT NOT NULL DEFAULT 0,
    fills BIGINT NOT NULL DEFAULT 0,
    fill_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    latency_buckets TEXT NOT NULL DEFAULT '',
    memory_bytes BIGINT,
    breaker_open BOOLEAN
);
CREATE UNIQUE INDEX cache_rollups_row ON cache_rollups (resolution, bucket, instance, series, name);
