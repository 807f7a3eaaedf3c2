//! The reactor: one thread per component, its bounded mailbox and run loop, its timers (user
//! timers, idle timeout, the deadlines of requests and jobs), the life of the component
//! instances it builds (start, restart in place, stop), and the [`Context`] a component sees.
//! Depends on `bus` (a context sends through a [`Bus`]; a mailbox dead-letters through it),
//! `worker` (to offload), `metrics` and `types`.
//!
//! The reactor sits above the bus: the bus knows a mailbox only through its one-method
//! `Deliver` trait, implemented here, so the dependency runs one way.
//!
//! The wake-up protocol, the stop sequence and the restart protocol are described in
//! `README.md` beside this file.

mod answer;
mod context;
mod dispatch;
mod idle;
mod instance;
mod mailbox;
mod permit;
mod run;
mod run_then;
mod state;
mod stop;
mod timer;
mod unsent;

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use context::{Component, Context, Restarted};
pub use timer::TimerId;
pub use unsent::{UnsentJob, UnsentRequest};

pub(crate) use mailbox::{Control, MailboxConfig, MAX_CAPACITY};
pub(crate) use run::{abandon_queued, abandon_unstarted, spawn, Factory};
pub(crate) use state::{Core, Exit, Settings};
// Defined in `types` so the bus's blocking waits can ask it; the runtime asks here.
pub(crate) use crate::types::on_reactor_thread;

use mailbox::{Mailbox, CLOSED, DEAD};

use crate::bus::{Bus, Deliver, SubscriptionId};
use crate::metrics::HistogramSnapshot;
use crate::types::{Down, DownReason, Error, Message, Name, SendError};

/// What a component's handler returning `Err` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum OnError {
    /// The instance failed, as on a panic: it goes down, and its supervisor decides (restart
    /// or not, by its restart mode). The default.
    #[default]
    Fail,
    /// The message is dead-lettered with
    /// [`DeadLetterReason::Failed`](crate::DeadLetterReason::Failed), the error counted
    /// ([`ReactorStats::errors`]), and the instance keeps running. Panics still fail it.
    Continue,
}

/// A watch, to end it with `unwatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub(crate) u64);

/// Who a `Down` goes to.
#[derive(Clone)]
pub(crate) enum Watcher {
    /// A component: its `Component::down` runs on its reactor.
    Reactor(Reactor),
    /// A plain thread's [`Watch`](crate::Watch) handle.
    Channel(crossbeam::channel::Sender<Down>),
}

/// A component instance went down; the reactor tells its supervisor.
#[derive(Debug)]
pub(crate) struct InstanceDown {
    pub(crate) name: Name,
    pub(crate) reason: DownReason,
    /// The reactor waits for a `Restart` or `Exit` command; `false`: its thread has ended.
    pub(crate) awaiting: bool,
    /// When, on the runtime's clock: restart windows and backoff count from here, not from
    /// when the supervisor got to it.
    pub(crate) at: std::time::Instant,
}

/// What a reactor needs from the runtime above it: watches, and a supervisor to report to.
pub(crate) trait System: Send + Sync + 'static {
    fn watch(&self, target: &str, watcher: Watcher) -> Result<WatchId, Error>;
    fn unwatch(&self, id: WatchId) -> bool;
    fn down(&self, down: InstanceDown);
}

/// A handle to a component's reactor: its bounded mailbox and the thread that drains it.
///
/// Cheap to clone, `Send + Sync`. The bus delivers through [`send`](Reactor::send);
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
    /// The most messages that have waited in the mailbox at once, since the component was
    /// deployed (restarts do not reset it). At most `capacity`: a mailbox that reached it has
    /// been full.
    pub high_water: usize,
    /// Requests and jobs outstanding (each holds a reserved place for its outcome).
    pub pending: usize,
    /// Messages handled (the handler returned `Ok`): from the mailbox, and those the
    /// component's own [`send_after`](Context::send_after) timers delivered. Counted as each
    /// handler returns. A message whose handler panicked or returned `Err` is dead-lettered
    /// instead. The shutdown report's
    /// [`ComponentReport::handled`](crate::ComponentReport::handled) is this same count.
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
    /// Handler errors that did not fail the instance ([`OnError::Continue`]).
    pub errors: u64,
    /// Messages dropped by the overflow policy (each dead-lettered).
    pub dropped: u64,
    /// Times a fresh instance was built after the first.
    pub restarts: u64,
}

