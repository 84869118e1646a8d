//! The Redis backend, on one server or a Redis Cluster: one multiplexed connection
//! (commands from every worker are pipelined on it; on a cluster, one per node, kept by
//! the redis crate's cluster client), a pub/sub connection that carries invalidations and
//! heartbeats, a circuit breaker, and an optional near tier.
//!
//! Why one multiplexed connection on its own thread: its driver task (which reads the
//! replies) runs on a dedicated single-threaded runtime, so a reply is read as soon as
//! Redis sends it even while the HTTP workers are saturated, and a command's timeout
//! measures Redis, not the worker's run queue. A pool of connections created by the
//! workers put each driver on some worker's event loop: under load a reply waited for
//! that worker, timeouts fired, and the breaker took the whole site to the database.
//!
//! Coherence across instances (for the near tier, and to notice a lost Redis):
//! - every instance subscribes to `{prefix}@inv` (invalidations), `@hb:{id}` (its own
//!   heartbeat, published every `HEARTBEAT` through Redis) and `@ack:{id}`;
//! - a heartbeat that came back proves every invalidation published before it was
//!   applied here (one connection delivers in order): the instance serves from the
//!   cache only while its last heartbeat was sent less than `LEASE` ago;
//! - a bump sets the tag versions and publishes the change, then waits until every
//!   subscriber acknowledged it, or until `LEASE` has passed (any instance that has not
//!   applied it by then has stopped serving). A failed bump is retried for `RETRY_FOR`
//!   (this instance alone may have lost Redis while the others still serve), then it
//!   waits out `LEASE`, so when Redis is frozen no instance still serves old entries
//!   when the write returns; the write's outbox row is applied by any instance within
//!   the outbox's retry interval.
//! - after a loss the supervisor reconnects, resubscribes, drops the near tier, runs the
//!   recovery hook (pending invalidations from the database) and only then serves.
//!
//! On a cluster the channels are sharded (`SPUBLISH`/`SSUBSCRIBE`) and share one hash tag,
//! `{prefix}`, so they live on one shard: the proof above needs the invalidations, acks
//! and heartbeats to reach a subscriber in the order they were published, which one
//! node's connection gives and classic `PUBLISH` (relayed between nodes over the cluster
//! bus, from whichever node took it) does not. That is the only hash tag: entries and
//! tag versions are spread over the slots, and multi-key reads and writes are split by
//! slot. Any sign that the subscription moved (a node dropped, a failover, a renewed
//! subscription) ends the session as a lost connection does.
//!
//! Here: the backend's settings, state and `Backend` operations. `connection`: running
//! commands on the link. `cluster`: routing by slot and per node. `coherence`: the
//! protocol above (broadcast, acknowledgements, heartbeat lease, supervisor).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{AsyncConnectionConfig, FromRedisValue, PushKind, RedisError, Value};
use tracing::Instrument as _;

use super::breaker::{Breaker, Failure, State};
use super::near::NearTier;
use super::{Backend, BackendHealth, Bytes, RecoveryHook, Sharing, TaggedRead};
use crate::cache::{StoreError, StoreResult};

mod cluster;
mod coherence;
mod connection;

use self::coherence::{supervise, Change};
use self::connection::Query;

/// Keys per `SCAN` page (Redis's default of 10 makes pattern deletion crawl) and per
/// `UNLINK` batch.
const SCAN_COUNT: usize = 1000;
const HEARTBEAT: Duration = Duration::from_millis(100);
/// How long a heartbeat vouches for this instance's view of the invalidations.
pub const LEASE: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an invalidation is retried before the write returns with it pending (the
/// outbox then has it, and every instance applies pending rows every 500 ms).
const RETRY_FOR: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The recovery hook may read many pending rows; it must not hold the cache off forever.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub server: Server,
    /// Key prefix: names the pub/sub channels, so sites sharing a Redis stay apart.
    pub prefix: String,
    pub timeout: Duration,
    /// None: no near tier.
    pub near: Option<NearOptions>,
    /// How long a tag version is kept after it was made (see `CacheConfig::tag_ttl`).
    pub tag_ttl: Duration,
}

