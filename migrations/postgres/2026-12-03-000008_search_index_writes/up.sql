-- Searches read the index far more often than posts are written. Two storage choices
-- measured at 10,000 generated posts (counting up to 1,001 matches of a common word):

-- GIN's "fast update" queues new entries in a pending list that every search scans in
-- full until a vacuum merges it: after a seed, 430 pages per search, and a cost
-- estimate that turned the planner to sequential scans (21 ms against 2.5 ms with the
-- list merged). A blog writes rarely: write to the index itself.
ALTER INDEX post_search_document SET (fastupdate = off);
SELECT gin_clean_pending_list('post_search_document'::regclass);

-- A post's tsvector is tested against the query for each candidate row; stored out of
-- line (TOAST) with the texts, each test fetched it from there (16 ms against 10 ms
-- inline; the texts, read only for the ten snippets of a page, go out of line first).
ALTER TABLE post_search ALTER COLUMN document SET STORAGE MAIN;
-- Rewrites the rows so existing documents move inline (the generated column is
-- recomputed).
UPDATE post_search SET post_id = post_id;
