//! Delivering the purges owed to the edges (`edge_purges` rows), from any instance.
//!
//! One delivery task per process runs rounds: woken by a write (or every
//! `POLL_EVERY`), it claims each edge's due rows, sends their tags — every write that
//! committed since the last round, coalesced into one purge per tag — and records the
//! answer: acknowledged rows come back once more after `repeat_after` (the second
//! purge), refused ones after a backoff that doubles up to `retry_max` (longer when the
//! edge says `Retry-After`). A write waits for the round that starts after its commit,
//! at most `write_wait`: with the edges up, the next read through them is fresh when
//! the write returns; with an edge down, the write returns anyway and the rows wait.
//!
//! The path edges (nginx, CloudFront) are sent the paths recorded under the rows' tags
//! (`paths`), read when the round runs: a second purge finds the paths of fills that
//! raced the first one.
//!
//! Claims are leases: rows are due again at the lease's end, so a process that dies
//! mid-round leaves nothing stuck, and two instances never send the same row at once.
//! A write's rows are its own process's from the start (so it can wait for them);
//! second purges and retries are any instance's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::paths::EdgePaths;
use super::purge::Purger;
use super::{edge_token, edge_token_hashed, EdgeConfig, EdgeUrl};
use crate::cache::KeyMaker;
use crate::content::repository::edge_purges::{Claimed, NewEdgePurge};
use crate::content::repository::now;
use crate::content::Repository;

/// How often due rows (second purges, retries, other instances' leftovers) are looked for.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a claim keeps rows from other instances.
const LEASE: Duration = Duration::from_secs(30);
/// How often the path records no edge needs any more are deleted (and the rest counted).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long CloudFront's rows gather before they are sent: each invalidation is billed
/// by its paths and CloudFront runs few at once, so a burst of writes is one.
const CLOUDFRONT_GATHER: Duration = Duration::from_secs(1);
/// CloudFront's free invalidation paths a month; the dashboard warns from 80 % of it.
pub const CLOUDFRONT_FREE_PATHS: i64 = 1000;

/// Counters of one edge, since this process started.
#[derive(Debug, Default)]
pub struct EdgeStats {
    /// Purge requests the edge acknowledged.
    pub requests: AtomicU64,
    /// Owed purges (a write's, or its second) acknowledged.
    pub delivered: AtomicU64,
    /// Of those, the ones that rode in a round with others (one purge per tag for all).
    pub coalesced: AtomicU64,
    /// Of those, the ones acknowledged after at least one refused attempt.
    pub retried: AtomicU64,
    /// Rounds the edge refused or did not answer.
    pub failed: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

/// One edge as `/api/cache/stats/` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EdgeSnapshot {
    pub edge: String,
    pub requests: u64,
    pub delivered: u64,
    pub coalesced: u64,
    pub retried: u64,
    pub failed: u64,
    /// Rows owed their first purge (written, not yet acknowledged).
    pub pending: i64,
    /// Rows acknowledged once, waiting for their second purge.
    pub repeats_pending: i64,
    pub last_error: Option<String>,
    /// A path edge (nginx, CloudFront): the paths it was sent this month (UTC), by
    /// every instance.
    pub paths_this_month: Option<i64>,
    /// CloudFront, near or past the month's free invalidation paths.
    pub warning: Option<String>,
}

/// The configured edges, their client and counters, and the delivery task's signals.
pub struct Edges {
    edges: Vec<(EdgeUrl, String, EdgeStats)>,
    /// With a path edge: the paths answers were sent under (see `paths`).
    paths: Option<EdgePaths>,
    keys: KeyMaker,
    purger: Purger,
    repeat_after: Duration,
    retry_max: Duration,
    write_wait: Duration,
    wake: tokio::sync::Notify,
    started: AtomicU64,
    done: tokio::sync::watch::Sender<u64>,
    running: AtomicBool,
    /// Tells this process's claims apart from other instances'.
    claimant: String,
    claims: AtomicU64,
}

impl Edges {
    /// None without edges configured.
    pub fn new(config: &EdgeConfig, key_prefix: &str) -> Option<Arc<Edges>> {
        if config.edges.is_empty() {
            return None;
        }
        Some(Arc::new(Edges {
            edges: config
                .edges
                .iter()
                .map(|e| (e.clone(), e.name(), EdgeStats::default()))
                .collect(),
            paths: config
                .edges
                .iter()
                .any(EdgeUrl::by_path)
                .then(|| EdgePaths::new(config.path_budget)),
            keys: KeyMaker::new(key_prefix, 0),
            purger: Purger::new(config.clone()),
            repeat_after: config.repeat_after,
            retry_max: config.retry_max,
            write_wait: config.write_wait,
            wake: Default::default(),
            started: AtomicU64::new(0),
            done: tokio::sync::watch::channel(0).0,
            running: AtomicBool::new(false),
            claimant: hex::encode(rand::random::<[u8; 8]>()),
            claims: AtomicU64::new(0),
        }))
    }

