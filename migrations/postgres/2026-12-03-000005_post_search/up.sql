-- Full-text index of posts, written by the repository in the same transaction as the
-- post (tags live in another table, so a generated column on posts cannot hold them);
-- the server fills it at start when it is missing rows (`folio reindex` rebuilds it).
-- Weighted: title A, tags B, excerpt C, body D (ts_rank ranks a title match first).
CREATE TABLE post_search (
    post_id INTEGER PRIMARY KEY REFERENCES posts(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL,
    -- `<` and `>` read as spaces: PostgreSQL's parser takes `<…>` for markup and skips
    -- what is inside `<script>`, while a post's text is text (its code samples too).
    document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', translate(title, '<>', '  ')), 'A') ||
        setweight(to_tsvector('english', translate(tags, '<>', '  ')), 'B') ||
        setweight(to_tsvector('english', translate(excerpt, '<>', '  ')), 'C') ||
        setweight(to_tsvector('english', translate(body, '<>', '  ')), 'D')
    ) STORED
);
CREATE INDEX post_search_document ON post_search USING GIN (document);
