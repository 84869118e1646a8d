ALTER TABLE posts DROP COLUMN cover_height;
ALTER TABLE posts DROP COLUMN cover_width;
ALTER TABLE posts DROP COLUMN cover_image;
DROP TABLE image_variants;
DROP TABLE images;
