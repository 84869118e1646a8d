//! The posts aggregate: posts with their tags and authors.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use std::collections::HashMap;

use super::images::media_sizes;
use super::outbox::schedule_publication;
use super::search::{index_post, unindex_post, SearchDocument};
use super::{now, whole_second, RepoResult, Repository};
use crate::content::invalidation::{depends_on, post_tag, CacheTag, Model};
use crate::content::markdown::{self, media_url, parse_media_url, MediaSize};
use crate::content::models::*;
use crate::content::query_key::query_key;
use crate::content::schema::{authors, post_tags, posts, tags};
use crate::db::DbError;
use crate::with_conn;

/// What readers see: published posts whose time has come, by the database's clock —
/// one clock for every instance, the same the outbox applies a scheduled post's
/// invalidation by (see `outbox`), so no instance shows a post before its time or
/// keeps a list without it after.
pub(super) fn visible() -> Visible {
    posts::published
        .eq(true)
        .and(posts::published_at.le(diesel::dsl::now.nullable()))
}

pub(super) type Visible = diesel::dsl::And<
    diesel::dsl::Eq<posts::published, bool>,
    diesel::dsl::LtEq<posts::published_at, diesel::dsl::Nullable<diesel::dsl::now>>,
>;

/// Links a post to its tags (created as needed), inside the caller's transaction on
/// either backend; a macro because each backend's connection is a different type.
macro_rules! link_tags {
    ($conn:ident, $post_id:expr, $tags:expr, $stamp:expr) => {
        for (name, slug) in $tags {
            diesel::insert_into(tags::table)
                .values((
                    tags::name.eq(name),
                    tags::slug.eq(slug),
                    tags::updated_at.eq($stamp),
                ))
                .on_conflict(tags::slug)
                .do_nothing()
                .execute($conn)
                .await?;
        }
        let slugs: Vec<&String> = $tags.iter().map(|(_, slug)| slug).collect();
        let tag_ids: Vec<i32> = tags::table
            .filter(tags::slug.eq_any(slugs))
            .select(tags::id)
            .load($conn)
            .await?;
        // One row at a time: SQLite has no multi-row insert in diesel.
        for tag_id in tag_ids {
            diesel::insert_into(post_tags::table)
                .values((
                    post_tags::post_id.eq($post_id),
                    post_tags::tag_id.eq(tag_id),
                ))
                .execute($conn)
                .await?;
        }
    };
}

/// Published posts with their authors in `$order`, at most `$limit`, cached under a key
/// made from the query's own SQL and binds. A macro, not a function: each expansion of
/// the query infers its own backend.
macro_rules! post_list {
    ($repo:ident, $family:literal, $depends_on:expr, $order:expr, $limit:expr) => {{
        macro_rules! query {
            () => {
                posts::table
                    .inner_join(authors::table)
                    .filter(visible())
                    .order_by($order)
                    .limit($limit)
                    .select((PostRow::as_select(), authors::name, authors::slug))
            };
        }
        let key = query_key(&$repo.cache, $family, &query!(), $family);
        $repo
            .cache
            .get_or_set_tagged(&key, $depends_on, None, || async {
                let rows = with_conn!($repo.db, |conn| Ok(query!()
                    .load::<(PostRow, String, String)>(conn)
                    .await?))?;
                $repo.with_tags(rows).await
            })
            .await
    }};
}

/// What a post write stores; an insert adds `created_at` and a zero view count.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = posts, treat_none_as_null = true)]
struct PostWrite<'a> {
    title: &'a str,
    slug: &'a str,
    body_markdown: &'a str,
    body_html: String,
    excerpt: String,
    author_id: i32,
    published: bool,
    published_at: Option<NaiveDateTime>,
    featured: bool,
    updated_at: NaiveDateTime,
    cover_image: String,
    cover_width: i32,
    cover_height: i32,
}

