DROP TABLE edge_purges;
ALTER TABLE cache_invalidations DROP COLUMN purge_edges;
