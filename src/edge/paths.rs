//! The URLs the path edges (nginx, CloudFront) may hold, under the tags their answers
//! were built from: what turns a purge of tags into a purge of paths.
//!
//! A stored answer is recorded, before it is first sent with an edge lifetime, under
//! each of its traced tags (`edge_paths`), for twice the longest time an edge may then
//! keep it — its entry here can be served until it expires, and an edge keeps a copy
//! its `s-maxage` plus its stale allowances after that — so the record outlives every
//! copy, even when the entry here was evicted meanwhile. A write's purge is the paths
//! recorded under its tags, read when it is sent (and again for the second purge).
//!
//! Bounded: at most `EDGE_PATHS_MAX` records; past it a new path is sent with
//! `s-maxage=0` (an edge must not keep what could not be purged). Only canonical
//! spellings are for the path edges: they key on the URL as sent, and a spelling the
//! site answers but does not store under its own name (an ignored parameter) could
//! not be found again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::content::repository::now;
use crate::content::Repository;

/// Remembered paths, past which the memo of recent records is emptied.
const MEMO_AT_MOST: usize = 10_000;

/// Records answers' paths for the path edges.
pub struct EdgePaths {
    budget: u64,
    /// Records in the table at the last sweep, plus those written here since.
    count: AtomicU64,
    /// Path → (its tags' hash, when recorded, for how long): a path recorded again with
    /// the same tags while the earlier record still covers the new answer's lifetime is
    /// not written again.
    recent: parking_lot::Mutex<HashMap<String, (u64, Instant, Duration)>>,
}

impl EdgePaths {
    pub fn new(budget: u64) -> EdgePaths {
        EdgePaths {
            budget,
            count: AtomicU64::new(0),
            recent: Default::default(),
        }
    }

    /// Records that `path`'s answer, built from `tag_keys`, may be held by an edge for
    /// `lifetime` from now. False when it could not be (over budget, the database
    /// failed): the answer must then not be kept by the edges.
    pub async fn record(
        &self,
        repo: &Repository,
        path: &str,
        tag_keys: &[String],
        lifetime: Duration,
    ) -> bool {
        if tag_keys.is_empty() {
            return false;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tag_keys.hash(&mut hasher);
        let hash = hasher.finish();
        let at = Instant::now();
        if let Some((h, when, kept)) = self.recent.lock().get(path) {
            // The record written then lasts 2 × `kept` from `when`.
            if *h == hash && *when + *kept * 2 >= at + lifetime {
                return true;
            }
        }
        if self.count.load(Ordering::Relaxed) >= self.budget {
            return false;
        }
        let until = now() + chrono::Duration::from_std(lifetime * 2).unwrap_or_default();
        match repo.record_edge_path(path, tag_keys, until).await {
            Ok(()) => {
                self.count
                    .fetch_add(tag_keys.len() as u64, Ordering::Relaxed);
                let mut recent = self.recent.lock();
                if recent.len() >= MEMO_AT_MOST {
                    recent.clear();
                }
                recent.insert(path.to_string(), (hash, at, lifetime));
                true
            }
            Err(e) => {
                tracing::warn!(path, error = %e, "edge path not recorded; sent as not for the edges");
                false
            }
        }
    }

    /// Forgets the records no edge needs any more and counts the rest.
    pub async fn sweep(&self, repo: &Repository) {
        match repo.sweep_edge_paths().await {
            Ok(left) => self.count.store(left.max(0) as u64, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "edge paths not swept"),
        }
    }

    /// Records held, as of the last sweep.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// CloudFront allows at most 15 wildcard paths in progress per distribution.
pub const CLOUDFRONT_WILDCARDS: usize = 15;

/// One invalidation's paths for `paths` (sorted, distinct, each `/path` or
/// `/path?query`), at most `max_items` of them: each path, with its query variants
/// as `path` and `path?*` when there are more than two of them (CloudFront matches a
/// query string only when the path names it, or by a wildcard); past `max_items`, the
/// directory holding the most of them becomes one `dir/*`, again until they fit, and
/// past `CLOUDFRONT_WILDCARDS` wildcards, `/*`. Every path given is covered.
pub fn invalidation_paths(paths: &[String], max_items: usize) -> Vec<String> {
    let mut by_path: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for p in paths {
        let (path, _) = p.split_once('?').unwrap_or((p, ""));
        by_path.entry(path).or_default().push(p);
    }
    let mut items: Vec<String> = Vec::new();
    for (path, variants) in by_path {
        if variants.len() > 2 {
            items.push(path.to_string());
            items.push(format!("{path}?*"));
        } else {
            items.extend(variants.into_iter().map(String::from));
        }
    }
    while items.len() > max_items.max(1) {
        // The directory (a prefix ending in '/') under which most items are, deepest
        // first among equals: `/blog/tag/x/*` before `/blog/*`.
        let mut under: HashMap<&str, usize> = HashMap::new();
        for item in &items {
            let item = item.trim_end_matches('*');
            let item = item.split_once('?').map(|(p, _)| p).unwrap_or(item);
            let mut end = item.len();
            while let Some(slash) = item[..end].rfind('/') {
                let dir = &item[..=slash];
                if dir != item {
                    *under.entry(dir).or_default() += 1;
                }
                end = slash;
            }
        }
        let best = under
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(a.0.len().cmp(&b.0.len())))
            .map(|(dir, _)| dir.to_string());
        let Some(dir) = best.filter(|d| d != "/") else {
            return vec!["/*".into()];
        };
        let wildcard = format!("{dir}*");
        items.retain(|i| !i.starts_with(dir.as_str()));
        items.push(wildcard);
        items.sort();
    }
    if items.iter().filter(|i| i.ends_with('*')).count() > CLOUDFRONT_WILDCARDS {
        return vec!["/*".into()];
    }
    items
}

/// Whether an edge path pattern (`invalidation_paths`' output) covers `path`.
pub fn covers(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn query_variants_and_families_are_coalesced() {
        let paths: Vec<String> = ["/", "/blog/", "/blog/?page=2", "/blog/?page=3", "/about/"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            invalidation_paths(&paths, 100),
            ["/", "/about/", "/blog/", "/blog/?*"]
        );
        // A tag page of 30 pages and 300 posts: one wildcard per family.
        let mut many: Vec<String> = (1..=30)
            .map(|p| format!("/blog/tag/rust/?page={p}"))
            .chain((0..300).map(|i| format!("/blog/post-{i:03}/")))
            .chain(["/".to_string()])
            .collect();
        many.sort();
        let out = invalidation_paths(&many, 20);
        assert!(out.len() <= 20, "{out:?}");
        assert!(out.contains(&"/".to_string()));
        assert!(out.contains(&"/blog/*".to_string()), "{out:?}");
    }

    proptest! {
        /// Whatever is given, every path is covered, within the limits.
        #[test]
        fn every_path_is_covered_within_the_limits(
            raw in proptest::collection::btree_set("/(a|b|blog|tag)/((x|y|z)/)?(\\?page=[0-9])?", 0..60),
            max in 1usize..30,
        ) {
            let paths: Vec<String> = raw.into_iter().collect();
            let out = invalidation_paths(&paths, max);
            prop_assert!(out.len() <= max.max(1));
            prop_assert!(out.iter().filter(|i| i.ends_with('*')).count() <= CLOUDFRONT_WILDCARDS);
            for p in &paths {
                prop_assert!(out.iter().any(|o| covers(o, p)), "{} not covered by {:?}", p, out);
            }
        }
    }
}
