//! Tagged entries: a value served only while every tag it depends on keeps the version
//! it was computed under, so `invalidate_tags` drops it everywhere at once. Guarantees:
//! the fill race is closed (versions read before computing, a fill stored under them);
//! concurrent misses compute once (`flight`); a lookup of something that does not exist
//! creates no version (one is made only when a fill is stored, `complete_versions`).

use super::*;

impl CacheManager {
    /// The cached value, or `compute`'s result stored under `key`, for an entry that
    /// depends on `tags` (none for a plain TTL entry): it is served only while every
    /// tag still has the version it was computed under, so `invalidate_tags` drops it
    /// everywhere at once. Concurrent misses compute once (see `flight`).
    ///
    /// The fill race (a reader computes from old rows, a writer commits and bumps, then
    /// the reader stores) is closed by reading the versions *before* computing and
    /// storing under those: a late fill lands under versions nobody asks for again.
    pub async fn get_or_set_tagged<T, E, F, Fut>(
        &self,
        key: &Key,
        tags: &[&str],
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_set_tagged_if(key, tags, ttl, compute, |_| true)
            .await
    }

    /// `get_or_set_tagged` that stores a computed value only if `keep` accepts it.
    pub async fn get_or_set_tagged_if<T, E, F, Fut>(
        &self,
        key: &Key,
        tags: &[&str],
        ttl: Option<Duration>,
        compute: F,
        keep: fn(&T) -> bool,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let epoch = self.inner.write_epoch.load(Relaxed);
        let lookup = self.get_tagged::<T>(key, tags).await;
        if let Some(value) = lookup.value {
            return Ok(value);
        }
        let versions = lookup.versions;
        // Readers that saw different versions (or this process's writes) must not share
        // a computation: one begun before a write must not answer a reader after it.
        let flight = FlightKey::new::<T, E>(
            key.as_str(),
            versions.as_ref().map(FillVersions::versions),
            epoch,
        );
        let led = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .inner
            .flights
            .run(flight, || async {
                led.store(true, Relaxed);
                let started = Instant::now();
                let value = compute().await?;
                self.inner.stats.fill(key.family(), started.elapsed());
                if let Some(versions) = versions.as_ref().filter(|_| keep(&value)) {
                    self.set_tagged(key, versions, &value, ttl).await;
                }
                Ok(value)
            })
            .await;
        if !led.load(Relaxed) {
            self.inner
                .stats
                .family_event(key.family(), FamilyEvent::Coalesced);
        }
        result
    }

    /// Looks up a tagged entry: the value if it is still current, and on a miss the
    /// versions a fill must be stored under (`set_tagged`); None versions mean the
    /// backend failed and nothing should be stored. One round trip on Redis.
    pub async fn get_tagged<T: DeserializeOwned>(
        &self,
        key: &Key,
        tags: &[&str],
    ) -> TaggedLookup<T> {
        self.get_many_tagged(&[(key.clone(), tags)])
            .await
            .pop()
            .expect("one lookup per entry")
    }

    /// `get_tagged` for many entries in one round trip: their keys and the current
    /// versions of all their tags in one MGET (a second only when a tag has no version
    /// yet, which happens once per tag).
    pub async fn get_many_tagged<T: DeserializeOwned>(
        &self,
        entries: &[(Key, &[&str])],
    ) -> Vec<TaggedLookup<T>> {
        self.lookup_tagged(entries, false).await
    }

    /// `get_tagged` for a read-modify-write of one entry: the versions come back on a hit
    /// too, so a changed value can be stored under what the value was current under
    /// (a write meanwhile makes that store land where nobody looks).
    pub async fn get_tagged_for_update<T: DeserializeOwned>(
        &self,
        key: &Key,
        tags: &[&str],
    ) -> TaggedLookup<T> {
        self.lookup_tagged(&[(key.clone(), tags)], true)
            .await
            .pop()
            .expect("one lookup per entry")
    }

