//! Traced entries (whole pages): stored under the tags and versions every lookup read
//! while the value was built (`trace`), and checked against them on every read; a warm
//! hit is answered from its decoded copy while the backend's tag epoch stands still.

use super::*;

impl CacheManager {
    /// Records the current versions of `tags` in the running trace (see `trace`), for a
    /// value that depends on them whatever its lookups read.
    pub async fn trace_tags(&self, tags: &[&str]) {
        let tag_keys: Vec<String> = tags.iter().map(|t| self.inner.keys.tag_key(t)).collect();
        match self.inner.backend.get_many_tagged(&[], &tag_keys).await {
            Ok((_, versions)) => {
                for (tag_key, version) in tag_keys.iter().zip(versions) {
                    TagTrace::note(tag_key, version);
                }
            }
            Err(e) => {
                self.report(Op::Get, e);
                TagTrace::failed();
            }
        }
    }

    /// A value stored by `set_traced`, if every tag its trace recorded still has the
    /// version it was built under. Two reads: the entry, then its tags' versions (both
    /// in-process with a near tier). Where the backend has a tag epoch, an entry already
    /// validated (the same bytes) under the current epoch is answered from its decoded
    /// copy, without decoding or checking its tags again: a warm page's lookup.
    pub async fn get_traced<T>(&self, key: &Key) -> Option<Arc<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let span = self.lookup_span(key.family(), 1);
        let started = Instant::now();
        let result = self
            .inner
            .backend
            .get_many(&[key.as_str()], Sharing::Near)
            .instrument(span.clone())
            .await;
        let result_is_ok = result.is_ok();
        let bytes = match result {
            Ok(mut values) => values.pop().flatten(),
            Err(e) => {
                self.report(Op::Get, e);
                record_error(&span);
                None
            }
        };
        let epoch = self.inner.backend.tag_epoch();
        let memo = bytes.as_ref().zip(epoch).and_then(|(bytes, epoch)| {
            let v = self.inner.validated.get(key.as_str())?;
            // The same buffer (held by the memo, so its address cannot be reused).
            let same = !bytes.is_empty()
                && v.bytes.as_ptr() == bytes.as_ptr()
                && v.bytes.len() == bytes.len();
            (same && v.epoch == epoch)
                .then(|| v.value.downcast::<T>().ok())
                .flatten()
        });
        let current = match (memo, bytes) {
            (Some(value), _) => Some(value),
            (None, Some(bytes)) => {
                let value = self
                    .validate_traced::<T>(&bytes)
                    .instrument(span.clone())
                    .await
                    .map(Arc::new);
                if let (Some(value), Some(epoch)) = (&value, epoch) {
                    self.inner.validated.insert(
                        key.as_str().to_string(),
                        Validated {
                            bytes,
                            epoch,
                            value: value.clone(),
                        },
                    );
                }
                value
            }
            (None, None) => None,
        };
        self.timed(Op::Get, started);
        match current {
            Some(_) => self.inner.stats.hit(key.family()),
            None => self.inner.stats.miss(key.family()),
        }
        if current.is_some() || result_is_ok {
            record_result(&span, usize::from(current.is_some()), 1);
        }
        current
    }

    /// Decodes a traced entry and checks its tags' current versions.
    pub(super) async fn validate_traced<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        let traced = match self.inner.codec.decode::<Traced<T>>(bytes) {
            Ok(traced) => traced,
            Err(e) => {
                self.report(Op::Get, e.into());
                return None;
            }
        };
        if traced.tags.is_empty() {
            return Some(traced.value);
        }
        match self.inner.backend.get_many_tagged(&[], &traced.tags).await {
            Ok((_, versions)) => versions
                .iter()
                .zip(&traced.versions)
                .all(|(now, then)| *now == Some(*then))
                .then_some(traced.value),
            Err(e) => {
                self.report(Op::Get, e);
                None
            }
        }
    }

    /// Whether every tag `trace` recorded still has the version it recorded (a tag that
    /// had none still has none): false once a write invalidated what the value was built
    /// from while it was being built, or when the backend cannot say. An edge cache must
    /// not keep such a value — the write's purge may already have reached it.
    pub async fn trace_is_current(&self, trace: &TagTrace) -> bool {
        if !trace.is_complete() {
            return false;
        }
        let (tags, then): (Vec<String>, Vec<Option<u64>>) = trace
            .tag_keys()
            .map(|(tag, version)| (tag.to_string(), version))
            .unzip();
        if tags.is_empty() {
            return true;
        }
        match self.inner.backend.get_many_tagged(&[], &tags).await {
            Ok((_, now)) => now == then,
            Err(e) => {
                self.report(Op::Get, e);
                false
            }
        }
    }

    /// Stores a value built while `trace` was recorded, under the versions it saw;
    /// nothing if the trace is incomplete (a lookup failed).
    pub async fn set_traced<T: Serialize>(
        &self,
        key: &Key,
        trace: &TagTrace,
        value: &T,
        ttl: Option<Duration>,
    ) -> bool {
        if !trace.is_complete() {
            return false;
        }
        let (tags, versions): (Vec<&str>, Vec<Option<u64>>) = trace.tag_keys().unzip();
        let Some(versions) = self.complete_versions(&tags, &versions).await else {
            return false;
        };
        // Checked against the tag versions on every read: safe in a near tier.
        self.set_shared(
            key,
            &TracedRef {
                tags,
                versions,
                value,
            },
            ttl,
            Sharing::Near,
        )
        .await;
        true
    }
}
