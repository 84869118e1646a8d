//! CSRF protection for forms, two ways:
//!
//! - Signed-in admins: a random token kept in their (signed, encrypted) session and
//!   echoed in a hidden field; a POST is accepted only when the two match.
//! - Forms shown before sign-in (contact, login): a double-submit token, so an
//!   anonymous visitor gets no server-side session (nothing written to the cache per
//!   visit). A cookie holds a random value; the hidden field holds its HMAC under
//!   `SECRET_KEY`. A POST is accepted only with both, and another site can neither read
//!   the cookie nor compute the field for it.

use actix_session::Session;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

const SESSION_KEY: &str = "csrf_token";
/// The hidden field's name in every form.
pub const FIELD: &str = "csrf_token";
/// The double-submit cookie of the forms shown before sign-in.
pub const COOKIE: &str = "folio_csrf";

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session's token, created on first use.
pub fn token(session: &Session) -> String {
    if let Ok(Some(existing)) = session.get::<String>(SESSION_KEY) {
        return existing;
    }
    let token = random_hex();
    if let Err(e) = session.insert(SESSION_KEY, &token) {
        tracing::warn!(error = %e, "cannot store CSRF token in session");
    }
    token
}

/// Compares in constant time, so the token cannot be guessed byte by byte.
pub fn verify(session: &Session, submitted: &str) -> bool {
    match session.get::<String>(SESSION_KEY) {
        Ok(Some(expected)) => equal(&expected, submitted),
        _ => false,
    }
}

fn equal(expected: &str, submitted: &str) -> bool {
    !submitted.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// A form token for a visitor who is not signed in: the hidden field's value, and the
/// cookie to set when the visitor has none yet.
pub struct FormToken {
    pub field: String,
    pub cookie: Option<Cookie<'static>>,
}

fn sign(secret: &[u8], value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"folio-csrf:");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The visitor's double-submit cookie value, if it has a well-formed one.
fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| well_formed(v))
}

fn well_formed(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The token for a form shown before sign-in (see the module comment), given the
/// visitor's cookie value if any.
fn form_token(cookie: Option<&str>, secret: &[u8], secure: bool) -> FormToken {
    if let Some(value) = cookie.filter(|v| well_formed(v)) {
        return FormToken {
            field: sign(secret, value),
            cookie: None,
        };
    }
    let value = random_hex();
    let cookie = Cookie::build(COOKIE, value.clone())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish();
    FormToken {
        field: sign(secret, &value),
        cookie: Some(cookie),
    }
}

/// `form_token` with the site's secret, the cookie `Secure` on an https site.
pub fn form_token_for(req: &HttpRequest, config: &crate::config::Config) -> FormToken {
    let secure = config.site_url.starts_with("https://");
    let cookie = cookie_value(req);
    form_token(
        cookie.as_deref(),
        config.secret_key.expose().as_bytes(),
        secure,
    )
}

/// `verify_form` with the site's secret.
pub fn verify_form_for(req: &HttpRequest, config: &crate::config::Config, submitted: &str) -> bool {
    let cookie = cookie_value(req);
    verify_form(
        cookie.as_deref(),
        config.secret_key.expose().as_bytes(),
        submitted,
    )
}

/// Whether a form posted before sign-in carries the field that matches its cookie.
fn verify_form(cookie: Option<&str>, secret: &[u8], submitted: &str) -> bool {
    cookie
        .filter(|v| well_formed(v))
        .is_some_and(|value| equal(&sign(secret, value), submitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_token_matches_only_its_own_cookie() {
        let secret = b"secret";
        let first = form_token(None, secret, false);
        let cookie = first.cookie.expect("a new visitor gets a cookie");
        let value = Some(cookie.value());
        let again = form_token(value, secret, false);
        assert!(again.cookie.is_none());
        assert_eq!(again.field, first.field);
        assert!(verify_form(value, secret, &first.field));
        assert!(!verify_form(value, b"other secret", &first.field));
        assert!(!verify_form(value, secret, ""));
        assert!(!verify_form(Some(&"a".repeat(64)), secret, &first.field));
        assert!(!verify_form(None, secret, &first.field));
        assert!(form_token(Some("not hex"), secret, false).cookie.is_some());
    }
}
