//! The reactor's engine state: what it shares with every context it makes (`Core`, with the
//! per-component `Settings`), and what only its thread touches (`Local`: pending
//! continuations, timers, the instance's stop and idle state).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::permit::Ticket;
use super::timer::Timers;
use super::{OnError, Reactor, System};
use crate::bus::Bus;
use crate::types::{Clock, DeadLetterReason};
use crate::worker::WorkerPool;

/// How a reactor thread ended. Its counts are not here: the mailbox keeps them (`Tally`,
/// `Counters`), for `ReactorStats` and the shutdown report alike.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exit {
    pub(crate) failure: Option<DeadLetterReason>,
}

/// How a reactor runs its component's instances: set per component at deploy.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) clock: Clock,
    /// Whether the reactor waits for its supervisor after an instance failed, or after it
    /// stopped itself, instead of ending: `true` when the restart mode may restart it then.
    pub(crate) await_after_failure: bool,
    pub(crate) await_after_normal: bool,
    pub(crate) on_error: OnError,
    pub(crate) idle_timeout: Option<Duration>,
    /// The drain deadline of an instance that stops itself.
    pub(crate) drain_timeout: Duration,
    /// Keep a second reference to each message's payload while its handler runs, so that
    /// the dead letter of a failure carries it (`ComponentOptions::keep_failed_payloads`).
    pub(crate) keep_payloads: bool,
}

/// What a reactor shares with every context it makes.
pub(crate) struct Core {
    pub(crate) reactor: Reactor,
    pub(crate) bus: Bus,
    pub(crate) pool: WorkerPool,
    pub(crate) system: Arc<dyn System>,
    pub(crate) settings: Settings,
}

/// A request or job waiting for its outcome: its deadline (and timeout), the reactor's side of
/// its reply place, and its continuation `K`.
pub(crate) struct Pending<K> {
    pub(crate) deadline: Option<(Instant, Duration)>,
    pub(crate) ticket: Ticket,
    pub(crate) cont: K,
}

/// What only the reactor thread touches: continuations waiting for replies and job results,
/// the timers, and requests the instance made of its reactor. Outlives instances: ids stay
/// unique across restarts, so an old instance's late reply never reaches a new continuation.
///
/// Generic over what it stores, continuations `K` and timer actions `A`: those name the
/// component's [`Context`](super::Context), which in turn holds this, so they are defined
/// beside `Context` (`context::Local<C>` is this with them filled in).
pub(crate) struct Local<K, A> {
    pub(crate) pending: HashMap<u64, Pending<K>>,
    pub(crate) timers: Timers<A>,
    next_id: u64,
    /// Set when the orderly stop starts settling: new requests and jobs are refused.
    pub(crate) settling: bool,
    /// When the idle timeout fires next, if one is set and armed.
    pub(crate) idle_at: Option<Instant>,
    /// The instance asked to stop ([`Context::stop`](super::Context::stop)).
    pub(crate) stop_self: bool,
    /// A stop was seen (the runtime's, or the instance's own): messages handled from here on
    /// are counted as drained too.
    pub(crate) draining: bool,
    /// How many component timers the last instance had pending when it went down.
    pub(crate) timers_dropped: usize,
    /// While the reactor runs due timers on a manual clock: the instant it found them due at,
    /// which [`Context::now`](super::Context::now) gives their callbacks (see `fire_timers`).
    pub(crate) fired_at: Option<Instant>,
}

impl<K, A> Local<K, A> {
    pub(crate) fn new() -> Local<K, A> {
        Local {
            pending: HashMap::new(),
            timers: Timers::new(),
            next_id: 0,
            settling: false,
            idle_at: None,
            stop_self: false,
            draining: false,
            timers_dropped: 0,
            fired_at: None,
        }
    }

    /// Ready for a fresh instance (after `abandon_all`).
    pub(crate) fn reset(&mut self) {
        self.settling = false;
        self.idle_at = None;
        self.stop_self = false;
        self.draining = false;
        self.fired_at = None;
    }

    /// A fresh id for a request, job or timer: unique for the life of the reactor.
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers a continuation waiting for outcome `id`, with a deadline when `timeout` is
    /// set.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        id: u64,
        timeout: Option<Duration>,
        ticket: Ticket,
        cont: K,
    ) {
        let deadline = timeout.map(|t| (now + t, t));
        if let Some((at, _)) = deadline {
            self.timers.deadline(at, id);
        }
        self.pending.insert(
            id,
            Pending {
                deadline,
                ticket,
                cont,
            },
        );
    }

    /// Puts back an entry whose outcome is already on its way, without a timer.
    pub(crate) fn restore(&mut self, id: u64, mut p: Pending<K>) {
        p.deadline = None;
        self.pending.insert(id, p);
    }

    /// Removes a pending entry and its timer.
    pub(crate) fn take(&mut self, id: u64) -> Option<Pending<K>> {
        let p = self.pending.remove(&id)?;
        if let Some((at, _)) = p.deadline {
            self.timers.remove_deadline(at, id);
        }
        Some(p)
    }

    /// Stops waiting for every outcome: places are given back, continuations dropped uncalled;
    /// every timer is dropped, each component timer's action given to `each` first (a pending
    /// `send_after` holds a message to account for). Their number is kept in
    /// `timers_dropped`, for the next instance.
    pub(crate) fn abandon_all(&mut self, each: impl FnMut(A)) {
        for (_, p) in self.pending.drain() {
            p.ticket.abandon();
        }
        self.timers_dropped = self.timers.clear(each);
        self.idle_at = None;
    }

    /// The first timer, deadline or idle timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.timers.first(), self.idle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