impl<'a> PostWrite<'a> {
    /// Renders the Markdown (with the sizes of the uploaded images it and the cover
    /// show, `media`) and derives the excerpt when none is given.
    fn new(
        input: &'a PostInput,
        published_at: Option<NaiveDateTime>,
        stamp: NaiveDateTime,
        media: &HashMap<String, MediaSize>,
    ) -> Self {
        let cover = parse_media_url(&input.cover_image)
            .filter(|(hash, format)| media_url(hash, *format) == input.cover_image)
            .and_then(|(hash, _)| media.get(&hash));
        PostWrite {
            cover_image: match cover {
                Some(_) => input.cover_image.clone(),
                None => String::new(),
            },
            cover_width: cover.map_or(0, |c| c.width as i32),
            cover_height: cover.map_or(0, |c| c.height as i32),
            title: &input.title,
            slug: &input.slug,
            body_markdown: &input.body_markdown,
            body_html: markdown::to_safe_html_with(&input.body_markdown, media),
            excerpt: input
                .excerpt
                .clone()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| markdown::excerpt(&input.body_markdown, 240)),
            author_id: input.author_id,
            published: input.published,
            published_at,
            featured: input.featured,
            updated_at: stamp,
        }
    }

    /// The post's search index entry, with its tags (name, slug).
    fn search_document(&self, tags: &[(String, String)]) -> SearchDocument {
        let names: Vec<&str> = tags.iter().map(|(name, _)| name.as_str()).collect();
        SearchDocument::new(self.title, &self.excerpt, self.body_markdown, &names)
    }

    /// With the columns only an insert sets.
    fn inserted(
        self,
    ) -> (
        Self,
        diesel::dsl::Eq<posts::created_at, NaiveDateTime>,
        diesel::dsl::Eq<posts::view_count, i64>,
    ) {
        let created = self.updated_at;
        (
            self,
            posts::created_at.eq(created),
            posts::view_count.eq(0i64),
        )
    }
}

impl Repository {
    /// The most recently published posts. Keyed by the query's own SQL and binds.
    pub async fn recent_posts(&self, limit: i64) -> RepoResult<Vec<PostSummary>> {
        post_list!(
            self,
            "posts",
            depends_on::POST_LISTS,
            (posts::published_at.desc(), posts::id.desc()),
            limit
        )
    }

    /// The most viewed published posts. Views are near-real-time data: this list has the
    /// short `popular` TTL instead of being invalidated on every view.
    pub async fn popular_posts(&self, limit: i64) -> RepoResult<Vec<PostSummary>> {
        post_list!(
            self,
            "popular",
            depends_on::POPULAR_POSTS,
            (
                posts::view_count.desc(),
                posts::published_at.desc(),
                posts::id.desc()
            ),
            limit
        )
    }

    /// One page of published posts, newest first, optionally only those with a tag.
    /// `page` starts at 1; a page past the end comes back empty with `is_out_of_range`,
    /// and is not cached (clients could name pages without bound).
    pub async fn published_posts(
        &self,
        page: i64,
        per_page: i64,
        tag_id: Option<i32>,
    ) -> RepoResult<Page<PostSummary>> {
        let tag_part = tag_id.map_or_else(|| "all".to_string(), |t| t.to_string());
        let parts = [
            "page".to_string(),
            tag_part,
            per_page.to_string(),
            page.to_string(),
        ];
        let key = self.cache.key("posts", &parts);
        let in_range: fn(&Page<PostSummary>) -> bool = |page| !page.is_out_of_range();
        self.cache
            .get_or_set_tagged_if(
                &key,
                depends_on::POST_LISTS,
                None,
                || async {
                    // Past the end (or past i64) it is an empty page: no rows to skip to.
                    let offset = (page.max(1) - 1).checked_mul(per_page).unwrap_or(i64::MAX);
                    let (total, rows) = with_conn!(self.db, |conn| {
                        let tagged = |tag: i32| {
                            post_tags::table
                                .filter(post_tags::tag_id.eq(tag))
                                .select(post_tags::post_id)
                        };
                        let mut count = posts::table.filter(visible()).into_boxed();
                        let mut list = posts::table
                            .inner_join(authors::table)
                            .filter(visible())
                            .into_boxed();
                        if let Some(tag) = tag_id {
                            count = count.filter(posts::id.eq_any(tagged(tag)));
                            list = list.filter(posts::id.eq_any(tagged(tag)));
                        }
                        let total: i64 = count.count().get_result(conn).await?;
                        let rows = list
                            .order_by((posts::published_at.desc(), posts::id.desc()))
                            .limit(per_page)
                            .offset(offset)
                            .select((PostRow::as_select(), authors::name, authors::slug))
                            .load::<(PostRow, String, String)>(conn)
                            .await?;
                        Ok((total, rows))
                    })?;
                    Ok(Page {
                        items: self.with_tags(rows).await?,
                        total,
                        page,
                        per_page,
                    })
                },
                in_range,
            )
            .await
    }

