//! Cache invalidation rules, as data, in one place. One word throughout: *tag*.
//!
//! Every cached thing (a query result, a fragment, an API response) depends on one or
//! more cache tags — "blog listings", "post detail", "/api/posts/" — named where it is
//! read (`depends_on::*`; an API route's in `web::routes`). `RULES` says which tags
//! each model's change invalidates; it reads like the seed's "Cache Invalidation Rules" list. A write records
//! `tags_invalidated_by(models)` with its transaction and applies them after commit
//! (`Repository::invalidate_after_commit`): each tag gets a new version, which drops
//! every entry depending on it on every instance at once.
//!
//! Why tag versions rather than deleting keys: a bump is O(tags), not O(entries); no
//! per-tag key set grows without bound; and an entry filled from rows read before a
//! write is stored under the old version, so it is never served after the write (the
//! fill race that bites cacheops/cachalot users). See `CacheManager::get_or_set_tagged`.
//!
//! Relationship-aware: authors and tags appear on posts, so their rules invalidate the
//! post tags too. Header and footer components are keyed by their whole context, so a new
//! social link gives them new keys by construction.

/// A model whose changes are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    Post,
    Author,
    Tag,
    PersonalInfo,
    SocialLink,
    AiTool,
    ContactMessage,
    /// A batch of post views (see `content::views`).
    PostViews,
}

impl Model {
    pub const ALL: [Model; 8] = [
        Model::Post,
        Model::Author,
        Model::Tag,
        Model::PersonalInfo,
        Model::SocialLink,
        Model::AiTool,
        Model::ContactMessage,
        Model::PostViews,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Post => "post",
            Model::Author => "author",
            Model::Tag => "tag",
            Model::PersonalInfo => "personal_info",
            Model::SocialLink => "social_link",
            Model::AiTool => "ai_tool",
            Model::ContactMessage => "contact_message",
            Model::PostViews => "post_views",
        }
    }

    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A cache tag: a set of cached data invalidated as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheTag {
    PostLists,
    PopularPosts,
    PostDetail,
    TagPages,
    TagCloud,
    Feed,
    Sitemap,
    PersonalInfo,
    SocialLinks,
    Tools,
    FeaturedTools,
    ApiPosts,
    ApiPersonalInfo,
    ApiSocialLinks,
    ApiAiTools,
    AdminStats,
    SearchResults,
}

impl CacheTag {
    pub const ALL: [CacheTag; 17] = [
        CacheTag::PostLists,
        CacheTag::PopularPosts,
        CacheTag::PostDetail,
        CacheTag::TagPages,
        CacheTag::TagCloud,
        CacheTag::Feed,
        CacheTag::Sitemap,
        CacheTag::PersonalInfo,
        CacheTag::SocialLinks,
        CacheTag::Tools,
        CacheTag::FeaturedTools,
        CacheTag::ApiPosts,
        CacheTag::ApiPersonalInfo,
        CacheTag::ApiSocialLinks,
        CacheTag::ApiAiTools,
        CacheTag::AdminStats,
        CacheTag::SearchResults,
    ];

    /// The tag's name, as entries name it and the webhook accepts it.
    pub const fn name(self) -> &'static str {
        match self {
            CacheTag::PostLists => "post_lists",
            CacheTag::PopularPosts => "popular_posts",
            CacheTag::PostDetail => "post_detail",
            CacheTag::TagPages => "tag_pages",
            CacheTag::TagCloud => "tag_cloud",
            CacheTag::Feed => "feed",
            CacheTag::Sitemap => "sitemap",
            CacheTag::PersonalInfo => "personal_info",
            CacheTag::SocialLinks => "social_links",
            CacheTag::Tools => "tools",
            CacheTag::FeaturedTools => "featured_tools",
            CacheTag::ApiPosts => "api_posts",
            CacheTag::ApiPersonalInfo => "api_personal_info",
            CacheTag::ApiSocialLinks => "api_social_links",
            CacheTag::ApiAiTools => "api_ai_tools",
            CacheTag::AdminStats => "admin_stats",
            CacheTag::SearchResults => "search_results",
        }
    }
}

use CacheTag::*;

/// Everything that lists posts or which posts have a tag: what a post's change
/// invalidates, besides that post's own page (its per-object tag, `post_tag`).
const POST_LISTINGS: &[CacheTag] = &[
    PostLists,
    PopularPosts,
    TagPages,
    TagCloud,
    Feed,
    Sitemap,
    ApiPosts,
    SearchResults,
];

/// The per-object tag of one post's page: a change to one post drops its own page, not
/// every post's. Writes bump it for the old and the new slug.
pub fn post_tag(slug: &str) -> String {
    format!("post:{slug}")
}

