//! Cache invalidation rules, as data, in one place.
//!
//! Every cached thing (a query result, a fragment, an API response) belongs to one or
//! more *groups* — "blog listings", "post detail", "/api/posts/" — named by the reader
//! (`deps::*`). `RULES` says which groups each model's changes drop; it reads like the
//! seed's "Cache Invalidation Rules" list. After a write commits, the repository bumps
//! the version of every group its model drops (`tags_for`), which drops every entry of
//! those groups on every instance at once.
//!
//! Why tag versions rather than deleting keys: a bump is O(groups), not O(entries); no
//! per-tag key set grows without bound; and an entry filled from rows read before a
//! write is stored under the old version, so it is never served after the write (the
//! fill race that bites cacheops/cachalot users). See `CacheManager::get_or_set_tagged`.
//!
//! Relationship-aware: authors and tags appear on posts, so their rules drop the post
//! groups too. Header and footer components are keyed by their whole context, so a new
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
}

impl Model {
    pub const ALL: [Model; 7] = [
        Model::Post,
        Model::Author,
        Model::Tag,
        Model::PersonalInfo,
        Model::SocialLink,
        Model::AiTool,
        Model::ContactMessage,
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
        }
    }

    pub fn parse(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A group of cached data that is dropped as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
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
}

impl Group {
    pub const ALL: [Group; 16] = [
        Group::PostLists,
        Group::PopularPosts,
        Group::PostDetail,
        Group::TagPages,
        Group::TagCloud,
        Group::Feed,
        Group::Sitemap,
        Group::PersonalInfo,
        Group::SocialLinks,
        Group::Tools,
        Group::FeaturedTools,
        Group::ApiPosts,
        Group::ApiPersonalInfo,
        Group::ApiSocialLinks,
        Group::ApiAiTools,
        Group::AdminStats,
    ];

    /// The cache tag of this group.
    pub const fn tag(self) -> &'static str {
        match self {
            Group::PostLists => "group:post_lists",
            Group::PopularPosts => "group:popular_posts",
            Group::PostDetail => "group:post_detail",
            Group::TagPages => "group:tag_pages",
            Group::TagCloud => "group:tag_cloud",
            Group::Feed => "group:feed",
            Group::Sitemap => "group:sitemap",
            Group::PersonalInfo => "group:personal_info",
            Group::SocialLinks => "group:social_links",
            Group::Tools => "group:tools",
            Group::FeaturedTools => "group:featured_tools",
            Group::ApiPosts => "group:api_posts",
            Group::ApiPersonalInfo => "group:api_personal_info",
            Group::ApiSocialLinks => "group:api_social_links",
            Group::ApiAiTools => "group:api_ai_tools",
            Group::AdminStats => "group:admin_stats",
        }
    }
}

use Group::*;

/// What each model's changes drop.
pub const RULES: &[(Model, &[Group])] = &[
    // posts → blog listings, recent, popular, tag pages, post detail, feed and sitemap,
    // home fragments, /api/posts/…
    (
        Model::Post,
        &[
            PostLists,
            PopularPosts,
            PostDetail,
            TagPages,
            TagCloud,
            Feed,
            Sitemap,
            ApiPosts,
        ],
    ),
    // authors and tags are shown on posts
    (
        Model::Author,
        &[PostLists, PopularPosts, PostDetail, Feed, ApiPosts],
    ),
    (
        Model::Tag,
        &[
            PostLists,
            PopularPosts,
            PostDetail,
            TagPages,
            TagCloud,
            Feed,
            Sitemap,
            ApiPosts,
        ],
    ),
    // personal info → home and about sections, /api/personal-info/
    (Model::PersonalInfo, &[PersonalInfo, ApiPersonalInfo]),
    // social links → header and footer, contact page, /api/social-links/
    (Model::SocialLink, &[SocialLinks, ApiSocialLinks]),
    // AI tools → featured tools, tools listing, /api/ai-tools/
    (Model::AiTool, &[Tools, FeaturedTools, ApiAiTools]),
    // contact messages → admin statistics
    (Model::ContactMessage, &[AdminStats]),
];

