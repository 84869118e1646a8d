//! The Redis backend: one multiplexed connection (commands from every worker are
//! pipelined on it), a pub/sub connection that carries invalidations and heartbeats, a
//! circuit breaker, and an optional near tier.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError};

use super::breaker::{Breaker, Failure, State};
use super::near::NearTier;
use super::{Backend, BackendHealth, Bytes, RecoveryHook, Sharing, TaggedRead};
use crate::cache::{StoreError, StoreResult};

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
    pub url: String,
    /// Key prefix: names the pub/sub channels, so sites sharing a Redis stay apart.
    pub prefix: String,
    pub timeout: Duration,
    /// None: no near tier.
    pub near: Option<NearOptions>,
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
    client: redis::Client,
    conn: RwLock<Option<MultiplexedConnection>>,
    timeout: Duration,
    bulk_timeout: Duration,
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

struct Channels {
    prefix: String,
    inv: String,
    hb: String,
    ack: String,
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
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        let instance = format!("{:016x}", rand::random::<u64>());
        let shared = Arc::new(Shared {
            client,
            conn: RwLock::new(None),
            timeout: options.timeout,
            bulk_timeout: options.timeout.max(Duration::from_secs(5)),
            breaker: Breaker::default(),
            near: options.near.map(|n| NearTier::new(n.max_bytes, n.max_ttl)),
            base: Instant::now(),
            lease_until: AtomicU64::new(0),
            channels: Channels {
                inv: format!("{}@inv", options.prefix),
                hb: format!("{}@hb:{instance}", options.prefix),
                ack: format!("{}@ack:{instance}", options.prefix),
                prefix: options.prefix.clone(),
            },
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

    /// `redis_version` from `INFO server`.
    pub async fn server_version(&self) -> StoreResult<String> {
        let info: String = self
            .shared
            .run(
                redis::cmd("INFO").arg("server"),
                self.shared.bulk_timeout,
                Gate::Open,
            )
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| StoreError::Value("INFO server has no redis_version".into()))
    }
}

/// Whether a command waits for the breaker: reads and fills do; invalidations and
/// probes do not (they must go through whenever Redis is reachable).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Serving,
    Open,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Serving: the breaker is closed and a heartbeat came back within the lease.
    fn serving(&self) -> bool {
        self.breaker.state() == State::Closed && self.now_ms() < self.lease_until.load(Relaxed)
    }

    fn near(&self) -> Option<&NearTier> {
        self.near.as_ref()
    }