    /// A post by slug; drafts only when `include_drafts` (admin preview).
    pub async fn post_by_slug(
        &self,
        slug: &str,
        include_drafts: bool,
    ) -> RepoResult<Option<PostDetail>> {
        let scope = if include_drafts { "any" } else { "published" };
        // Every post page (author and tag changes show on all) and this post's own.
        let own = post_tag(slug);
        let page_tags = [CacheTag::PostDetail.name(), own.as_str()];
        self.cache
            .cached_lookup("post", &[scope, slug], &page_tags, || async {
                let row = with_conn!(self.db, |conn| {
                    let mut query = posts::table
                        .inner_join(authors::table)
                        .filter(posts::slug.eq(slug.to_string()))
                        .into_boxed();
                    if !include_drafts {
                        query = query.filter(visible());
                    }
                    Ok(query
                        .select((PostRow::as_select(), authors::name, authors::slug))
                        .first::<(PostRow, String, String)>(conn)
                        .await
                        .optional()?)
                })?;
                let Some(row) = row else { return Ok(None) };
                Ok(self.details(vec![row]).await?.pop())
            })
            .await
    }

    /// Up to `limit` published posts sharing the most tags with the post `slug` (newest
    /// first among equals). Not cached here: the post page's `related_posts` fragment is.
    pub async fn related_posts(&self, slug: &str, limit: i64) -> RepoResult<Vec<PostSummary>> {
        let ranked: Vec<i32> = with_conn!(self.db, |conn| {
            let own: Option<i32> = posts::table
                .filter(posts::slug.eq(slug.to_string()))
                .select(posts::id)
                .first(conn)
                .await
                .optional()?;
            let Some(own) = own else {
                return Ok(Vec::new());
            };
            let tag_ids: Vec<i32> = post_tags::table
                .filter(post_tags::post_id.eq(own))
                .select(post_tags::tag_id)
                .load(conn)
                .await?;
            Ok(post_tags::table
                .inner_join(posts::table)
                .filter(post_tags::tag_id.eq_any(tag_ids))
                .filter(post_tags::post_id.ne(own))
                .filter(visible())
                .group_by(post_tags::post_id)
                .select(post_tags::post_id)
                .order_by((
                    diesel::dsl::count_star().desc(),
                    diesel::dsl::max(posts::published_at).desc(),
                    post_tags::post_id.desc(),
                ))
                .limit(limit)
                .load(conn)
                .await?)
        })?;
        let mut posts = self.posts_by_ids(&ranked).await?;
        posts.sort_by_key(|p| ranked.iter().position(|id| *id == p.id));
        Ok(posts)
    }

