//! Full-text search of published posts: the index written with each post (in the post's
//! transaction, `index_post!`), the ranked query on each database, and its cache.
//!
//! Cached so that made-up queries cannot fill the cache: a query's results are stored
//! only when the caller says it is popular (`search::popular`: searched from two
//! addresses lately), and only in one of `SLOTS` entries, chosen by the query's hash —
//! a new query replaces whatever shared its slot, so search entries can only ever
//! evict each other and their number is fixed, in process and in Redis, whatever the
//! traffic. A query that finds nothing is remembered in one shared, bounded entry
//! (`NONE_KEY`) rather than under its own key. Both depend on the `search_results` tag,
//! which every post, tag and author write bumps. (Pages and API answers of a search are
//! rendered from these results and never stored whole: see `web::pages::search`.)

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use super::{RepoResult, Repository};
use crate::content::invalidation::{depends_on, Model};
use crate::content::models::{Page, PostSummary};
use crate::content::search::{
    index_text, snippet_html, QueryError, SearchQuery, MARK_END, MARK_START,
};
use crate::db::DbError;
use crate::with_conn;

/// How many queries that found nothing the shared entry remembers (8 bytes each).
const NONE_REMEMBERED: usize = 512;

/// The search budget: result pages are kept in at most this many entries (a page of
/// ten hits with snippets is a few KB, so about 1–2 MB in all).
pub const SLOTS: u64 = 256;

/// A stored page of results, with what it answers (another query may share the slot).
#[derive(Serialize, Deserialize)]
struct Slot {
    query: String,
    page: i64,
    per_page: i64,
    results: Page<SearchHit>,
}

/// One result: the post and a snippet of its text with the matched words in `<mark>`
/// (everything else escaped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchHit {
    pub post: PostSummary,
    pub snippet_html: String,
}

/// What a post's index entry holds: its text without markup.
pub struct SearchDocument {
    pub title: String,
    pub excerpt: String,
    pub body: String,
    pub tags: String,
}

impl SearchDocument {
    pub fn new(title: &str, excerpt: &str, body_markdown: &str, tag_names: &[&str]) -> Self {
        SearchDocument {
            title: index_text(title),
            excerpt: index_text(excerpt),
            body: index_text(&crate::content::markdown::plain_text(body_markdown)),
            tags: index_text(&tag_names.join(" ")),
        }
    }
}

/// Writes (or replaces) post `$id`'s index entry inside the caller's transaction.
macro_rules! index_post {
    ($conn:ident, $pg:expr, $id:expr, $doc:expr) => {{
        let doc: &$crate::content::repository::search::SearchDocument = $doc;
        let sql = match $pg {
            true => {
                "INSERT INTO post_search (post_id, title, excerpt, body, tags) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (post_id) DO UPDATE SET \
                 title = EXCLUDED.title, excerpt = EXCLUDED.excerpt, body = EXCLUDED.body, \
                 tags = EXCLUDED.tags"
            }
            false => {
                diesel::sql_query("DELETE FROM post_search WHERE rowid = ?")
                    .bind::<diesel::sql_types::Integer, _>($id)
                    .execute($conn)
                    .await?;
                "INSERT INTO post_search (rowid, title, excerpt, body, tags) VALUES (?, ?, ?, ?, ?)"
            }
        };
        diesel::sql_query(sql)
            .bind::<diesel::sql_types::Integer, _>($id)
            .bind::<diesel::sql_types::Text, _>(&doc.title)
            .bind::<diesel::sql_types::Text, _>(&doc.excerpt)
            .bind::<diesel::sql_types::Text, _>(&doc.body)
            .bind::<diesel::sql_types::Text, _>(&doc.tags)
            .execute($conn)
            .await?;
    }};
}

/// Drops post `$id`'s index entry inside the caller's transaction.
macro_rules! unindex_post {
    ($conn:ident, $pg:expr, $id:expr) => {{
        let sql = match $pg {
            true => "DELETE FROM post_search WHERE post_id = $1",
            false => "DELETE FROM post_search WHERE rowid = ?",
        };
        diesel::sql_query(sql)
            .bind::<diesel::sql_types::Integer, _>($id)
            .execute($conn)
            .await?;
    }};
}

