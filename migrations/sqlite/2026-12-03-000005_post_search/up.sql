-- Full-text index of published and draft posts (the query filters on posts.published).
-- rowid = posts.id. Written by the repository in the same transaction as the post; the
-- server fills it at start when it is missing rows (`folio reindex` rebuilds it).
-- porter: "caching" finds "cache", like PostgreSQL's english configuration.
CREATE VIRTUAL TABLE post_search USING fts5(
    title, excerpt, body, tags,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
