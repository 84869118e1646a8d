//! The command link: running a command or pipeline on the one multiplexed connection
//! (or the cluster's), timed on the I/O thread and gated by the breaker, and reading
//! entries and tag versions in one `MGET`.

use super::*;

impl Shared {
    pub(super) fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Serving: the breaker is closed and a heartbeat came back within the lease.
    pub(super) fn serving(&self) -> bool {
        self.breaker.state() == State::Closed && self.now_ms() < self.lease_until.load(Relaxed)
    }

    pub(super) fn near(&self) -> Option<&NearTier> {
        self.near.as_ref()
    }

    /// Entries and tag versions in one `MGET`.
    pub(super) async fn mget<K: redis::ToRedisArgs + Sync>(
        &self,
        keys: &[K],
        tag_keys: &[String],
    ) -> StoreResult<TaggedRead> {
        // MGET with no key is an error in Redis: nothing to read is an empty answer.
        if keys.is_empty() && tag_keys.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
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

    pub(super) async fn run<'q, T: FromRedisValue>(
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
        let span = query.span();
        let sent = tokio::time::timeout(timeout, query.send::<T>(&mut link));
        let result = match sent.instrument(span.clone()).await {
            Err(_) => Err((Failure::Transient, StoreError::Timeout(timeout))),
            Ok(Err(e)) if is_connection_error(&e) => {
                Err((Failure::Connection, StoreError::Redis(e.to_string())))
            }
            Ok(Err(e)) => Err((Failure::Transient, StoreError::Redis(e.to_string()))),
            Ok(Ok(v)) => Ok(v),
        };
        if let (Err((_, e)), false) = (&result, span.is_disabled()) {
            span.record("otel.status_code", "ERROR");
            span.record("error.message", tracing::field::display(e));
        }
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
}

/// A command or a pipeline: both run the same way.
#[derive(Clone, Copy)]
pub(super) enum Query<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
    /// A command for one node of a cluster.
    Routed(&'a redis::Cmd, &'a RoutingInfo),
}

impl Query<'_> {
    /// A round trip's span in a trace (`redis`): the command, or `PIPELINE` and how many.
    fn span(&self) -> tracing::Span {
        let span = tracing::debug_span!(
            "redis",
            db.system.name = "redis",
            db.operation.name = tracing::field::Empty,
            db.operation.batch.size = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        if !span.is_disabled() {
            match self {
                Query::Cmd(cmd) | Query::Routed(cmd, _) => {
                    if let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() {
                        span.record("db.operation.name", String::from_utf8_lossy(name).as_ref());
                    }
                }
                Query::Pipe(pipe) => {
                    span.record("db.operation.name", "PIPELINE");
                    span.record("db.operation.batch.size", pipe.cmd_iter().count());
                }
            }
        }
        span
    }

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

pub(super) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}
