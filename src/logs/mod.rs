//! Logs: the `tracing` targets the crate emits on, a rate limiter for events that could come
//! once per message, and the panic hook an application may install. Depends on `types` only
//! (which threads are the runtime's); every module above emits through it.
//!
//! The library installs no subscriber: with none installed, every event here is one relaxed
//! load of `tracing`'s global max level and a branch (`level_enabled!`), and a rate-limited one
//! checks that level before it touches its limiter. The event table, the targets and the field
//! names are documented in the crate docs ("Logs"); "Logs" in `docs/decisions.md` says why it
//! is built this way, with the instruction counts.

mod panic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use panic::set_panic_hook;
pub(crate) use panic::{mark_worker_thread, take_panic_location};

/// Component lifecycle on its reactor thread (started, restarted, failed, stopped), handler
/// errors under `OnError::Continue`, and refusals by a full mailbox.
pub(crate) const REACTOR: &str = "reactorium::reactor";
/// The supervisor thread's decisions: restarts, giving up, escalation, unacknowledged commands.
pub(crate) const SUPERVISOR: &str = "reactorium::supervisor";
/// The runtime as a whole: start, stop, a component that did not stop in time.
pub(crate) const RUNTIME: &str = "reactorium::runtime";
/// Dead letters, and dead letters that could not be delivered.
pub(crate) const BUS: &str = "reactorium::bus";
/// The worker pool: job panics, refusals by a full queue.
pub(crate) const WORKER: &str = "reactorium::worker";
/// The connection engine under every front-end: accept and poll errors, refused connections.
pub(crate) const ENGINE: &str = "reactorium::engine";
/// The HTTP front-end: error responses, connection timeouts.
pub(crate) const HTTP: &str = "reactorium::http";

/// At most one event per this interval from one limiter.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// Lets one event through per [`INTERVAL`] and counts the others, for events that could come
/// once per message (a refusal, a dead letter). Only consulted once the event's level is known
/// to be enabled, so with no subscriber (or the level filtered out) it costs nothing.
///
/// Two relaxed atomics, on whatever cache line holds the limiter: a burst writes `suppressed`
/// once per event it swallows, which is the price of being told how many.
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    /// When the next event may go out, in milliseconds since [`epoch`] (0: at once).
    next: AtomicU64,
    /// Events swallowed since the last one that went out.
    suppressed: AtomicU64,
}

impl RateLimit {
    pub(crate) const fn new() -> RateLimit {
        RateLimit {
            next: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when an event may go out now, `n` being how many were swallowed since the
    /// last one; `None` (and one more swallowed) otherwise. Of racing callers at most one
    /// gets `Some` per interval.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = millis();
        let next = self.next.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The instant rate limits count from (the first time one is consulted).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`], at least 1 (0 means "at once" in a fresh limiter).
fn millis() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Emits a `tracing` event through a [`RateLimit`]: the level is checked first (one relaxed
/// load when disabled), then the limiter; the event gets a `suppressed` field counting what
/// the limiter swallowed since the last one.
///
/// `limited!(limit, Level::DEBUG, target: BUS, field = value, ..., "message")`
macro_rules! limited {
    ($limit:expr, $level:expr, target: $target:expr, $($rest:tt)+) => {
        if ::tracing::enabled!(target: $target, $level) {
            if let Some(suppressed) = $limit.admit() {
                ::tracing::event!(target: $target, $level, suppressed, $($rest)+);
            }
        }
    };
}
pub(crate) use limited;

/// The span the current thread is in, to hand to work that runs elsewhere (a worker job):
/// `Span::none()` without asking the dispatcher when no subscriber was ever installed.
pub(crate) fn current_span() -> tracing::Span {
    if tracing::dispatcher::has_been_set() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_one_per_interval_and_counts_the_rest() {
        let l = RateLimit::new();
        assert_eq!(l.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(l.admit(), None);
        }
        // Move the window back as if the interval had passed.
        l.next.store(1, Ordering::Relaxed);
        assert_eq!(l.admit(), Some(5));
        assert_eq!(l.admit(), None);
    }
}
