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
}
