//! The contact form. Validation lives in `ContactForm::validate`, so the handler only
//! ever stores a checked message; invalid input re-renders the form with the user's text.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{base_context, render};
use crate::content::models::NewContactMessage;
use crate::web::csrf;
use crate::web::error::PageError;
use crate::web::state::AppState;

pub const MAX_NAME: usize = 100;
pub const MAX_EMAIL: usize = 254;
pub const MAX_SUBJECT: usize = 200;
pub const MIN_MESSAGE: usize = 10;
pub const MAX_MESSAGE: usize = 5000;
/// The form's body limit: every field at its limit in characters of four UTF-8 bytes,
/// each percent-encoded (three bytes per byte), with room to spare. Over it, the body is
/// refused before parsing (a 413 page); under it, the limits are counted in characters.
pub const MAX_BODY: usize = 128 * 1024;

/// The form as submitted; every field defaults to empty so a missing field is reported
/// as a field error, not a bare 400.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ContactForm {
    pub name: String,
    pub email: String,
    pub subject: String,
    pub message: String,
    pub csrf_token: String,
    /// The honeypot: hidden from people by the stylesheet, filled in by form-filling bots.
    pub website: String,
}

pub type FieldErrors = BTreeMap<&'static str, String>;

impl ContactForm {
    /// Trims and checks every field; all problems are reported at once.
    pub fn validate(&self, sender_ip: Option<String>) -> Result<NewContactMessage, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim();
        let email = self.email.trim();
        let subject = self.subject.trim();
        let message = self.message.trim();
        let mut check = |field: &'static str, value: &str, min: usize, max: usize| {
            let len = value.chars().count();
            if len == 0 {
                errors.insert(field, "This field is required.".into());
            } else if len < min {
                errors.insert(field, format!("Please write at least {min} characters."));
            } else if len > max {
                errors.insert(
                    field,
                    format!("Please keep this under {max} characters (it has {len})."),
                );
            }
        };
        check("name", name, 1, MAX_NAME);
        check("email", email, 1, MAX_EMAIL);
        check("subject", subject, 1, MAX_SUBJECT);
        check("message", message, MIN_MESSAGE, MAX_MESSAGE);
        if !email.is_empty()
            && !errors.contains_key("email")
            && !email_address::EmailAddress::is_valid(email)
        {
            errors.insert(
                "email",
                "Please enter a valid email address, like name@example.com.".into(),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewContactMessage {
            name: name.into(),
            email: email.into(),
            subject: subject.into(),
            message: message.into(),
            sender_ip,
        })
    }
}

pub async fn form(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    render_form(
        &state,
        &req,
        &ContactForm::default(),
        &FieldErrors::new(),
        None,
        StatusCode::OK,
    )
    .await
}

pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<ContactForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    if !csrf::verify_form_for(&req, &state.config, &form.csrf_token) {
        let notice = "Your session expired before the form was sent. Nothing was lost: please send it again.";
        return render_form(
            &state,
            &req,
            &form,
            &FieldErrors::new(),
            Some(notice),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    if !form.website.is_empty() {
        // A bot: it gets the same answer as a person, and nothing is stored.
        tracing::info!("contact form honeypot filled; message dropped");
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/contact/thanks/"))
            .finish());
    }
    let ip = crate::web::client::of(&req);
    match form.validate(Some(ip.clone())) {
        Ok(message) => {
            // Counted only for messages that would be stored: fixing a typo the form
            // pointed out does not use up the limit.
            let sent = state.limits.contact.add(&state.cache, &[&ip], 1).await;
            if sent > i64::from(state.config.contact_per_hour) {
                let notice = format!(
                    "You have sent {} messages in the last hour, the most we accept. Your message is kept below: please send it again later.",
                    state.config.contact_per_hour
                );
                return render_form(
                    &state,
                    &req,
                    &form,
                    &FieldErrors::new(),
                    Some(&notice),
                    StatusCode::TOO_MANY_REQUESTS,
                )
                .await;
            }
            state.repo.create_contact_message(message).await?;
            // Post/redirect/get: reloading the thank-you page does not send twice.
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/contact/thanks/"))
                .finish())
        }
        Err(errors) => {
            render_form(
                &state,
                &req,
                &form,
                &errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

pub async fn thanks(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let ctx = base_context(&state, "contact", "/contact/thanks/").await?;
    render(&state, "contact/thanks.html", ctx).await
}

async fn render_form(
    state: &AppState,
    req: &HttpRequest,
    form: &ContactForm,
    errors: &FieldErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut ctx = base_context(state, "contact", "/contact/").await?;
    ctx.insert("form", form);
    ctx.insert("errors", errors);
    ctx.insert("notice", &notice);
    ctx.insert("csrf_field", csrf::FIELD);
    let token = csrf::form_token_for(req, &state.config);
    ctx.insert("csrf_token", &token.field);
    ctx.insert(
        "limits",
        &serde_json::json!({"name": MAX_NAME, "email": MAX_EMAIL, "subject": MAX_SUBJECT, "message": MAX_MESSAGE}),
    );
    let mut response = render(state, "contact/form.html", ctx).await?;
    *response.status_mut() = status;
    // The form carries a per-visitor token: never store it in a shared cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-store"),
    );
    if let Some(cookie) = token.cookie {
        response
            .add_cookie(&cookie)
            .map_err(|e| PageError::Internal(format!("CSRF cookie: {e}")))?;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str, email: &str, subject: &str, message: &str) -> ContactForm {
        ContactForm {
            name: name.into(),
            email: email.into(),
            subject: subject.into(),
            message: message.into(),
            csrf_token: String::new(),
            website: String::new(),
        }
    }

    #[test]
    fn valid_form_is_trimmed() {
        let msg = form(" Ann ", "ann@example.com", "Hi", "A long enough message")
            .validate(None)
            .unwrap();
        assert_eq!(msg.name, "Ann");
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = form("", "not-an-email", &"x".repeat(MAX_SUBJECT + 1), "short")
            .validate(None)
            .unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            vec!["email", "message", "name", "subject"]
        );
    }
}