pub(super) use {index_post, unindex_post};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

#[derive(QueryableByName)]
struct Snippet {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    snippet: String,
}

/// Matches are counted up to this many, and a query matching more is shown newest
/// first: its words say little about which post is meant, and counting or ranking every
/// match of a common word costs more than the rest of the search (each match's
/// `tsvector` is read and ranked). Such a query says "more than 1,000 posts", as search
/// engines do.
pub const RANK_LIMIT: i64 = 1_000;

/// The SQL of each step, per database. `published` is a boolean on PostgreSQL and 0/1
/// on SQLite: `AND p.published` reads both; `published_at <= CURRENT_TIMESTAMP` hides
/// scheduled posts as `posts::visible` does.
struct Dialect {
    /// Matches, counted up to `RANK_LIMIT + 1` (bound twice).
    count: &'static str,
    /// Best first.
    ranked: &'static str,
    /// Newest first: read along the publication-date index until the page is full.
    newest: &'static str,
    /// With `{ids}` replaced by the page's post ids (integers from the database).
    snippets: &'static str,
}

const SQLITE: Dialect = Dialect {
    count: "SELECT count(*) AS n FROM (SELECT 1 FROM post_search \
            JOIN posts p INDEXED BY posts_visible ON p.id = post_search.rowid \
            WHERE post_search MATCH ? AND p.published AND p.published_at <= CURRENT_TIMESTAMP LIMIT ?)",
    // bm25 weights: title, excerpt, body, tags.
    ranked: "SELECT p.id AS id FROM post_search JOIN posts p INDEXED BY posts_visible ON p.id = post_search.rowid \
             WHERE post_search MATCH ? AND p.published AND p.published_at <= CURRENT_TIMESTAMP \
             ORDER BY bm25(post_search, 10.0, 3.0, 1.0, 5.0), p.published_at DESC, p.id DESC \
             LIMIT ? OFFSET ?",
    // Along the publication-date index, newest first, until the page is full, testing
    // each post against the matches (a list SQLite builds once): joined the other way
    // round, every match was sorted by date (a word in every post: 7.8 ms against 2.3).
    newest: "SELECT p.id AS id FROM posts p INDEXED BY posts_published_published_at \
             WHERE p.published = 1 AND p.published_at <= CURRENT_TIMESTAMP \
             AND p.id IN (SELECT rowid FROM post_search WHERE post_search MATCH ?) \
             ORDER BY p.published_at DESC, p.id DESC LIMIT ? OFFSET ?",
    // `+rowid`: the list filters one evaluation of the match. Offered to FTS5 as
    // `rowid =`, it evaluated the whole expression again per post (12 words, 10 posts:
    // 5.7–9.4 ms against 2.2–2.7 at 10,000 posts).
    snippets: "SELECT rowid AS id, \
               snippet(post_search, -1, char(57344), char(57345), '…', 24) AS snippet \
               FROM post_search WHERE post_search MATCH ? AND +rowid IN ({ids})",
};

const POSTGRES: Dialect = Dialect {
    // Visible posts among the matches (as a join, the planner tested each post's
    // document in id order: 12.6 ms against 9.1 for a word in 3,000 posts).
    count: "SELECT count(*) AS n FROM (SELECT 1 FROM posts p \
            WHERE p.published AND p.published_at <= CURRENT_TIMESTAMP AND p.id IN \
            (SELECT post_id FROM post_search WHERE document @@ websearch_to_tsquery('english', $1)) \
            LIMIT $2) AS m",
    // The matches ranked apart (MATERIALIZED): folded into one query, the planner sorted
    // by rank below the join and chose a sequential scan of every document for it (a
    // word in 500 posts: 33 ms, against 7 ms from the GIN index).
    ranked: "WITH m AS MATERIALIZED (SELECT p.id, p.published_at, ts_rank(s.document, q) AS rank \
             FROM post_search s JOIN posts p ON p.id = s.post_id, websearch_to_tsquery('english', $1) q \
             WHERE s.document @@ q AND p.published AND p.published_at <= CURRENT_TIMESTAMP) \
             SELECT id FROM m ORDER BY rank DESC, published_at DESC, id DESC LIMIT $2 OFFSET $3",
    newest: "SELECT p.id AS id FROM post_search s JOIN posts p ON p.id = s.post_id \
             WHERE s.document @@ websearch_to_tsquery('english', $1) \
             AND p.published AND p.published_at <= CURRENT_TIMESTAMP \
             ORDER BY p.published_at DESC, p.id DESC LIMIT $2 OFFSET $3",
    // Over the text as indexed (`<` `>` as spaces, see the migration).
    snippets: "SELECT post_id AS id, \
               ts_headline('english', translate(title || ' · ' || body, '<>', '  '), \
               websearch_to_tsquery('english', $1), $2) AS snippet \
               FROM post_search WHERE post_id IN ({ids})",
};

