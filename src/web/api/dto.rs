//! The API's response shapes. Dates are ISO-8601 in UTC (`2026-10-02T09:00:00Z`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::content::models::{AiTool, PersonalInfo, PostDetail, PostSummary, SocialLink};

pub fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorDto {
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagDto {
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostListItem {
    pub id: i32,
    pub title: String,
    pub slug: String,
    pub author: AuthorDto,
    pub published_at: Option<DateTime<Utc>>,
    /// When readers see the post from (a post is scheduled by giving it a time ahead,
    /// and the API shows it from that second on). The same as `published_at`.
    pub publish_at: Option<DateTime<Utc>>,
    /// Minutes to read it, at 230 words a minute.
    pub reading_minutes: u32,
    /// How many times the post was viewed.
    pub views: i64,
    pub tags: Vec<TagDto>,
    pub excerpt: String,
    /// Site-relative URL of the post's page.
    pub url: String,
}

impl From<PostSummary> for PostListItem {
    fn from(p: PostSummary) -> Self {
        PostListItem {
            url: format!("/blog/{}/", p.slug),
            id: p.id,
            title: p.title,
            slug: p.slug,
            author: AuthorDto {
                name: p.author.name,
                slug: p.author.slug,
            },
            published_at: p.published_at.map(utc),
            publish_at: p.published_at.map(utc),
            reading_minutes: p.reading_minutes,
            views: p.view_count,
            tags: p
                .tags
                .into_iter()
                .map(|t| TagDto {
                    name: t.name,
                    slug: t.slug,
                })
                .collect(),
            excerpt: p.excerpt,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostList {
    /// Number of posts over all pages.
    pub count: i64,
    /// Absolute URL of the next page, if any.
    pub next: Option<String>,
    /// Absolute URL of the previous page, if any.
    pub previous: Option<String>,
    pub results: Vec<PostListItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostDetailDto {
    #[serde(flatten)]
    pub post: PostListItem,
    pub featured: bool,
    pub updated_at: DateTime<Utc>,
    /// Sanitized HTML rendered from the post's Markdown.
    pub body_html: String,
}

impl From<PostDetail> for PostDetailDto {
    fn from(p: PostDetail) -> Self {
        PostDetailDto {
            featured: p.summary.featured,
            updated_at: utc(p.summary.updated_at),
            post: p.summary.into(),
            body_html: p.body_html,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalInfoDto {
    pub name: String,
    pub headline: String,
    /// Markdown.
    pub bio: String,
    pub location: String,
    pub email: String,
    pub avatar_url: String,
    pub skills: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<PersonalInfo> for PersonalInfoDto {
    fn from(p: PersonalInfo) -> Self {
        PersonalInfoDto {
            name: p.name,
            headline: p.headline,
            bio: p.bio,
            location: p.location,
            email: p.email,
            avatar_url: p.avatar_url,
            skills: p.skills,
            updated_at: utc(p.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SocialLinkDto {
    pub id: i32,
    pub name: String,
    pub url: String,
    pub icon: String,
    pub order: i32,
}

impl From<SocialLink> for SocialLinkDto {
    fn from(l: SocialLink) -> Self {
        SocialLinkDto {
            id: l.id,
            name: l.name,
            url: l.url,
            icon: l.icon,
            order: l.sort_order,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SocialLinkList {
    pub count: usize,
    pub results: Vec<SocialLinkDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AiToolDto {
    pub id: i32,
    pub name: String,
    pub slug: String,
    pub url: String,
    pub description: String,
    pub category: String,
    pub featured: bool,
    pub order: i32,
}

impl From<AiTool> for AiToolDto {
    fn from(t: AiTool) -> Self {
        AiToolDto {
            id: t.id,
            name: t.name,
            slug: t.slug,
            url: t.url,
            description: t.description,
            category: t.category,
            featured: t.featured,
            order: t.sort_order,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AiToolList {
    pub count: usize,
    pub results: Vec<AiToolDto>,
}
