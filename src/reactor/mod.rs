//! The reactor: one thread per component, its bounded mailbox and run loop, the timers that
//! bound requests and jobs, and the [`Context`] a component sees. Depends on `worker` (to
//! offload) and `types`.
//!
//! The wake-up protocol and the stop sequence are described in `README.md` beside this file.

mod context;
mod mailbox;
mod run;

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use context::{Component, Context};

pub(crate) use context::Core;
pub(crate) use mailbox::MAX_CAPACITY;
pub(crate) use run::{abandon_unstarted, on_reactor_thread, spawn, Exit, Factory};

use mailbox::{Mailbox, CLOSED, DEAD};

use crate::types::{
    DeadLetterReason, Error, LateReplies, Message, Name, PublishReport, SubscriptionId,
};

/// What a reactor needs from the world outside it: the bus, seen through this trait so the
/// reactor does not depend on the bus module.
pub(crate) trait Router: Send + Sync + 'static {
    fn send(&self, topic: &str, msg: Message) -> Result<(), Error<Message>>;
    fn publish(&self, topic: &str, msg: Message) -> Result<PublishReport, Error<Message>>;
    fn subscribe(&self, pattern: &str, reactor: &Reactor) -> Result<SubscriptionId, Error>;
    fn unsubscribe(&self, id: SubscriptionId) -> bool;
    fn dead_letter(&self, msg: Message, reason: DeadLetterReason, component: Option<Name>);
    fn late(&self) -> std::sync::Weak<dyn LateReplies>;
}

/// A handle to a component's reactor: its bounded mailbox and the thread that drains it.
///
/// Cheap to clone, `Send + Sync`. The bus delivers through [`execute`](Reactor::execute);
/// so can any thread that holds the handle.
#[derive(Clone)]
pub struct Reactor {
    pub(crate) mailbox: Arc<Mailbox>,
}

/// A snapshot of a reactor's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReactorStats {
    /// Messages waiting in the mailbox.
    pub queued: usize,
    /// The mailbox's capacity.
    pub capacity: usize,
    /// Requests and jobs outstanding (each holds a reserved place for its outcome).
    pub pending: usize,
    /// Messages handled (the handler returned `Ok`). A message whose handler panicked or
    /// returned `Err` is dead-lettered instead.
    pub handled: u64,
    /// Messages refused with `Backpressure`.
    pub rejected: u64,
    /// Messages sent to the dead-letter topic by this reactor.
    pub dead_lettered: u64,
    /// Replies that came after their request timed out, or after the component stopped
    /// waiting: dead-lettered.
    pub late_replies: u64,
    /// Job results that came after their deadline, or after the component stopped waiting:
    /// discarded.
    pub late_jobs: u64,
    /// Failures: handler panics or errors, and panics in `stop`.
    pub failures: u64,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("name", &self.mailbox.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Reactor {
    pub(crate) fn new(name: Name, capacity: usize, max_pending: usize) -> Reactor {
        Reactor {
            mailbox: Arc::new(Mailbox::new(name, capacity, max_pending)),
        }
    }

    /// Never blocks. Queues `msg` for the component's `handle`.
    ///
    /// Messages from one thread are handled in the order that thread executed them.
    ///
    /// # Errors
    ///
    /// - [`Error::Backpressure`] when `capacity` messages are waiting; `msg` is handed back.
    /// - [`Error::Stopped`] once the component is stopping, has stopped or has failed; `msg`
    ///   is handed back.
    pub fn execute(&self, msg: Message) -> Result<(), Error<Message>> {
        self.mailbox.push(msg)
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.mailbox.name
    }

    /// How many messages the mailbox holds at most.
    pub fn capacity(&self) -> usize {
        self.mailbox.capacity
    }

    /// Messages waiting now (a snapshot; it may change at once).
    pub fn len(&self) -> usize {
        Mailbox::normal_len(self.mailbox.state())
    }

    /// `true` when no message is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` once the reactor refuses messages (stopping, stopped or failed).
    pub fn is_stopped(&self) -> bool {
        self.mailbox.state() & CLOSED != 0
    }

    /// `true` once the reactor thread has finished (nothing more will be handled).
    pub fn is_finished(&self) -> bool {
        self.mailbox.state() & DEAD != 0
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ReactorStats {
        let c = &self.mailbox.counters;
        ReactorStats {
            queued: self.len(),
            capacity: self.mailbox.capacity,
            pending: self.mailbox.pending(),
            handled: c.handled.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            late_replies: c.late_replies.load(Ordering::Relaxed),
            late_jobs: c.late_jobs.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// Asks the reactor to stop: from now on it refuses messages; its thread handles what is
    /// queued until `drain_deadline`, calls `stop`, and exits.
    pub(crate) fn close(&self, drain_deadline: std::time::Instant) {
        self.mailbox.request_stop(drain_deadline);
    }

    /// `true` when both handles are for the same reactor.
    pub fn same(&self, other: &Reactor) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox)
    }
}
