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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
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

    /// Entries and tag versions in one `MGET`.
    async fn mget<K: redis::ToRedisArgs + Sync>(
        &self,
        keys: &[K],
        tag_keys: &[String],
    ) -> StoreResult<TaggedRead> {
        let mut values: Vec<Option<Vec<u8>>> = self
            .run(
                redis::cmd("MGET").arg(keys).arg(tag_keys),
                self.timeout,
                Gate::Serving,
            )
            .await?;
        let versions: Vec<Option<u64>> = values
            .split_off(keys.len())
            .into_iter()
            .map(|v| v.and_then(|b| parse_u64(&b)))
            .collect();
        let values = values.into_iter().map(|v| v.map(Into::into)).collect();
        Ok((values, versions))
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
        let Some(mut link) = self.conn.read().clone() else {
            return Err(StoreError::Unavailable);
        };
        let result = match tokio::time::timeout(timeout, query.send::<T>(&mut link)).await {
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

    fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Commands on one key each, in one round trip: one pipeline on a server; on a
    /// cluster (whose pipelines must stay in one slot) one pipeline per slot, sent at once,
    /// so the commands for each node travel together on its connection. The replies come
    /// back in the order of `commands`.
    async fn run_each(
        &self,
        commands: Vec<(&str, redis::Cmd)>,
        timeout: Duration,
        gate: Gate,
    ) -> StoreResult<Vec<Value>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let mut pipe = redis::pipe();
            for (_, cmd) in commands {
                pipe.add_command(cmd);
            }
            return self.run(&pipe, timeout, gate).await;
        }
        let mut groups: Vec<(Slot, Vec<usize>, redis::Pipeline)> = Vec::new();
        for (i, (key, cmd)) in commands.into_iter().enumerate() {
            let slot = Slot::for_key(key);
            let at = match groups.iter().position(|(s, _, _)| *s == slot) {
                Some(at) => at,
                None => {
                    groups.push((slot, Vec::new(), redis::pipe()));
                    groups.len() - 1
                }
            };
            groups[at].1.push(i);
            groups[at].2.add_command(cmd);
        }
        let replies = futures_util::future::try_join_all(
            groups
                .iter()
                .map(|(_, _, pipe)| self.run::<Vec<Value>>(pipe, timeout, gate)),
        )
        .await?;
        let mut out = vec![Value::Nil; groups.iter().map(|(_, at, _)| at.len()).sum()];
        for ((_, at, _), values) in groups.iter().zip(replies) {
            for (i, value) in at.iter().zip(values) {
                out[*i] = value;
            }
        }
        Ok(out)
    }

    /// The masters of a cluster, as `(host, port)`; empty on one server.
    async fn masters(&self, timeout: Duration) -> StoreResult<Vec<(String, u16)>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let nodes: String = self
            .run(redis::cmd("CLUSTER").arg("NODES"), timeout, Gate::Open)
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let address = fields.nth(1)?;
                let flags = fields.next()?;
                let is_live_master = flags.split(',').any(|f| f == "master")
                    && !flags.split(',').any(|f| f == "fail" || f == "noaddr");
                let (host, port) = address.split('@').next()?.rsplit_once(':')?;
                is_live_master.then(|| Some((host.to_string(), port.parse().ok()?)))?
            })
            .collect())
    }

    /// `INFO sections`: one reply, or one per master of a cluster.
    async fn info(
        &self,
        sections: &[&str],
        timeout: Duration,
        gate: Gate,
    ) -> StoreResult<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(sections);
        if !self.is_cluster() {
            return Ok(vec![self.run(&cmd, timeout, gate).await?]);
        }
        let mut infos = Vec::new();
        for (host, port) in self.masters(timeout).await? {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            infos.push(
                self.run(Query::Routed(&cmd, &routing), timeout, gate)
                    .await?,
            );
        }
        Ok(infos)
    }

    /// Applies a change everywhere: `writes` and a message to every instance, then waits
    /// as the module documentation says.
    async fn broadcast(
        &self,
        writes: Vec<(&str, redis::Cmd)>,
        change: Change<'_>,
    ) -> StoreResult<()> {
        // Before: this instance stops serving the old entries at once.
        if let Some(near) = self.near() {
            change.apply(near);
        }
        let id: u64 = rand::random();
        let wait = Arc::new(AckWait::default());
        self.acks.lock().insert(id, wait.clone());
        let publish = self
            .channels
            .publish(&self.channels.inv, change.message(id, &self.instance));
        let send = || async {
            self.run_each(writes.clone(), self.timeout, Gate::Open)
                .await?;
            self.run::<usize>(&publish, self.timeout, Gate::Open).await
        };
        // Retried for a while: when only this instance lost Redis (its connection is
        // being replaced), the others still serve, and must hear of the change.
        let give_up = Instant::now() + RETRY_FOR;
        let result: StoreResult<usize> = loop {
            match send().await {
                Err(_) if Instant::now() + RETRY_PAUSE < give_up => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                result => break result,
            }
        };
        let published = Instant::now();
        let outcome = match result {
            Ok(receivers) => {
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
            let ack_channel = format!("{}@ack:{origin}", self.channels.base);
            let shared = self.clone();
            tokio::spawn(async move {
                let cmd = shared.channels.publish(&ack_channel, id);
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

/// What the subscription delivers.
enum Event {
    Message(String, String),
    /// The subscription may have missed messages.
    Lost(&'static str),
}

/// Connects the command link and subscribes to this instance's channels.
async fn connect(shared: &Shared) -> Result<(Link, BoxStream<'static, Event>), RedisError> {
    let channels = [
        shared.channels.inv.as_str(),
        shared.channels.hb.as_str(),
        shared.channels.ack.as_str(),
    ];
    match &shared.target {
        Target::Single(client) => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(None);
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            let events = pubsub.into_on_message().map(|m| {
                let payload: String = m.get_payload().unwrap_or_default();
                Event::Message(m.get_channel_name().to_string(), payload)
            });
            Ok((Link::Single(conn), events.boxed()))
        }
        Target::Cluster(nodes) => {
            let builder = || {
                ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    // Each command has its own timeout (`Shared::run`).
                    .response_timeout(Duration::from_secs(30))
            };
            let conn = builder().build()?.get_async_connection().await?;
            // Sharded pub/sub needs RESP3 pushes; on a connection of its own.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let mut subscriber = builder()
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?
                .get_async_connection()
                .await?;
            subscriber.ssubscribe(&channels).await?;
            let confirmations = channels.len();
            let events = futures_util::stream::unfold(
                (rx, subscriber, 0usize),
                move |(mut rx, subscriber, mut confirmed)| async move {
                    let push = rx.recv().await?;
                    let event = match push.kind {
                        PushKind::SMessage => {
                            let mut data = push.data.into_iter();
                            let text = |v: Option<Value>| {
                                v.and_then(|v| String::from_redis_value(v).ok())
                                    .unwrap_or_default()
                            };
                            let channel = text(data.next());
                            Some(Event::Message(channel, text(data.next())))
                        }
                        PushKind::SSubscribe => {
                            confirmed += 1;
                            (confirmed > confirmations)
                                .then_some(Event::Lost("the subscription was renewed"))
                        }
                        PushKind::SUnsubscribe => {
                            Some(Event::Lost("the subscription's slot moved"))
                        }
                        PushKind::Disconnection => {
                            Some(Event::Lost("a cluster node dropped the connection"))
                        }
                        _ => None,
                    };
                    Some((event, (rx, subscriber, confirmed)))
                },
            )
            .filter_map(|event| async move { event });
            Ok((Link::Cluster(conn), events.boxed()))
        }
    }
}

/// One connected stretch. Err: it never started serving; Ok: why it stopped.
async fn session(shared: &Arc<Shared>) -> Result<String, String> {
    let (link, mut stream) = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect(shared)).await
    {
        Err(_) => return Err("Redis did not answer while connecting".into()),
        Ok(Err(e)) => return Err(format!("cannot connect to Redis: {e}")),
        Ok(Ok(pair)) => pair,
    };
    *shared.conn.write() = Some(link);
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
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                None => return Ok("the invalidation channel was closed".into()),
                Some(Event::Lost(why)) => return Ok(why.into()),
                Some(Event::Message(channel, payload)) => shared.handle_message(&channel, &payload),
            },
            _ = beat.tick() => {
                let lease = shared.lease_until.load(Relaxed);
                let now = shared.now_ms();
                if (lease > 0 && now >= lease) || (lease == 0 && started.elapsed() > LEASE) {
                    return Ok(format!("no heartbeat from Redis for {} ms", LEASE.as_millis()));
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    let cmd = shared.channels.publish(&shared.channels.hb, shared.now_ms());
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

/// A command or a pipeline: both run the same way.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    /// A command for one node of a cluster.
    Routed(&'a redis::Cmd, &'a RoutingInfo),
}

impl Query<'_> {
    async fn send<T: FromRedisValue>(self, link: &mut Link) -> Result<T, RedisError> {
        match (self, link) {
            (Query::Cmd(cmd) | Query::Routed(cmd, _), Link::Single(conn)) => {
                cmd.query_async(conn).await
            }
            (Query::Pipe(pipe), Link::Single(conn)) => pipe.query_async(conn).await,
            (Query::Cmd(cmd), Link::Cluster(conn)) => cmd.query_async(conn).await,
            (Query::Pipe(pipe), Link::Cluster(conn)) => pipe.query_async(conn).await,
            (Query::Routed(cmd, routing), Link::Cluster(conn)) => {
                let value = conn.route_command(cmd.clone(), routing.clone()).await?;
                Ok(T::from_redis_value(value)?)
            }
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
