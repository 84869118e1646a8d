//! Coherence across instances (see the backend's module comment): invalidations
//! broadcast and acknowledged, heartbeats that hold the serving lease, and the
//! supervisor that reconnects, resubscribes, recovers and only then serves again.

use std::sync::Weak;

use super::*;

impl Shared {
    /// Applies a change everywhere: `writes` and a message to every instance, then waits
    /// as the module documentation says.
    pub(super) async fn broadcast(
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

    pub(super) fn acknowledged(&self, id: u64) {
        if let Some(wait) = self.acks.lock().get(&id) {
            wait.count.fetch_add(1, Relaxed);
            wait.notify.notify_waiters();
        }
    }

    pub(super) fn handle_message(self: &Arc<Self>, channel: &str, payload: &str) {
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
pub(super) enum Change<'a> {
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
pub(super) async fn supervise(weak: Weak<Shared>) {
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
pub(super) enum Event {
    Message(String, String),
    /// The subscription may have missed messages.
    Lost(&'static str),
}

/// Connects the command link and subscribes to this instance's channels.
pub(super) async fn connect(
    shared: &Shared,
) -> Result<(Link, BoxStream<'static, Event>), RedisError> {
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
pub(super) async fn session(shared: &Arc<Shared>) -> Result<String, String> {
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
