-- Uploaded images, in the database so that every instance serves them with no shared
-- disk. Named by the hash of their bytes (`hash`): content never changes under a name.
CREATE TABLE images (
    hash TEXT PRIMARY KEY NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- Resized copies for `srcset`, made once at upload.
CREATE TABLE image_variants (
    hash TEXT NOT NULL REFERENCES images(hash) ON DELETE CASCADE,
    width INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (hash, width)
);
-- A post's cover image: the site-relative URL of an uploaded image, or '', and its
-- size (for the page's `srcset` and link previews), written with the post.
ALTER TABLE posts ADD COLUMN cover_image TEXT NOT NULL DEFAULT '';
ALTER TABLE posts ADD COLUMN cover_width INTEGER NOT NULL DEFAULT 0;
ALTER TABLE posts ADD COLUMN cover_height INTEGER NOT NULL DEFAULT 0;
