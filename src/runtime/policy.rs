//! Supervision policy: the settings a supervisor applies. A component's restart mode, a
//! supervisor's strategy, its restart intensity and its backoff. Plain data, read by the
//! registry (a component's restart mode), the builder and the supervisor thread. See
//! "Supervision" in `README.md` beside this file.

use std::time::Duration;

/// When a component's supervisor builds a fresh instance of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always: after a failure and after it stopped itself.
    Permanent,
    /// After a failure only (a panic, or an `Err` from a handler unless
    /// [`OnError::Continue`](crate::OnError::Continue)); not after it stopped itself.
    Transient,
    /// Never. Its queued messages are dead-lettered when it goes down. The default.
    #[default]
    Temporary,
}

/// What a supervisor does when one of its children fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Restart the failed child only. The default.
    #[default]
    OneForOne,
    /// Stop every other child in reverse deploy order, then restart them all in deploy order.
    AllForOne,
    /// Stop the children deployed after the failed one (in reverse order), then restart the
    /// failed one and those, in deploy order.
    RestForOne,
    /// Restart nothing here: stop the whole group and fail it to its parent supervisor, whose
    /// strategy then treats the group as one failed child.
    Escalate,
}

/// How long a supervisor waits before a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RestartBackoff {
    /// Restart at once. The default.
    #[default]
    None,
    /// Wait this long before every restart.
    Fixed(Duration),
    /// Wait `first` before the first restart in the intensity window, doubling for each
    /// further restart in it, up to `max`.
    Exponential {
        /// The first wait.
        first: Duration,
        /// The longest wait.
        max: Duration,
    },
}

impl RestartBackoff {
    /// The wait before the `nth` restart in the window (1-based).
    pub fn delay(&self, nth: u32) -> Duration {
        match *self {
            RestartBackoff::None => Duration::ZERO,
            RestartBackoff::Fixed(d) => d,
            RestartBackoff::Exponential { first, max } => {
                let doublings = nth.saturating_sub(1).min(31);
                first.saturating_mul(1 << doublings).min(max)
            }
        }
    }
}

/// A supervisor's settings, for [`Runtime::add_supervisor`](crate::Runtime::add_supervisor)
/// and, for the root, [`RuntimeBuilder::supervisor`](crate::RuntimeBuilder::supervisor).
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    pub(crate) strategy: Strategy,
    pub(crate) max_restarts: u32,
    pub(crate) window: Duration,
    pub(crate) backoff: RestartBackoff,
    pub(crate) parent: Option<String>,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions::new(Strategy::OneForOne)
    }
}

impl SupervisorOptions {
    /// A supervisor with `strategy`, at most 5 restarts in 5 s, no backoff, under the root.
    pub fn new(strategy: Strategy) -> Self {
        SupervisorOptions {
            strategy,
            max_restarts: 5,
            window: Duration::from_secs(5),
            backoff: RestartBackoff::None,
            parent: None,
        }
    }

    /// The intensity limit: at most `max_restarts` restarts within `window`. One more and the
    /// supervisor gives up: it stops its group and fails to its parent (the root fails the
    /// runtime: every component is stopped, see [`Runtime::failure`](crate::Runtime::failure)).
    /// Default: 5 in 5 s.
    pub fn intensity(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.window = window;
        self
    }

    /// The wait before each restart. Default: none.
    pub fn backoff(mut self, backoff: RestartBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The supervisor this one belongs to. Default: the root.
    pub fn parent(mut self, name: impl Into<String>) -> Self {
        self.parent = Some(name.into());
        self
    }
}
