DROP TABLE cache_rollups;