/// What each model's change invalidates.
#[rustfmt::skip]
pub const RULES: &[(Model, &[CacheTag])] = &[
    // posts → blog listings, recent, popular, tag pages, feed and sitemap, home
    // fragments, /api/posts/…, search results (page and API), and the post's own page
    // (`post_tag`, per object)
    (Model::Post, POST_LISTINGS),
    // a tag renamed or removed shows on every post that has it
    (Model::Tag, &[PostLists, PopularPosts, PostDetail, TagPages, TagCloud, Feed, Sitemap, ApiPosts, SearchResults]),
    // authors are shown on posts (not on tag pages or the sitemap)
    (Model::Author, &[PostLists, PopularPosts, PostDetail, Feed, ApiPosts, SearchResults]),
    // personal info → home and about sections, /api/personal-info/
    (Model::PersonalInfo, &[PersonalInfo, ApiPersonalInfo]),
    // social links → header and footer, contact page, /api/social-links/
    (Model::SocialLink, &[SocialLinks, ApiSocialLinks]),
    // AI tools → featured tools, tools listing, /api/ai-tools/
    (Model::AiTool, &[Tools, FeaturedTools, ApiAiTools]),
    // contact messages → admin statistics
    (Model::ContactMessage, &[AdminStats]),
    // a batch of views → the popular list, and each viewed post's page (`post_tag`),
    // so the counts shown lag by the batch interval, not by a TTL
    (Model::PostViews, &[PopularPosts]),
];

/// Models whose changes are not purged from edge caches (Varnish, CDNs): view counts
/// change every few seconds on a read site, and purging `popular_posts` and each viewed
/// post that often would leave the edges nearly empty — counts there lag by the edge
/// lifetime instead; contact messages show only in the admin, which edges never keep.
pub const EDGE_QUIET: &[Model] = &[Model::PostViews, Model::ContactMessage];

/// Whether a write changing `models` is purged from the edges.
pub fn purges_edges(models: &[Model]) -> bool {
    models.iter().any(|m| !EDGE_QUIET.contains(m))
}

/// The tags a model's change invalidates.
pub fn invalidated_by(model: Model) -> &'static [CacheTag] {
    RULES
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, g)| *g)
        .unwrap_or(&[])
}

/// The tags to bump after `models` changed (deduplicated).
pub fn tags_invalidated_by(models: &[Model]) -> Vec<&'static str> {
    let mut tags: Vec<&'static str> = models
        .iter()
        .flat_map(|m| invalidated_by(*m))
        .map(|g| g.name())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// The tags each cached read depends on.
pub mod depends_on {
    use super::CacheTag;

    pub const POST_LISTS: &[&str] = &[CacheTag::PostLists.name()];
    pub const POPULAR_POSTS: &[&str] = &[CacheTag::PopularPosts.name()];
    pub const POST_DETAIL: &[&str] = &[CacheTag::PostDetail.name()];
    pub const TAG_PAGES: &[&str] = &[CacheTag::TagPages.name()];
    pub const TAG_CLOUD: &[&str] = &[CacheTag::TagCloud.name()];
    pub const FEED: &[&str] = &[CacheTag::Feed.name()];
    pub const SITEMAP: &[&str] = &[CacheTag::Sitemap.name()];
    pub const PERSONAL_INFO: &[&str] = &[CacheTag::PersonalInfo.name()];
    pub const SOCIAL_LINKS: &[&str] = &[CacheTag::SocialLinks.name()];
    pub const TOOLS: &[&str] = &[CacheTag::Tools.name()];
    pub const FEATURED_TOOLS: &[&str] = &[CacheTag::FeaturedTools.name()];
    /// The about page: the owner's details and their links.
    pub const ABOUT: &[&str] = &[CacheTag::PersonalInfo.name(), CacheTag::SocialLinks.name()];
    pub const ADMIN_STATS: &[&str] = &[CacheTag::AdminStats.name()];
    pub const SEARCH: &[&str] = &[CacheTag::SearchResults.name()];
    /// Posts sharing a post's tags: any post's tags, and tag renames.
    pub const RELATED: &[&str] = &[CacheTag::PostLists.name(), CacheTag::TagPages.name()];
}

/// Every tag (what a webhook may name, and what a migration invalidates).
pub const ALL_TAGS: [&str; CacheTag::ALL.len()] = {
    let mut tags = [""; CacheTag::ALL.len()];
    let mut i = 0;
    while i < tags.len() {
        tags[i] = CacheTag::ALL[i].name();
        i += 1;
    }
    tags
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_rule_and_every_group_a_model() {
        for model in Model::ALL {
            assert!(!invalidated_by(model).is_empty(), "{model:?} has no rule");
            assert_eq!(Model::parse(model.name()), Some(model));
        }
        for tag in CacheTag::ALL {
            assert!(
                RULES.iter().any(|(_, tags)| tags.contains(&tag)),
                "{tag:?} is never invalidated"
            );
            assert!(ALL_TAGS.contains(&tag.name()));
        }
    }

    #[test]
    fn relationships_reach_the_posts() {
        let author = tags_invalidated_by(&[Model::Author]);
        assert!(
            author.contains(&CacheTag::PostDetail.name())
                && author.contains(&CacheTag::ApiPosts.name())
        );
        assert!(!tags_invalidated_by(&[Model::SocialLink]).contains(&CacheTag::PostLists.name()));
    }
}
