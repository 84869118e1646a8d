//! The purges owed to edge caches (`edge_purges`): written when an applied
//! invalidation's outbox row is retired (see `outbox`), claimed by one instance at a
//! time, and deleted once the edge acknowledged the second purge (see `edge::delivery`).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{now, RepoResult, Repository};
use crate::content::schema::edge_purges;
use crate::db::DbError;
use crate::with_conn;

/// A claimed row: its id, tags (space-separated), round (1, then 2) and attempts.
pub type Claimed = (i32, String, i32, i32);

/// A purge owed to one edge.
#[derive(Debug, Insertable)]
#[diesel(table_name = edge_purges, treat_none_as_default_value = false)]
pub struct NewEdgePurge {
    pub edge: String,
    /// Tag names, space-separated, as the outbox keeps them.
    pub tags: String,
    pub due_at: NaiveDateTime,
    /// The process that delivers it (its `claimant`), until `due_at`; None: any.
    pub claim: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Rows due per edge at most per claim (a round sends them as one coalesced purge).
const CLAIM_AT_MOST: i64 = 1000;

impl Repository {
    /// Owes `tags` to every edge now, outside any write (the webhook's invalidations).
    pub async fn owe_edge_purge(&self, tags: &[&str]) -> RepoResult<()> {
        let Some(edges) = &self.edges else {
            return Ok(());
        };
        let rows = edges.rows_for(tags);
        with_conn!(self.db, |conn| {
            for row in &rows {
                diesel::insert_into(edge_purges::table)
                    .values(row)
                    .execute(conn)
                    .await?;
            }
            Ok::<_, DbError>(())
        })?;
        edges.purge_soon_and_wait().await;
        Ok(())
    }

    /// Marks this edge's rows that are due, or were written by `owner` (this process),
    /// as `claim`'s until `lease_end`, and returns them. Rows an instance wrote are its
    /// own to send until their lease ends, so its writes can wait for their purge; one
    /// that dies leaves them due to any instance then.
    pub async fn claim_edge_purges(
        &self,
        edge: &str,
        owner: &str,
        claim: &str,
        lease_end: NaiveDateTime,
    ) -> RepoResult<Vec<Claimed>> {
        let at = now();
        with_conn!(self.db, |conn| {
            let due = edge_purges::table
                .filter(edge_purges::edge.eq(edge))
                .filter(edge_purges::due_at.le(at).or(edge_purges::claim.eq(owner)))
                .order_by(edge_purges::id)
                .limit(CLAIM_AT_MOST)
                .select(edge_purges::id);
            let due: Vec<i32> = due.load(conn).await?;
            if due.is_empty() {
                return Ok(Vec::new());
            }
            // The condition again: of two instances claiming the same rows at once, the
            // second finds them leased (PostgreSQL re-checks a row it waited for).
            diesel::update(
                edge_purges::table
                    .filter(edge_purges::id.eq_any(&due))
                    .filter(edge_purges::due_at.le(at).or(edge_purges::claim.eq(owner))),
            )
            .set((
                edge_purges::claim.eq(claim),
                edge_purges::due_at.eq(lease_end),
            ))
            .execute(conn)
            .await?;
            Ok(edge_purges::table
                .filter(edge_purges::claim.eq(claim))
                .select((
                    edge_purges::id,
                    edge_purges::tags,
                    edge_purges::round,
                    edge_purges::attempts,
                ))
                .load(conn)
                .await?)
        })
    }

    /// When the oldest row this edge's `claim_edge_purges` would take was written.
    pub async fn oldest_edge_purge(
        &self,
        edge: &str,
        owner: &str,
    ) -> RepoResult<Option<NaiveDateTime>> {
        let at = now();
        with_conn!(self.db, |conn| {
            Ok(edge_purges::table
                .filter(edge_purges::edge.eq(edge))
                .filter(edge_purges::due_at.le(at).or(edge_purges::claim.eq(owner)))
                .select(diesel::dsl::min(edge_purges::created_at))
                .first::<Option<NaiveDateTime>>(conn)
                .await?)
        })
    }

    /// The edge acknowledged these rows' purge: first rounds are due again at
    /// `repeat_at` as second rounds, second rounds are done.
    pub async fn edge_purges_acknowledged(
        &self,
        rows: &[Claimed],
        repeat_at: NaiveDateTime,
    ) -> RepoResult<()> {
        let (first, second): (Vec<&Claimed>, Vec<&Claimed>) =
            rows.iter().partition(|(_, _, round, _)| *round == 1);
        let first: Vec<i32> = first.iter().map(|r| r.0).collect();
        let second: Vec<i32> = second.iter().map(|r| r.0).collect();
        with_conn!(self.db, |conn| {
            if !second.is_empty() {
                diesel::delete(edge_purges::table.filter(edge_purges::id.eq_any(&second)))
                    .execute(conn)
                    .await?;
            }
            if !first.is_empty() {
                diesel::update(edge_purges::table.filter(edge_purges::id.eq_any(&first)))
                    .set((
                        edge_purges::round.eq(2),
                        edge_purges::attempts.eq(0),
                        edge_purges::due_at.eq(repeat_at),
                        edge_purges::claim.eq(None::<String>),
                        edge_purges::last_error.eq(None::<String>),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, DbError>(())
        })
    }

    /// The edge did not take these rows' purge: due again at `retry_at`.
    pub async fn edge_purges_failed(
        &self,
        rows: &[Claimed],
        retry_at: NaiveDateTime,
        error: &str,
    ) -> RepoResult<()> {
        let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
        with_conn!(self.db, |conn| {
            diesel::update(edge_purges::table.filter(edge_purges::id.eq_any(&ids)))
                .set((
                    edge_purges::attempts.eq(edge_purges::attempts + 1),
                    edge_purges::due_at.eq(retry_at),
                    edge_purges::claim.eq(None::<String>),
                    edge_purges::last_error.eq(error),
                ))
                .execute(conn)
                .await?;
            Ok::<_, DbError>(())
        })
    }

    /// Per edge: rows owed a first purge, and rows waiting for their second.
    pub async fn edge_purges_pending(&self) -> RepoResult<Vec<(String, i32, i64)>> {
        with_conn!(self.db, |conn| {
            Ok(edge_purges::table
                .group_by((edge_purges::edge, edge_purges::round))
                .select((
                    edge_purges::edge,
                    edge_purges::round,
                    diesel::dsl::count_star(),
                ))
                .load(conn)
                .await?)
        })
    }
}