impl Repository {
    /// One page of published posts matching `query`, best first. `store`: whether the
    /// results may be cached under their own key (the caller counts popularity).
    /// `client`: the address searching (`popular::client_hash`; None for warming), held
    /// to one uncached search at a time (`search::gate`): `QueryError::Busy` otherwise.
    pub async fn search(
        &self,
        query: &SearchQuery,
        page: i64,
        per_page: i64,
        store: bool,
        client: Option<u64>,
    ) -> RepoResult<Result<Page<SearchHit>, QueryError>> {
        let fingerprint = fingerprint(query.canonical());
        let slot = fingerprint
            .wrapping_add(page as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            % SLOTS;
        let key = self.cache.key("search", [slot.to_string()]);
        let none_key = self.cache.key("search_none", ["all"]);
        // Versions read before the query, so a write meanwhile is never hidden.
        let (found, none) = tokio::join!(
            async {
                match store {
                    true => Some(
                        self.cache
                            .get_tagged::<Slot>(&key, depends_on::SEARCH)
                            .await,
                    ),
                    false => None,
                }
            },
            self.cache
                .get_tagged_for_update::<Vec<u64>>(&none_key, depends_on::SEARCH)
        );
        let empty = |total| Page {
            items: Vec::new(),
            total,
            page,
            per_page,
        };
        let stored = found.as_ref().and_then(|f| f.value.as_ref());
        if let Some(slot) = stored
            .filter(|s| s.query == query.canonical() && s.page == page && s.per_page == per_page)
        {
            return Ok(Ok(slot.results.clone()));
        }
        let known_none = none
            .value
            .as_ref()
            .is_some_and(|v| v.contains(&fingerprint));
        if known_none {
            return Ok(Ok(empty(0)));
        }
        let _turn = match client.map(|c| self.search_gate.enter(c)) {
            Some(None) => return Ok(Err(QueryError::Busy)),
            turn => turn,
        };
        let started = std::time::Instant::now();
        let result = self.search_uncached(query, page, per_page).await?;
        self.cache.record_fill("search", started.elapsed());
        if result.total == 0 {
            if let Some(versions) = &none.versions {
                let mut remembered = none.value.unwrap_or_default();
                remembered.push(fingerprint);
                let excess = remembered.len().saturating_sub(NONE_REMEMBERED);
                remembered.drain(..excess);
                self.cache
                    .set_tagged(&none_key, versions, &remembered, None)
                    .await;
            }
        } else if !result.is_out_of_range() {
            if let Some(versions) = found.and_then(|f| f.versions) {
                let slot = Slot {
                    query: query.canonical().to_string(),
                    page,
                    per_page,
                    results: result,
                };
                self.cache.set_tagged(&key, &versions, &slot, None).await;
                return Ok(Ok(slot.results));
            }
        }
        Ok(Ok(result))
    }

    /// The search on the database, no cache: the match count (up to `RANK_LIMIT + 1`),
    /// one page of post ids (by rank, or newest first past `RANK_LIMIT` matches), their
    /// snippets, and the posts.
    pub async fn search_uncached(
        &self,
        query: &SearchQuery,
        page: i64,
        per_page: i64,
    ) -> RepoResult<Page<SearchHit>> {
        let pg = self.db.is_postgres();
        let dialect = if pg { &POSTGRES } else { &SQLITE };
        let text = match pg {
            true => query.websearch().to_string(),
            false => query.fts5(),
        };
        let offset = (page.max(1) - 1).checked_mul(per_page).unwrap_or(i64::MAX);
        let page_of = |sql: &'static str| {
            diesel::sql_query(sql)
                .bind::<Text, _>(text.clone())
                .bind::<BigInt, _>(per_page)
                .bind::<BigInt, _>(offset)
        };
        let (total, ids) = with_conn!(self.db, |conn| {
            let total = diesel::sql_query(dialect.count)
                .bind::<Text, _>(&text)
                .bind::<BigInt, _>(RANK_LIMIT + 1)
                .get_result::<Count>(conn)
                .await?
                .n;
            let ids: Vec<i32> = match total > offset {
                false => Vec::new(),
                true => {
                    let sql = match total > RANK_LIMIT {
                        true => dialect.newest,
                        false => dialect.ranked,
                    };
                    page_of(sql)
                        .load::<Id>(conn)
                        .await?
                        .into_iter()
                        .map(|r| r.id)
                        .collect()
                }
            };
            Ok((total, ids))
        })?;
        let mut hits = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let list = ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            let sql = dialect.snippets.replace("{ids}", &list);
            let options = format!(
                "StartSel=\"{MARK_START}\", StopSel=\"{MARK_END}\", MaxWords=30, MinWords=12, \
                 MaxFragments=2, FragmentDelimiter=\" … \""
            );
            let snippets: Vec<Snippet> = with_conn!(self.db, |conn| {
                let query = diesel::sql_query(&sql).bind::<Text, _>(&text);
                Ok(match pg {
                    true => query.bind::<Text, _>(&options).load(conn).await?,
                    false => query.load(conn).await?,
                })
            })?;
            let posts = self.posts_by_ids(&ids).await?;
            for id in &ids {
                let Some(post) = posts.iter().find(|p| p.id == *id) else {
                    continue; // deleted between the two reads
                };
                let snippet = snippets
                    .iter()
                    .find(|s| s.id == *id)
                    .map_or_else(|| post.excerpt.clone(), |s| s.snippet.clone());
                hits.push(SearchHit {
                    post: post.clone(),
                    snippet_html: snippet_html(&snippet),
                });
            }
        }
        Ok(Page {
            items: hits,
            total,
            page,
            per_page,
        })
    }

    /// Rebuilds the whole index from the posts (`folio reindex`), in one transaction.
    /// Returns the number of posts indexed.
    pub async fn reindex(&self) -> RepoResult<usize> {
        let pg = self.db.is_postgres();
        let posts = self.all_posts().await?;
        let bodies = self.all_bodies().await?;
        let indexed = transact!(self, &[Model::Post], |conn| {
            diesel::sql_query("DELETE FROM post_search")
                .execute(conn)
                .await?;
            for post in &posts {
                let tags: Vec<&str> = post.tags.iter().map(|t| t.name.as_str()).collect();
                let body = bodies
                    .iter()
                    .find(|(id, _)| *id == post.id)
                    .map_or("", |(_, b)| b.as_str());
                let doc = SearchDocument::new(&post.title, &post.excerpt, body, &tags);
                index_post!(conn, pg, post.id, &doc);
            }
            Ok(posts.len())
        })?;
        self.analyze().await?;
        Ok(indexed)
    }

    /// Fills the index when it is missing posts (it was added to an existing database,
    /// or rows were written around the repository); cheap when it is complete.
    pub async fn ensure_search_index(&self) -> RepoResult<Option<usize>> {
        let (posts, indexed) = with_conn!(self.db, |conn| {
            let posts = diesel::sql_query("SELECT count(*) AS n FROM posts")
                .get_result::<Count>(conn)
                .await?
                .n;
            let indexed = diesel::sql_query("SELECT count(*) AS n FROM post_search")
                .get_result::<Count>(conn)
                .await?
                .n;
            Ok::<_, DbError>((posts, indexed))
        })?;
        match posts == indexed {
            true => Ok(None),
            false => self.reindex().await.map(Some),
        }
    }
}

/// A query's fingerprint in the shared "found nothing" entry.
fn fingerprint(canonical: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Fixed seed: every instance must compute the same fingerprint.
    let mut h = foldhash::quality::FixedState::with_seed(0x5eed).build_hasher();
    h.write(canonical.as_bytes());
    h.finish()
}
