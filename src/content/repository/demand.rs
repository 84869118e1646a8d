//! Requests per URL and hour (`demand`), summed over every instance; see `web::demand`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::{RepoResult, Repository};
use crate::content::schema::demand;
use crate::db::DbError;
use crate::with_conn;

/// One URL's counts over some hours: requests, misses and the misses' render time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counted {
    pub requests: i64,
    pub misses: i64,
    pub miss_ms: f64,
}

impl Repository {
    /// Adds `counts` (path, counted) to `hour`'s rows, in one transaction: the model
    /// never reads half a flush. An hour holds at most `per_hour` URLs: past it, a URL
    /// not yet counted that hour is left out (the most asked are written first), so
    /// URLs visitors invent cannot grow the table beyond `per_hour` × the hours kept.
    pub async fn add_demand(
        &self,
        hour: NaiveDateTime,
        counts: &[(String, Counted)],
        per_hour: i64,
    ) -> RepoResult<()> {
        use diesel_async::AsyncConnection as _;
        let mut counts: Vec<&(String, Counted)> = counts.iter().collect();
        counts.sort_by_key(|(_, c)| std::cmp::Reverse(c.requests));
        with_conn!(self.db, |conn| {
            conn.transaction::<_, DbError, _>(async |conn| {
                // Counted after the first update: on SQLite a write must come first, so
                // the transaction waits for the write lock instead of failing to upgrade.
                let mut held: Option<i64> = None;
                for (path, c) in &counts {
                    let updated = diesel::update(
                        demand::table
                            .filter(demand::path.eq(path))
                            .filter(demand::hour.eq(hour)),
                    )
                    .set((
                        demand::requests.eq(demand::requests + c.requests),
                        demand::misses.eq(demand::misses + c.misses),
                        demand::miss_ms.eq(demand::miss_ms + c.miss_ms),
                    ))
                    .execute(conn)
                    .await?;
                    if updated > 0 {
                        continue;
                    }
                    let held = match &mut held {
                        Some(held) => held,
                        None => held.insert(
                            demand::table
                                .filter(demand::hour.eq(hour))
                                .count()
                                .get_result(conn)
                                .await?,
                        ),
                    };
                    if *held >= per_hour {
                        continue;
                    }
                    diesel::insert_into(demand::table)
                        .values((
                            demand::path.eq(path),
                            demand::hour.eq(hour),
                            demand::requests.eq(c.requests),
                            demand::misses.eq(c.misses),
                            demand::miss_ms.eq(c.miss_ms),
                        ))
                        .execute(conn)
                        .await?;
                    *held += 1;
                }
                Ok(())
            })
            .await
        })
    }

    /// Per URL, the counts of the hours `from..` (or of exactly `hours`, when given),
    /// summed here: SQL's `SUM` of a BIGINT is NUMERIC on PostgreSQL, BIGINT on SQLite.
    pub async fn demand_since(
        &self,
        from: NaiveDateTime,
        hours: Option<&[NaiveDateTime]>,
    ) -> RepoResult<Vec<(String, Counted)>> {
        let rows: Vec<(String, i64, i64, f64)> = with_conn!(self.db, |conn| {
            let mut query = demand::table
                .filter(demand::hour.ge(from))
                .select((
                    demand::path,
                    demand::requests,
                    demand::misses,
                    demand::miss_ms,
                ))
                .into_boxed();
            if let Some(hours) = hours {
                query = query.filter(demand::hour.eq_any(hours.to_vec()));
            }
            Ok::<_, DbError>(query.load(conn).await?)
        })?;
        let mut by_path: std::collections::HashMap<String, Counted> = Default::default();
        for (path, requests, misses, miss_ms) in rows {
            let c = by_path.entry(path).or_default();
            c.requests += requests;
            c.misses += misses;
            c.miss_ms += miss_ms;
        }
        Ok(by_path.into_iter().collect())
    }

    /// The oldest hour counted; None for a new site.
    pub async fn demand_oldest(&self) -> RepoResult<Option<NaiveDateTime>> {
        with_conn!(self.db, |conn| {
            Ok(demand::table
                .select(diesel::dsl::min(demand::hour))
                .first::<Option<NaiveDateTime>>(conn)
                .await?)
        })
    }

    /// Forgets the hours before `before`.
    pub async fn prune_demand(&self, before: NaiveDateTime) -> RepoResult<()> {
        with_conn!(self.db, |conn| {
            diesel::delete(demand::table.filter(demand::hour.lt(before)))
                .execute(conn)
                .await?;
            Ok::<_, DbError>(())
        })
    }
}
