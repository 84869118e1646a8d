DROP TABLE edge_usage;
DROP TABLE edge_paths;
