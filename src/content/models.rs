//! Content models: rows as diesel reads them, the shapes pages and the API show, and the
//! inputs the repository accepts. All are plain data (serde both ways) so the cache layer
//! can store them.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::*;

/// Posts per page on the blog, the tag pages and `/api/posts/`.
pub const PER_PAGE: i64 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = authors)]
pub struct Author {
    pub id: i32,
    pub name: String,
    pub slug: String,
    pub bio: String,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = tags)]
pub struct Tag {
    pub id: i32,
    pub name: String,
    pub slug: String,
    pub updated_at: NaiveDateTime,
}

/// A tag as shown next to a post.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRef {
    pub name: String,
    pub slug: String,
}

/// A tag with the number of published posts carrying it (the tag cloud).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagCount {
    pub name: String,
    pub slug: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthorRef {
    pub name: String,
    pub slug: String,
}

/// The posts row, as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = posts)]
pub struct PostRow {
    pub id: i32,
    pub title: String,
    pub slug: String,
    pub body_markdown: String,
    pub body_html: String,
    pub excerpt: String,
    pub author_id: i32,
    pub published: bool,
    pub published_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub view_count: i64,
    pub featured: bool,
    pub cover_image: String,
    pub cover_width: i32,
    pub cover_height: i32,
}

/// An uploaded image shown as a post's cover (and its link preview).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cover {
    /// Site-relative.
    pub url: String,
    pub srcset: String,
    pub width: u32,
    pub height: u32,
}

/// A post in a list: everything but the body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostSummary {
    pub id: i32,
    pub title: String,
    pub slug: String,
    pub excerpt: String,
    pub author: AuthorRef,
    pub published: bool,
    pub published_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    pub view_count: i64,
    pub featured: bool,
    pub tags: Vec<TagRef>,
    /// Minutes to read the body, at 230 words a minute (at least 1).
    pub reading_minutes: u32,
    pub cover: Option<Cover>,
}

/// A post with its rendered body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostDetail {
    #[serde(flatten)]
    pub summary: PostSummary,
    pub body_html: String,
    pub body_markdown: String,
}

impl PostSummary {
    pub(crate) fn from_row(row: PostRow, author: AuthorRef, tags: Vec<TagRef>) -> Self {
        PostSummary {
            id: row.id,
            title: row.title,
            slug: row.slug,
            excerpt: row.excerpt,
            author,
            published: row.published,
            published_at: row.published_at,
            updated_at: row.updated_at,
            view_count: row.view_count,
            featured: row.featured,
            tags,
            reading_minutes: reading_minutes(&row.body_markdown),
            cover: cover(&row.cover_image, row.cover_width, row.cover_height),
        }
    }
}

fn cover(url: &str, width: i32, height: i32) -> Option<Cover> {
    let (hash, format) = super::markdown::parse_media_url(url)?;
    let (width, height) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    (width > 0).then(|| Cover {
        url: super::markdown::media_url(&hash, format),
        srcset: super::markdown::srcset(&hash, format, width),
        width,
        height,
    })
}

/// Minutes an adult reads `text` in, at 230 words a minute, rounded up, at least 1.
pub fn reading_minutes(text: &str) -> u32 {
    let words = text.split_whitespace().count();
    u32::try_from(words.div_ceil(230))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// One page of a paginated list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> Page<T> {
    pub fn num_pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page).max(1)
    }
    pub fn has_next(&self) -> bool {
        self.page < self.num_pages()
    }
    pub fn has_previous(&self) -> bool {
        self.page > 1
    }
    /// A page past the last one (page 1 of an empty list exists).
    pub fn is_out_of_range(&self) -> bool {
        self.page > self.num_pages()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = personal_info)]
pub struct PersonalInfoRow {
    pub id: i32,
    pub name: String,
    pub headline: String,
    pub bio: String,
    pub location: String,
    pub email: String,
    pub avatar_url: String,
    pub skills: String,
    pub updated_at: NaiveDateTime,
}

/// The site owner's details; `skills` is stored comma-separated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonalInfo {
    pub name: String,
    pub headline: String,
    pub bio: String,
    pub bio_html: String,
    pub location: String,
    pub email: String,
    pub avatar_url: String,
    pub skills: Vec<String>,
    pub updated_at: NaiveDateTime,
}

impl From<PersonalInfoRow> for PersonalInfo {
    fn from(row: PersonalInfoRow) -> Self {
        PersonalInfo {
            bio_html: super::markdown::to_safe_html(&row.bio),
            skills: split_list(&row.skills),
            name: row.name,
            headline: row.headline,
            bio: row.bio,
            location: row.location,
            email: row.email,
            avatar_url: row.avatar_url,
            updated_at: row.updated_at,
        }
    }
}

pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = social_links)]
pub struct SocialLink {
    pub id: i32,
    pub name: String,
    pub url: String,
    pub icon: String,
    pub sort_order: i32,
    pub visible: bool,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = ai_tools)]
pub struct AiTool {
    pub id: i32,
    pub name: String,
    pub slug: String,
    pub url: String,
    pub description: String,
    pub category: String,
    pub featured: bool,
    pub sort_order: i32,
    pub updated_at: NaiveDateTime,
}

/// Tools of one category, in display order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCategory {
    pub name: String,
    pub tools: Vec<AiTool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolFilter {
    pub category: Option<String>,
    pub featured: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = contact_messages)]
pub struct ContactMessage {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub subject: String,
    pub message: String,
    pub created_at: NaiveDateTime,
    pub is_read: bool,
    pub sender_ip: Option<String>,
}

/// A validated contact message, ready to store (see `web::pages::contact` for validation).
#[derive(Debug, Clone)]
pub struct NewContactMessage {
    pub name: String,
    pub email: String,
    pub subject: String,
    pub message: String,
    pub sender_ip: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewAuthor {
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub bio: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewPersonalInfo {
    pub name: String,
    pub headline: String,
    pub bio: String,
    pub location: String,
    pub email: String,
    pub avatar_url: String,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewSocialLink {
    pub name: String,
    pub url: String,
    pub icon: String,
    pub sort_order: i32,
    #[serde(default = "yes")]
    pub visible: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewAiTool {
    pub name: String,
    pub slug: String,
    pub url: String,
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub featured: bool,
    pub sort_order: i32,
}

fn yes() -> bool {
    true
}

/// A published post's address and last change, for the sitemap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SitemapEntry {
    pub slug: String,
    pub updated_at: NaiveDateTime,
}

/// A post to create or update (the admin form, seeding); the repository renders the
/// Markdown, derives the excerpt when none is given and creates missing tags.
#[derive(Debug, Clone)]
pub struct PostInput {
    pub title: String,
    pub slug: String,
    pub body_markdown: String,
    pub excerpt: Option<String>,
    pub author_id: i32,
    pub tags: Vec<String>,
    pub published: bool,
    /// When it is (or was first) published, UTC; later than now: scheduled, shown to
    /// readers from that second on. None: now if `published`, or on an edit the date
    /// it was first published.
    pub published_at: Option<NaiveDateTime>,
    pub featured: bool,
    /// `/media/<hash>.<ext>` of an uploaded image, or empty.
    pub cover_image: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Selectable, PartialEq)]
#[diesel(table_name = admin_users)]
pub struct AdminUser {
    pub id: i32,
    pub username: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    /// Sessions signed in under another value are refused (see `web::session`).
    pub session_generation: i32,
}

/// Numbers for the admin overview.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdminOverview {
    pub posts: i64,
    pub drafts: i64,
    pub messages: i64,
    pub unread_messages: i64,
}
