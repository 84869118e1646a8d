//! Tag tracing: the tags (and their versions) every tagged lookup read while a future
//! ran, so a value built from those lookups — a whole page — can be stored as
//! depending on exactly them, with nothing declared by hand and nothing forgotten.
//!
//! The versions recorded are the ones each lookup was answered under (a hit's, or the
//! versions a miss's fill is stored under, read before computing), so the traced value
//! is at least as new as every recorded version: storing it under them is as safe as
//! `get_or_set_tagged`'s fill. A lookup the backend could not answer makes the trace
//! incomplete, and an incomplete trace must not be stored.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

tokio::task_local! {
    static TRACE: RefCell<TagTrace>;
}

/// Tag keys and the versions the traced lookups were answered under (None: the tag
/// had no version yet; one is made when the value is stored).
#[derive(Debug, Default, Clone)]
pub struct TagTrace {
    versions: BTreeMap<String, Option<u64>>,
    incomplete: bool,
}

impl TagTrace {
    /// Runs `fut`, recording the tags its tagged lookups read (on this task).
    pub async fn record<F: Future>(fut: F) -> (F::Output, TagTrace) {
        TRACE
            .scope(RefCell::new(TagTrace::default()), async move {
                let out = fut.await;
                (out, TRACE.with(|t| t.take()))
            })
            .await
    }

    /// Whether a value built under this trace may be stored.
    pub fn is_complete(&self) -> bool {
        !self.incomplete
    }

    pub fn tag_keys(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.versions.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Called by the lookups: the version a tag had (None: none yet).
    pub(crate) fn note(tag_key: &str, version: Option<u64>) {
        let _ = TRACE.try_with(|t| {
            let mut t = t.borrow_mut();
            match t.versions.get(tag_key) {
                None => {
                    t.versions.insert(tag_key.to_string(), version);
                }
                Some(seen) if *seen == version => {}
                // Read under two versions: a write landed while the value was being
                // built. Versions are random, so which is older cannot be told: the
                // value is not stored at all.
                Some(_) => t.incomplete = true,
            }
        });
    }

    /// Called by the lookups when the backend could not say.
    pub(crate) fn failed() {
        let _ = TRACE.try_with(|t| t.borrow_mut().incomplete = true);
    }

    /// Whether a trace is being recorded on this task (lookups skip the work if not).
    pub(crate) fn active() -> bool {
        TRACE.try_with(|_| ()).is_ok()
    }
}