    /// The rows that owe `tags` (names) to every edge: this process's to send while it
    /// runs a delivery task (other instances take them over after a lease), else any
    /// instance's at once (a CLI command's writes).
    pub fn rows_for(&self, tags: &[&str]) -> Vec<NewEdgePurge> {
        let at = now();
        let own = self.running.load(Ordering::Acquire);
        self.edges
            .iter()
            .map(|(_, name, _)| NewEdgePurge {
                edge: name.clone(),
                tags: tags.join(" "),
                due_at: if own { later(LEASE) } else { at },
                claim: own.then(|| self.claimant.clone()),
                created_at: at,
            })
            .collect()
    }

    /// With a path edge (nginx, CloudFront): where answers' paths are recorded.
    pub fn paths(&self) -> Option<&EdgePaths> {
        self.paths.as_ref()
    }

    /// Starts a round soon (rows were written).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts a round and waits, at most `write_wait`, until one that started after this
    /// call has finished. Returns at once in a process without a delivery task (a CLI
    /// command: the servers deliver its rows).
    pub async fn purge_soon_and_wait(&self) {
        if !self.running.load(Ordering::Acquire) {
            return;
        }
        let needed = self.started.load(Ordering::SeqCst) + 1;
        let mut done = self.done.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(self.write_wait, done.wait_for(|d| *d >= needed)).await;
    }

