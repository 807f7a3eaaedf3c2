//! The reactor's timers: one ordered map per reactor, read by its own thread alone. It holds
//! the deadlines of requests and jobs and the component's own timers; the reactor parks until
//! the first of them (no timer thread).
//!
//! Generic over what a component's timer does (`A`, defined beside `Context` as `Action`), so
//! this file depends on nothing else in the reactor.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A timer set by [`Context::after`](crate::Context::after),
/// [`Context::every`](crate::Context::every) or [`Context::send_after`](crate::Context::send_after);
/// give it to [`Context::cancel_timer`](crate::Context::cancel_timer) to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) u64);

/// What fires at a deadline.
pub(crate) enum Entry<A> {
    /// The deadline of the pending request or job with this key's id.
    Deadline,
    /// A component's timer, doing `action`.
    User { period: Option<Duration>, action: A },
}

/// Deadlines by (instant, id). Ids are unique per reactor (shared with requests and jobs),
/// so two timers at the same instant keep the order they were set in.
pub(crate) struct Timers<A> {
    map: BTreeMap<(Instant, u64), Entry<A>>,
    user: HashMap<u64, Instant>,
    // The periodic timer whose callback runs now (out of the map), and whether that callback
    // cancelled it.
    firing: Option<u64>,
    firing_cancelled: bool,
}

impl<A> Timers<A> {
    pub(crate) fn new() -> Self {
        Timers {
            map: BTreeMap::new(),
            user: HashMap::new(),
            firing: None,
            firing_cancelled: false,
        }
    }

    pub(crate) fn first(&self) -> Option<Instant> {
        self.map.keys().next().map(|(at, _)| *at)
    }

    pub(crate) fn deadline(&mut self, at: Instant, id: u64) {
        self.map.insert((at, id), Entry::Deadline);
    }

    pub(crate) fn remove_deadline(&mut self, at: Instant, id: u64) {
        self.map.remove(&(at, id));
    }

    pub(crate) fn user(&mut self, at: Instant, id: u64, period: Option<Duration>, a: A) {
        self.map.insert((at, id), Entry::User { period, action: a });
        self.user.insert(id, at);
    }

    /// `true` if the timer was set and had not fired (a periodic one: was still running).
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        if self.firing == Some(id) && !self.firing_cancelled {
            self.firing_cancelled = true;
            return true;
        }
        match self.user.remove(&id) {
            Some(at) => self.map.remove(&(at, id)).is_some(),
            None => false,
        }
    }

    /// Takes the first entry due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64, Entry<A>)> {
        let (&(at, id), _) = self.map.first_key_value()?;
        if at > now {
            return None;
        }
        let entry = self.map.remove(&(at, id)).expect("just seen");
        if matches!(entry, Entry::User { .. }) {
            self.user.remove(&id);
        }
        Some((at, id, entry))
    }

    /// The timer `id` was taken out to run its callback.
    pub(crate) fn firing(&mut self, id: u64) {
        self.firing = Some(id);
        self.firing_cancelled = false;
    }

    /// Whether the callback that just ran cancelled its own timer.
    pub(crate) fn fired_cancelled(&mut self) -> bool {
        self.firing = None;
        std::mem::take(&mut self.firing_cancelled)
    }

    /// Drops every timer (the instance is going away), giving each component timer's action
    /// to `each` first. Returns how many component timers there were.
    pub(crate) fn clear(&mut self, mut each: impl FnMut(A)) -> usize {
        let mut n = 0;
        for (_, entry) in std::mem::take(&mut self.map) {
            if let Entry::User { action, .. } = entry {
                n += 1;
                each(action);
            }
        }
        self.user.clear();
        self.firing = None;
        self.firing_cancelled = false;
        n
    }
}

/// The next firing of a periodic timer that was due at `at`: one period on, or, when the
/// reactor has fallen more than a period behind, one period from now (missed ticks are
/// skipped, not run in a burst).
pub(crate) fn next_period(at: Instant, period: Duration, now: Instant) -> Instant {
    let next = at + period;
    if next > now {
        next
    } else {
        now + period
    }
}
