-- Edge purges (Varnish, Fastly, Cloudflare): one row per edge per applied
-- invalidation, written in the transaction that retires the outbox row, deleted once
-- the edge acknowledged the second (delayed) purge. `claim` marks a delivery in progress
-- (an instance's attempt); `due_at` is when the next attempt may start (backoff, the
-- delay of the second purge, or the end of a claim's lease).
CREATE TABLE edge_purges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    edge TEXT NOT NULL,
    tags TEXT NOT NULL,
    round INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at TIMESTAMP NOT NULL,
    claim TEXT,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX edge_purges_due ON edge_purges (edge, due_at);
CREATE INDEX edge_purges_claim ON edge_purges (claim);
-- Whether a write's invalidation is owed to the edges: view counts are not (a purge
-- every few seconds would empty the edges; counts there lag by the edge lifetime).
ALTER TABLE cache_invalidations ADD COLUMN purge_edges BOOLEAN NOT NULL DEFAULT 1;
