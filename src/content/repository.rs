//! The repository: every read and every write of content goes through here, on either
//! backend. It is the one write path, so later layers (query caching, invalidation) hook
//! in at this one place. Handlers never touch tables.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Timelike, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::invalidation::{depends_on, tags_invalidated_by, Model};
use super::markdown;
use super::models::*;
use super::query_key::query_key;
use super::schema::{
    admin_users, ai_tools, authors, cache_invalidations, contact_messages, personal_info,
    post_tags, posts, social_links, tags,
};
use crate::cache::CacheManager;
use crate::db::{Db, DbError};
use crate::with_conn;

pub type RepoResult<T> = Result<T, DbError>;

/// Runs a write and records the invalidation of `models` in the same transaction (the
/// outbox), then applies it once committed (`invalidate_after_commit`): a write can
/// never be saved while its invalidation is lost. Evaluates to the body's result.
macro_rules! transact {
    ($repo:expr, $models:expr, |$conn:ident| $body:expr) => {{
        let repo: &Repository = &$repo;
        let tags = tags_invalidated_by($models);
        let joined = tags.join(" ");
        let written = with_conn!(repo.db, |conn| {
            conn.transaction::<_, DbError, _>(async |$conn| {
                // The write first: on SQLite it takes the write lock before anything is
                // read, so a busy database makes it wait (busy_timeout) instead of
                // failing with "database is locked" when a read would need upgrading.
                let outbox: i32 = diesel::insert_into(cache_invalidations::table)
                    .values((
                        cache_invalidations::tags.eq(&joined),
                        cache_invalidations::created_at.eq(now()),
                    ))
                    .returning(cache_invalidations::id)
                    .get_result($conn)
                    .await?;
                let value: Result<_, DbError> = async { $body }.await;
                Ok((value?, outbox))
            })
            .await
        });
        match written {
            Ok((value, outbox)) => {
                repo.invalidate_after_commit(outbox, &tags).await;
                Ok(value)
            }
            Err(e) => Err(e),
        }
    }};
}

/// Now, truncated to microseconds: PostgreSQL keeps microseconds and SQLite whatever it
/// is given, so both backends must store the same value for ETags to agree.
pub fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Reads go through the cache (each naming the models it shows); writes bump the
/// tags of the models they changed once their transaction has committed.
#[derive(Clone)]
pub struct Repository {
    db: Db,
    cache: CacheManager,
}

