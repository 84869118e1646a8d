//! Request collapsing: concurrent misses of one response key render once; the others
//! wait for that copy, then read it from the cache. (Why this is not `cache::flight`: see
//! that module.)

use std::time::Duration;

/// How long a request waits for a concurrent miss of the same key before rendering
/// itself.
pub(super) const COLLAPSE_WAIT: Duration = Duration::from_secs(10);

/// The misses being rendered, by key, shared by every worker: a later request for the
/// same key waits for the first (request collapsing).
#[derive(Default)]
pub struct Collapsing {
    rendering:
        parking_lot::Mutex<std::collections::HashMap<String, tokio::sync::watch::Sender<()>>>,
}

pub(super) enum Join<'a> {
    Leader(Rendering<'a>),
    /// Resolves (with an error) when the leader is done, stored or not.
    Follower(tokio::sync::watch::Receiver<()>),
}

/// The first miss of a key; dropping it (done, failed or cancelled) releases the others.
pub(super) struct Rendering<'a> {
    collapsing: &'a Collapsing,
    key: String,
}

impl Drop for Rendering<'_> {
    fn drop(&mut self) {
        self.collapsing.rendering.lock().remove(&self.key);
    }
}

impl Collapsing {
    pub(super) fn join(&self, key: &str) -> Join<'_> {
        let mut rendering = self.rendering.lock();
        if let Some(leader) = rendering.get(key) {
            return Join::Follower(leader.subscribe());
        }
        rendering.insert(key.to_string(), tokio::sync::watch::channel(()).0);
        Join::Leader(Rendering {
            collapsing: self,
            key: key.to_string(),
        })
    }
}
