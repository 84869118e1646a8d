//! Who is signed in, read from the session; shared by the admin area and the caches
//! (an admin's requests bypass the shared response cache).

use actix_session::SessionExt;
use actix_web::dev::ServiceRequest;

/// Session key holding the signed-in admin's username.
pub const ADMIN_KEY: &str = "admin_user";

pub fn admin_user(req: &ServiceRequest) -> Option<String> {
    req.get_session().get::<String>(ADMIN_KEY).ok().flatten()
}

/// Whether an admin is signed in (the response cache's `IsAdmin`).
pub fn is_admin(req: &ServiceRequest) -> bool {
    admin_user(req).is_some()
}
