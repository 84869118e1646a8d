-- What the path edges (nginx, CloudFront) may hold (see src/edge/paths.rs): each URL
-- sent to them with an edge lifetime, under each tag its answer was built from, until
-- no edge can still hold that answer. A purge of tags is the paths recorded under them.
CREATE TABLE edge_paths (
    tag TEXT NOT NULL,
    path TEXT NOT NULL,
    until TIMESTAMP NOT NULL,
    PRIMARY KEY (tag, path)
);
CREATE INDEX edge_paths_until ON edge_paths (until);
-- Paths sent to each path edge per calendar month (UTC, 'YYYY-MM'): CloudFront bills
-- invalidation paths past the first 1,000 a month.
CREATE TABLE edge_usage (
    edge TEXT NOT NULL,
    month TEXT NOT NULL,
    paths BIGINT NOT NULL,
    PRIMARY KEY (edge, month)
);
