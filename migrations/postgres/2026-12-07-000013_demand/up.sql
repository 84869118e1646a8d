-- What readers ask for, per URL and hour, summed over every instance (see
-- src/web/demand.rs): the demand model warming follows. Each instance adds the URLs it
-- counted most (bounded per flush), so a URL a visitor invents does not stay.
CREATE TABLE demand (
    path TEXT NOT NULL,
    hour TIMESTAMP NOT NULL,
    requests BIGINT NOT NULL,
    misses BIGINT NOT NULL,
    miss_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (path, hour)
);
CREATE INDEX demand_hour ON demand (hour);
