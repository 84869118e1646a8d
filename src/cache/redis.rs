//! The Redis backend over a bb8 pool. Every command runs under a short timeout: a slow
//! or absent Redis turns into an error the manager counts and treats as a miss. The
//! pool's own manager marks a connection broken on I/O errors, so bb8 replaces it and
//! the cache reconnects by itself after Redis comes back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bb8_redis::bb8::{self, Pool};
use bb8_redis::redis::aio::MultiplexedConnection;
use bb8_redis::redis::{self, FromRedisValue, RedisError};

use super::{StoreError, StoreResult};

/// Keys per `SCAN` page (Redis's default of 10 makes pattern deletion crawl) and per
/// `UNLINK` batch.
const SCAN_COUNT: usize = 1000;

pub struct RedisConn {
    conn: MultiplexedConnection,
    broken: bool,
}

pub struct RedisManager {
    client: redis::Client,
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<RedisConn, RedisError> {
        Ok(RedisConn {
            conn: self.client.get_multiplexed_async_connection().await?,
            broken: false,
        })
    }

    async fn is_valid(&self, c: &mut RedisConn) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(&mut c.conn).await
    }

    fn has_broken(&self, c: &mut RedisConn) -> bool {
        c.broken
    }
}

/// After a failure, Redis is not asked again for this long: every call in between is
/// an immediate miss instead of each waiting out its own timeout (a page makes dozens of
/// cache calls). The first call after the pause probes Redis again.
const BREAKER_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct RedisStore {
    pool: Pool<RedisManager>,
    /// Unix milliseconds until which Redis counts as down (0: up).
    down_until: Arc<AtomicU64>,
    /// Per command: a get waits at most this long before it is a miss.
    timeout: Duration,
    /// For bulk work (a SCAN page, an UNLINK batch).
    bulk_timeout: Duration,
    url: Arc<str>,
}

