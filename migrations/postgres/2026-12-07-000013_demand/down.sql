DROP TABLE demand;