/// The groups a model's change drops.
pub fn groups_for(model: Model) -> &'static [Group] {
    RULES
        .iter()
        .find(|(m, _)| *m == model)
        .map(|(_, g)| *g)
        .unwrap_or(&[])
}

/// The tags to bump after `models` changed (deduplicated).
pub fn tags_for(models: &[Model]) -> Vec<&'static str> {
    let mut tags: Vec<&'static str> = models
        .iter()
        .flat_map(|m| groups_for(*m))
        .map(|g| g.tag())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// What each cached read depends on (the groups it belongs to).
pub mod deps {
    use super::Group;

    pub const POST_LISTS: &[&str] = &[Group::PostLists.tag()];
    pub const POPULAR_POSTS: &[&str] = &[Group::PopularPosts.tag()];
    pub const POST_DETAIL: &[&str] = &[Group::PostDetail.tag()];
    pub const TAG_PAGES: &[&str] = &[Group::TagPages.tag()];
    pub const TAG_CLOUD: &[&str] = &[Group::TagCloud.tag()];
    pub const FEED: &[&str] = &[Group::Feed.tag()];
    pub const SITEMAP: &[&str] = &[Group::Sitemap.tag()];
    pub const PERSONAL_INFO: &[&str] = &[Group::PersonalInfo.tag()];
    pub const SOCIAL_LINKS: &[&str] = &[Group::SocialLinks.tag()];
    pub const TOOLS: &[&str] = &[Group::Tools.tag()];
    pub const FEATURED_TOOLS: &[&str] = &[Group::FeaturedTools.tag()];
    /// The about page: the owner's details and their links.
    pub const ABOUT: &[&str] = &[Group::PersonalInfo.tag(), Group::SocialLinks.tag()];
    pub const ADMIN_STATS: &[&str] = &[Group::AdminStats.tag()];
}

/// Response-cache rules: which group each cached API path belongs to.
pub const RESPONSE_RULES: &[(&str, &[&str])] = &[
    ("/api/posts/", &[Group::ApiPosts.tag()]),
    ("/api/personal-info/", &[Group::ApiPersonalInfo.tag()]),
    ("/api/social-links/", &[Group::ApiSocialLinks.tag()]),
    ("/api/ai-tools/", &[Group::ApiAiTools.tag()]),
];

/// Every group's tag: what a path without a rule depends on (safe, if wasteful).
pub const ALL_GROUPS: [&str; Group::ALL.len()] = {
    let mut tags = [""; Group::ALL.len()];
    let mut i = 0;
    while i < tags.len() {
        tags[i] = Group::ALL[i].tag();
        i += 1;
    }
    tags
};

/// The groups a cached response under `prefix` belongs to.
pub fn response_deps(prefix: &str) -> &'static [&'static str] {
    RESPONSE_RULES
        .iter()
        .find(|(p, _)| prefix.starts_with(p) || p.starts_with(prefix))
        .map(|(_, deps)| *deps)
        .unwrap_or(&ALL_GROUPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_a_rule_and_every_group_a_model() {
        for model in Model::ALL {
            assert!(!groups_for(model).is_empty(), "{model:?} has no rule");
            assert_eq!(Model::parse(model.name()), Some(model));
        }
        for group in Group::ALL {
            assert!(
                RULES.iter().any(|(_, groups)| groups.contains(&group)),
                "{group:?} is never dropped"
            );
            assert!(ALL_GROUPS.contains(&group.tag()));
        }
    }

    #[test]
    fn relationships_reach_the_posts() {
        let author = tags_for(&[Model::Author]);
        assert!(
            author.contains(&Group::PostDetail.tag()) && author.contains(&Group::ApiPosts.tag())
        );
        assert!(!tags_for(&[Model::SocialLink]).contains(&Group::PostLists.tag()));
    }
}
