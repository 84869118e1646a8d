use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{admin_context, csrf_refused, redirect, render, render_status, Admin, CsrfOnly};
use crate::content::markdown::slugify;
use crate::content::models::{split_list, PostInput};
use crate::content::repository::is_unique_violation;
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::AppState;

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
    featured: Option<String>,
    csrf_token: String,
}

type Errors = BTreeMap<&'static str, String>;

impl PostForm {
    /// `max_body`: `MAX_POST_BYTES`.
    fn validate(&self, max_body: usize) -> Result<PostInput, Errors> {
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
            published_at: None,
            featured: self.featured.is_some(),
        })
    }
}

pub async fn list(state: web::Data<AppState>, admin: Admin) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(&state, &admin, "posts");
    ctx.insert("posts", &state.repo.all_posts().await?);
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
        featured: s.featured.then(|| "on".into()),
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
    let input = match form.validate(state.config.max_post_bytes) {
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
