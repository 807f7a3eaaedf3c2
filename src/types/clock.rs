//! The time source of a runtime: the system's monotonic clock, or a manual one that tests
//! advance by hand.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Something parked that must look at the time again when a manual clock moves.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

/// The time source of a [`Runtime`](crate::Runtime): timers, idle timeouts, request and job
/// deadlines, restart backoff and the supervisors' restart windows all read it.
///
/// [`Clock::system`] (the default) is [`Instant::now`]. A [`ManualClock`] stands still until
/// the test advances it, so a test of a one-hour timer takes no hour and does not depend on
/// how fast the machine is.
///
/// # Examples
///
/// ```
/// use reactorium::Clock;
///
/// let clock = Clock::system();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Source>,
}

enum Source {
    System,
    Manual(ManualInner),
}

struct ManualInner {
    base: Instant,
    state: Mutex<ManualState>,
}

#[derive(Default)]
struct ManualState {
    offset: Duration,
    sleepers: Vec<Weak<dyn Wake>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(m) => f
                .debug_struct("Clock::Manual")
                .field("offset", &m.lock().offset)
                .finish(),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock {
            inner: Arc::new(Source::System),
        }
    }

    /// Now, as this clock sees it.
    pub fn now(&self) -> Instant {
        match &*self.inner {
            Source::System => Instant::now(),
            Source::Manual(m) => m.base + m.lock().offset,
        }
    }

    /// `true` for a [`ManualClock`]'s clock.
    pub fn is_manual(&self) -> bool {
        matches!(*self.inner, Source::Manual(_))
    }

    /// How long a thread waiting for `deadline` may park, in real time. `None`: park until
    /// woken (a manual clock wakes its sleepers when it moves).
    pub(crate) fn park_for(&self, deadline: Instant) -> Option<Duration> {
        match &*self.inner {
            Source::System => Some(deadline.saturating_duration_since(Instant::now())),
            Source::Manual(_) => None,
        }
    }

    /// Registers a sleeper to wake whenever a manual clock moves. The system clock never
    /// needs to: a park's timeout covers it.
    pub(crate) fn register(&self, sleeper: Weak<dyn Wake>) {
        if let Source::Manual(m) = &*self.inner {
            let mut st = m.lock();
            st.sleepers.retain(|w| w.strong_count() > 0);
            st.sleepers.push(sleeper);
        }
    }
}

impl ManualInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A clock that moves only when told: for tests of timers, timeouts and restart windows.
///
/// Give [`clock`](ManualClock::clock) to
/// [`RuntimeBuilder::clock`](crate::RuntimeBuilder::clock); then [`advance`](ManualClock::advance)
/// it. Every reactor and supervisor of that runtime looks at its timers again after each
/// advance, on its own thread, so wait for the effect (a message, a counter) rather than
/// assume it happened when `advance` returns.
///
/// # Examples
///
/// ```
/// use reactorium::ManualClock;
/// use std::time::Duration;
///
/// let manual = ManualClock::new();
/// let clock = manual.clock();
/// let t0 = clock.now();
/// manual.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now() - t0, Duration::from_secs(3600));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    clock: Clock,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock standing at the moment of its creation.
    pub fn new() -> ManualClock {
        ManualClock {
            clock: Clock {
                inner: Arc::new(Source::Manual(ManualInner {
                    base: Instant::now(),
                    state: Mutex::new(ManualState::default()),
                })),
            },
        }
    }

    /// The [`Clock`] to give a runtime.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Moves the clock forward by `by` and wakes every reactor and supervisor using it.
    pub fn advance(&self, by: Duration) {
        let Source::Manual(m) = &*self.clock.inner else {
            unreachable!("a ManualClock holds a manual source")
        };
        let sleepers: Vec<Arc<dyn Wake>> = {
            let mut st = m.lock();
            st.offset += by;
            st.sleepers.retain(|w| w.strong_count() > 0);
            st.sleepers.iter().filter_map(Weak::upgrade).collect()
        };
        for s in sleepers {
            s.wake();
        }
    }
}
