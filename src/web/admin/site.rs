//! Editing the owner's details, social links and AI tools.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{admin_context, csrf_refused, redirect, render_status, Admin, CsrfOnly};
use crate::content::markdown::slugify;
use crate::content::models::{split_list, NewAiTool, NewPersonalInfo, NewSocialLink, ToolFilter};
use crate::content::repository::is_unique_violation;
use crate::content::Repository;
use crate::db::DbError;
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::state::AppState;

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
        e if e.is_not_found() => PageError::NotFound,
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
    admin: &Admin,
    form: &PersonalInfoForm,
    errors: &Errors,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, admin, "personal_info");
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    render_status(state, "admin/personal_info.html", &ctx, status).await
}

pub async fn personal_info_form(
    state: web::Data<AppState>,
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
    personal_info_page(&state, &admin, &form, &Errors::new(), StatusCode::OK).await
}

pub async fn save_personal_info(
    state: web::Data<AppState>,
    admin: Admin,
    form: web::Form<PersonalInfoForm>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
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
                &admin,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

// ----- lists edited in place: social links and AI tools --------------------------------

/// A list edited in place: a form per row and an add form, on one page. Social links
/// and AI tools differ only in their fields and repository calls.
pub trait ListEditor: 'static {
    type Form: DeserializeOwned + Serialize + Default + Clone + 'static;
    type Value;
    const TEMPLATE: &'static str;
    const SECTION: &'static str;
    const PATH: &'static str;
    /// The field and message for a unique-constraint refusal.
    const TAKEN: (&'static str, &'static str);
    fn csrf(form: &Self::Form) -> &str;
    fn blank() -> Self::Form;
    fn validate(form: &Self::Form) -> Result<Self::Value, Errors>;
    async fn rows(repo: &Repository) -> Result<serde_json::Value, DbError>;
    async fn save(repo: &Repository, id: Option<i32>, value: &Self::Value) -> Result<(), DbError>;
    async fn delete(repo: &Repository, id: i32) -> Result<bool, DbError>;
}

/// The page; `failed` re-shows one submitted form (id None: the add form) with its
/// errors and the text as typed.
async fn list_page<E: ListEditor>(
    state: &AppState,
    admin: &Admin,
    failed: Option<(Option<i32>, &E::Form, &Errors)>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = admin_context(state, admin, E::SECTION);
    ctx.insert("rows", &E::rows(&state.repo).await?);
    ctx.insert("failed_id", &failed.map(|(id, _, _)| id.unwrap_or(0)));
    ctx.insert(
        "form",
        &failed.map(|(_, f, _)| f.clone()).unwrap_or_else(E::blank),
    );
    ctx.insert(
        "errors",
        &failed.map(|(_, _, e)| e.clone()).unwrap_or_default(),
    );
    render_status(state, E::TEMPLATE, &ctx, status).await
}

pub async fn list<E: ListEditor>(
    state: web::Data<AppState>,
    admin: Admin,
) -> Result<HttpResponse, PageError> {
    list_page::<E>(&state, &admin, None, StatusCode::OK).await
}