    /// Newest published posts with their bodies (the feed).
    pub async fn latest_posts_with_body(&self, limit: i64) -> RepoResult<Vec<PostDetail>> {
        self.cache
            .cached_query(
                "posts",
                &["feed".to_string(), limit.to_string()],
                depends_on::FEED,
                None,
                || async {
                    let rows = with_conn!(self.db, |conn| {
                        Ok(posts::table
                            .inner_join(authors::table)
                            .filter(visible())
                            .order_by((posts::published_at.desc(), posts::id.desc()))
                            .limit(limit)
                            .select((PostRow::as_select(), authors::name, authors::slug))
                            .load::<(PostRow, String, String)>(conn)
                            .await?)
                    })?;
                    self.details(rows).await
                },
            )
            .await
    }

    /// Every published post's slug and last change, and every used tag (the sitemap).
    pub async fn sitemap(&self) -> RepoResult<(Vec<SitemapEntry>, Vec<TagCount>)> {
        let posts = self
            .cache
            .cached_query("posts", &["sitemap"], depends_on::SITEMAP, None, || async {
                let rows = with_conn!(self.db, |conn| {
                    Ok(posts::table
                        .filter(visible())
                        .order_by((posts::published_at.desc(), posts::id.desc()))
                        .select((posts::slug, posts::updated_at))
                        .load::<(String, NaiveDateTime)>(conn)
                        .await?)
                })?;
                Ok::<_, DbError>(
                    rows.into_iter()
                        .map(|(slug, updated_at)| SitemapEntry { slug, updated_at })
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        Ok((posts, self.tag_cloud().await?))
    }

    pub async fn count_posts(&self) -> RepoResult<i64> {
        with_conn!(self.db, |conn| Ok(posts::table
            .count()
            .get_result(conn)
            .await?))
    }

    /// Post rows (with their author's name and slug) → `PostDetail`s: the summaries
    /// with their tags, and the bodies.
    async fn details(&self, rows: Vec<(PostRow, String, String)>) -> RepoResult<Vec<PostDetail>> {
        let bodies: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.0.body_html.clone(), r.0.body_markdown.clone()))
            .collect();
        let summaries = self.with_tags(rows).await?;
        Ok(summaries
            .into_iter()
            .zip(bodies)
            .map(|(summary, (body_html, body_markdown))| PostDetail {
                summary,
                body_html,
                body_markdown,
            })
            .collect())
    }

    /// Attaches each post's tags (one query for the whole list) and its author.
    async fn with_tags(
        &self,
        rows: Vec<(PostRow, String, String)>,
    ) -> RepoResult<Vec<PostSummary>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i32> = rows.iter().map(|r| r.0.id).collect();
        let pairs = with_conn!(self.db, |conn| {
            Ok(post_tags::table
                .inner_join(tags::table)
                .filter(post_tags::post_id.eq_any(ids.clone()))
                .order_by(tags::name)
                .select((post_tags::post_id, tags::name, tags::slug))
                .load::<(i32, String, String)>(conn)
                .await?)
        })?;
        Ok(rows
            .into_iter()
            .map(|(row, author_name, author_slug)| {
                let tags = pairs
                    .iter()
                    .filter(|(post_id, _, _)| *post_id == row.id)
                    .map(|(_, name, slug)| TagRef {
                        name: name.clone(),
                        slug: slug.clone(),
                    })
                    .collect();
                PostSummary::from_row(
                    row,
                    AuthorRef {
                        name: author_name,
                        slug: author_slug,
                    },
                    tags,
                )
            })
            .collect())
    }

    /// Adds batched view counts (post id, views) in one transaction; bumps the popular
    /// list and each viewed post's own tag. Posts deleted meanwhile are skipped.
    pub async fn add_views(&self, views: &[(i32, i64)]) -> RepoResult<()> {
        transact!(self, &[Model::PostViews], |conn, objects| {
            for (id, n) in views {
                let slug: Option<String> = diesel::update(posts::table.find(id))
                    .set(posts::view_count.eq(posts::view_count + n))
                    .returning(posts::slug)
                    .get_result(conn)
                    .await
                    .optional()?;
                objects.extend(slug.map(|s| post_tag(&s)));
            }
            Ok(())
        })
    }