impl Repository {
    pub fn new(db: Db, cache: CacheManager) -> Self {
        Repository { db, cache }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cache(&self) -> &CacheManager {
        &self.cache
    }

    /// Applies a committed write's invalidation (its outbox row `id`), and deletes the
    /// row once the cache has it. Awaited, so a write returns only once no reader can be
    /// served the old data; if the cache cannot be told, the row stays pending and is
    /// applied by `apply_pending_invalidations` — before this instance serves from the
    /// cache again, and by the background task on every instance. Returns whether it
    /// was applied now.
    pub async fn invalidate_after_commit(&self, id: i32, tags: &[&str]) -> bool {
        if !self.cache.invalidate_tags(tags).await {
            tracing::error!(
                ?tags,
                "cache invalidation pending: the cache did not take it; it is retried, and the cache is bypassed where it could serve old data"
            );
            return false;
        }
        if let Err(e) = self.delete_outbox_rows(vec![id]).await {
            // Applied; the row is applied again later, which costs one more miss.
            tracing::warn!(error = %e, "could not delete an applied invalidation");
        }
        true
    }

    /// Applies the invalidations still pending that are at least `min_age` old (young
    /// rows usually belong to a write that is applying them itself); returns how many.
    pub async fn apply_pending_invalidations(&self, min_age: Duration) -> RepoResult<usize> {
        let before = now() - chrono::Duration::from_std(min_age).unwrap_or_default();
        let rows: Vec<(i32, String)> = with_conn!(self.db, |conn| {
            Ok(cache_invalidations::table
                .filter(cache_invalidations::created_at.le(before))
                .order_by(cache_invalidations::id)
                .limit(500)
                .select((cache_invalidations::id, cache_invalidations::tags))
                .load(conn)
                .await?)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tags: Vec<&str> = rows.iter().flat_map(|(_, t)| t.split(' ')).collect();
        tags.sort_unstable();
        tags.dedup();
        if !self.cache.invalidate_tags(&tags).await {
            return Err(DbError::Pool(
                "the cache did not take the pending invalidations".into(),
            ));
        }
        self.delete_outbox_rows(rows.iter().map(|(id, _)| *id).collect())
            .await?;
        tracing::info!(applied = rows.len(), "pending cache invalidations applied");
        Ok(rows.len())
    }

    async fn delete_outbox_rows(&self, ids: Vec<i32>) -> RepoResult<usize> {
        with_conn!(self.db, |conn| {
            Ok(diesel::delete(
                cache_invalidations::table.filter(cache_invalidations::id.eq_any(ids)),
            )
            .execute(conn)
            .await?)
        })
    }

    /// Invalidations written but not yet applied (the admin shows a notice).
    pub async fn pending_invalidations(&self) -> RepoResult<i64> {
        with_conn!(self.db, |conn| Ok(cache_invalidations::table
            .count()
            .get_result(conn)
            .await?))
    }

    /// Makes the cache apply pending invalidations before it serves again after a loss,
    /// and retries them in the background every `every`. Stops with the repository's
    /// cache.
    pub fn start_invalidation_outbox(&self, every: Duration) {
        let repo = self.clone();
        self.cache.set_recovery_hook(Arc::new(move || {
            let repo = repo.clone();
            Box::pin(async move {
                repo.apply_pending_invalidations(Duration::ZERO)
                    .await
                    .map_err(|e| e.to_string())
            })
        }));
        let repo = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Older than the lease: its writer has finished trying by then.
                if let Err(e) = repo
                    .apply_pending_invalidations(Duration::from_secs(2))
                    .await
                {
                    tracing::debug!(error = %e, "pending invalidations not applied yet");
                }
            }
        });
    }

    // ----- reads -------------------------------------------------------------------

    pub async fn personal_info(&self) -> RepoResult<Option<PersonalInfo>> {
        self.cache
            .cached_query(
                "personal_info",
                &["one"],
                depends_on::PERSONAL_INFO,
                None,
                || async {
                    let row = with_conn!(self.db, |conn| {
                        Ok(personal_info::table
                            .select(PersonalInfoRow::as_select())
                            .order_by(personal_info::id)
                            .first(conn)
                            .await
                            .optional()?)
                    })?;
                    Ok(row.map(PersonalInfo::from))
                },
            )
            .await
    }

    /// Social links in display order; hidden ones only when asked (admin).
    pub async fn social_links(&self, include_hidden: bool) -> RepoResult<Vec<SocialLink>> {
        let which = if include_hidden { "all" } else { "visible" };
        self.cache
            .cached_query(
                "social_links",
                &[which],
                depends_on::SOCIAL_LINKS,
                None,
                || async {
                    with_conn!(self.db, |conn| {
                        let mut query = social_links::table
                            .select(SocialLink::as_select())
                            .into_boxed();
                        if !include_hidden {
                            query = query.filter(social_links::visible.eq(true));
                        }
                        Ok(query
                            .order_by((social_links::sort_order, social_links::id))
                            .load(conn)
                            .await?)
                    })
                },
            )
            .await
    }

    /// Filtered in memory from one cached list (a few dozen tools): a filter value a
    /// client made up creates no cache entry.
    pub async fn ai_tools(&self, filter: &ToolFilter) -> RepoResult<Vec<AiTool>> {
        let all: Vec<AiTool> = self
            .cache
            .cached_query("tools", &["all"], depends_on::TOOLS, None, || async {
                with_conn!(self.db, |conn| {
                    Ok(ai_tools::table
                        .select(AiTool::as_select())
                        .order_by((ai_tools::category, ai_tools::sort_order, ai_tools::id))
                        .load(conn)
                        .await?)
                })
            })
            .await?;
        Ok(all
            .into_iter()
            .filter(|t| filter.category.as_ref().is_none_or(|c| *c == t.category))
            .filter(|t| filter.featured.is_none_or(|f| f == t.featured))
            .collect())
    }

