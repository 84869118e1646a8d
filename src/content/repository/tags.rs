//! Tags: a tag's page and the tag cloud (tags are created by post writes, see
//! `posts::link_tags`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::posts::visible;
use super::{RepoResult, Repository};
use crate::content::invalidation::depends_on;
use crate::content::models::*;
use crate::content::schema::{post_tags, posts, tags};
use crate::with_conn;

impl Repository {
    /// A tag readers can see: one with at least one visible post. A tag only drafts or
    /// scheduled posts have is unknown to them (its name would tell what is coming);
    /// post writes and publications bump `tag_pages`, so this follows them.
    pub async fn tag_by_slug(&self, slug: &str) -> RepoResult<Option<Tag>> {
        self.cache
            .cached_lookup("tags", &["slug", slug], depends_on::TAG_PAGES, || async {
                with_conn!(self.db, |conn| {
                    Ok(tags::table
                        .filter(tags::slug.eq(slug.to_string()))
                        .filter(diesel::dsl::exists(
                            post_tags::table
                                .inner_join(posts::table)
                                .filter(post_tags::tag_id.eq(tags::id))
                                .filter(visible()),
                        ))
                        .select(Tag::as_select())
                        .first(conn)
                        .await
                        .optional()?)
                })
            })
            .await
    }

    /// Tags of published posts with their post counts, alphabetically.
    pub async fn tag_cloud(&self) -> RepoResult<Vec<TagCount>> {
        self.cache
            .cached_query("tags", &["cloud"], depends_on::TAG_CLOUD, None, || async {
                let rows = with_conn!(self.db, |conn| {
                    Ok(post_tags::table
                        .inner_join(tags::table)
                        .inner_join(posts::table)
                        .filter(visible())
                        .group_by((tags::id, tags::name, tags::slug))
                        .select((
                            tags::name,
                            tags::slug,
                            diesel::dsl::count(post_tags::post_id),
                        ))
                        .order_by(tags::name)
                        .load::<(String, String, i64)>(conn)
                        .await?)
                })?;
                Ok(rows
                    .into_iter()
                    .map(|(name, slug, count)| TagCount { name, slug, count })
                    .collect())
            })
            .await
    }
}
