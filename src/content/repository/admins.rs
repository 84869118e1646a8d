//! Admin accounts.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{now, RepoResult, Repository};
use crate::content::models::*;
use crate::content::schema::admin_users;
use crate::with_conn;

impl Repository {
    pub async fn admin_by_username(&self, username: &str) -> RepoResult<Option<AdminUser>> {
        with_conn!(self.db, |conn| {
            Ok(admin_users::table
                .filter(admin_users::username.eq(username.to_string()))
                .select(AdminUser::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    /// Ends every session of this admin, on every instance (sign-out, password change).
    pub async fn revoke_admin_sessions(&self, username: &str) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            diesel::update(
                admin_users::table.filter(admin_users::username.eq(username.to_string())),
            )
            .set(admin_users::session_generation.eq(admin_users::session_generation + 1))
            .execute(conn)
            .await?;
            Ok(())
        })
    }

    /// Creates the account, or sets a new password (which ends its sessions) if it exists.
    pub async fn upsert_admin(&self, username: &str, password_hash: &str) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            diesel::insert_into(admin_users::table)
                .values((
                    admin_users::username.eq(username),
                    admin_users::password_hash.eq(password_hash),
                    admin_users::created_at.eq(now()),
                ))
                .on_conflict(admin_users::username)
                .do_update()
                .set((
                    admin_users::password_hash.eq(password_hash),
                    admin_users::session_generation.eq(admin_users::session_generation + 1),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}