    async fn lookup_tagged<T: DeserializeOwned>(
        &self,
        entries: &[(Key, &[&str])],
        versions_on_hit: bool,
    ) -> Vec<TaggedLookup<T>> {
        let mut tag_names: Vec<&str> = entries
            .iter()
            .flat_map(|(_, tags)| tags.iter().copied())
            .collect();
        tag_names.sort_unstable();
        tag_names.dedup();
        let tag_keys: Vec<String> = tag_names
            .iter()
            .map(|t| self.inner.keys.tag_key(t))
            .collect();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let span = self.lookup_span(entries.first().map_or("", |(k, _)| k.family()), keys.len());
        let started = Instant::now();
        let lookup = self
            .inner
            .backend
            .get_many_tagged(&keys, &tag_keys)
            .instrument(span.clone())
            .await;
        self.timed(
            if entries.len() == 1 {
                Op::Get
            } else {
                Op::GetMany
            },
            started,
        );
        let (values, versions, failed) = match lookup {
            Ok((values, versions)) => (values, versions, false),
            Err(e) => {
                self.report(Op::Get, e);
                (vec![None; keys.len()], vec![None; tag_keys.len()], true)
            }
        };
        if TagTrace::active() {
            for (tag_key, version) in tag_keys.iter().zip(&versions) {
                match failed {
                    false => TagTrace::note(tag_key, *version),
                    true => TagTrace::failed(),
                }
            }
        }
        let index = |t: &&str| tag_names.binary_search(t).expect("tag in union");
        let lookups: Vec<TaggedLookup<T>> = entries
            .iter()
            .zip(values)
            .map(|((key, tags), bytes)| {
                let current: Option<Vec<u64>> = tags.iter().map(|t| versions[index(t)]).collect();
                if let (Some(bytes), Some(current)) = (&bytes, current) {
                    match self.inner.codec.decode::<Tagged<T>>(bytes) {
                        Ok(tagged) if tagged.versions == current => {
                            self.inner.stats.hit(key.family());
                            return TaggedLookup {
                                value: Some(tagged.value),
                                versions: versions_on_hit.then(|| FillVersions {
                                    tag_keys: tags
                                        .iter()
                                        .map(|t| tag_keys[index(t)].clone())
                                        .collect(),
                                    versions: current.into_iter().map(Some).collect(),
                                }),
                            };
                        }
                        Ok(_) => {} // invalidated since it was stored
                        Err(e) => self.report(Op::Get, e.into()),
                    }
                }
                self.inner.stats.miss(key.family());
                TaggedLookup {
                    value: None,
                    versions: (!failed).then(|| FillVersions {
                        tag_keys: tags.iter().map(|t| tag_keys[index(t)].clone()).collect(),
                        versions: tags.iter().map(|t| versions[index(t)]).collect(),
                    }),
                }
            })
            .collect();
        match failed {
            true => record_error(&span),
            false => {
                let hits = lookups.iter().filter(|l| l.value.is_some()).count();
                record_result(&span, hits, lookups.len());
            }
        }
        lookups
    }

    /// Versions for every tag of a fill: those read before computing, and a new one for
    /// each tag that had none. None when the fill must not be stored: the backend
    /// failed, or a tag read as absent has a version now (a write or another fill made
    /// it meanwhile, and which came first cannot be told).
    pub(super) async fn complete_versions(
        &self,
        tag_keys: &[&str],
        versions: &[Option<u64>],
    ) -> Option<Vec<u64>> {
        let missing: Vec<String> = tag_keys
            .iter()
            .zip(versions)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string())
            .collect();
        if missing.is_empty() {
            return versions.iter().copied().collect();
        }
        let created = self
            .inner
            .backend
            .create_tag_versions(&missing)
            .await
            .map_err(|e| self.report(Op::Set, e))
            .ok()?;
        let mut created = created.into_iter();
        versions
            .iter()
            .map(|v| v.or_else(|| created.next().flatten()))
            .collect()
    }

    /// Stores a fill under the tag versions `get_tagged` returned before it was computed
    /// (creating those that did not exist yet, see `complete_versions`).
    pub async fn set_tagged<T: Serialize>(
        &self,
        key: &Key,
        fill: &FillVersions,
        value: &T,
        ttl: Option<Duration>,
    ) {
        let tag_keys: Vec<&str> = fill.tag_keys.iter().map(String::as_str).collect();
        let Some(versions) = self.complete_versions(&tag_keys, &fill.versions).await else {
            return;
        };
        // Checked against the tag versions on every read: safe in a near tier.
        self.set_shared(
            key,
            &TaggedRef {
                versions: &versions,
                value,
            },
            ttl,
            Sharing::Near,
        )
        .await
    }

    /// Drops every tagged entry that depends on any of `tags`, on every instance sharing
    /// this backend, by giving each tag a new version. O(tags), whatever the number of
    /// entries. Returns false if the backend could not be told (the caller may retry;
    /// entries then expire by TTL).
    pub async fn invalidate_tags(&self, tags: &[&str]) -> bool {
        let tag_keys: Vec<String> = tags.iter().map(|t| self.inner.keys.tag_key(t)).collect();
        let started = Instant::now();
        self.inner.write_epoch.fetch_add(1, Relaxed);
        let result = self.inner.backend.bump_tags(&tag_keys).await;
        self.timed(Op::Delete, started);
        self.inner.writes.send_modify(|n| *n += 1);
        match result {
            Ok(()) => {
                self.inner.stats.delete(tag_keys.len() as u64);
                true
            }
            Err(e) => {
                self.report(Op::Delete, e);
                false
            }
        }
    }
}