impl RedisStore {
    /// Never fails on an unreachable server: the site runs on the database until Redis
    /// answers.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
        let pool = Pool::builder()
            .max_size(16)
            .connection_timeout(timeout.max(Duration::from_millis(50)))
            .test_on_check_out(false)
            // A refused connection is an immediate error, not a wait of the whole
            // connection timeout (bb8 would retry until then).
            .retry_connection(false)
            .build_unchecked(RedisManager { client });
        Ok(RedisStore {
            pool,
            down_until: Arc::default(),
            timeout,
            bulk_timeout: timeout.max(Duration::from_secs(5)),
            url: url.into(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn check_breaker(&self) -> StoreResult<()> {
        if now_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    fn record<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if matches!(result, Err(StoreError::Redis(_) | StoreError::Timeout(_))) {
            self.down_until.store(
                now_ms() + BREAKER_PAUSE.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        result
    }

    async fn run<T: FromRedisValue>(&self, cmd: &impl Query, timeout: Duration) -> StoreResult<T> {
        self.check_breaker()?;
        let work = async {
            let mut c = self
                .pool
                .get()
                .await
                .map_err(|e| StoreError::Redis(e.to_string()))?;
            let result = cmd.query::<T>(&mut c.conn).await;
            mark_if_broken(&mut c, &result);
            result.map_err(|e| StoreError::Redis(e.to_string()))
        };
        let result = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| StoreError::Timeout(timeout));
        self.record(result.and_then(|r| r))
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.run::<()>(
            &redis::cmd("PING"),
            self.timeout.max(Duration::from_millis(500)),
        )
        .await
    }

    pub async fn get_many(&self, keys: &[&str]) -> StoreResult<Vec<Option<Arc<[u8]>>>> {
        let values: Vec<Option<Vec<u8>>> =
            self.run(redis::cmd("MGET").arg(keys), self.timeout).await?;
        Ok(values.into_iter().map(|v| v.map(Into::into)).collect())
    }

    /// One round trip: the entries and the current versions of their tags.
    pub async fn get_many_tagged(
        &self,
        keys: &[&str],
        tag_keys: &[String],
    ) -> StoreResult<(Vec<Option<Arc<[u8]>>>, Vec<Option<u64>>)> {
        let mut values: Vec<Option<Vec<u8>>> = self
            .run(redis::cmd("MGET").arg(keys).arg(tag_keys), self.timeout)
            .await?;
        let versions = values
            .split_off(keys.len())
            .into_iter()
            .map(|v| v.and_then(|b| parse_u64(&b)))
            .collect();
        Ok((
            values.into_iter().map(|v| v.map(Into::into)).collect(),
            versions,
        ))
    }

    pub async fn set_many(&self, items: &[(&str, Vec<u8>)], ttl: Duration) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        for (key, value) in items {
            pipe.cmd("SET")
                .arg(*key)
                .arg(value.as_slice())
                .arg("PX")
                .arg(ttl_millis(ttl))
                .ignore();
        }
        self.run::<()>(&pipe, self.timeout).await
    }

    pub async fn delete_many(&self, keys: &[&str]) -> StoreResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.run(redis::cmd("UNLINK").arg(keys), self.timeout).await
    }

    /// SCAN with a large COUNT, then UNLINK each page's keys; never KEYS, which blocks
    /// the server.
    pub async fn delete_pattern(&self, pattern: &str) -> StoreResult<u64> {
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                    self.bulk_timeout,
                )
                .await?;
            if !keys.is_empty() {
                deleted += self
                    .run::<u64>(redis::cmd("UNLINK").arg(&keys), self.bulk_timeout)
                    .await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// INCRBY, and a TTL only if the counter has none yet (so counting does not keep
    /// extending its life).
    pub async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> StoreResult<i64> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY")
            .arg(key)
            .arg(delta)
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ttl_millis(ttl))
            .arg("NX")
            .ignore();
        let (value,): (i64,) = self.run(&pipe, self.timeout).await?;
        Ok(value)
    }

    pub async fn expire(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.run(
            redis::cmd("PEXPIRE").arg(key).arg(ttl_millis(ttl)),
            self.timeout,
        )
        .await
    }

    pub async fn has(&self, key: &str) -> StoreResult<bool> {
        self.run(redis::cmd("EXISTS").arg(key), self.timeout).await
    }

    /// Current versions; a missing one is set to a fresh random value (`SET NX GET`, one
    /// round trip for all), so versions never repeat even if Redis loses a tag key.
    pub async fn tag_versions(&self, tag_keys: &[String]) -> StoreResult<Vec<u64>> {
        let fresh: Vec<u64> = tag_keys.iter().map(|_| rand::random()).collect();
        let mut pipe = redis::pipe();
        for (key, value) in tag_keys.iter().zip(&fresh) {
            pipe.cmd("SET")
                .arg(key)
                .arg(value.to_string())
                .arg("NX")
                .arg("GET");
        }
        let existing: Vec<Option<Vec<u8>>> = self.run(&pipe, self.timeout).await?;
        Ok(existing
            .into_iter()
            .zip(fresh)
            .map(|(old, new)| old.and_then(|b| parse_u64(&b)).unwrap_or(new))
            .collect())
    }

    pub async fn bump_tags(&self, tag_keys: &[String]) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        for key in tag_keys {
            pipe.cmd("SET")
                .arg(key)
                .arg(rand::random::<u64>().to_string())
                .ignore();
        }
        // A write waits for its invalidation: give it the bulk timeout, not a get's.
        self.run::<()>(&pipe, self.bulk_timeout).await
    }

    /// Adds this process's counter deltas to the site-wide hash.
    pub async fn add_to_hash(&self, hash: &str, fields: &[(String, u64)]) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        for (field, delta) in fields.iter().filter(|(_, d)| *d > 0) {
            pipe.cmd("HINCRBY")
                .arg(hash)
                .arg(field)
                .arg(*delta)
                .ignore();
        }
        self.run::<()>(&pipe, self.bulk_timeout).await
    }

    pub async fn read_hash(&self, hash: &str) -> StoreResult<Vec<(String, u64)>> {
        self.run(redis::cmd("HGETALL").arg(hash), self.bulk_timeout)
            .await
    }
}

/// A command or a pipeline: both run the same way.
trait Query {
    async fn query<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError>;
}

impl Query for redis::Cmd {
    async fn query<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

impl Query for redis::Pipeline {
    async fn query<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<T, RedisError> {
        self.query_async(conn).await
    }
}

fn mark_if_broken<T>(c: &mut RedisConn, result: &Result<T, RedisError>) {
    if let Err(e) = result {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            c.broken = true;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