    /// Runs the delivery task until `repo_of` has no repository (the site stopped).
    pub fn start(self: &Arc<Self>, repo_of: impl Fn() -> Option<Repository> + Send + 'static) {
        let edges = self.clone();
        edges.running.store(true, Ordering::Release);
        tokio::spawn(async move {
            let mut swept: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = edges.wake.notified() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
                let Some(repo) = repo_of() else { break };
                if let Some(paths) = &edges.paths {
                    if swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                        paths.sweep(&repo).await;
                        swept = Some(std::time::Instant::now());
                    }
                }
                let round = edges.started.fetch_add(1, Ordering::SeqCst) + 1;
                edges.round(&repo).await;
                edges.done.send_replace(round);
            }
            edges.running.store(false, Ordering::Release);
        });
    }

    /// One round: every edge's due rows, the edges in parallel.
    async fn round(&self, repo: &Repository) {
        let rounds = self
            .edges
            .iter()
            .map(|(edge, name, stats)| self.deliver(repo, edge, name, stats));
        futures_util::future::join_all(rounds).await;
    }

    async fn deliver(&self, repo: &Repository, edge: &EdgeUrl, name: &str, stats: &EdgeStats) {
        if matches!(edge, EdgeUrl::CloudFront { .. }) {
            let gathered = chrono::Duration::from_std(CLOUDFRONT_GATHER).unwrap_or_default();
            match repo.oldest_edge_purge(name, &self.claimant).await {
                Ok(Some(oldest)) if now() - oldest >= gathered => {}
                // Nothing due, or the burst is still gathering: a later round sends it.
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(edge = name, error = %e, "edge purges not read");
                    return;
                }
            }
        }
        let claim = format!(
            "{}-{}",
            self.claimant,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let rows = match repo
            .claim_edge_purges(name, &self.claimant, &claim, later(LEASE))
            .await
        {
            Ok(rows) if rows.is_empty() => return,
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(edge = name, error = %e, "edge purges not claimed");
                return;
            }
        };
        let items = match edge.by_path() {
            false => Ok(self.tokens(&rows)),
            true => repo.edge_paths_of(&self.tag_keys(&rows)).await,
        };
        let sent = match items {
            Ok(items) if items.is_empty() => Ok(Default::default()),
            Ok(items) => self.purger.purge(edge, &items).await,
            Err(e) => Err(super::purge::Refused {
                reason: format!("the paths to purge could not be read: {e}"),
                retry_after: None,
            }),
        };
        let recorded = match sent {
            Ok(sent) => {
                let requests = sent.requests;
                if matches!(edge, EdgeUrl::CloudFront { .. }) && sent.items > 0 {
                    if let Err(e) = repo
                        .add_edge_usage(name, &this_month(), sent.items as i64)
                        .await
                    {
                        tracing::warn!(edge = name, error = %e, "invalidation paths not counted");
                    }
                }
                let n = rows.len() as u64;
                stats.requests.fetch_add(requests as u64, Ordering::Relaxed);
                stats.delivered.fetch_add(n, Ordering::Relaxed);
                stats.coalesced.fetch_add(n - 1, Ordering::Relaxed);
                let retried = rows
                    .iter()
                    .filter(|(_, _, _, attempts)| *attempts > 0)
                    .count();
                stats.retried.fetch_add(retried as u64, Ordering::Relaxed);
                tracing::debug!(
                    edge = name,
                    rows = n,
                    items = sent.items,
                    requests,
                    "edge purged"
                );
                repo.edge_purges_acknowledged(&rows, later(self.repeat_after))
                    .await
            }
            Err(refused) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                let attempts = rows.iter().map(|r| r.3).max().unwrap_or(0) as u32 + 1;
                let backoff = Duration::from_secs(1 << attempts.min(16).saturating_sub(1))
                    .min(self.retry_max)
                    .max(refused.retry_after.unwrap_or_default());
                tracing::warn!(edge = name, rows = rows.len(), attempts, error = %refused.reason, retry_in = ?backoff, "edge purge refused; retried");
                *stats.last_error.lock() = Some(refused.reason.clone());
                repo.edge_purges_failed(&rows, later(backoff), &refused.reason)
                    .await
            }
        };
        if let Err(e) = recorded {
            // The lease ends and the rows are sent again: one purge too many, none lost.
            tracing::warn!(edge = name, error = %e, "edge purge outcome not recorded");
        }
    }

    /// Each distinct tag of `rows`, in both the forms a stored page may carry.
    fn tokens(&self, rows: &[Claimed]) -> Vec<String> {
        let keys = self.tag_keys(rows);
        let mut tokens = Vec::with_capacity(keys.len() * 2);
        for key in &keys {
            tokens.push(edge_token(key).to_string());
            tokens.push(edge_token_hashed(key));
        }
        tokens
    }

    /// The tag key of each distinct tag of `rows`.
    fn tag_keys(&self, rows: &[Claimed]) -> Vec<String> {
        let mut tags: Vec<&str> = rows.iter().flat_map(|r| r.1.split(' ')).collect();
        tags.sort_unstable();
        tags.dedup();
        tags.into_iter()
            .filter(|t| !t.is_empty())
            .map(|tag| self.keys.tag_key(tag))
            .collect()
    }

    /// Every edge's counters, with the rows still owed (from the database).
    pub async fn snapshot(&self, repo: &Repository) -> Vec<EdgeSnapshot> {
        let pending = repo.edge_purges_pending().await.unwrap_or_default();
        let owed = |name: &str, round: i32| {
            pending
                .iter()
                .filter(|(e, r, _)| e == name && *r == round)
                .map(|(_, _, n)| *n)
                .sum()
        };
        let month = this_month();
        let mut usage = Vec::new();
        for (edge, name, _) in &self.edges {
            usage.push(match edge.by_path() {
                true => repo.edge_usage(name, &month).await.ok(),
                false => None,
            });
        }
        self.edges
            .iter()
            .zip(usage)
            .map(|((edge, name, s), paths_this_month)| EdgeSnapshot {
                edge: name.clone(),
                requests: s.requests.load(Ordering::Relaxed),
                delivered: s.delivered.load(Ordering::Relaxed),
                coalesced: s.coalesced.load(Ordering::Relaxed),
                retried: s.retried.load(Ordering::Relaxed),
                failed: s.failed.load(Ordering::Relaxed),
                pending: owed(name, 1),
                repeats_pending: owed(name, 2),
                last_error: s.last_error.lock().clone(),
                warning: match (edge, paths_this_month) {
                    (EdgeUrl::CloudFront { .. }, Some(n)) if n >= CLOUDFRONT_FREE_PATHS => Some(format!(
                        "{n} invalidation paths this month: past CloudFront's {CLOUDFRONT_FREE_PATHS} free ones, each is billed"
                    )),
                    (EdgeUrl::CloudFront { .. }, Some(n)) if n * 5 >= CLOUDFRONT_FREE_PATHS * 4 => Some(format!(
                        "{n} invalidation paths this month: near CloudFront's {CLOUDFRONT_FREE_PATHS} free ones"
                    )),
                    _ => None,
                },
                paths_this_month,
            })
            .collect()
    }
}

/// The current month, UTC (`YYYY-MM`): how invalidation paths are counted.
fn this_month() -> String {
    now().format("%Y-%m").to_string()
}

fn later(after: Duration) -> chrono::NaiveDateTime {
    now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::days(1))
}