/// One server, or a cluster's seed nodes (`redis://` URLs).
#[derive(Debug, Clone)]
pub enum Server {
    Single(String),
    Cluster(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct NearOptions {
    pub max_bytes: u64,
    pub max_ttl: Duration,
}

pub struct RedisBackend {
    shared: Arc<Shared>,
    /// Dropping it stops the I/O thread and with it every task of this backend.
    _io: IoThread,
}

struct Shared {
    target: Target,
    conn: RwLock<Option<Link>>,
    timeout: Duration,
    bulk_timeout: Duration,
    tag_ttl: Duration,
    breaker: Breaker,
    near: Option<NearTier>,
    base: Instant,
    /// Milliseconds since `base` until which this instance may serve (0: not now).
    lease_until: AtomicU64,
    instance: String,
    channels: Channels,
    acks: Mutex<HashMap<u64, Arc<AckWait>>>,
    hook: RwLock<Option<RecoveryHook>>,
    /// Wakes the supervisor when the breaker opens.
    wake: tokio::sync::Notify,
}

enum Target {
    Single(redis::Client),
    Cluster(Vec<String>),
}

/// The connection commands go through.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

struct Channels {
    /// Every channel name starts with it: `{prefix}` on a cluster (one shard), the key
    /// prefix on one server (as before, so a rolling deploy keeps one set of channels).
    base: String,
    inv: String,
    hb: String,
    ack: String,
    /// `SPUBLISH` on a cluster, `PUBLISH` on one server.
    publish: &'static str,
}

impl Channels {
    fn new(prefix: &str, instance: &str, cluster: bool) -> Channels {
        let base = if cluster {
            format!("{{{prefix}}}")
        } else {
            prefix.to_string()
        };
        Channels {
            inv: format!("{base}@inv"),
            hb: format!("{base}@hb:{instance}"),
            ack: format!("{base}@ack:{instance}"),
            publish: if cluster { "SPUBLISH" } else { "PUBLISH" },
            base,
        }
    }

    fn publish(&self, channel: &str, payload: impl redis::ToRedisArgs) -> redis::Cmd {
        let mut cmd = redis::cmd(self.publish);
        cmd.arg(channel).arg(payload);
        cmd
    }
}

#[derive(Default)]
struct AckWait {
    count: AtomicUsize,
    notify: tokio::sync::Notify,
}

struct IoThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl IoThread {
    fn start() -> Result<(IoThread, tokio::runtime::Handle), StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Redis(format!("cannot start the Redis I/O thread: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("folio-redis".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })
            .map_err(|e| StoreError::Redis(format!("cannot start the Redis I/O thread: {e}")))?;
        Ok((IoThread { _stop: stop }, handle))
    }
}

impl RedisBackend {
    /// Never fails on an unreachable server: the site runs on the database until Redis
    /// answers (the supervisor keeps trying in the background).
    pub fn new(options: RedisOptions) -> Result<Self, StoreError> {
        let target = match options.server {
            Server::Single(url) => Target::Single(
                redis::Client::open(url.as_str()).map_err(|e| StoreError::Redis(e.to_string()))?,
            ),
            Server::Cluster(nodes) => {
                // Checked here so a bad URL fails at start-up, not in the supervisor.
                ClusterClientBuilder::new(nodes.clone())
                    .build()
                    .map_err(|e| StoreError::Redis(e.to_string()))?;
                Target::Cluster(nodes)
            }
        };
        let cluster = matches!(target, Target::Cluster(_));
        let instance = format!("{:016x}", rand::random::<u64>());
        let shared = Arc::new(Shared {
            target,
            conn: RwLock::new(None),
            timeout: options.timeout,
            bulk_timeout: options.timeout.max(Duration::from_secs(5)),
            tag_ttl: options.tag_ttl,
            breaker: Breaker::default(),
            near: options.near.map(|n| NearTier::new(n.max_bytes, n.max_ttl)),
            base: Instant::now(),
            lease_until: AtomicU64::new(0),
            channels: Channels::new(&options.prefix, &instance, cluster),
            instance,
            acks: Mutex::default(),
            hook: RwLock::new(None),
            wake: tokio::sync::Notify::new(),
        });
        let (io, handle) = IoThread::start()?;
        handle.spawn(supervise(Arc::downgrade(&shared)));
        Ok(RedisBackend { shared, _io: io })
    }

    /// Waits until the backend serves (or `limit` passes); for start-up and tests.
    pub async fn wait_until_serving(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.shared.serving() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// `maxmemory` and `maxmemory-policy`, when the server lets us read them (managed
    /// services often refuse `CONFIG`).
    pub async fn memory_policy(&self) -> Option<(u64, String)> {
        let s = &self.shared;
        let mut pipe = redis::pipe();
        pipe.cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy");
        let (max, policy): (Vec<String>, Vec<String>) =
            s.run(&pipe, s.bulk_timeout, Gate::Open).await.ok()?;
        Some((max.get(1)?.parse().ok()?, policy.get(1)?.clone()))
    }

    /// `redis_version` from `INFO server` (the lowest of a cluster's masters).
    pub async fn server_version(&self) -> StoreResult<String> {
        let s = &self.shared;
        let infos = s.info(&["server"], s.bulk_timeout, Gate::Open).await?;
        infos
            .iter()
            .filter_map(|info| info_field(info, "redis_version"))
            .min_by_key(|v| {
                v.split('.')
                    .map(|n| n.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .map(str::to_string)
            .ok_or_else(|| StoreError::Value("INFO server has no redis_version".into()))
    }
}

/// A field of an `INFO` reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Whether a command waits for the breaker: reads and fills do; invalidations and
/// probes do not (they must go through whenever Redis is reachable).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Serving,
    Open,
}

impl RedisBackend {
    /// `Shared::mget` as a future that owns what it needs, so concurrent near-tier
    /// misses can share it.
    fn fetch(
        &self,
        keys: &[&str],
        tag_keys: &[String],
    ) -> BoxFuture<'static, StoreResult<TaggedRead>> {
        let shared = self.shared.clone();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let tag_keys = tag_keys.to_vec();
        async move { shared.mget(&keys, &tag_keys).await }.boxed()
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        if self.shared.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    async fn get_many(&self, keys: &[&str], sharing: Sharing) -> StoreResult<Vec<Option<Bytes>>> {
        let s = &self.shared;
        if let Some(near) = s.near().filter(|_| sharing == Sharing::Near) {
            if !s.serving() {
                return Err(StoreError::Unavailable);
            }
            let (values, _) = near
                .read_through(keys, &[], || self.fetch(keys, &[]))
                .await?;
            return Ok(values);
        }
        super::note_tier("shared");
        Ok(s.mget(keys, &[]).await?.0)
    }

    async fn get_many_tagged(&self, keys: &[&str], tag_keys: &[String]) -> StoreResult<TaggedRead> {
        let s = &self.shared;
        if let Some(near) = s.near() {
            if !s.serving() {
                return Err(StoreError::Unavailable);
            }
            return near
                .read_through(keys, tag_keys, || self.fetch(keys, tag_keys))
                .await;
        }
        super::note_tier("shared");
        s.mget(keys, tag_keys).await
    }

    async fn set_many(
        &self,
        items: &[(&str, Vec<u8>)],
        ttl: Duration,
        sharing: Sharing,
    ) -> StoreResult<()> {
        let s = &self.shared;
        let commands = items
            .iter()
            .map(|(key, value)| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(*key)
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(ttl_millis(ttl));
                (*key, cmd)
            })
            .collect();
        s.run_each(commands, s.timeout, Gate::Serving).await?;
        if let Some(near) = s.near().filter(|_| sharing == Sharing::Near) {
            near.store(items, ttl);
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[&str]) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let s = &self.shared;
        let deleted: u64 = s
            .run(redis::cmd("UNLINK").arg(keys), s.timeout, Gate::Open)
            .await?;
        if deleted > 0 {
            s.broadcast(Vec::new(), Change::Flush).await?;
        }
        Ok(deleted)
    }

    /// SCAN with a large COUNT, then UNLINK each page's keys; never KEYS, which blocks
    /// the server. On a cluster, on each master in turn (a SCAN sees one node's keys).
    async fn delete_pattern(&self, pattern: &str) -> StoreResult<u64> {
        let s = &self.shared;
        let nodes: Vec<Option<RoutingInfo>> = if s.is_cluster() {
            let masters = s.masters(s.bulk_timeout).await?;
            masters
                .into_iter()
                .map(|(host, port)| {
                    Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host,
                        port,
                    }))
                })
                .collect()
        } else {
            vec![None]
        };
        let mut deleted = 0;
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let query = match node {
                    Some(routing) => Query::Routed(&scan, routing),
                    None => Query::Cmd(&scan),
                };
                let (next, keys): (u64, Vec<String>) =
                    s.run(query, s.bulk_timeout, Gate::Open).await?;
                if !keys.is_empty() {
                    deleted += s
                        .run::<u64>(redis::cmd("UNLINK").arg(&keys), s.bulk_timeout, Gate::Open)
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        s.broadcast(Vec::new(), Change::Flush).await?;
        Ok(deleted)
    }

    /// INCRBY, and a TTL only if the counter has none yet (so counting does not keep
    /// extending its life).
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StoreResult<i64> {
        let s = &self.shared;
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY")
            .arg(key)
            .arg(delta)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_millis(ttl))
            .arg("NX")
            .ignore();
        let (value,): (i64,) = s.run(&pipe, s.timeout, Gate::Serving).await?;
        Ok(value)
    }

    /// `SET NX GET PX` for all in one round trip: a nil reply means this call made the
    /// version. Versions carry `tag_ttl`, so tags of deleted things do not stay forever
    /// under `noeviction` or `volatile-*`; a lapsed version is safe (a new random one
    /// is made at the next fill, and what was stored under the old one misses).
    async fn create_tag_versions(&self, tag_keys: &[String]) -> StoreResult<Vec<Option<u64>>> {
        let s = &self.shared;
        let epoch = s.near().map_or(0, NearTier::epoch);
        let fresh: Vec<u64> = tag_keys.iter().map(|_| super::fill_version()).collect();
        let commands = tag_keys
            .iter()
            .zip(&fresh)
            .map(|(key, value)| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key)
                    .arg(value.to_string())
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(ttl_millis(s.tag_ttl));
                (key.as_str(), cmd)
            })
            .collect();
        let existing = s.run_each(commands, s.timeout, Gate::Serving).await?;
        let created: Vec<Option<u64>> = existing
            .into_iter()
            .zip(fresh)
            .map(
                |(old, new)| match Option::<Vec<u8>>::from_redis_value(old) {
                    Ok(None) => Some(new),
                    Ok(Some(old)) => parse_u64(&old).and_then(super::usable_for_fill),
                    Err(_) => None,
                },
            )
            .collect();
        if let Some(near) = s.near() {
            near.fill(epoch, &[], &[], tag_keys, &created);
        }
        Ok(created)
    }