    /// Creates a post with its tags in one transaction, unless its slug is taken (then
    /// nothing changes and `None` comes back), which makes seeding idempotent.
    pub async fn create_post_if_absent(&self, post: PostInput) -> RepoResult<Option<i32>> {
        let tag_list: Vec<(String, String)> = dedup_tags(&post.tags);
        let pg = self.db.is_postgres();
        transact!(self, &[Model::Post], |conn, objects| {
            let stamp = now();
            let published_at = match (post.published, post.published_at) {
                (true, None) => Some(whole_second(stamp)),
                (_, at) => at.map(whole_second),
            };
            let media = media_sizes!(
                conn,
                &format!("{} {}", post.body_markdown, post.cover_image)
            );
            let write = PostWrite::new(&post, published_at, stamp, &media);
            let doc = write.search_document(&tag_list);
            let inserted: Option<i32> = diesel::insert_into(posts::table)
                .values(write.inserted())
                .on_conflict(posts::slug)
                .do_nothing()
                .returning(posts::id)
                .get_result(conn)
                .await
                .optional()?;
            let Some(post_id) = inserted else {
                return Ok(None);
            };
            link_tags!(conn, post_id, &tag_list, stamp);
            index_post!(conn, pg, post_id, &doc);
            if let Some(due) = published_at.filter(|at| post.published && *at > stamp) {
                schedule_publication!(conn, due, &post.slug);
            }
            objects.push(post_tag(&post.slug));
            Ok(Some(post_id))
        })
    }

    /// Every post, drafts first, then newest (admin list; not cached).
    pub async fn all_posts(&self) -> RepoResult<Vec<PostSummary>> {
        let rows = with_conn!(self.db, |conn| {
            Ok(posts::table
                .inner_join(authors::table)
                .order_by((
                    posts::published.asc(),
                    posts::published_at.desc(),
                    posts::id.desc(),
                ))
                .select((PostRow::as_select(), authors::name, authors::slug))
                .load::<(PostRow, String, String)>(conn)
                .await?)
        })?;
        self.with_tags(rows).await
    }

    /// Posts by id, with their tags and authors, in no particular order (search results).
    pub(super) async fn posts_by_ids(&self, ids: &[i32]) -> RepoResult<Vec<PostSummary>> {
        let rows = with_conn!(self.db, |conn| {
            Ok(posts::table
                .inner_join(authors::table)
                .filter(posts::id.eq_any(ids.to_vec()))
                .select((PostRow::as_select(), authors::name, authors::slug))
                .load::<(PostRow, String, String)>(conn)
                .await?)
        })?;
        self.with_tags(rows).await
    }

    /// Every post's id and Markdown (rebuilding the search index).
    pub(super) async fn all_bodies(&self) -> RepoResult<Vec<(i32, String)>> {
        with_conn!(self.db, |conn| Ok(posts::table
            .select((posts::id, posts::body_markdown))
            .load::<(i32, String)>(conn)
            .await?))
    }

    /// A post by id with its body and author id, for the edit form (not cached).
    pub async fn post_for_edit(&self, id: i32) -> RepoResult<Option<(PostDetail, i32)>> {
        let row = with_conn!(self.db, |conn| {
            Ok(posts::table
                .inner_join(authors::table)
                .filter(posts::id.eq(id))
                .select((PostRow::as_select(), authors::name, authors::slug))
                .first::<(PostRow, String, String)>(conn)
                .await
                .optional()?)
        })?;
        let Some(row) = row else { return Ok(None) };
        let author_id = row.0.author_id;
        Ok(self.details(vec![row]).await?.pop().map(|d| (d, author_id)))
    }

