//! Contact messages and the admin overview counts.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{now, RepoResult, Repository};
use crate::content::invalidation::Model;
use crate::content::models::*;
use crate::content::schema::{contact_messages, posts};
use crate::with_conn;

impl Repository {
    /// One page of the inbox, newest first.
    pub async fn contact_messages(
        &self,
        page: i64,
        per_page: i64,
    ) -> RepoResult<Page<ContactMessage>> {
        let page = page.max(1);
        with_conn!(self.db, |conn| {
            let total: i64 = contact_messages::table.count().get_result(conn).await?;
            let items = contact_messages::table
                .select(ContactMessage::as_select())
                .order_by((
                    contact_messages::created_at.desc(),
                    contact_messages::id.desc(),
                ))
                .limit(per_page)
                .offset((page - 1) * per_page)
                .load(conn)
                .await?;
            Ok(Page {
                items,
                total,
                page,
                per_page,
            })
        })
    }

    pub async fn create_contact_message(
        &self,
        msg: NewContactMessage,
    ) -> RepoResult<ContactMessage> {
        let stored = transact!(self, &[Model::ContactMessage], |conn| {
            Ok(diesel::insert_into(contact_messages::table)
                .values((
                    contact_messages::name.eq(msg.name),
                    contact_messages::email.eq(msg.email),
                    contact_messages::subject.eq(msg.subject),
                    contact_messages::message.eq(msg.message),
                    contact_messages::created_at.eq(now()),
                    contact_messages::is_read.eq(false),
                    contact_messages::sender_ip.eq(msg.sender_ip),
                ))
                .returning(ContactMessage::as_returning())
                .get_result(conn)
                .await?)
        })?;
        Ok(stored)
    }

    pub async fn mark_message_read(&self, id: i32, read: bool) -> RepoResult<bool> {
        let n = transact!(self, &[Model::ContactMessage], |conn| {
            Ok(diesel::update(contact_messages::table.find(id))
                .set(contact_messages::is_read.eq(read))
                .execute(conn)
                .await?)
        })?;
        Ok(n > 0)
    }

    /// Counts for the admin overview (cached until a post or message changes).
    pub async fn admin_overview(&self) -> RepoResult<AdminOverview> {
        const DEPS: &[&str] = &[
            crate::content::invalidation::CacheTag::AdminStats.name(),
            crate::content::invalidation::CacheTag::PostLists.name(),
        ];
        self.cache
            .cached_query("admin", &["overview"], DEPS, None, || async {
                with_conn!(self.db, |conn| {
                    let posts: i64 = posts::table.count().get_result(conn).await?;
                    let drafts: i64 = posts::table
                        .filter(posts::published.eq(false))
                        .count()
                        .get_result(conn)
                        .await?;
                    let messages: i64 = contact_messages::table.count().get_result(conn).await?;
                    let unread_messages: i64 = contact_messages::table
                        .filter(contact_messages::is_read.eq(false))
                        .count()
                        .get_result(conn)
                        .await?;
                    Ok(AdminOverview {
                        posts,
                        drafts,
                        messages,
                        unread_messages,
                    })
                })
            })
            .await
    }
}