/// A reactor's message counts, as the shutdown report gives them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accounts {
    pub(crate) handled: u64,
    pub(crate) drained: u64,
    pub(crate) abandoned: u64,
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
    /// A reactor whose mailbox dead-letters on `bus` (held weakly: the bus's table holds the
    /// mailbox once it subscribes).
    pub(crate) fn new(name: Name, config: MailboxConfig, bus: &Bus) -> Reactor {
        Reactor {
            mailbox: Arc::new(Mailbox::new(name, config, bus.downgrade())),
        }
    }

    /// The mailbox as the bus sees it (the same `Arc`).
    pub(crate) fn recipient(&self) -> Arc<dyn Deliver> {
        Arc::clone(&self.mailbox) as Arc<dyn Deliver>
    }

    /// `true` when `m` is this reactor's mailbox (the data pointers compared: vtable
    /// pointers of one type may differ between codegen units).
    pub(crate) fn is_recipient(&self, m: &Arc<dyn Deliver>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(m), Arc::as_ptr(&self.mailbox))
    }

    /// Never blocks. Queues `msg` for the component's `handle`.
    ///
    /// Messages from one thread are handled in the order that thread sent them. Messages
    /// queued while the component is being restarted wait for the new instance.
    ///
    /// # Errors
    ///
    /// - [`SendError::Backpressure`] when `capacity` messages are waiting and the overflow policy
    ///   is [`Overflow::Reject`](crate::Overflow::Reject); `msg` is handed back. (Under
    ///   `DropOldest` / `DropNewest` a message is dropped and dead-lettered instead, and this
    ///   returns `Ok`.)
    /// - [`SendError::Stopped`] once the component is stopping, has stopped or has failed; `msg`
    ///   is handed back.
    pub fn send(&self, msg: Message) -> Result<(), SendError<Message>> {
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
            high_water: self.mailbox.high_water(),
            pending: self.mailbox.pending(),
            handled: self.mailbox.tally.handled_count(),
            rejected: c.rejected.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            late_replies: c.late_replies.load(Ordering::Relaxed),
            late_jobs: c.late_jobs.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
        }
    }

    /// How long the component's `handle` calls took, when handler latency is on for it
    /// ([`RuntimeBuilder::handler_latency`](crate::RuntimeBuilder::handler_latency),
    /// [`ComponentOptions::handler_latency`](crate::ComponentOptions::handler_latency));
    /// `None` when it is off. Every call is timed, those that failed too, so on a component
    /// whose handler never fails the count equals [`ReactorStats::handled`].
    pub fn handler_latency(&self) -> Option<HistogramSnapshot> {
        self.mailbox.latency.as_ref().map(|h| h.snapshot())
    }

    /// The counts the shutdown report gives, read where the reactor keeps them (as
    /// [`stats`](Reactor::stats) reads `handled`).
    pub(crate) fn accounts(&self) -> Accounts {
        Accounts {
            handled: self.mailbox.tally.handled_count(),
            drained: self.mailbox.tally.drained_count(),
            abandoned: self.mailbox.counters.abandoned.load(Ordering::Relaxed),
        }
    }

    /// Asks the reactor to stop: from now on it refuses messages; its thread handles what is
    /// queued until `drain_deadline`, calls `stop`, and exits.
    pub(crate) fn close(&self, drain_deadline: std::time::Instant) {
        self.mailbox.request_stop(drain_deadline);
    }

    /// Sends a command to the reactor thread (dropped if the thread is gone).
    pub(crate) fn command(&self, c: Control) {
        self.mailbox.command(c);
    }

    /// `true` when both handles are for the same reactor.
    pub fn same(&self, other: &Reactor) -> bool {
        Arc::ptr_eq(&self.mailbox, &other.mailbox)
    }
}

// Defined here rather than in `bus`: the bus names no reactor type (it sits below this module).
impl Bus {
    /// Subscribes a reactor directly to `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a malformed pattern.
    pub fn subscribe_reactor(
        &self,
        pattern: &str,
        reactor: &Reactor,
    ) -> Result<SubscriptionId, Error> {
        self.subscribe_mailbox(pattern, reactor.recipient())
    }

    /// Removes every subscription of `reactor`; `false` if it had none.
    pub(crate) fn unsubscribe_reactor(&self, reactor: &Reactor) -> bool {
        self.unsubscribe_mailbox(&*reactor.mailbox)
    }
}
