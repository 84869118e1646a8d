//! Editing the owner's details, social links and AI tools.

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{admin_context, csrf_refused, redirect, render_status, Admin};
use crate::content::markdown::slugify;
use crate::content::models::{split_list, NewAiTool, NewPersonalInfo, NewSocialLink, ToolFilter};
use crate::content::repository::is_unique_violation;
use crate::db::DbError;
use crate::startup::AppState;
use crate::web::csrf;
use crate::web::error::PageError;

type Errors = BTreeMap<&'static str, String>;

fn required(errors: &mut Errors, field: &'static str, value: &str, max: usize) {
    let len = value.trim().chars().count();
    if len == 0 {
        errors.insert(field, "This field is required.".into());
    } else if len > max {
        errors.insert(field, format!("Keep this under {max} characters."));
    }
}

/// An absolute http(s) URL or a site path.
fn check_url(errors: &mut Errors, field: &'static str, value: &str) {
    let value = value.trim();
    let ok = value.starts_with('/')
        || url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !ok && !errors.contains_key(field) {
        errors.insert(
            field,
            "Use a full http(s) URL or a path starting with /.".into(),
        );
    }
}

fn number(errors: &mut Errors, field: &'static str, value: &str) -> i32 {
    value.trim().parse().unwrap_or_else(|_| {
        errors.insert(field, "Use a whole number.".into());
        0
    })
}

fn not_found_or(e: DbError) -> PageError {
    match e {
        DbError::Query(diesel::result::Error::NotFound) => PageError::NotFound,
        e => e.into(),
    }
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PersonalInfoForm {
    name: String,
    headline: String,
    bio: String,
    location: String,
    email: String,
    avatar_url: String,
    skills: String,
    csrf_token: String,
}

impl PersonalInfoForm {
    fn validate(&self) -> Result<NewPersonalInfo, Errors> {
        let mut errors = Errors::new();
        required(&mut errors, "name", &self.name, 100);
        required(&mut errors, "headline", &self.headline, 200);
        required(&mut errors, "email", &self.email, 254);
        if !errors.contains_key("email")
            && !email_address::EmailAddress::is_valid(self.email.trim())
        {
            errors.insert("email", "Enter a valid email address.".into());
        }
        if !self.avatar_url.trim().is_empty() {
            check_url(&mut errors, "avatar_url", &self.avatar_url);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewPersonalInfo {
            name: self.name.trim().into(),
            headline: self.headline.trim().into(),
            bio: self.bio.trim().into(),
            location: self.location.trim().into(),
            email: self.email.trim().into(),
            avatar_url: self.avatar_url.trim().into(),
            skills: split_list(&self.skills),
        })
    }
}

async fn personal_info_page(
    state: &AppState,
    session: &Session,
    admin: &Admin,
    form: &PersonalInfoForm,
    errors: &Errors,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, session, admin, "personal_info");
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, "admin/personal_info.html", &ctx, status)
}

pub async fn personal_info_form(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
) -> Result<HttpResponse, PageError> {
    let form = match state.repo.personal_info().await? {
        Some(info) => PersonalInfoForm {
            name: info.name,
            headline: info.headline,
            bio: info.bio,
            location: info.location,
            email: info.email,
            avatar_url: info.avatar_url,
            skills: info.skills.join(", "),
            csrf_token: String::new(),
        },
        None => PersonalInfoForm::default(),
    };
    personal_info_page(
        &state,
        &session,
        &admin,
        &form,
        &Errors::new(),
        StatusCode::OK,
    )
    .await
}