async fn save<E: ListEditor>(
    state: &AppState,
    admin: &Admin,
    id: Option<i32>,
    form: &E::Form,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, E::csrf(form)) {
        return Ok(csrf_refused());
    }
    let refused = |errors: Errors| async move {
        list_page::<E>(
            state,
            admin,
            Some((id, form, &errors)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await
    };
    let value = match E::validate(form) {
        Ok(value) => value,
        Err(errors) => return refused(errors).await,
    };
    match E::save(&state.repo, id, &value).await {
        Ok(()) => Ok(redirect(E::PATH)),
        Err(e) if is_unique_violation(&e) => {
            refused(Errors::from([(E::TAKEN.0, E::TAKEN.1.to_string())])).await
        }
        Err(e) => Err(not_found_or(e)),
    }
}

pub async fn create<E: ListEditor>(
    state: web::Data<AppState>,
    admin: Admin,
    form: web::Form<E::Form>,
) -> Result<HttpResponse, PageError> {
    save::<E>(&state, &admin, None, &form).await
}

pub async fn update<E: ListEditor>(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<E::Form>,
) -> Result<HttpResponse, PageError> {
    save::<E>(&state, &admin, Some(*id), &form).await
}

pub async fn delete<E: ListEditor>(
    state: web::Data<AppState>,
    admin: Admin,
    id: web::Path<i32>,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, PageError> {
    if !csrf::verify(&admin.session, &form.csrf_token) {
        return Ok(csrf_refused());
    }
    if !E::delete(&state.repo, *id).await? {
        return Err(PageError::NotFound);
    }
    Ok(redirect(E::PATH))
}

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

pub struct SocialLinks;

impl ListEditor for SocialLinks {
    type Form = SocialLinkForm;
    type Value = NewSocialLink;
    const TEMPLATE: &'static str = "admin/social_links.html";
    const SECTION: &'static str = "social_links";
    const PATH: &'static str = "/admin/social-links/";
    const TAKEN: (&'static str, &'static str) = ("name", "Another link already has this name.");

    fn csrf(form: &SocialLinkForm) -> &str {
        &form.csrf_token
    }
    fn blank() -> SocialLinkForm {
        SocialLinkForm {
            visible: Some("on".into()),
            sort_order: "10".into(),
            ..Default::default()
        }
    }
    fn validate(form: &SocialLinkForm) -> Result<NewSocialLink, Errors> {
        let mut errors = Errors::new();
        required(&mut errors, "name", &form.name, 60);
        required(&mut errors, "url", &form.url, 500);
        check_url(&mut errors, "url", &form.url);
        let sort_order = number(&mut errors, "sort_order", &form.sort_order);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewSocialLink {
            name: form.name.trim().into(),
            url: form.url.trim().into(),
            icon: form.icon.trim().into(),
            sort_order,
            visible: form.visible.is_some(),
        })
    }
    async fn rows(repo: &Repository) -> Result<serde_json::Value, DbError> {
        Ok(serde_json::to_value(repo.social_links(true).await?).unwrap_or_default())
    }
    async fn save(
        repo: &Repository,
        id: Option<i32>,
        value: &NewSocialLink,
    ) -> Result<(), DbError> {
        repo.save_social_link(id, value).await
    }
    async fn delete(repo: &Repository, id: i32) -> Result<bool, DbError> {
        repo.delete_social_link(id).await
    }
}

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

pub struct AiTools;

impl ListEditor for AiTools {
    type Form = AiToolForm;
    type Value = NewAiTool;
    const TEMPLATE: &'static str = "admin/ai_tools.html";
    const SECTION: &'static str = "ai_tools";
    const PATH: &'static str = "/admin/ai-tools/";
    const TAKEN: (&'static str, &'static str) = ("slug", "Another tool already uses this slug.");

    fn csrf(form: &AiToolForm) -> &str {
        &form.csrf_token
    }
    fn blank() -> AiToolForm {
        AiToolForm {
            sort_order: "10".into(),
            ..Default::default()
        }
    }
    fn validate(form: &AiToolForm) -> Result<NewAiTool, Errors> {
        let mut errors = Errors::new();
        required(&mut errors, "name", &form.name, 100);
        required(&mut errors, "url", &form.url, 500);
        check_url(&mut errors, "url", &form.url);
        required(&mut errors, "category", &form.category, 60);
        required(&mut errors, "description", &form.description, 500);
        let slug = if form.slug.trim().is_empty() {
            slugify(&form.name)
        } else {
            form.slug.trim().to_string()
        };
        if slug.is_empty() || slug != slugify(&slug) {
            errors.insert("slug", "Use lowercase letters, digits and hyphens.".into());
        }
        let sort_order = number(&mut errors, "sort_order", &form.sort_order);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewAiTool {
            name: form.name.trim().into(),
            slug,
            url: form.url.trim().into(),
            description: form.description.trim().into(),
            category: form.category.trim().into(),
            featured: form.featured.is_some(),
            sort_order,
        })
    }
    async fn rows(repo: &Repository) -> Result<serde_json::Value, DbError> {
        Ok(serde_json::to_value(repo.ai_tools(&ToolFilter::default()).await?).unwrap_or_default())
    }
    async fn save(repo: &Repository, id: Option<i32>, value: &NewAiTool) -> Result<(), DbError> {
        repo.save_ai_tool(id, value).await
    }
    async fn delete(repo: &Repository, id: i32) -> Result<bool, DbError> {
        repo.delete_ai_tool(id).await
    }
}
