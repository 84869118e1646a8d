//! Authors: the people posts are by (a rename shows on every post they wrote, see
//! `invalidation`).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::{now, RepoResult, Repository};
use crate::content::invalidation::Model;
use crate::content::models::*;
use crate::content::schema::authors;
use crate::with_conn;

impl Repository {
    pub async fn author_by_slug(&self, slug: &str) -> RepoResult<Option<Author>> {
        with_conn!(self.db, |conn| {
            Ok(authors::table
                .filter(authors::slug.eq(slug.to_string()))
                .select(Author::as_select())
                .first(conn)
                .await
                .optional()?)
        })
    }

    pub async fn authors(&self) -> RepoResult<Vec<Author>> {
        with_conn!(self.db, |conn| Ok(authors::table
            .select(Author::as_select())
            .order_by(authors::name)
            .load(conn)
            .await?))
    }

    /// Inserts an author unless one with the slug exists; returns the stored one.
    pub async fn ensure_author(&self, author: &NewAuthor) -> RepoResult<Author> {
        let (_, stored) = transact!(self, &[Model::Author], |conn| {
            let inserted = diesel::insert_into(authors::table)
                .values((
                    authors::name.eq(&author.name),
                    authors::slug.eq(&author.slug),
                    authors::bio.eq(&author.bio),
                    authors::updated_at.eq(now()),
                ))
                .on_conflict(authors::slug)
                .do_nothing()
                .execute(conn)
                .await?;
            let stored = authors::table
                .filter(authors::slug.eq(&author.slug))
                .select(Author::as_select())
                .first(conn)
                .await?;
            Ok((inserted > 0, stored))
        })?;
        Ok(stored)
    }

    /// Renames an author or changes their bio (the slug stays: links keep working).
    pub async fn update_author(&self, id: i32, name: &str, bio: &str) -> RepoResult<bool> {
        let n = transact!(self, &[Model::Author], |conn| {
            Ok(diesel::update(authors::table.find(id))
                .set((
                    authors::name.eq(name),
                    authors::bio.eq(bio),
                    authors::updated_at.eq(now()),
                ))
                .execute(conn)
                .await?)
        })?;
        Ok(n > 0)
    }
}
