//! CSRF protection for forms: a random token kept in the (signed, encrypted) session and
//! echoed in a hidden field; a POST is accepted only when the two match.

use actix_session::Session;
use rand::RngCore;
use subtle::ConstantTimeEq;

const SESSION_KEY: &str = "csrf_token";
/// The hidden field's name in every form.
pub const FIELD: &str = "csrf_token";

/// The session's token, created on first use.
pub fn token(session: &Session) -> String {
    if let Ok(Some(existing)) = session.get::<String>(SESSION_KEY) {
        return existing;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    if let Err(e) = session.insert(SESSION_KEY, &token) {
        tracing::warn!(error = %e, "cannot store CSRF token in session");
    }
    token
}

/// Compares in constant time, so the token cannot be guessed byte by byte.
pub fn verify(session: &Session, submitted: &str) -> bool {
    match session.get::<String>(SESSION_KEY) {
        Ok(Some(expected)) => {
            !submitted.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    }
}
