DROP INDEX cache_invalidations_due;
ALTER TABLE cache_invalidations DROP COLUMN due_at;