    /// Creates a post; a taken slug is a unique violation (see `is_unique_violation`).
    pub async fn create_post(&self, input: PostInput) -> RepoResult<i32> {
        let id = self.save_post(None, input).await?;
        Ok(id)
    }

    pub async fn update_post(&self, id: i32, input: PostInput) -> RepoResult<i32> {
        self.save_post(Some(id), input).await
    }

    /// The one write path for posts: the row, its tags (created as needed) and the
    /// links between them in one transaction, then the invalidation.
    async fn save_post(&self, id: Option<i32>, input: PostInput) -> RepoResult<i32> {
        let tag_list = dedup_tags(&input.tags);
        let pg = self.db.is_postgres();
        transact!(self, &[Model::Post], |conn, objects| {
            let stamp = now();
            let doc: SearchDocument;
            let scheduled: Option<NaiveDateTime>;
            // The sizes of the images the post shows (its `srcset` and cover).
            let media = media_sizes!(
                conn,
                &format!("{} {}", input.body_markdown, input.cover_image)
            );
            let post_id = match id {
                Some(id) => {
                    let before: Option<(String, Option<NaiveDateTime>)> = posts::table
                        .find(id)
                        .select((posts::slug, posts::published_at))
                        .first(conn)
                        .await
                        .optional()?;
                    let Some((old_slug, published_at)) = before else {
                        return Err(diesel::result::Error::NotFound.into());
                    };
                    objects.push(post_tag(&old_slug));
                    // A time given wins; else the first publication date stays.
                    let published_at = input
                        .published_at
                        .map(whole_second)
                        .or(published_at)
                        .or(input.published.then_some(whole_second(stamp)));
                    scheduled = published_at.filter(|at| input.published && *at > stamp);
                    let write = PostWrite::new(&input, published_at, stamp, &media);
                    doc = write.search_document(&tag_list);
                    diesel::update(posts::table.find(id))
                        .set(write)
                        .execute(conn)
                        .await?;
                    diesel::delete(post_tags::table.filter(post_tags::post_id.eq(id)))
                        .execute(conn)
                        .await?;
                    id
                }
                None => {
                    let published_at = input
                        .published_at
                        .map(whole_second)
                        .or(input.published.then_some(whole_second(stamp)));
                    scheduled = published_at.filter(|at| input.published && *at > stamp);
                    let write = PostWrite::new(&input, published_at, stamp, &media);
                    doc = write.search_document(&tag_list);
                    diesel::insert_into(posts::table)
                        .values(write.inserted())
                        .returning(posts::id)
                        .get_result(conn)
                        .await?
                }
            };
            link_tags!(conn, post_id, &tag_list, stamp);
            index_post!(conn, pg, post_id, &doc);
            if let Some(due) = scheduled {
                schedule_publication!(conn, due, &input.slug);
            }
            objects.push(post_tag(&input.slug));
            Ok(post_id)
        })
    }

    pub async fn delete_post(&self, id: i32) -> RepoResult<bool> {
        let pg = self.db.is_postgres();
        let deleted = transact!(self, &[Model::Post], |conn, objects| {
            let slug: Option<String> = posts::table
                .find(id)
                .select(posts::slug)
                .first(conn)
                .await
                .optional()?;
            let Some(slug) = slug else { return Ok(false) };
            objects.push(post_tag(&slug));
            unindex_post!(conn, pg, id);
            diesel::delete(post_tags::table.filter(post_tags::post_id.eq(id)))
                .execute(conn)
                .await?;
            Ok(diesel::delete(posts::table.find(id)).execute(conn).await? > 0)
        })?;
        Ok(deleted)
    }
}
/// Tag names → (name, slug), dropping empties and repeats (by slug).
fn dedup_tags(names: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in names {
        let name = name.trim();
        let slug = markdown::slugify(name);
        if !slug.is_empty() && !out.iter().any(|(_, s)| *s == slug) {
            out.push((name.to_string(), slug));
        }
    }
    out
}
