-- Scheduled posts: an invalidation due at a post's publication time (`due_at`, UTC) is
-- kept in the outbox until then and applied by whichever instance polls first, so
-- cached lists, feeds and pages show the post from that second on, across restarts.
ALTER TABLE cache_invalidations ADD COLUMN due_at TIMESTAMP;
CREATE INDEX cache_invalidations_due ON cache_invalidations (due_at);