    /// All tools grouped by category (categories alphabetically, tools in display order).
    pub async fn tools_by_category(&self) -> RepoResult<Vec<ToolCategory>> {
        let tools = self.ai_tools(&ToolFilter::default()).await?;
        let mut groups: Vec<ToolCategory> = Vec::new();
        for tool in tools {
            match groups.last_mut() {
                Some(group) if group.name == tool.category => group.tools.push(tool),
                _ => groups.push(ToolCategory {
                    name: tool.category.clone(),
                    tools: vec![tool],
                }),
            }
        }
        Ok(groups)
    }

    /// The most recently published posts. Keyed by the query's own SQL and binds.
    pub async fn recent_posts(&self, limit: i64) -> RepoResult<Vec<PostSummary>> {
        // A macro, not a value: each expansion infers its own backend.
        macro_rules! query {
            () => {
                posts::table
                    .inner_join(authors::table)
                    .filter(posts::published.eq(true))
                    .order_by((posts::published_at.desc(), posts::id.desc()))
                    .limit(limit)
                    .select((PostRow::as_select(), authors::name, authors::slug))
            };
        }
        let key = query_key(&self.cache, "posts", &query!(), "recent");
        self.cache
            .get_or_set_tagged(&key, depends_on::POST_LISTS, None, || async {
                let rows = with_conn!(self.db, |conn| Ok(query!()
                    .load::<(PostRow, String, String)>(conn)
                    .await?))?;
                self.with_tags(rows).await
            })
            .await
    }

    /// The most viewed published posts. Views are near-real-time data: this list has the
    /// short `popular` TTL instead of being invalidated on every view.
    pub async fn popular_posts(&self, limit: i64) -> RepoResult<Vec<PostSummary>> {
        macro_rules! query {
            () => {
                posts::table
                    .inner_join(authors::table)
                    .filter(posts::published.eq(true))
                    .order_by((
                        posts::view_count.desc(),
                        posts::published_at.desc(),
                        posts::id.desc(),
                    ))
                    .limit(limit)
                    .select((PostRow::as_select(), authors::name, authors::slug))
            };
        }
        let key = query_key(&self.cache, "popular", &query!(), "popular");
        self.cache
            .get_or_set_tagged(&key, depends_on::POPULAR_POSTS, None, || async {
                let rows = with_conn!(self.db, |conn| Ok(query!()
                    .load::<(PostRow, String, String)>(conn)
                    .await?))?;
                self.with_tags(rows).await
            })
            .await
    }