pub async fn save_personal_info(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
    form: web::Form<PersonalInfoForm>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    match form.validate() {
        Ok(info) => {
            state.repo.save_personal_info(&info).await?;
            Ok(redirect("/admin/personal-info/?saved=1"))
        }
        Err(errors) => {
            personal_info_page(
                &state,
                &session,
                &admin,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

// ----- social links -------------------------------------------------------------------

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SocialLinkForm {
    name: String,
    url: String,
    icon: String,
    sort_order: String,
    visible: Option<String>,
    csrf_token: String,
}

impl SocialLinkForm {
    fn validate(&self) -> Result<NewSocialLink, Errors> {
        let mut errors = Errors::new();
        required(&mut errors, "name", &self.name, 60);
        required(&mut errors, "url", &self.url, 500);
        check_url(&mut errors, "url", &self.url);
        let sort_order = number(&mut errors, "sort_order", &self.sort_order);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewSocialLink {
            name: self.name.trim().into(),
            url: self.url.trim().into(),
            icon: self.icon.trim().into(),
            sort_order,
            visible: self.visible.is_some(),
        })
    }
}

/// The links page; `failed` re-shows one submitted form (None: the add form) with its
/// errors and text.
async fn links_page(
    state: &AppState,
    session: &Session,
    admin: &Admin,
    failed: Option<(Option<i32>, &SocialLinkForm, &Errors)>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, session, admin, "social_links");
    ctx.insert("links", &state.repo.social_links(true).await?);
    ctx.insert("failed_id", &failed.map(|(id, _, _)| id.unwrap_or(0)));
    ctx.insert(
        "form",
        &failed
            .map(|(_, f, _)| f.clone())
            .unwrap_or_else(|| SocialLinkForm {
                visible: Some("on".into()),
                ..Default::default()
            }),
    );
    ctx.insert(
        "errors",
        &failed.map(|(_, _, e)| e.clone()).unwrap_or_default(),
    );
    render_status(state, "admin/social_links.html", &ctx, status)
}

pub async fn social_links(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
) -> Result<HttpResponse, PageError> {
    links_page(&state, &session, &admin, None, StatusCode::OK).await
}

async fn save_link(
    state: &AppState,
    session: &Session,
    admin: &Admin,
    id: Option<i32>,
    form: &SocialLinkForm,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    let link = match form.validate() {
        Ok(link) => link,
        Err(errors) => {
            return links_page(
                state,
                session,
                admin,
                Some((id, form, &errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    match state.repo.save_social_link(id, &link).await {
        Ok(()) => Ok(redirect("/admin/social-links/")),
        Err(e) if is_unique_violation(&e) => {
            let errors =
                Errors::from([("name", "Another link already has this name.".to_string())]);
            links_page(
                state,
                session,
                admin,
                Some((id, form, &errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(not_found_or(e)),
    }
}

pub async fn create_social_link(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
    form: web::Form<SocialLinkForm>,
) -> Result<HttpResponse, PageError> {
    save_link(&state, &session, &admin, None, &form).await
}

pub async fn update_social_link(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<SocialLinkForm>,
) -> Result<HttpResponse, PageError> {
    save_link(&state, &session, &admin, Some(*id), &form).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfOnly {
    csrf_token: String,
}

pub async fn delete_social_link(
    state: web::Data<AppState>,
    session: Session,
    _admin: Admin,
    id: web::Path<i32>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    if !state.repo.delete_social_link(*id).await? {
        return Err(PageError::NotFound);
    }
    Ok(redirect("/admin/social-links/"))
}

// ----- AI tools -----------------------------------------------------------------------

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AiToolForm {
    name: String,
    slug: String,
    url: String,
    description: String,
    category: String,
    sort_order: String,
    featured: Option<String>,
    csrf_token: String,
}

impl AiToolForm {
    fn validate(&self) -> Result<NewAiTool, Errors> {
        let mut errors = Errors::new();
        required(&mut errors, "name", &self.name, 100);
        required(&mut errors, "url", &self.url, 500);
        check_url(&mut errors, "url", &self.url);
        required(&mut errors, "category", &self.category, 60);
        required(&mut errors, "description", &self.description, 500);
        let slug = if self.slug.trim().is_empty() {
            slugify(&self.name)
        } else {
            self.slug.trim().to_string()
        };
        if slug.is_empty() || slug != slugify(&slug) {
            errors.insert("slug", "Use lowercase letters, digits and hyphens.".into());
        }
        let sort_order = number(&mut errors, "sort_order", &self.sort_order);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewAiTool {
            name: self.name.trim().into(),
            slug,
            url: self.url.trim().into(),
            description: self.description.trim().into(),
            category: self.category.trim().into(),
            featured: self.featured.is_some(),
            sort_order,
        })
    }
}

async fn tools_page(
    state: &AppState,
    session: &Session,
    admin: &Admin,
    failed: Option<(Option<i32>, &AiToolForm, &Errors)>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, session, admin, "ai_tools");
    ctx.insert("tools", &state.repo.ai_tools(&ToolFilter::default()).await?);
    ctx.insert("failed_id", &failed.map(|(id, _, _)| id.unwrap_or(0)));
    ctx.insert(
        "form",
        &failed.map(|(_, f, _)| f.clone()).unwrap_or_default(),
    );
    ctx.insert(
        "errors",
        &failed.map(|(_, _, e)| e.clone()).unwrap_or_default(),
    );
    render_status(state, "admin/ai_tools.html", &ctx, status)
}

pub async fn ai_tools(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
) -> Result<HttpResponse, PageError> {
    tools_page(&state, &session, &admin, None, StatusCode::OK).await
}

async fn save_tool(
    state: &AppState,
    session: &Session,
    admin: &Admin,
    id: Option<i32>,
    form: &AiToolForm,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    let tool = match form.validate() {
        Ok(tool) => tool,
        Err(errors) => {
            return tools_page(
                state,
                session,
                admin,
                Some((id, form, &errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    match state.repo.save_ai_tool(id, &tool).await {
        Ok(()) => Ok(redirect("/admin/ai-tools/")),
        Err(e) if is_unique_violation(&e) => {
            let errors =
                Errors::from([("slug", "Another tool already uses this slug.".to_string())]);
            tools_page(
                state,
                session,
                admin,
                Some((id, form, &errors)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(not_found_or(e)),
    }
}

pub async fn create_ai_tool(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
    form: web::Form<AiToolForm>,
) -> Result<HttpResponse, PageError> {
    save_tool(&state, &session, &admin, None, &form).await
}

pub async fn update_ai_tool(
    state: web::Data<AppState>,
    session: Session,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<AiToolForm>,
) -> Result<HttpResponse, PageError> {
    save_tool(&state, &session, &admin, Some(*id), &form).await
}

pub async fn delete_ai_tool(
    state: web::Data<AppState>,
    session: Session,
    _admin: Admin,
    id: web::Path<i32>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    if !state.repo.delete_ai_tool(*id).await? {
        return Err(PageError::NotFound);
    }
    Ok(redirect("/admin/ai-tools/"))
}
