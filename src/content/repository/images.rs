//! Uploaded images and their resized copies. Content-addressed: a name's bytes never
//! change, so there is nothing to invalidate; reads are cached under the name.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::{now, RepoResult, Repository};
use crate::content::images::{Format, Upload};
use crate::content::markdown::MediaSize;
use crate::content::schema::{image_variants, images};
use crate::db::DbError;
use crate::with_conn;

/// An image's bytes as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaBytes {
    pub content_type: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// The `/media/` names a Markdown text refers to (`<hash>.<ext>`), for `media_sizes!`.
pub fn media_hashes(markdown: &str) -> Vec<String> {
    let mut hashes: Vec<String> = markdown
        .match_indices("/media/")
        .filter_map(|(i, _)| crate::content::markdown::parse_media_url(&markdown[i..]))
        .map(|(hash, _)| hash)
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    hashes
}

/// The sizes of the images a post's Markdown refers to, read inside the caller's
/// transaction (the post is rendered with its images' `srcset` and dimensions).
macro_rules! media_sizes {
    ($conn:ident, $markdown:expr) => {{
        let hashes = $crate::content::repository::images::media_hashes($markdown);
        let rows: Vec<(String, i32, i32)> = if hashes.is_empty() {
            Vec::new()
        } else {
            $crate::content::schema::images::table
                .filter($crate::content::schema::images::hash.eq_any(hashes))
                .select((
                    $crate::content::schema::images::hash,
                    $crate::content::schema::images::width,
                    $crate::content::schema::images::height,
                ))
                .load($conn)
                .await?
        };
        $crate::content::repository::images::sizes_of(rows)
    }};
}
pub(super) use media_sizes;

pub fn sizes_of(rows: Vec<(String, i32, i32)>) -> HashMap<String, MediaSize> {
    rows.into_iter()
        .map(|(hash, width, height)| {
            let (width, height) = (width as u32, height as u32);
            (hash, MediaSize { width, height })
        })
        .collect()
}

impl Repository {
    /// Stores an accepted upload and its resized copies (once: the same bytes uploaded
    /// again change nothing).
    pub async fn save_image(&self, upload: &Upload) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            conn.transaction::<_, DbError, _>(async |conn| {
                let inserted = diesel::insert_into(images::table)
                    .values((
                        images::hash.eq(&upload.hash),
                        images::format.eq(upload.format.ext()),
                        images::width.eq(upload.width as i32),
                        images::height.eq(upload.height as i32),
                        images::bytes.eq(&upload.bytes),
                        images::created_at.eq(now()),
                    ))
                    .on_conflict(images::hash)
                    .do_nothing()
                    .execute(conn)
                    .await?;
                if inserted > 0 {
                    for (width, bytes) in &upload.variants {
                        diesel::insert_into(image_variants::table)
                            .values((
                                image_variants::hash.eq(&upload.hash),
                                image_variants::width.eq(*width as i32),
                                image_variants::bytes.eq(bytes),
                            ))
                            .execute(conn)
                            .await?;
                    }
                }
                Ok(())
            })
            .await
        })
    }

    /// An image (`width` None) or one of its resized copies, if it exists in `format`.
    /// Found ones are cached; a made-up name costs one primary-key lookup and leaves
    /// nothing behind.
    pub async fn media(
        &self,
        hash: &str,
        format: Format,
        width: Option<u32>,
    ) -> RepoResult<Option<MediaBytes>> {
        let width_part = width.map_or_else(|| "full".to_string(), |w| w.to_string());
        let key = self.cache.key("media", [hash, format.ext(), &width_part]);
        if let Some(found) = self.cache.get::<MediaBytes>(&key).await {
            return Ok(Some(found));
        }
        let hash_owned = hash.to_string();
        let bytes: Option<Vec<u8>> = with_conn!(self.db, |conn| {
            Ok(match width {
                None => images::table
                    .filter(images::hash.eq(hash_owned.clone()))
                    .filter(images::format.eq(format.ext()))
                    .select(images::bytes)
                    .first(conn)
                    .await
                    .optional()?,
                Some(w) => image_variants::table
                    .inner_join(images::table)
                    .filter(image_variants::hash.eq(hash_owned.clone()))
                    .filter(image_variants::width.eq(w as i32))
                    .filter(images::format.eq(format.ext()))
                    .select(image_variants::bytes)
                    .first(conn)
                    .await
                    .optional()?,
            })
        })?;
        let Some(bytes) = bytes else { return Ok(None) };
        let found = MediaBytes {
            content_type: format.content_type().to_string(),
            bytes,
        };
        self.cache.set(&key, &found, None).await;
        Ok(Some(found))
    }
}