    /// One page of published posts, newest first, optionally only those with a tag.
    /// `page` starts at 1; a page past the end comes back empty with `is_out_of_range`.
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
        self.cache
            .cached_query("posts", &parts, depends_on::POST_LISTS, None, || async {
                let offset = (page.max(1) - 1) * per_page;
                let (total, rows) = with_conn!(self.db, |conn| {
                    let tagged = |tag: i32| {
                        post_tags::table
                            .filter(post_tags::tag_id.eq(tag))
                            .select(post_tags::post_id)
                    };
                    let mut count = posts::table.filter(posts::published.eq(true)).into_boxed();
                    let mut list = posts::table
                        .inner_join(authors::table)
                        .filter(posts::published.eq(true))
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
            })
            .await
    }

    /// A post by slug; drafts only when `include_drafts` (admin preview).
    pub async fn post_by_slug(
        &self,
        slug: &str,
        include_drafts: bool,
    ) -> RepoResult<Option<PostDetail>> {
        let scope = if include_drafts { "any" } else { "published" };
        self.cache
            .cached_lookup("post", &[scope, slug], depends_on::POST_DETAIL, || async {
                let row = with_conn!(self.db, |conn| {
                    let mut query = posts::table
                        .inner_join(authors::table)
                        .filter(posts::slug.eq(slug.to_string()))
                        .into_boxed();
                    if !include_drafts {
                        query = query.filter(posts::published.eq(true));
                    }
                    Ok(query
                        .select((PostRow::as_select(), authors::name, authors::slug))
                        .first::<(PostRow, String, String)>(conn)
                        .await
                        .optional()?)
                })?;
                let Some(row) = row else { return Ok(None) };
                let (body_html, body_markdown) =
                    (row.0.body_html.clone(), row.0.body_markdown.clone());
                let summary = self
                    .with_tags(vec![row])
                    .await?
                    .pop()
                    .expect("one row in, one out");
                Ok(Some(PostDetail {
                    summary,
                    body_html,
                    body_markdown,
                }))
            })
            .await
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
                            .filter(posts::published.eq(true))
                            .order_by((posts::published_at.desc(), posts::id.desc()))
                            .limit(limit)
                            .select((PostRow::as_select(), authors::name, authors::slug))
                            .load::<(PostRow, String, String)>(conn)
                            .await?)
                    })?;
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
                },
            )
            .await
    }

    pub async fn tag_by_slug(&self, slug: &str) -> RepoResult<Option<Tag>> {
        self.cache
            .cached_lookup("tags", &["slug", slug], depends_on::TAG_PAGES, || async {
                with_conn!(self.db, |conn| {
                    Ok(tags::table
                        .filter(tags::slug.eq(slug.to_string()))
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
                        .filter(posts::published.eq(true))
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

    /// Every published post's slug and last change, and every used tag (the sitemap).
    pub async fn sitemap(&self) -> RepoResult<(Vec<SitemapEntry>, Vec<TagCount>)> {
        let posts = self
            .cache
            .cached_query("posts", &["sitemap"], depends_on::SITEMAP, None, || async {
                let rows = with_conn!(self.db, |conn| {
                    Ok(posts::table
                        .filter(posts::published.eq(true))
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

    pub async fn has_personal_info(&self) -> RepoResult<bool> {
        with_conn!(self.db, |conn| {
            Ok(personal_info::table.count().get_result::<i64>(conn).await? > 0)
        })
    }

    pub async fn author_by_slug(&self, slug: &str) -> RepoResult<Option<Author>> {
        with_conn!(self.db, |conn| {
            Ok(authors::table
                .filter(authors::slug.eq(slug.to_string()))
                .select(Author::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    pub async fn contact_messages(&self) -> RepoResult<Vec<ContactMessage>> {
        with_conn!(self.db, |conn| {
            Ok(contact_messages::table
                .select(ContactMessage::as_select())
                .order_by((
                    contact_messages::created_at.desc(),
                    contact_messages::id.desc(),
                ))
                .load(conn)
                .await?)
        })
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

    // ----- writes ------------------------------------------------------------------

    /// Counts one view. Near-real-time data: it deliberately does not count as a content
    /// change (views would otherwise flush every cache on every read).
    /// Returns the new count, so the page shows it exactly although the post is cached.
    pub async fn record_view(&self, post_id: i32) -> RepoResult<i64> {
        with_conn!(self.db, |conn| {
            Ok(diesel::update(posts::table.find(post_id))
                .set(posts::view_count.eq(posts::view_count + 1))
                .returning(posts::view_count)
                .get_result(conn)
                .await?)
        })
    }

    pub async fn create_contact_message(
        &self,
        msg: NewContactMessage,
    ) -> RepoResult<ContactMessage> {
        let stored = transact!(self, &[Model::ContactMessage], |conn| {
            Ok(diesel::insert_into(contact_messages::table)
                .values((
                    contact_messages::name.eq(msg.name),
                    contact_messages::email.eq(msg.email),
                    contact_messages::subject.eq(msg.subject),
                    contact_messages::message.eq(msg.message),
                    contact_messages::created_at.eq(now()),
                    contact_messages::is_read.eq(false),
                    contact_messages::sender_ip.eq(msg.sender_ip),
                ))
                .returning(ContactMessage::as_returning())
                .get_result(conn)
                .await?)
        })?;
        Ok(stored)
    }

    /// Inserts an author unless one with the slug exists; returns the stored one.
    pub async fn ensure_author(&self, author: &NewAuthor) -> RepoResult<Author> {
        let (_, stored) = transact!(self, &[Model::Author], |conn| {
            let inserted = diesel::insert_into(authors::table)
                .values((
                    authors::name.eq(&author.name),
                    authors::slug.eq(&author.slug),
                    authors::bio.eq(&author.bio),
                    authors::updated_at.eq(now()),
                ))
                .on_conflict(authors::slug)
                .do_nothing()
                .execute(conn)
                .await?;
            let stored = authors::table
                .filter(authors::slug.eq(&author.slug))
                .select(Author::as_select())
                .first(conn)
                .await?;
            Ok((inserted > 0, stored))
        })?;
        Ok(stored)
    }

    /// Renames an author or changes their bio (the slug stays: links keep working).
    pub async fn update_author(&self, id: i32, name: &str, bio: &str) -> RepoResult<bool> {
        let n = transact!(self, &[Model::Author], |conn| {
            Ok(diesel::update(authors::table.find(id))
                .set((
                    authors::name.eq(name),
                    authors::bio.eq(bio),
                    authors::updated_at.eq(now()),
                ))
                .execute(conn)
                .await?)
        })?;
        Ok(n > 0)
    }

    /// Creates a post with its tags in one transaction, unless its slug is taken (then
    /// nothing changes and `None` comes back), which makes seeding idempotent.
    pub async fn create_post_if_absent(&self, post: NewPost) -> RepoResult<Option<i32>> {
        let body_html = markdown::to_safe_html(&post.body_markdown);
        let excerpt = post
            .excerpt
            .clone()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| markdown::excerpt(&post.body_markdown, 240));
        let published_at = match (post.published, post.published_at) {
            (true, None) => Some(now()),
            (_, at) => at,
        };
        let tag_list: Vec<(String, String)> = dedup_tags(&post.tags);
        let created = transact!(self, &[Model::Post, Model::Tag], |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                {
                    let stamp = now();
                    let inserted: Option<i32> = diesel::insert_into(posts::table)
                        .values((
                            posts::title.eq(&post.title),
                            posts::slug.eq(&post.slug),
                            posts::body_markdown.eq(&post.body_markdown),
                            posts::body_html.eq(&body_html),
                            posts::excerpt.eq(&excerpt),
                            posts::author_id.eq(post.author_id),
                            posts::published.eq(post.published),
                            posts::published_at.eq(published_at),
                            posts::created_at.eq(stamp),
                            posts::updated_at.eq(stamp),
                            posts::view_count.eq(0i64),
                            posts::featured.eq(post.featured),
                        ))
                        .on_conflict(posts::slug)
                        .do_nothing()
                        .returning(posts::id)
                        .get_result(conn)
                        .await
                        .optional()?;
                    let Some(post_id) = inserted else {
                        return Ok(None);
                    };
                    for (name, slug) in &tag_list {
                        diesel::insert_into(tags::table)
                            .values((
                                tags::name.eq(name),
                                tags::slug.eq(slug),
                                tags::updated_at.eq(stamp),
                            ))
                            .on_conflict(tags::slug)
                            .do_nothing()
                            .execute(conn)
                            .await?;
                    }
                    let slugs: Vec<&String> = tag_list.iter().map(|(_, slug)| slug).collect();
                    let tag_ids: Vec<i32> = tags::table
                        .filter(tags::slug.eq_any(slugs))
                        .select(tags::id)
                        .load(conn)
                        .await?;
                    // One row at a time: SQLite has no multi-row insert in diesel.
                    for tag_id in tag_ids {
                        diesel::insert_into(post_tags::table)
                            .values((post_tags::post_id.eq(post_id), post_tags::tag_id.eq(tag_id)))
                            .execute(conn)
                            .await?;
                    }
                    Ok(Some(post_id))
                }
            })
            .await
            .map_err(DbError::from)
        })?;
        Ok(created)
    }

    /// Stores the owner's details unless they are already there (seeding never
    /// overwrites what an admin edited).
    pub async fn ensure_personal_info(&self, info: &NewPersonalInfo) -> RepoResult<bool> {
        if self.has_personal_info().await? {
            return Ok(false);
        }
        transact!(self, &[Model::PersonalInfo], |conn| {
            diesel::insert_into(personal_info::table)
                .values((
                    personal_info::name.eq(&info.name),
                    personal_info::headline.eq(&info.headline),
                    personal_info::bio.eq(&info.bio),
                    personal_info::location.eq(&info.location),
                    personal_info::email.eq(&info.email),
                    personal_info::avatar_url.eq(&info.avatar_url),
                    personal_info::skills.eq(info.skills.join(", ")),
                    personal_info::updated_at.eq(now()),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(true)
    }

    /// Inserts a social link unless one with that name exists.
    pub async fn ensure_social_link(&self, link: &NewSocialLink) -> RepoResult<bool> {
        let inserted = transact!(self, &[Model::SocialLink], |conn| {
            let n = diesel::insert_into(social_links::table)
                .values((
                    social_links::name.eq(&link.name),
                    social_links::url.eq(&link.url),
                    social_links::icon.eq(&link.icon),
                    social_links::sort_order.eq(link.sort_order),
                    social_links::visible.eq(link.visible),
                    social_links::updated_at.eq(now()),
                ))
                .on_conflict(social_links::name)
                .do_nothing()
                .execute(conn)
                .await?;
            Ok(n > 0)
        })?;
        Ok(inserted)
    }

    /// Inserts an AI tool unless one with that slug exists.
    pub async fn ensure_ai_tool(&self, tool: &NewAiTool) -> RepoResult<bool> {
        let inserted = transact!(self, &[Model::AiTool], |conn| {
            let n = diesel::insert_into(ai_tools::table)
                .values((
                    ai_tools::name.eq(&tool.name),
                    ai_tools::slug.eq(&tool.slug),
                    ai_tools::url.eq(&tool.url),
                    ai_tools::description.eq(&tool.description),
                    ai_tools::category.eq(&tool.category),
                    ai_tools::featured.eq(tool.featured),
                    ai_tools::sort_order.eq(tool.sort_order),
                    ai_tools::updated_at.eq(now()),
                ))
                .on_conflict(ai_tools::slug)
                .do_nothing()
                .execute(conn)
                .await?;
            Ok(n > 0)
        })?;
        Ok(inserted)
    }
}

impl Repository {
    // ----- admin reads and writes -----------------------------------------------------

    pub async fn authors(&self) -> RepoResult<Vec<Author>> {
        with_conn!(self.db, |conn| Ok(authors::table
            .select(Author::as_select())
            .order_by(authors::name)
            .load(conn)
            .await?))
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
        let (body_html, body_markdown, author_id) = (
            row.0.body_html.clone(),
            row.0.body_markdown.clone(),
            row.0.author_id,
        );
        let summary = self
            .with_tags(vec![row])
            .await?
            .pop()
            .expect("one row in, one out");
        Ok(Some((
            PostDetail {
                summary,
                body_html,
                body_markdown,
            },
            author_id,
        )))
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
        let body_html = markdown::to_safe_html(&input.body_markdown);
        let excerpt = input
            .excerpt
            .clone()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| markdown::excerpt(&input.body_markdown, 240));
        let tag_list = dedup_tags(&input.tags);
        let saved = transact!(self, &[Model::Post, Model::Tag], |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                let stamp = now();
                let post_id = match id {
                    Some(id) => {
                        let first_published: Option<Option<NaiveDateTime>> = posts::table
                            .find(id)
                            .select(posts::published_at)
                            .first(conn)
                            .await
                            .optional()?;
                        let Some(published_at) = first_published else {
                            return Err(diesel::result::Error::NotFound);
                        };
                        let published_at = if input.published {
                            published_at.or(Some(stamp))
                        } else {
                            published_at
                        };
                        diesel::update(posts::table.find(id))
                            .set((
                                posts::title.eq(&input.title),
                                posts::slug.eq(&input.slug),
                                posts::body_markdown.eq(&input.body_markdown),
                                posts::body_html.eq(&body_html),
                                posts::excerpt.eq(&excerpt),
                                posts::author_id.eq(input.author_id),
                                posts::published.eq(input.published),
                                posts::published_at.eq(published_at),
                                posts::featured.eq(input.featured),
                                posts::updated_at.eq(stamp),
                            ))
                            .execute(conn)
                            .await?;
                        diesel::delete(post_tags::table.filter(post_tags::post_id.eq(id)))
                            .execute(conn)
                            .await?;
                        id
                    }
                    None => {
                        diesel::insert_into(posts::table)
                            .values((
                                posts::title.eq(&input.title),
                                posts::slug.eq(&input.slug),
                                posts::body_markdown.eq(&input.body_markdown),
                                posts::body_html.eq(&body_html),
                                posts::excerpt.eq(&excerpt),
                                posts::author_id.eq(input.author_id),
                                posts::published.eq(input.published),
                                posts::published_at.eq(input.published.then_some(stamp)),
                                posts::created_at.eq(stamp),
                                posts::updated_at.eq(stamp),
                                posts::view_count.eq(0i64),
                                posts::featured.eq(input.featured),
                            ))
                            .returning(posts::id)
                            .get_result(conn)
                            .await?
                    }
                };
                for (name, slug) in &tag_list {
                    diesel::insert_into(tags::table)
                        .values((
                            tags::name.eq(name),
                            tags::slug.eq(slug),
                            tags::updated_at.eq(stamp),
                        ))
                        .on_conflict(tags::slug)
                        .do_nothing()
                        .execute(conn)
                        .await?;
                }
                let slugs: Vec<&String> = tag_list.iter().map(|(_, slug)| slug).collect();
                let tag_ids: Vec<i32> = tags::table
                    .filter(tags::slug.eq_any(slugs))
                    .select(tags::id)
                    .load(conn)
                    .await?;
                for tag_id in tag_ids {
                    diesel::insert_into(post_tags::table)
                        .values((post_tags::post_id.eq(post_id), post_tags::tag_id.eq(tag_id)))
                        .execute(conn)
                        .await?;
                }
                Ok(post_id)
            })
            .await
            .map_err(DbError::from)
        })?;
        Ok(saved)
    }

    pub async fn delete_post(&self, id: i32) -> RepoResult<bool> {
        let deleted = transact!(self, &[Model::Post], |conn| {
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                diesel::delete(post_tags::table.filter(post_tags::post_id.eq(id)))
                    .execute(conn)
                    .await?;
                diesel::delete(posts::table.find(id)).execute(conn).await
            })
            .await
            .map_err(DbError::from)
        })?;
        Ok(deleted > 0)
    }

    /// Replaces the owner's details (creating the row on a fresh site).
    pub async fn save_personal_info(&self, info: &NewPersonalInfo) -> RepoResult<()> {
        transact!(self, &[Model::PersonalInfo], |conn| {
            let values = (
                personal_info::name.eq(&info.name),
                personal_info::headline.eq(&info.headline),
                personal_info::bio.eq(&info.bio),
                personal_info::location.eq(&info.location),
                personal_info::email.eq(&info.email),
                personal_info::avatar_url.eq(&info.avatar_url),
                personal_info::skills.eq(info.skills.join(", ")),
                personal_info::updated_at.eq(now()),
            );
            let updated = diesel::update(personal_info::table)
                .set(values.clone())
                .execute(conn)
                .await?;
            if updated == 0 {
                diesel::insert_into(personal_info::table)
                    .values(values)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Creates (`id` None) or updates a social link.
    pub async fn save_social_link(&self, id: Option<i32>, link: &NewSocialLink) -> RepoResult<()> {
        transact!(self, &[Model::SocialLink], |conn| {
            let values = (
                social_links::name.eq(&link.name),
                social_links::url.eq(&link.url),
                social_links::icon.eq(&link.icon),
                social_links::sort_order.eq(link.sort_order),
                social_links::visible.eq(link.visible),
                social_links::updated_at.eq(now()),
            );
            match id {
                Some(id) => {
                    if diesel::update(social_links::table.find(id))
                        .set(values)
                        .execute(conn)
                        .await?
                        == 0
                    {
                        return Err(diesel::result::Error::NotFound.into());
                    }
                }
                None => {
                    diesel::insert_into(social_links::table)
                        .values(values)
                        .execute(conn)
                        .await?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    pub async fn delete_social_link(&self, id: i32) -> RepoResult<bool> {
        let n = transact!(self, &[Model::SocialLink], |conn| Ok(diesel::delete(
            social_links::table.find(id)
        )
        .execute(conn)
        .await?))?;
        Ok(n > 0)
    }

    /// Creates (`id` None) or updates an AI tool.
    pub async fn save_ai_tool(&self, id: Option<i32>, tool: &NewAiTool) -> RepoResult<()> {
        transact!(self, &[Model::AiTool], |conn| {
            let values = (
                ai_tools::name.eq(&tool.name),
                ai_tools::slug.eq(&tool.slug),
                ai_tools::url.eq(&tool.url),
                ai_tools::description.eq(&tool.description),
                ai_tools::category.eq(&tool.category),
                ai_tools::featured.eq(tool.featured),
                ai_tools::sort_order.eq(tool.sort_order),
                ai_tools::updated_at.eq(now()),
            );
            match id {
                Some(id) => {
                    if diesel::update(ai_tools::table.find(id))
                        .set(values)
                        .execute(conn)
                        .await?
                        == 0
                    {
                        return Err(diesel::result::Error::NotFound.into());
                    }
                }
                None => {
                    diesel::insert_into(ai_tools::table)
                        .values(values)
                        .execute(conn)
                        .await?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    pub async fn delete_ai_tool(&self, id: i32) -> RepoResult<bool> {
        let n = transact!(self, &[Model::AiTool], |conn| Ok(diesel::delete(
            ai_tools::table.find(id)
        )
        .execute(conn)
        .await?))?;
        Ok(n > 0)
    }

    pub async fn mark_message_read(&self, id: i32, read: bool) -> RepoResult<bool> {
        let n = transact!(self, &[Model::ContactMessage], |conn| {
            Ok(diesel::update(contact_messages::table.find(id))
                .set(contact_messages::is_read.eq(read))
                .execute(conn)
                .await?)
        })?;
        Ok(n > 0)
    }

    /// Counts for the admin overview (cached until a post or message changes).
    pub async fn admin_overview(&self) -> RepoResult<AdminOverview> {
        const DEPS: &[&str] = &[
            super::invalidation::CacheTag::AdminStats.name(),
            super::invalidation::CacheTag::PostLists.name(),
        ];
        self.cache
            .cached_query("admin", &["overview"], DEPS, None, || async {
                with_conn!(self.db, |conn| {
                    let posts: i64 = posts::table.count().get_result(conn).await?;
                    let drafts: i64 = posts::table
                        .filter(posts::published.eq(false))
                        .count()
                        .get_result(conn)
                        .await?;
                    let messages: i64 = contact_messages::table.count().get_result(conn).await?;
                    let unread_messages: i64 = contact_messages::table
                        .filter(contact_messages::is_read.eq(false))
                        .count()
                        .get_result(conn)
                        .await?;
                    Ok(AdminOverview {
                        posts,
                        drafts,
                        messages,
                        unread_messages,
                    })
                })
            })
            .await
    }

    pub async fn admin_by_username(&self, username: &str) -> RepoResult<Option<AdminUser>> {
        with_conn!(self.db, |conn| {
            Ok(admin_users::table
                .filter(admin_users::username.eq(username.to_string()))
                .select(AdminUser::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Creates the account, or sets a new password if it exists.
    pub async fn upsert_admin(&self, username: &str, password_hash: &str) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            diesel::insert_into(admin_users::table)
                .values((
                    admin_users::username.eq(username),
                    admin_users::password_hash.eq(password_hash),
                    admin_users::created_at.eq(now()),
                ))
                .on_conflict(admin_users::username)
                .do_update()
                .set(admin_users::password_hash.eq(password_hash))
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}

/// A unique constraint refused the write (a slug or name already in use).
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(e) if matches!(**e, diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
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
