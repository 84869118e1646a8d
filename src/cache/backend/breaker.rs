//! The circuit breaker in front of Redis. It opens on a connection failure, on a
//! sustained error rate (not on one slow reply: under load a single timeout says more
//! about the machine than about Redis), or when the heartbeat stops; while open every
//! call is an immediate miss. It is closed again by the connection supervisor, after a
//! probe has reconnected and pending invalidations were applied (half-open), never by a
//! request.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;

/// Errors within one window that open the breaker, if they are also half the calls.
const MIN_FAILURES: u64 = 10;
const WINDOW_MS: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Closed = 0,
    Open = 1,
    Recovering = 2,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::Recovering => "recovering",
        }
    }
}

/// What a failed call tells the breaker.
pub enum Failure {
    /// Refused, reset, closed: Redis is not there.
    Connection,
    /// A timeout or an error reply: counts toward the error rate.
    Transient,
}

pub struct Breaker {
    state: AtomicU8,
    trips: AtomicU64,
    window: Mutex<Window>,
    last_cause: Mutex<Option<String>>,
    opened_at: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Window {
    started_ms: u64,
    calls: u64,
    failures: u64,
    first_error: Option<String>,
}

impl Default for Breaker {
    /// Starts open: nothing is served before the supervisor has connected.
    fn default() -> Self {
        Breaker {
            state: AtomicU8::new(State::Open as u8),
            trips: AtomicU64::new(0),
            window: Mutex::default(),
            last_cause: Mutex::new(None),
            opened_at: Mutex::new(Some(Instant::now())),
        }
    }
}

impl Breaker {
    pub fn state(&self) -> State {
        match self.state.load(Relaxed) {
            0 => State::Closed,
            2 => State::Recovering,
            _ => State::Open,
        }
    }

    pub fn trips(&self) -> u64 {
        self.trips.load(Relaxed)
    }

    pub fn last_cause(&self) -> Option<String> {
        self.last_cause.lock().clone()
    }

    pub fn success(&self, now_ms: u64) {
        let mut w = self.window.lock();
        w.roll(now_ms);
        w.calls += 1;
    }

    /// Records a failure; true if it opened the breaker.
    pub fn failure(&self, now_ms: u64, kind: Failure, error: &str) -> bool {
        let cause = {
            let mut w = self.window.lock();
            w.roll(now_ms);
            w.calls += 1;
            w.failures += 1;
            if w.first_error.is_none() {
                w.first_error = Some(error.to_string());
            }
            let sustained = w.failures >= MIN_FAILURES && w.failures * 2 >= w.calls;
            match kind {
                Failure::Connection => error.to_string(),
                Failure::Transient if sustained => format!(
                    "{} of {} calls failed within {WINDOW_MS} ms, the first: {}",
                    w.failures,
                    w.calls,
                    w.first_error.as_deref().unwrap_or(error)
                ),
                Failure::Transient => return false,
            }
        };
        self.open(&cause)
    }

    /// Opens the breaker (from closed or recovering); true if it was not open already.
    pub fn open(&self, cause: &str) -> bool {
        let previous = self.state.swap(State::Open as u8, Relaxed);
        if previous == State::Open as u8 {
            return false;
        }
        self.trips.fetch_add(1, Relaxed);
        *self.last_cause.lock() = Some(cause.to_string());
        *self.opened_at.lock() = Some(Instant::now());
        *self.window.lock() = Window::default();
        tracing::warn!(
            cause,
            "cache breaker opened: Redis is bypassed (pages come from the database) until it answers again"
        );
        true
    }

    pub fn recovering(&self) {
        self.state.store(State::Recovering as u8, Relaxed);
    }

    pub fn close(&self, applied: usize) {
        let previous = self.state.swap(State::Closed as u8, Relaxed);
        if previous != State::Closed as u8 {
            let down_ms = self
                .opened_at
                .lock()
                .take()
                .map_or(0, |t| t.elapsed().as_millis() as u64);
            *self.window.lock() = Window::default();
            tracing::info!(
                down_ms,
                pending_invalidations_applied = applied,
                "cache breaker closed: serving from Redis"
            );
        }
    }
}

impl Window {
    fn roll(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.started_ms) >= WINDOW_MS {
            *self = Window {
                started_ms: now_ms,
                ..Window::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> Breaker {
        let b = Breaker::default();
        b.close(0);
        b
    }

    #[test]
    fn one_slow_reply_does_not_open_it() {
        let b = closed();
        for i in 0..100 {
            b.success(i);
        }
        for _ in 0..9 {
            assert!(!b.failure(200, Failure::Transient, "timed out"));
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_sustained_error_rate_opens_it_with_the_first_error_as_cause() {
        let b = closed();
        b.failure(0, Failure::Transient, "timed out after 100ms");
        for _ in 0..9 {
            b.failure(1, Failure::Transient, "later");
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.trips(), 1);
        assert!(b.last_cause().unwrap().contains("timed out after 100ms"));
    }

    #[test]
    fn errors_in_separate_windows_do_not_add_up() {
        let b = closed();
        for second in 0..20 {
            b.failure(second * WINDOW_MS, Failure::Transient, "timed out");
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_connection_failure_opens_it_at_once() {
        let b = closed();
        assert!(b.failure(0, Failure::Connection, "connection refused"));
        assert!(!b.failure(1, Failure::Connection, "again"), "already open");
        assert_eq!(b.trips(), 1);
    }
}
