-- The invalidation outbox: a write records the cache tags it drops in its own
-- transaction; the row is deleted once the cache has applied it.
CREATE TABLE cache_invalidations (
    id SERIAL PRIMARY KEY,
    tags TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