    async fn run<'q, T: FromRedisValue>(
        &self,
        query: impl Into<Query<'q>>,
        timeout: Duration,
        gate: Gate,
    ) -> StoreResult<T> {
        let query = query.into();
        if gate == Gate::Serving && !self.serving() {
            return Err(StoreError::Unavailable);
        }
        let Some(mut conn) = self.conn.read().clone() else {
            return Err(StoreError::Unavailable);
        };
        let result = match tokio::time::timeout(timeout, query.send::<T>(&mut conn)).await {
            Err(_) => Err((Failure::Transient, StoreError::Timeout(timeout))),
            Ok(Err(e)) if is_connection_error(&e) => {
                Err((Failure::Connection, StoreError::Redis(e.to_string())))
            }
            Ok(Err(e)) => Err((Failure::Transient, StoreError::Redis(e.to_string()))),
            Ok(Ok(v)) => Ok(v),
        };
        match result {
            Ok(v) => {
                self.breaker.success(self.now_ms());
                Ok(v)
            }
            Err((kind, error)) => {
                if self
                    .breaker
                    .failure(self.now_ms(), kind, &error.to_string())
                {
                    self.wake.notify_one();
                }
                Err(error)
            }
        }
    }

    /// Applies a change everywhere: `pipe` (the writes) and a message to every instance,
    /// then waits as the module documentation says.
    async fn broadcast(&self, mut pipe: redis::Pipeline, change: Change<'_>) -> StoreResult<()> {
        // Before: this instance stops serving the old entries at once.
        if let Some(near) = self.near() {
            change.apply(near);
        }
        let id: u64 = rand::random();
        let wait = Arc::new(AckWait::default());
        self.acks.lock().insert(id, wait.clone());
        pipe.cmd("PUBLISH")
            .arg(&self.channels.inv)
            .arg(change.message(id, &self.instance));
        // Retried for a while: when only this instance lost Redis (its connection is
        // being replaced), the others still serve, and must hear of the change.
        let give_up = Instant::now() + RETRY_FOR;
        let result: StoreResult<(usize,)> = loop {
            match self.run(&pipe, self.timeout, Gate::Open).await {
                Err(_) if Instant::now() + RETRY_PAUSE < give_up => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                result => break result,
            }
        };
        let published = Instant::now();
        let outcome = match result {
            Ok((receivers,)) => {
                // Again, now that Redis has the change: a read of this instance that
                // refilled the near tier between the first drop and the SET brought the
                // old versions back (its epoch predates this second drop).
                if let Some(near) = self.near() {
                    change.apply(near);
                }
                while wait.count.load(Relaxed) < receivers {
                    let left = LEASE.saturating_sub(published.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    let notified = wait.notify.notified();
                    if wait.count.load(Relaxed) >= receivers {
                        break;
                    }
                    let _ = tokio::time::timeout(left, notified).await;
                }
                Ok(())
            }
            Err(e) => {
                tokio::time::sleep(LEASE).await;
                Err(e)
            }
        };
        self.acks.lock().remove(&id);
        outcome
    }

    fn acknowledged(&self, id: u64) {
        if let Some(wait) = self.acks.lock().get(&id) {
            wait.count.fetch_add(1, Relaxed);
            wait.notify.notify_waiters();
        }
    }

    fn handle_message(self: &Arc<Self>, channel: &str, payload: &str) {
        if channel == self.channels.hb {
            if let Ok(sent_ms) = payload.parse::<u64>() {
                let until = sent_ms + LEASE.as_millis() as u64;
                self.lease_until.fetch_max(until, Relaxed);
            }
        } else if channel == self.channels.ack {
            if let Ok(id) = payload.parse::<u64>() {
                self.acknowledged(id);
            }
        } else if channel == self.channels.inv {
            let Some((id, origin, change)) = Change::parse(payload) else {
                tracing::warn!(payload, "malformed invalidation message ignored");
                return;
            };
            if origin == self.instance {
                // Applied before it was published; it only counts as received.
                self.acknowledged(id);
                return;
            }
            if let Some(near) = self.near() {
                change.apply(near);
            }
            let ack_channel = format!("{}@ack:{origin}", self.channels.prefix);
            let shared = self.clone();
            tokio::spawn(async move {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(ack_channel).arg(id);
                let _ = shared.run::<()>(&cmd, shared.timeout, Gate::Open).await;
            });
        }
    }
}

/// An invalidation as sent to every instance: `{id} {origin} T tag…` or `{id} {origin} F`.
enum Change<'a> {
    Tags(Vec<&'a str>),
    /// Keys were deleted by name or pattern: drop every near copy.
    Flush,
}

impl<'a> Change<'a> {
    fn message(&self, id: u64, origin: &str) -> String {
        match self {
            Change::Tags(tags) => format!("{id} {origin} T {}", tags.join(" ")),
            Change::Flush => format!("{id} {origin} F"),
        }
    }

    fn parse(payload: &'a str) -> Option<(u64, &'a str, Change<'a>)> {
        let mut words = payload.split(' ');
        let id = words.next()?.parse().ok()?;
        let origin = words.next()?;
        let change = match words.next()? {
            "T" => Change::Tags(words.collect()),
            "F" => Change::Flush,
            _ => return None,
        };
        Some((id, origin, change))
    }

    fn apply(&self, near: &NearTier) {
        match self {
            Change::Tags(tags) => {
                let owned: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
                near.drop_tags(&owned);
            }
            Change::Flush => near.clear(),
        }
    }
}

