DROP INDEX posts_visible;
