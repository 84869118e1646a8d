//! Single flight: concurrent misses on one entry compute it once; the others wait for
//! that result — the value or the error (one failed query must not cost the Nth waiter
//! N timeouts). A flight is keyed by the entry, the value and error types, the tag
//! versions it was computed under, and this process's write epoch: a reader that
//! arrives after a write returned never joins a computation begun before it, also when
//! the versions are unknown (cache off or down). If the leader is cancelled (its client
//! went away), its entry is removed and one waiter takes over.
//!
//! Two other places make concurrent work happen once, and they stay apart because each
//! shares something else, owned otherwise:
//! - the response cache's collapsing (`web::http_cache::collapse`) shares only the fact
//!   that the first render ended: a response is neither `Clone` nor `Send` (it holds
//!   the worker's request), and each follower builds its own answer (its conditions,
//!   HEAD, its view) from the stored copy; a follower waits at most a bound, then
//!   renders itself. The leader's render is the rest of a middleware, not a closure
//!   returning a value to hand out, which is what `run` takes.
//! - the near tier's shared reads (`backend::near`) share a Redis read that its readers
//!   own (the map holds a weak handle): when the last reader goes away the read is
//!   dropped, never resumed by a later reader past its timeout; and a read is joined
//!   only within the coherence epoch it began in. Here the leader owns the work and a
//!   waiter takes over when it goes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

type Shared = Arc<dyn Any + Send + Sync>;
type Outcome = Result<Shared, Shared>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlightKey {
    key: String,
    types: (TypeId, TypeId),
    versions: Option<Vec<Option<u64>>>,
    epoch: u64,
}

impl FlightKey {
    pub fn new<T: 'static, E: 'static>(
        key: &str,
        versions: Option<&[Option<u64>]>,
        epoch: u64,
    ) -> Self {
        FlightKey {
            key: key.to_string(),
            types: (TypeId::of::<T>(), TypeId::of::<E>()),
            versions: versions.map(<[Option<u64>]>::to_vec),
            epoch,
        }
    }
}

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<FlightKey, Arc<watch::Sender<Option<Outcome>>>>>,
}

enum Role {
    Lead(Arc<watch::Sender<Option<Outcome>>>),
    Wait(watch::Receiver<Option<Outcome>>),
}

/// Removes the leader's entry however the leader ends (returned or dropped).
struct Leading<'a> {
    flights: &'a Flights,
    key: &'a FlightKey,
    sender: Arc<watch::Sender<Option<Outcome>>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.map.lock();
        if map
            .get(self.key)
            .is_some_and(|s| Arc::ptr_eq(s, &self.sender))
        {
            map.remove(self.key);
        }
    }
}

impl Flights {
    /// How many computations are under way (tests check that none leak).
    pub fn in_flight(&self) -> usize {
        self.map.lock().len()
    }

    pub async fn run<T, E, F, Fut>(&self, key: FlightKey, work: F) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut work = Some(work);
        loop {
            let role = {
                let mut map = self.map.lock();
                match map.get(&key) {
                    Some(sender) => Role::Wait(sender.subscribe()),
                    None => {
                        let sender = Arc::new(watch::channel(None).0);
                        map.insert(key.clone(), sender.clone());
                        Role::Lead(sender)
                    }
                }
            };
            match role {
                Role::Lead(sender) => {
                    let leading = Leading {
                        flights: self,
                        key: &key,
                        sender,
                    };
                    let work = work.take().expect("a caller leads at most once");
                    let result = work().await;
                    let outcome: Outcome = match &result {
                        Ok(v) => Ok(Arc::new(v.clone())),
                        Err(e) => Err(Arc::new(e.clone())),
                    };
                    leading.sender.send_replace(Some(outcome));
                    return result;
                }
                Role::Wait(mut receiver) => {
                    let Ok(outcome) = receiver.wait_for(Option::is_some).await else {
                        continue; // the leader was cancelled: lead or join the next flight
                    };
                    return match outcome.as_ref().expect("waited for it") {
                        Ok(v) => Ok(v.downcast_ref::<T>().expect("keyed by type").clone()),
                        Err(e) => Err(e.downcast_ref::<E>().expect("keyed by type").clone()),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;

    fn key(epoch: u64) -> FlightKey {
        FlightKey::new::<u32, String>("k", None, epoch)
    }

    #[tokio::test]
    async fn waiters_share_the_leaders_error_instead_of_retrying() {
        let flights = Flights::default();
        let calls = AtomicU32::new(0);
        let work = || async {
            calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<u32, String>("database timed out".into())
        };
        let results =
            futures_util::future::join_all((0..10).map(|_| flights.run(key(0), work))).await;
        assert_eq!(calls.load(SeqCst), 1);
        assert!(results
            .iter()
            .all(|r| r.as_ref().map_err(String::as_str) == Err("database timed out")));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_nothing_behind_and_a_waiter_takes_over() {
        let flights = Arc::new(Flights::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(key(0), || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<u32, String>(1)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(
                async move { flights.run(key(0), || async { Ok::<u32, String>(2) }).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(
            waiter.await.unwrap(),
            Ok(2),
            "the waiter computed it itself"
        );
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_reader_after_a_write_does_not_join_an_older_flight() {
        let flights = Flights::default();
        let old = flights.run(key(0), || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<u32, String>(1)
        });
        let new = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            flights.run(key(1), || async { Ok::<u32, String>(2) }).await
        };
        let (old, new) = tokio::join!(old, new);
        assert_eq!((old, new), (Ok(1), Ok(2)));
    }
}
