//! What `Runtime::stop` reports.

use std::time::Duration;

use super::FrontEndReport;
use crate::bus::BusStats;
use crate::reactor::{Accounts, Exit};
use crate::types::Name;
use crate::worker::PoolShutdown;

/// What one component did, as [`Runtime::stop`](crate::Runtime::stop) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// The component.
    pub name: Name,
    /// Messages handled (the handler returned `Ok`), over its whole life: those from its
    /// mailbox and those its own [`send_after`](crate::Context::send_after) timers delivered.
    /// The same count as [`ReactorStats::handled`](crate::ReactorStats::handled), read from
    /// the one place the reactor keeps it.
    pub handled: u64,
    /// Of those, messages handled after the stop was asked (the drain).
    pub drained: u64,
    /// Messages taken in but not handled, each dead-lettered: the one its handler failed on,
    /// those its handler returned an error for under
    /// [`OnError::Continue`](crate::OnError::Continue), those queued when it failed, those
    /// left after the drain deadline, and those queued for a component that never started.
    /// Messages taken in (accepted by its mailbox, or delivered by its `send_after` timers) =
    /// `handled` + `abandoned` + `dropped`.
    pub abandoned: u64,
    /// Why it failed, if it did (a panic or error in a handler, a continuation or `stop`).
    /// A component that was restarted reports only the failure of its last instance.
    pub failure: Option<String>,
    /// How many times its supervisor built a fresh instance.
    pub restarts: u64,
    /// Messages its overflow policy dropped (each dead-lettered).
    pub dropped: u64,
    /// `false` when `stop` left its thread running: its handler (or a continuation, or its
    /// `stop`) had not returned a grace second after its drain deadline, or `stop` was called
    /// from this component itself and cannot wait for it. The counts are then what was known
    /// when `stop` went on: `handled`, `drained` and `abandoned` as the reactor had counted
    /// them (it counts each message as its handler returns, so every message before the one
    /// running is in them), and the messages still queued in its mailbox were dead-lettered by
    /// `stop` and counted in `abandoned` (for a thread that cannot return in time), or
    /// counted in `queued` (for the caller's own, which will handle them). The message whose
    /// handler is running, and others the reactor had taken out of its mailbox with it, are
    /// in no count: the thread handles or dead-letters them if that handler returns.
    pub joined: bool,
    /// Messages still in its mailbox when `stop` returned without joining its thread, because
    /// it was called from this component: it handles them (or dead-letters them past its drain
    /// deadline) after `stop` returned. 0 for a joined thread.
    pub queued: u64,
}

impl ComponentReport {
    pub(super) fn new(name: Name) -> Self {
        ComponentReport {
            name,
            handled: 0,
            drained: 0,
            abandoned: 0,
            failure: None,
            restarts: 0,
            dropped: 0,
            joined: true,
            queued: 0,
        }
    }

    /// What is known of a thread `stop` did not join: the reactor's counts now, and the
    /// messages still queued (those of a thread that handles them after `stop` returned).
    pub(super) fn left_running(&mut self, accounts: &Accounts, queued: usize) {
        self.joined = false;
        self.count(accounts);
        self.queued = queued as u64;
    }

    /// A thread `stop` joined: how it ended, and its counts.
    pub(super) fn record(&mut self, exit: &Exit, accounts: &Accounts) {
        self.count(accounts);
        self.failure = exit.failure.as_ref().map(ToString::to_string);
    }

    pub(super) fn count(&mut self, accounts: &Accounts) {
        self.handled = accounts.handled;
        self.drained = accounts.drained;
        self.abandoned = accounts.abandoned;
    }
}

/// What [`Runtime::stop`](crate::Runtime::stop) did, component by component in the order they
/// were stopped (reverse deploy order).
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// One entry per component, in stop order.
    pub components: Vec<ComponentReport>,
    /// The worker pool's threads, joined or left running.
    pub pool: PoolShutdown,
    /// The bus's counters at the end (dead letters, late replies, ...).
    pub bus: BusStats,
    /// What each front-end's graceful stop did, in the order they were attached (they stop
    /// first, before any component).
    pub front_ends: Vec<FrontEndReport>,
    /// How long the stop took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// The entry of the component named `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| &*c.name == name)
    }

    /// `true` when nothing was abandoned, nothing failed, and every thread was joined: no
    /// component abandoned a message, failed or was left running, no worker was left
    /// running, and every front-end is [clean](FrontEndReport::is_clean) (it abandoned no
    /// work in flight and joined its threads).
    pub fn is_clean(&self) -> bool {
        self.pool.unjoined == 0
            && self
                .components
                .iter()
                .all(|c| c.joined && c.abandoned == 0 && c.failure.is_none())
            && self.front_ends.iter().all(FrontEndReport::is_clean)
    }
}
