-- The cache this database's content is cached in (see content/repository/cache_site.rs):
-- one row, naming it and when an instance using it last said it was alive.
CREATE TABLE cache_site (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    seen_at TIMESTAMP NOT NULL
);
