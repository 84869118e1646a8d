//! The fragments pages may ask for: each names its template, the models it shows and a
//! loader that runs only on a miss. Loaders read through the repository (so even a
//! fragment miss is usually a query-cache hit).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::{FragmentDef, Fragments, LoadFuture, Loader};
use crate::cache::CacheManager;
use crate::content::invalidation::{depends_on, post_tag};
use crate::content::models::ToolFilter;
use crate::content::models::PER_PAGE;
use crate::content::Repository;
use crate::db::DbError;

pub const RECENT_POSTS: i64 = 12;
pub const POPULAR_POSTS: i64 = 8;
const LATEST_POSTS: i64 = 6;
/// Related posts shown under a post.
const RELATED_POSTS: i64 = 3;

/// The slug a post's fragments vary by (`vary = [slug]`).
fn slug_of(vary: &Value) -> &str {
    vary.get(0).and_then(Value::as_str).unwrap_or_default()
}

fn loader<F, Fut, T>(repo: &Repository, f: F) -> Loader
where
    F: Fn(Repository, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, DbError>> + 'static,
    T: Serialize,
{
    let repo = repo.clone();
    let f = Arc::new(f);
    Arc::new(move |args: Value| -> LoadFuture {
        let (repo, f) = (repo.clone(), f.clone());
        Box::pin(async move {
            let value = f(repo, args).await?;
            serde_json::to_value(value)
                .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)).into())
        })
    })
}

fn block(
    template: &'static str,
    depends_on: &'static [&'static str],
    loader: Loader,
) -> FragmentDef {
    FragmentDef {
        template: Some(template),
        depends_on,
        object_tags: None,
        ttl: None,
        loader,
    }
}

pub fn registry(
    cache: CacheManager,
    repo: &Repository,
    templates: &[(&str, &str)],
    debug: bool,
) -> Fragments {
    let mut f = Fragments::new(cache, templates, debug);
    f.register(
        "home_intro",
        block(
            "fragments/home_intro.html",
            depends_on::PERSONAL_INFO,
            loader(repo, |r, _| async move {
                Ok(json!({ "personal_info": r.personal_info().await? }))
            }),
        ),
    );
    f.register(
        "recent_posts",
        block(
            "fragments/recent_posts.html",
            depends_on::POST_LISTS,
            loader(repo, |r, _| async move {
                Ok(json!({ "posts": r.recent_posts(RECENT_POSTS).await? }))
            }),
        ),
    );
    f.register(
        "popular_posts",
        FragmentDef {
            // View counts are near-real-time: a short TTL instead of a write per view.
            ttl: Some(Duration::from_secs(60)),
            ..block(
                "fragments/popular_posts.html",
                depends_on::POPULAR_POSTS,
                loader(repo, |r, _| async move {
                    Ok(json!({ "posts": r.popular_posts(POPULAR_POSTS).await? }))
                }),
            )
        },
    );
    f.register(
        "featured_tools",
        block(
            "fragments/featured_tools.html",
            depends_on::FEATURED_TOOLS,
            loader(repo, |r, _| async move {
                let featured = ToolFilter {
                    featured: Some(true),
                    category: None,
                };
                Ok(json!({ "tools": r.ai_tools(&featured).await? }))
            }),
        ),
    );
    f.register(
        "tag_cloud",
        block(
            "fragments/tag_cloud.html",
            depends_on::TAG_CLOUD,
            loader(repo, |r, _| async move {
                Ok(json!({ "tags": r.tag_cloud().await? }))
            }),
        ),
    );
    f.register(
        "social_links",
        block(
            "fragments/social_links.html",
            depends_on::SOCIAL_LINKS,
            loader(repo, |r, _| async move {
                Ok(json!({ "links": r.social_links(false).await? }))
            }),
        ),
    );
    f.register(
        "about",
        block(
            "fragments/about.html",
            depends_on::ABOUT,
            loader(repo, |r, _| async move {
                Ok(json!({ "personal_info": r.personal_info().await?, "links": r.social_links(false).await? }))
            }),
        ),
    );
    f.register(
        "tools_by_category",
        block(
            "fragments/tools.html",
            depends_on::TOOLS,
            loader(repo, |r, _| async move {
                Ok(json!({ "categories": r.tools_by_category().await? }))
            }),
        ),
    );
    // vary = [page number, tag slug or ""]
    f.register(
        "post_list",
        block(
            "fragments/post_list.html",
            depends_on::POST_LISTS,
            loader(repo, |r, vary| async move {
                let page = vary.get(0).and_then(Value::as_i64).unwrap_or(1);
                let tag_id = match vary
                    .get(1)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    Some(slug) => r.tag_by_slug(slug).await?.map(|t| t.id),
                    None => None,
                };
                Ok(json!({ "page": r.published_posts(page, PER_PAGE, tag_id).await? }))
            }),
        ),
    );
    // vary = [slug]
    f.register(
        "post_body",
        FragmentDef {
            // Every post page, and this post's own tag: a change to one post does not
            // drop the others.
            object_tags: Some(|vary| vec![post_tag(slug_of(vary))]),
            ..block(
                "fragments/post_body.html",
                depends_on::POST_DETAIL,
                loader(repo, |r, vary| async move {
                    let slug = slug_of(&vary).to_string();
                    Ok(json!({ "post": r.post_by_slug(&slug, false).await? }))
                }),
            )
        },
    );
    // vary = [slug]: posts sharing this post's tags
    f.register(
        "related_posts",
        block(
            "fragments/related_posts.html",
            depends_on::RELATED,
            loader(repo, |r, vary| async move {
                let slug = slug_of(&vary).to_string();
                Ok(json!({ "posts": r.related_posts(&slug, RELATED_POSTS).await? }))
            }),
        ),
    );
    f.register(
        "latest_posts",
        FragmentDef {
            template: None,
            depends_on: depends_on::POST_LISTS,
            object_tags: None,
            ttl: None,
            loader: loader(
                repo,
                |r, _| async move { r.recent_posts(LATEST_POSTS).await },
            ),
        },
    );
    f
}
