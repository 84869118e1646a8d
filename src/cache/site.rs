//! Site-wide statistics: every instance adds its counters to a hash in the shared
//! store (Redis) once a second, and `site_stats` / `instances` read them back; on the
//! in-process backend they are this process's.

use super::*;

impl CacheManager {
    /// Statistics summed over every process that shares this Redis (this process's
    /// latency percentiles); the local snapshot on the other backends.
    pub async fn site_stats(&self) -> StatsSnapshot {
        let local = self.stats();
        let Ok(Some(fields)) = self.inner.backend.read_hash(&self.stats_hash()).await else {
            return local;
        };
        let mut totals = stats::Totals::default();
        let mut families: HashMap<String, (u64, u64)> = HashMap::new();
        for (field, value) in fields {
            match field.as_str() {
                "hits" => totals.hits = value,
                "misses" => totals.misses = value,
                "sets" => totals.sets = value,
                "deletes" => totals.deletes = value,
                "errors" => totals.errors = value,
                other => {
                    if let Some(rest) = other.strip_prefix("family:") {
                        if let Some((name, kind)) = rest.rsplit_once(':') {
                            let entry = families.entry(name.to_string()).or_default();
                            if kind == "hits" {
                                entry.0 = value
                            } else {
                                entry.1 = value
                            }
                        }
                    }
                }
            }
        }
        let mut families: Vec<_> = families
            .into_iter()
            .map(|(n, (h, m))| stats::FamilySnapshot::new(&n, h, m))
            .collect();
        families.sort_by(|a, b| a.name.cmp(&b.name));
        StatsSnapshot::new(
            self.backend_name(),
            totals,
            Duration::from_secs(local.uptime_seconds),
            local.latency,
            families,
        )
    }

    /// One row per instance sharing this Redis (seen in the last 30 s): this process's
    /// counters are published with the site-wide ones. Empty on in-process stores.
    pub async fn instances(&self) -> Vec<InstanceRow> {
        let Ok(Some(fields)) = self.inner.backend.read_hash(&self.instances_hash()).await else {
            return Vec::new();
        };
        let mut rows: std::collections::BTreeMap<String, InstanceRow> = Default::default();
        for (field, value) in fields {
            let Some((id, what)) = field.rsplit_once(':') else {
                continue;
            };
            let row = rows.entry(id.to_string()).or_insert_with(|| InstanceRow {
                id: id.to_string(),
                ..Default::default()
            });
            match what {
                "hits" => row.hits = value,
                "misses" => row.misses = value,
                "errors" => row.errors = value,
                "seen" => row.seen_unix = value,
                _ => {}
            }
        }
        let now = unix_now();
        rows.into_values()
            .filter(|r| r.seen_unix + 30 >= now)
            .map(|mut r| {
                r.hit_ratio = stats::ratio(r.hits, r.hits + r.misses);
                r.this_process = r.id == self.inner.instance_id;
                r
            })
            .collect()
    }

    pub(super) fn instances_hash(&self) -> String {
        format!("{}@instances", self.inner.keys.prefix())
    }

    /// Forgets the site-wide counters (tests clean up with it).
    pub async fn reset_site_stats(&self) {
        let _ = self
            .inner
            .backend
            .delete_many(&[&self.stats_hash(), &self.instances_hash()])
            .await;
    }

    pub(super) fn stats_hash(&self) -> String {
        // Outside `{prefix}:*`, so `clear` keeps the statistics.
        format!("{}@stats", self.inner.keys.prefix())
    }

    /// With Redis, adds this process's counters to a site-wide hash every `every`, so
    /// all instances report one hit ratio. Stops when the manager is dropped.
    pub fn spawn_stats_flusher(&self, every: Duration) {
        if self.inner.redis.is_none() {
            return;
        }
        let weak = self.downgrade();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                manager.flush_stats().await;
            }
        });
    }

    /// Sends the counter deltas since the last flush; on failure they are sent next time.
    pub async fn flush_stats(&self) {
        let (totals, families) = self.inner.stats.totals_and_families();
        let mut now: Vec<(String, u64)> = vec![
            ("hits".into(), totals.hits),
            ("misses".into(), totals.misses),
            ("sets".into(), totals.sets),
            ("deletes".into(), totals.deletes),
            ("errors".into(), totals.errors),
        ];
        for (name, hits, misses) in families {
            now.push((format!("family:{name}:hits"), hits));
            now.push((format!("family:{name}:misses"), misses));
        }
        // One flush at a time: two would both send the same deltas.
        let _one = self.inner.stats_flush.lock().await;
        let deltas: Vec<(String, u64)> = {
            let flushed = self.inner.stats_flushed.lock();
            now.iter()
                .map(|(f, v)| (f.clone(), v - flushed.get(f).copied().unwrap_or(0)))
                .collect()
        };
        if self
            .inner
            .backend
            .add_to_hash(&self.stats_hash(), &deltas)
            .await
            .is_ok()
        {
            self.inner.stats_flushed.lock().extend(now);
        }
        // This instance's row (absolute values), and rows of instances gone a minute.
        let id = &self.inner.instance_id;
        let totals = self.inner.stats.totals();
        let row = [
            (format!("{id}:hits"), totals.hits),
            (format!("{id}:misses"), totals.misses),
            (format!("{id}:errors"), totals.errors),
            (format!("{id}:seen"), unix_now()),
        ];
        let gone: Vec<String> = match self.inner.backend.read_hash(&self.instances_hash()).await {
            Ok(Some(fields)) => {
                let stale: Vec<&str> = fields
                    .iter()
                    .filter(|(f, seen)| f.ends_with(":seen") && seen + 60 < unix_now())
                    .filter_map(|(f, _)| f.strip_suffix(":seen"))
                    .collect();
                fields
                    .iter()
                    .filter(|(f, _)| f.rsplit_once(':').is_some_and(|(i, _)| stale.contains(&i)))
                    .map(|(f, _)| f.clone())
                    .collect()
            }
            _ => Vec::new(),
        };
        let _ = self
            .inner
            .backend
            .set_in_hash(&self.instances_hash(), &row, &gone)
            .await;
    }
}
