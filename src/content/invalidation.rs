//! Which cached data depends on which models, in one place.
//!
//! Every cached read names the model tags it shows (`deps::*`); every repository write
//! bumps the tags of the models it changed (`Model::tag`), after its transaction has
//! committed. A bump gives the tag a new version, which drops every entry computed
//! under the old one on every instance at once — no list of keys per tag to keep.
//!
//! Relationships are explicit: a post list shows authors and tags, so it depends on all
//! three, and renaming a tag drops the lists that show it.

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

    /// The cache tag bumped when this model changes.
    pub const fn tag(self) -> &'static str {
        match self {
            Model::Post => "model:post",
            Model::Author => "model:author",
            Model::Tag => "model:tag",
            Model::PersonalInfo => "model:personal_info",
            Model::SocialLink => "model:social_link",
            Model::AiTool => "model:ai_tool",
            Model::ContactMessage => "model:contact_message",
        }
    }
}

/// What each cached read depends on.
pub mod deps {
    use super::Model;

    /// Post lists and post pages: the posts, their authors and their tags.
    pub const POSTS: &[&str] = &[Model::Post.tag(), Model::Author.tag(), Model::Tag.tag()];
    /// The tag cloud and tag lookups: tags and which published posts carry them.
    pub const TAGS: &[&str] = &[Model::Tag.tag(), Model::Post.tag()];
    pub const PERSONAL_INFO: &[&str] = &[Model::PersonalInfo.tag()];
    pub const SOCIAL_LINKS: &[&str] = &[Model::SocialLink.tag()];
    pub const AI_TOOLS: &[&str] = &[Model::AiTool.tag()];
    /// The about page: the owner's details and their links.
    pub const ABOUT: &[&str] = &[Model::PersonalInfo.tag(), Model::SocialLink.tag()];
}

/// Response-cache rules: which models each cached API path shows. A path not listed
/// depends on every model (safe, if wasteful).
pub const RESPONSE_RULES: &[(&str, &[&str])] = &[
    ("/api/posts/", deps::POSTS),
    ("/api/personal-info/", deps::PERSONAL_INFO),
    ("/api/social-links/", deps::SOCIAL_LINKS),
    ("/api/ai-tools/", deps::AI_TOOLS),
];

pub const ALL_MODELS: &[&str] = &[
    Model::Post.tag(),
    Model::Author.tag(),
    Model::Tag.tag(),
    Model::PersonalInfo.tag(),
    Model::SocialLink.tag(),
    Model::AiTool.tag(),
    Model::ContactMessage.tag(),
];

/// The models a cached response under `prefix` shows.
pub fn response_deps(prefix: &str) -> &'static [&'static str] {
    RESPONSE_RULES
        .iter()
        .find(|(p, _)| prefix.starts_with(p) || p.starts_with(prefix))
        .map(|(_, deps)| *deps)
        .unwrap_or(ALL_MODELS)
}