    async fn bump_tags(&self, tag_keys: &[String]) -> StoreResult<()> {
        let writes = tag_keys
            .iter()
            .map(|key| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key)
                    .arg(super::write_version().to_string())
                    .arg("PX")
                    .arg(ttl_millis(self.shared.tag_ttl));
                (key.as_str(), cmd)
            })
            .collect();
        let tags: Vec<&str> = tag_keys.iter().map(String::as_str).collect();
        self.shared.broadcast(writes, Change::Tags(tags)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let s = &self.shared;
        // A health check: answer within a second or count as down.
        s.run::<()>(&redis::cmd("PING"), CONNECT_TIMEOUT, Gate::Open)
            .await
    }

    async fn server_memory(&self) -> StoreResult<Option<super::ServerMemory>> {
        let s = &self.shared;
        // A cluster's memory is the sum of its masters'.
        let infos = s
            .info(&["memory", "stats"], s.timeout, Gate::Serving)
            .await?;
        let sum = |name: &str| -> u64 {
            infos
                .iter()
                .filter_map(|info| info_field(info, name)?.parse::<u64>().ok())
                .sum()
        };
        Ok(Some(super::ServerMemory {
            used_bytes: sum("used_memory"),
            max_bytes: sum("maxmemory"),
            policy: infos
                .first()
                .and_then(|info| info_field(info, "maxmemory_policy"))
                .unwrap_or("")
                .to_string(),
            evicted_keys: sum("evicted_keys"),
        }))
    }

    async fn add_to_hash(&self, hash: &str, fields: &[(String, u64)]) -> StoreResult<()> {
        let s = &self.shared;
        let mut pipe = redis::pipe();
        for (field, delta) in fields.iter().filter(|(_, d)| *d > 0) {
            pipe.cmd("HINCRBY")
                .arg(hash)
                .arg(field)
                .arg(*delta)
                .ignore();
        }
        s.run::<()>(&pipe, s.bulk_timeout, Gate::Serving).await
    }

    async fn set_in_hash(
        &self,
        hash: &str,
        set: &[(String, u64)],
        remove: &[String],
    ) -> StoreResult<()> {
        let s = &self.shared;
        let mut pipe = redis::pipe();
        if !set.is_empty() {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(hash);
            for (field, value) in set {
                cmd.arg(field).arg(*value);
            }
            pipe.add_command(cmd).ignore();
        }
        if !remove.is_empty() {
            pipe.cmd("HDEL").arg(hash).arg(remove).ignore();
        }
        s.run::<()>(&pipe, s.timeout, Gate::Serving).await
    }

    async fn read_hash(&self, hash: &str) -> StoreResult<Option<Vec<(String, u64)>>> {
        let s = &self.shared;
        s.run(
            redis::cmd("HGETALL").arg(hash),
            s.bulk_timeout,
            Gate::Serving,
        )
        .await
        .map(Some)
    }

    fn tag_epoch(&self) -> Option<u64> {
        let s = &self.shared;
        s.near().filter(|_| s.serving()).map(NearTier::epoch)
    }

    fn health(&self) -> BackendHealth {
        let s = &self.shared;
        let state = if s.breaker.state() == State::Closed && !s.serving() {
            // Closed, but the heartbeat is late: treated as open until it is back.
            State::Open
        } else {
            s.breaker.state()
        };
        let (near_entries, near_bytes) = s.near().map_or((0, 0), NearTier::size);
        BackendHealth {
            breaker: state.name().into(),
            breaker_trips: s.breaker.trips(),
            last_trip_cause: s.breaker.last_cause(),
            near_enabled: s.near.is_some(),
            near_entries,
            near_bytes,
            near_hits: s.near().map_or(0, |n| n.hits.load(Relaxed)),
        }
    }

    fn set_recovery_hook(&self, hook: RecoveryHook) {
        *self.shared.hook.write() = Some(hook);
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
