use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{admin_context, csrf_refused, redirect, render, render_status, Admin, CsrfOnly};
use crate::content::markdown::slugify;
use chrono::NaiveDateTime;
use jiff::tz::TimeZone;

use crate::content::markdown::{media_url, parse_media_url};
use crate::content::models::{split_list, PostInput, PostSummary};
use crate::content::repository::is_unique_violation;
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::state::AppState;

/// The post form as submitted (checkboxes are absent when unticked).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PostForm {
    title: String,
    slug: String,
    body_markdown: String,
    excerpt: String,
    author_id: String,
    tags: String,
    published: Option<String>,
    /// When readers see it, in `SITE_TIMEZONE` (`datetime-local`, seconds optional);
    /// empty: now on first publication, else the date it was first published.
    publish_at: String,
    featured: Option<String>,
    /// `/media/<hash>.<ext>` of an uploaded image (the editor's cover upload fills it).
    cover_image: String,
    csrf_token: String,
}

type Errors = BTreeMap<&'static str, String>;

impl PostForm {
    /// `max_body`: `MAX_POST_BYTES`; `zone`: `SITE_TIMEZONE`.
    fn validate(&self, max_body: usize, zone: &TimeZone) -> Result<PostInput, Errors> {
        let mut errors = Errors::new();
        let title = self.title.trim();
        if title.is_empty() {
            errors.insert("title", "A title is required.".into());
        } else if title.chars().count() > 200 {
            errors.insert("title", "Keep the title under 200 characters.".into());
        }
        let slug = if self.slug.trim().is_empty() {
            slugify(title)
        } else {
            self.slug.trim().to_string()
        };
        if slug.is_empty() || slug != slugify(&slug) {
            errors.insert(
                "slug",
                "Use lowercase letters, digits and hyphens (e.g. my-first-post).".into(),
            );
        }
        if self.body_markdown.trim().is_empty() {
            errors.insert("body_markdown", "The post needs a body.".into());
        } else if self.body_markdown.len() > max_body {
            errors.insert(
                "body_markdown",
                format!(
                    "This post is {} KB; a post may be at most {} KB (MAX_POST_BYTES). Your text is kept below.",
                    self.body_markdown.len().div_ceil(1024),
                    max_body / 1024
                ),
            );
        }
        let publish_at = match self.publish_at.trim() {
            "" => None,
            text => match local_to_utc(text, zone) {
                Ok(at) => Some(at),
                Err(e) => {
                    errors.insert("publish_at", e);
                    None
                }
            },
        };
        let cover_image = self.cover_image.trim();
        if !cover_image.is_empty()
            && parse_media_url(cover_image)
                .map(|(h, f)| media_url(&h, f))
                .as_deref()
                != Some(cover_image)
        {
            errors.insert(
                "cover_image",
                "Upload the cover image with the button (its address is /media/…).".into(),
            );
        }
        let author_id = self.author_id.parse::<i32>().ok();
        if author_id.is_none() {
            errors.insert("author_id", "Choose an author.".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(PostInput {
            title: title.to_string(),
            slug,
            body_markdown: self.body_markdown.clone(),
            excerpt: Some(self.excerpt.trim().to_string()).filter(|e| !e.is_empty()),
            author_id: author_id.expect("checked"),
            tags: split_list(&self.tags),
            published: self.published.is_some(),
            published_at: publish_at,
            featured: self.featured.is_some(),
            cover_image: cover_image.to_string(),
        })
    }
}

/// A time the admin typed (`2026-12-03T10:15:30`, or without seconds) in `zone` → UTC.
/// A time a DST change skips or repeats is read as the offset before the change.
fn local_to_utc(text: &str, zone: &TimeZone) -> Result<NaiveDateTime, String> {
    let refused = || {
        format!(
            "Use a date and time such as 2026-12-03T10:15:30 (in {}).",
            zone_name(zone)
        )
    };
    let local: jiff::civil::DateTime = text.parse().map_err(|_| refused())?;
    let seconds = local
        .to_zoned(zone.clone())
        .map_err(|_| refused())?
        .timestamp()
        .as_second();
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.naive_utc())
        .ok_or_else(refused)
}

/// A stored UTC time as the admin reads and types it, in `zone`.
fn utc_to_local(at: NaiveDateTime, zone: &TimeZone) -> String {
    jiff::Timestamp::from_second(at.and_utc().timestamp())
        .map(|t| {
            t.to_zoned(zone.clone())
                .strftime("%Y-%m-%dT%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

fn zone_name(zone: &TimeZone) -> &str {
    zone.iana_name().unwrap_or("UTC")
}

/// A row of the admin's post list: the post, and when readers see it in local time.
#[derive(Serialize)]
struct ListRow {
    #[serde(flatten)]
    post: PostSummary,
    /// In `SITE_TIMEZONE`.
    publish_at: Option<String>,
    /// Published, with a time still ahead.
    scheduled: bool,
}

pub async fn list(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, PageError> {
    let zone = &state.config.site_timezone;
    let now = chrono::Utc::now().naive_utc();
    let rows: Vec<ListRow> = state
        .repo
        .all_posts()
        .await?
        .into_iter()
        .map(|post| ListRow {
            publish_at: post.published_at.map(|at| utc_to_local(at, zone)),
            scheduled: post.published && post.published_at.is_some_and(|at| at > now),
            post,
        })
        .collect();
    let mut ctx = admin_context(&state, &admin, "posts");
    ctx.insert("posts", &rows);
    ctx.insert("timezone", zone_name(zone));
    render(&state, "admin/posts.html", &ctx).await
}

async fn form_page(
    state: &AppState,
    admin: &Admin,
    post_id: Option<i32>,
    form: &PostForm,
    errors: &Errors,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, admin, "posts");
    ctx.insert("post_id", &post_id);
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    ctx.insert("authors", &state.repo.authors().await?);
    ctx.insert("timezone", zone_name(&state.config.site_timezone));
    ctx.insert("max_image_kb", &(state.config.max_image_bytes / 1024));
    render_status(state, "admin/post_form.html", &ctx, status).await
}

pub async fn new_form(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, PageError> {
    let authors = state.repo.authors().await?;
    let form = PostForm {
        author_id: authors
            .first()
            .map(|a| a.id.to_string())
            .unwrap_or_default(),
        ..Default::default()
    };
    form_page(&state, &admin, None, &form, &Errors::new(), StatusCode::OK).await
}

pub async fn create(
    state: web::Data<AppState>,
    admin: Admin,
    form: web::Form<PostForm>,
) -> Result<HttpResponse, PageError> {
    save(&state, &admin, None, form.into_inner()).await
}

pub async fn edit_form(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
) -> Result<HttpResponse, PageError> {
    let (post, author_id) = state
        .repo
        .post_for_edit(*id)
        .await?
        .ok_or(PageError::NotFound)?;
    let s = post.summary;
    let form = PostForm {
        title: s.title,
        slug: s.slug,
        body_markdown: post.body_markdown,
        excerpt: s.excerpt,
        author_id: author_id.to_string(),
        tags: s
            .tags
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
        published: s.published.then(|| "on".into()),
        publish_at: s
            .published_at
            .map(|at| utc_to_local(at, &state.config.site_timezone))
            .unwrap_or_default(),
        featured: s.featured.then(|| "on".into()),
        cover_image: s.cover.map(|c| c.url).unwrap_or_default(),
        csrf_token: String::new(),
    };
    form_page(
        &state,
        &admin,
        Some(*id),
        &form,
        &Errors::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn update(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<PostForm>,
) -> Result<HttpResponse, PageError> {
    save(&state, &admin, Some(*id), form.into_inner()).await
}

/// Validates and saves; problems re-render the form with the text kept.
async fn save(
    state: &AppState,
    admin: &Admin,
    id: Option<i32>,
    form: PostForm,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    let input = match form.validate(state.config.max_post_bytes, &state.config.site_timezone) {
        Ok(input) => input,
        Err(errors) => {
            return form_page(
                state,
                admin,
                id,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    // A cover must be an image that was uploaded (the address alone could be typed).
    if let Some((hash, format)) = parse_media_url(&input.cover_image) {
        if state.repo.media(&hash, format, None).await?.is_none() {
            let errors = Errors::from([(
                "cover_image",
                "No uploaded image has this address; upload it again.".to_string(),
            )]);
            return form_page(
                state,
                admin,
                id,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    }
    let result = match id {
        Some(id) => state.repo.update_post(id, input).await,
        None => state.repo.create_post(input).await,
    };
    match result {
        Ok(_) => Ok(redirect("/admin/posts/")),
        Err(e) if is_unique_violation(&e) => {
            let errors =
                Errors::from([("slug", "Another post already uses this slug.".to_string())]);
            form_page(
                state,
                admin,
                id,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) if e.is_not_found() => Err(PageError::NotFound),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_form(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
) -> Result<HttpResponse, PageError> {
    let (post, _) = state
        .repo
        .post_for_edit(*id)
        .await?
        .ok_or(PageError::NotFound)?;
    let mut ctx = admin_context(&state, &admin, "posts");
    ctx.insert("post", &post.summary);
    render(&state, "admin/post_delete.html", &ctx).await
}

pub async fn delete(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    if !state.repo.delete_post(*id).await? {
        return Err(PageError::NotFound);
    }
    Ok(redirect("/admin/posts/"))
}

/// A draft or scheduled post (or a published one) exactly as readers will see it: not
/// cached, not counted as a view, `noindex`.
pub async fn preview(
    state: web::Data<AppState>,
    _admin: Admin,
    id: web::Path<i32>,
) -> Result<HttpResponse, PageError> {
    let (post, _) = state
        .repo
        .post_for_edit(*id)
        .await?
        .ok_or(PageError::NotFound)?;
    crate::web::pages::blog::post_page(&state, &post, true).await
}
