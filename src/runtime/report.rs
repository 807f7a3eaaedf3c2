//! What `Runtime::stop` reports.

use std::time::Duration;

use super::FrontEndReport;
use crate::bus::BusStats;
use crate::reactor::Exit;
use crate::types::Name;
use crate::worker::PoolShutdown;

/// What one component did, as [`Runtime::stop`](crate::Runtime::stop) found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// The component.
    pub name: Name,
    /// Messages handled (the handler returned `Ok`), over its whole life.
    pub handled: u64,
    /// Of those, messages handled after the stop was asked (the drain).
    pub drained: u64,
    /// Messages taken in but not handled, each dead-lettered: the one its handler failed on,
    /// those queued when it failed, those left after the drain deadline, and those queued for
    /// a component that never started. Messages accepted = `handled` + `abandoned`.
    pub abandoned: u64,
    /// Why it failed, if it did (a panic or error in a handler, a continuation or `stop`).
    /// A component that was restarted reports only the failure of its last instance.
    pub failure: Option<String>,
    /// How many times its supervisor built a fresh instance.
    pub restarts: u64,
    /// Messages its overflow policy dropped (each dead-lettered). Messages accepted =
    /// `handled` + `abandoned` + `dropped`.
    pub dropped: u64,
    /// `false` when its thread did not finish within the drain deadline plus a grace second
    /// (a handler that never returns) and was left running.
    pub joined: bool,
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
        }
    }

    pub(super) fn record(&mut self, exit: &Exit) {
        self.handled = exit.handled;
        self.drained = exit.drained;
        self.abandoned = exit.abandoned;
        self.failure = exit.failure.as_ref().map(ToString::to_string);
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