/// Connects, serves a session until something is lost, and starts again; runs on the
/// I/O thread for the backend's whole life.
async fn supervise(weak: Weak<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let cause = match session(&shared).await {
            Ok(cause) => {
                backoff = Duration::from_millis(50);
                cause
            }
            Err(cause) => cause,
        };
        *shared.conn.write() = None;
        shared.lease_until.store(0, Relaxed);
        if let Some(near) = shared.near() {
            near.clear();
        }
        shared.breaker.open(&cause);
        drop(shared);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connected stretch. Err: it never started serving; Ok: why it stopped.
async fn session(shared: &Arc<Shared>) -> Result<String, String> {
    let connect = async {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let conn = shared
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub
            .subscribe(&[
                &shared.channels.inv,
                &shared.channels.hb,
                &shared.channels.ack,
            ])
            .await?;
        Ok::<_, RedisError>((conn, pubsub))
    };
    let (conn, pubsub) = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
        Err(_) => return Err("Redis did not answer while connecting".into()),
        Ok(Err(e)) => return Err(format!("cannot connect to Redis: {e}")),
        Ok(Ok(pair)) => pair,
    };
    *shared.conn.write() = Some(conn);
    // Anything kept before this subscription may have missed an invalidation.
    if let Some(near) = shared.near() {
        near.clear();
    }
    shared.breaker.recovering();
    let hook = shared.hook.read().clone();
    let recovery = async move {
        match hook {
            None => Ok(0),
            Some(hook) => tokio::time::timeout(RECOVERY_TIMEOUT, hook())
                .await
                .unwrap_or_else(|_| Err("applying pending invalidations timed out".into())),
        }
    };
    tokio::pin!(recovery);
    let mut recovered = false;
    let started = Instant::now();
    let mut stream = pubsub.into_on_message();
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ok("the invalidation channel was closed".into());
                };
                let payload: String = message.get_payload().unwrap_or_default();
                shared.handle_message(message.get_channel_name(), &payload);
            }
            _ = beat.tick() => {
                let lease = shared.lease_until.load(Relaxed);
                let now = shared.now_ms();
                if (lease > 0 && now >= lease) || (lease == 0 && started.elapsed() > LEASE) {
                    return Ok(format!("no heartbeat from Redis for {} ms", LEASE.as_millis()));
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut cmd = redis::cmd("PUBLISH");
                    cmd.arg(&shared.channels.hb).arg(shared.now_ms());
                    let _ = shared.run::<()>(&cmd, LEASE, Gate::Open).await;
                });
            }
            applied = &mut recovery, if !recovered => {
                recovered = true;
                match applied {
                    Ok(n) => shared.breaker.close(n),
                    Err(e) => return Ok(format!("pending invalidations could not be applied: {e}")),
                }
            }
            _ = shared.wake.notified() => {
                if shared.breaker.state() == State::Open {
                    return Ok(shared.breaker.last_cause().unwrap_or_else(|| "errors".into()));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn get_many(&self, keys: &[&str], sharing: Sharing) -> StoreResult<Vec<Option<Bytes>>> {
        let s = &self.shared;
        let near = s.near().filter(|_| sharing == Sharing::Near);
        let mut epoch = 0;
        if let Some(near) = near {
            if !s.serving() {
                return Err(StoreError::Unavailable);
            }
            let (hit, at) = near.lookup(keys, &[]);
            if let Some((values, _)) = hit {
                return Ok(values);
            }
            epoch = at;
        }
        let values: Vec<Option<Vec<u8>>> = s
            .run(redis::cmd("MGET").arg(keys), s.timeout, Gate::Serving)
            .await?;
        let values: Vec<Option<Bytes>> = values.into_iter().map(|v| v.map(Into::into)).collect();
        if let Some(near) = near {
            near.fill(epoch, keys, &values, &[], &[]);
        }
        Ok(values)
    }

    async fn get_many_tagged(&self, keys: &[&str], tag_keys: &[String]) -> StoreResult<TaggedRead> {
        let s = &self.shared;
        let mut epoch = 0;
        if let Some(near) = s.near() {
            if !s.serving() {
                return Err(StoreError::Unavailable);
            }
            let (hit, at) = near.lookup(keys, tag_keys);
            if let Some(found) = hit {
                return Ok(found);
            }
            epoch = at;
        }
        let mut values: Vec<Option<Vec<u8>>> = s
            .run(
                redis::cmd("MGET").arg(keys).arg(tag_keys),
                s.timeout,
                Gate::Serving,
            )
            .await?;
        let versions: Vec<Option<u64>> = values
            .split_off(keys.len())
            .into_iter()
            .map(|v| v.and_then(|b| parse_u64(&b)))
            .collect();
        let values: Vec<Option<Bytes>> = values.into_iter().map(|v| v.map(Into::into)).collect();
        if let Some(near) = s.near() {
            near.fill(epoch, keys, &values, tag_keys, &versions);
        }
        Ok((values, versions))
    }

    async fn set_many(
        &self,
        items: &[(&str, Vec<u8>)],
        ttl: Duration,
        sharing: Sharing,
    ) -> StoreResult<()> {
        let s = &self.shared;
        let mut pipe = redis::pipe();
        for (key, value) in items {
            pipe.cmd("SET")
                .arg(*key)
                .arg(value.as_slice())
                .arg("PX")
                .arg(ttl_millis(ttl))
                .ignore();
        }
        s.run::<()>(&pipe, s.timeout, Gate::Serving).await?;
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
            s.broadcast(redis::pipe(), Change::Flush).await?;
        }
        Ok(deleted)
    }

    /// SCAN with a large COUNT, then UNLINK each page's keys; never KEYS, which blocks
    /// the server.
    async fn delete_pattern(&self, pattern: &str) -> StoreResult<u64> {
        let s = &self.shared;
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = s
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                    s.bulk_timeout,
                    Gate::Open,
                )
                .await?;
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
        s.broadcast(redis::pipe(), Change::Flush).await?;
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

    /// A missing version is set to a fresh random value (`SET NX GET`, one round trip
    /// for all), so versions never repeat even if Redis loses a tag key.
    async fn tag_versions(&self, tag_keys: &[String]) -> StoreResult<Vec<u64>> {
        let s = &self.shared;
        let epoch = s.near().map_or(0, NearTier::epoch);
        let fresh: Vec<u64> = tag_keys.iter().map(|_| rand::random()).collect();
        let mut pipe = redis::pipe();
        for (key, value) in tag_keys.iter().zip(&fresh) {
            pipe.cmd("SET")
                .arg(key)
                .arg(value.to_string())
                .arg("NX")
                .arg("GET");
        }
        let existing: Vec<Option<Vec<u8>>> = s.run(&pipe, s.timeout, Gate::Serving).await?;
        let versions: Vec<u64> = existing
            .into_iter()
            .zip(fresh)
            .map(|(old, new)| old.and_then(|b| parse_u64(&b)).unwrap_or(new))
            .collect();
        if let Some(near) = s.near() {
            let known: Vec<Option<u64>> = versions.iter().copied().map(Some).collect();
            near.fill(epoch, &[], &[], tag_keys, &known);
        }
        Ok(versions)
    }

    async fn bump_tags(&self, tag_keys: &[String]) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        for key in tag_keys {
            pipe.cmd("SET")
                .arg(key)
                .arg(rand::random::<u64>().to_string())
                .ignore();
        }
        let tags: Vec<&str> = tag_keys.iter().map(String::as_str).collect();
        self.shared.broadcast(pipe, Change::Tags(tags)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        let s = &self.shared;
        // A health check: answer within a second or count as down.
        s.run::<()>(&redis::cmd("PING"), CONNECT_TIMEOUT, Gate::Open)
            .await
    }

    async fn server_memory(&self) -> StoreResult<Option<super::ServerMemory>> {
        let s = &self.shared;
        let info: String = s
            .run(
                redis::cmd("INFO").arg("memory").arg("stats"),
                s.timeout,
                Gate::Serving,
            )
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some(super::ServerMemory {
            used_bytes: number("used_memory"),
            max_bytes: number("maxmemory"),
            policy: field("maxmemory_policy").unwrap_or("").to_string(),
            evicted_keys: number("evicted_keys"),
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

/// A command or a pipeline: both run the same way.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

impl Query<'_> {
    async fn send<T: FromRedisValue>(
        self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        match self {
            Query::Cmd(cmd) => cmd.query_async(conn).await,
            Query::Pipe(pipe) => pipe.query_async(conn).await,
        }
    }
}

impl<'a> From<&'a redis::Cmd> for Query<'a> {
    fn from(cmd: &'a redis::Cmd) -> Self {
        Query::Cmd(cmd)
    }
}

impl<'a> From<&'a mut redis::Cmd> for Query<'a> {
    fn from(cmd: &'a mut redis::Cmd) -> Self {
        Query::Cmd(cmd)
    }
}

impl<'a> From<&'a redis::Pipeline> for Query<'a> {
    fn from(pipe: &'a redis::Pipeline) -> Self {
        Query::Pipe(pipe)
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
