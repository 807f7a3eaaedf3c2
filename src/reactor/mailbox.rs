//! The bounded mailbox: its state word, push and pop, overflow policies, the control queue,
//! the stop request, and the sleep/wake handshake with pushers. The idle policy (how long to
//! wait before sleeping) is in `idle.rs`, the reply places in `permit.rs`. See `README.md`
//! beside this file.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;
use crossbeam::utils::{Backoff, CachePadded};

use crate::bus::{log_dead_letter, Deliver, WeakBus};
use crate::logs::{self, RateLimit};
use crate::metrics::Histogram;
use crate::types::{
    intern, DeadLetterReason, Down, Error, Message, Name, Overflow, SendError, Str, Wake,
};

// The state word. One atomic RMW per push decides admission, sees a stop, and learns whether
// the reactor sleeps.
//
//   bits  0..30  NORMAL  messages admitted and not yet popped (bounded by `capacity`)
//   bits 30..60  EXTRA   replies / job results admitted and not yet popped (bounded by the
//                        permits, never refused for lack of room)
//   bit  60      CLOSED  the reactor refuses new messages (stop requested, or it failed)
//   bit  61      DEAD    the reactor thread is gone: replies are refused too
//   bit  62      SLEEPING the reactor is parked (or about to park); a pusher must wake it
//   bit  63      SIGNAL  a control command waits (supervisor, watch notice, clock tick)
const NORMAL_ONE: u64 = 1;
const NORMAL_MASK: u64 = (1 << 30) - 1;
const EXTRA_ONE: u64 = 1 << 30;
const EXTRA_MASK: u64 = NORMAL_MASK << 30;
pub(crate) const CLOSED: u64 = 1 << 60;
pub(crate) const DEAD: u64 = 1 << 61;
const SLEEPING: u64 = 1 << 62;
const SIGNAL: u64 = 1 << 63;
const COUNTS: u64 = NORMAL_MASK | EXTRA_MASK;
/// What keeps an idle reactor awake: an item admitted, a stop, a command.
pub(crate) const BUSY: u64 = COUNTS | CLOSED | SIGNAL;

/// Most messages taken from the queue per pass: bounds the time between timer checks and
/// amortises the admission counter's RMW.
pub(crate) const BATCH: usize = 64;

/// The batch for a mailbox of `capacity`: messages in the reactor's hand have left the
/// mailbox (their room is free again), so the batch is what a component may hold beyond its
/// capacity. A quarter of the capacity keeps that small for small mailboxes (a mailbox of 4
/// holds at most 4 + 1, as a channel whose consumer took one item out would).
pub(crate) fn batch_size(capacity: usize) -> usize {
    (capacity / 4).clamp(1, BATCH)
}

/// The largest capacity a mailbox or permit budget may have: keeps counts clear of the flags
/// even with every thread of a machine transiently over-admitting by one.
pub(crate) const MAX_CAPACITY: usize = 1 << 28;

/// What a job sends back: its result, type-erased, or why there is none.
pub(crate) type JobOutcome = Result<Box<dyn Any + Send>, Error>;

/// An item in a mailbox.
pub(crate) enum Task {
    /// A bus message for the component's `handle`. Counted against `capacity`.
    Message(Message),
    /// The outcome of a request this component made. Travels on a permit.
    Reply {
        id: u64,
        outcome: Result<Message, Error>,
    },
    /// The outcome of a job this component offloaded. Travels on a permit.
    Job { id: u64, outcome: JobOutcome },
}

impl Task {
    fn weight(&self) -> u64 {
        match self {
            Task::Message(_) => NORMAL_ONE,
            _ => EXTRA_ONE,
        }
    }
}

/// A command for the reactor thread from outside its component: taken at the next batch
/// boundary, ahead of queued messages.
pub(crate) enum Control {
    /// Stop the instance so its supervisor can restart it (settle, `stop`), keep the queued
    /// messages, acknowledge, and wait for the next command.
    Suspend(crossbeam::channel::Sender<()>),
    /// Build a fresh instance and start it; acknowledge with the outcome of `start`.
    Restart(crossbeam::channel::Sender<Result<(), String>>),
    /// Down for good: no new instance will be built. Queued messages are dead-lettered with
    /// this reason and the thread ends.
    Exit(DeadLetterReason),
    /// A component this one watches went down.
    Down(Down),
    /// The (manual) clock moved: look at the timers again.
    Tick,
}

/// Counters written by the reactor thread (and by pushers only on their failure paths), kept
/// off the state word's cache line. What the reactor counts per message is in [`Tally`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) rejected: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) late_jobs: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) restarts: AtomicU64,
    /// Messages taken in and dead-lettered instead of handled (the component's failure, its
    /// stop, an error under `OnError::Continue`): by the reactor thread, and by `stop` for a
    /// thread it gave up on, so an RMW. Overflow drops are `dropped`, not this.
    pub(crate) abandoned: AtomicU64,
    /// Rate limits of this component's per-message events, consulted only when the event's
    /// level is enabled: on this line, which the same failure paths write anyway.
    pub(crate) limits: Limits,
}

/// One rate limit per kind of per-message event a component can cause (see `logs`).
#[derive(Default)]
pub(crate) struct Limits {
    /// A message refused by the full mailbox.
    pub(crate) refused: RateLimit,
    /// A message (or late reply) of this component dead-lettered.
    pub(crate) dead_letters: RateLimit,
    /// A handler error under `OnError::Continue`.
    pub(crate) errors: RateLimit,
}

/// The per-message counts: the one place they are kept (`ReactorStats` and the shutdown
/// report both read them). Written by the reactor thread alone, once per message, so a write
/// is a plain load and store, not an RMW (no locked instruction on the message path); readers
/// on other threads see each count whole, and at most a message behind. On a line of their
/// own: pushers write `Counters` on their refusal paths, and under backpressure that would
/// take this line from the reactor at every message.
#[derive(Default)]
pub(crate) struct Tally {
    /// Messages whose handler returned `Ok`: from the mailbox or from a `send_after` timer.
    handled: AtomicU64,
    /// Of those, handled once a stop was asked (the runtime's, or the instance's own).
    drained: AtomicU64,
}

impl Tally {
    /// One message handled (reactor thread only).
    #[inline]
    pub(crate) fn handled(&self, draining: bool) {
        bump(&self.handled);
        if draining {
            bump(&self.drained);
        }
    }

    pub(crate) fn handled_count(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub(crate) fn drained_count(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }
}

/// Adds one to a counter that only the calling thread writes.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// A mailbox's settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MailboxConfig {
    pub(crate) capacity: usize,
    pub(crate) max_pending: usize,
    pub(crate) overflow: Overflow,
    /// Time every `handle` call (two clock reads per message) into a histogram.
    pub(crate) handler_latency: bool,
}

pub(crate) struct Mailbox {
    pub(crate) name: Name,
    // The name as stamped on the messages this component sends: interned, so stamping and
    // dropping them touches no shared reference count.
    pub(crate) source: Str,
    pub(crate) capacity: usize,
    pub(crate) max_pending: usize,
    pub(crate) overflow: Overflow,
    // Where dead letters and late replies go: the bus, weakly (the bus's table holds this
    // mailbox).
    bus: WeakBus,
    state: CachePadded<AtomicU64>,
    queue: SegQueue<Task>,
    // Permits handed out and not yet returned (their item not yet popped).
    pending: CachePadded<AtomicUsize>,
    // The reactor thread, set once when it starts (before it can first sleep); read only by a
    // pusher that saw SLEEPING, without a lock.
    thread: OnceLock<Thread>,
    pub(crate) counters: CachePadded<Counters>,
    pub(crate) tally: CachePadded<Tally>,
    // The most messages admitted and not yet popped at once. Read by every push (an L1 hit
    // while it holds), written only by a push that exceeds it: its own line, away from the
    // reactor's per-batch writes to `counters`, which would otherwise evict it at every batch.
    high_water: CachePadded<AtomicUsize>,
    // Durations of `handle` calls, when the component opted in; recorded by the reactor
    // thread only. Boxed: the histogram's sum is written per message, and inline it could
    // share a line with the read-mostly fields every push reads (`capacity`, `overflow`).
    pub(crate) latency: Option<Box<Histogram>>,
    // Written once, by `close`; read by the reactor before every message. On its own cache
    // line so that read is an L1 hit, not a load of the contended state word.
    stop: CachePadded<StopRequest>,
    // Commands for the reactor thread; SIGNAL in the state word says there are some.
    control: Mutex<Vec<Control>>,
    // The component's span, which its reactor thread enters for its whole life. Made here, on
    // the deploying thread, and closed wherever the mailbox is dropped (normally with the
    // runtime), so that a reactor thread only ever enters and exits it: see "Logs" in the
    // crate docs (tracing-subscriber's registry admits 4096 threads that create spans).
    pub(crate) span: tracing::Span,
}

#[derive(Default)]
struct StopRequest {
    requested: AtomicBool,
    drain_deadline: Mutex<Option<Instant>>,
}

impl Deliver for Mailbox {
    fn deliver(&self, msg: Message) -> Result<(), SendError<Message>> {
        self.push(msg)
    }
}

impl Wake for Mailbox {
    fn wake(&self) {
        self.command(Control::Tick);
    }
}

impl Mailbox {
    pub(crate) fn new(name: Name, config: MailboxConfig, bus: WeakBus) -> Mailbox {
        // `error` level, so a filter that lets any event through keeps the span; no parent,
        // whatever span the deploying thread is in. Without a subscriber (or with every level
        // filtered out): `Span::none()`, for one relaxed load.
        let span = tracing::error_span!(
            target: logs::REACTOR,
            parent: None,
            "reactor",
            component = %name
        );
        Mailbox {
            source: intern(&name),
            name,
            capacity: config.capacity,
            max_pending: config.max_pending,
            overflow: config.overflow,
            bus,
            state: CachePadded::new(AtomicU64::new(0)),
            queue: SegQueue::new(),
            pending: CachePadded::new(AtomicUsize::new(0)),
            thread: OnceLock::new(),
            counters: CachePadded::new(Counters::default()),
            tally: CachePadded::new(Tally::default()),
            high_water: CachePadded::new(AtomicUsize::new(0)),
            latency: config.handler_latency.then(|| Box::new(Histogram::new())),
            stop: CachePadded::new(StopRequest::default()),
            control: Mutex::new(Vec::new()),
            span,
        }
    }

    /// Queues a command for the reactor thread and wakes it. A command for a reactor whose
    /// thread is gone is dropped (with it any acknowledgement channel, which its waiter sees).
    pub(crate) fn command(&self, c: Control) {
        if self.state() & DEAD != 0 {
            return;
        }
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
        self.set_flag(SIGNAL);
    }

    /// Takes the commands waiting, oldest first (reactor thread).
    pub(crate) fn take_commands(&self) -> Vec<Control> {
        if self.state() & SIGNAL == 0 {
            return Vec::new();
        }
        // Clear first: a command queued after the take below sets it again.
        self.state.fetch_and(!SIGNAL, Ordering::AcqRel);
        std::mem::take(&mut *self.control.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Opens a mailbox closed by an orderly stop of its instance again, for a restart.
    pub(crate) fn reopen(&self) {
        self.stop.requested.store(false, Ordering::Release);
        *self
            .stop
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.state.fetch_and(!CLOSED, Ordering::AcqRel);
    }

    /// A reply that came for this component after it stopped waiting: the bus counts it and
    /// dead-letters it.
    pub(crate) fn late_reply(&self, reply: Message) {
        log_dead_letter(
            &self.counters.limits.dead_letters,
            Some(&self.name),
            &reply,
            &DeadLetterReason::LateReply,
        );
        if let Some(bus) = self.bus.upgrade() {
            bus.late_reply_for(reply, self.name.clone());
        }
    }

    /// Publishes `m` on the dead-letter topic with `reason` and counts it. A request among
    /// them is answered at once with `NoReply` rather than left to time out.
    pub(crate) fn dead_letter(&self, mut m: Message, reason: DeadLetterReason) {
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        log_dead_letter(
            &self.counters.limits.dead_letters,
            Some(&self.name),
            &m,
            &reason,
        );
        if let Some(r) = m.take_reply_handle() {
            let _ = r.fail(Error::NoReply {
                reason: format!("`{}`: {reason}", self.name),
            });
        }
        if let Some(bus) = self.bus.upgrade() {
            bus.dead_letter(m, reason, self.name.clone());
        }
    }

    /// Dead-letters a message this component took in and will not handle, counting it as
    /// abandoned.
    pub(crate) fn abandon_message(&self, m: Message, reason: DeadLetterReason) {
        self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
        self.dead_letter(m, reason);
    }

    /// Asks the reactor to stop: refuse messages from now on, handle what was admitted until
    /// `drain_deadline`. A second request keeps the first deadline.
    pub(crate) fn request_stop(&self, drain_deadline: Instant) {
        {
            let mut d = self
                .stop
                .drain_deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            d.get_or_insert(drain_deadline);
        }
        // CLOSED first: once the reactor sees the request, no message can be admitted any
        // more, so "nothing admitted" really means the drain is done.
        // The request is stored before the reactor is woken: a reactor that saw CLOSED without
        // it would go round its loop again at once (`idle` returns on CLOSED).
        // SIGNAL last, through the state word: a reactor waiting for commands checks the
        // request, then announces its sleep with a CAS on that word, so either it sees the
        // request or this RMW sees it sleeping and wakes it.
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        self.stop.requested.store(true, Ordering::Release);
        self.set_flag(SIGNAL);
    }

    /// The drain deadline, once a stop was requested.
    pub(crate) fn stop_requested(&self) -> Option<Instant> {
        if !self.stop.requested.load(Ordering::Acquire) {
            return None;
        }
        *self
            .stop
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Admits and queues a bus message. Never blocks.
    #[inline]
    pub(crate) fn push(&self, msg: Message) -> Result<(), SendError<Message>> {
        let prev = self.state.fetch_add(NORMAL_ONE, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
            return Err(SendError::Stopped {
                target: self.name.clone(),
                rejected: msg,
            });
        }
        let depth = (prev & NORMAL_MASK) as usize;
        if depth >= self.capacity {
            return self.overflow(msg, prev);
        }
        // Admitted: the mailbox holds `depth + 1` now (at most `capacity`). A load, and an RMW
        // only on a new record, so a mailbox at a steady depth costs pushers no shared write.
        if depth + 1 > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(depth + 1, Ordering::Relaxed);
        }
        self.queue.push(Task::Message(msg));
        if prev & SLEEPING != 0 {
            self.wake();
        }
        Ok(())
    }

    /// A message admitted over capacity: refused, or dropped (the new one or the oldest) by the
    /// overflow policy. Cold path.
    #[cold]
    fn overflow(&self, msg: Message, prev: u64) -> Result<(), SendError<Message>> {
        match self.overflow {
            Overflow::Reject => {
                self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                logs::limited!(
                    self.counters.limits.refused,
                    tracing::Level::DEBUG,
                    target: logs::REACTOR,
                    recipient = %self.name,
                    capacity = self.capacity,
                    "mailbox full, message refused"
                );
                Err(SendError::Backpressure {
                    target: self.name.clone(),
                    capacity: self.capacity,
                    rejected: msg,
                })
            }
            Overflow::DropNewest => {
                self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.dead_letter(msg, DeadLetterReason::Overflow(Overflow::DropNewest));
                Ok(())
            }
            Overflow::DropOldest => {
                // Stay admitted and take the oldest message out to make room. Replies and job
                // results met on the way are never dropped: they go back in (behind, which is
                // harmless: each has its own continuation). If the reactor took every message
                // meanwhile there is nothing to drop, and the count is over capacity by this
                // one until the reactor pops it: at most by the number of racing senders.
                let mut keep = Vec::new();
                let oldest = loop {
                    match self.queue.pop() {
                        Some(Task::Message(m)) => break Some(m),
                        Some(t) => keep.push(t),
                        None => break None,
                    }
                };
                for t in keep {
                    self.queue.push(t);
                }
                self.queue.push(Task::Message(msg));
                if let Some(old) = oldest {
                    self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dead_letter(old, DeadLetterReason::Overflow(Overflow::DropOldest));
                }
                if prev & SLEEPING != 0 {
                    self.wake();
                }
                Ok(())
            }
        }
    }

    /// Reserves a place for a reply or job result: `false` when `max_pending` are out.
    pub(crate) fn reserve_place(&self) -> bool {
        let prev = self.pending.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back a place whose outcome will never be popped.
    pub(crate) fn release_place(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Queues a reply or job result on a permit: no capacity check (its room was reserved),
    /// refused only once the reactor thread is gone.
    pub(crate) fn push_extra(&self, task: Task) -> Result<(), Task> {
        let prev = self.state.fetch_add(EXTRA_ONE, Ordering::AcqRel);
        if prev & DEAD != 0 {
            self.state.fetch_sub(EXTRA_ONE, Ordering::AcqRel);
            return Err(task);
        }
        self.queue.push(task);
        if prev & SLEEPING != 0 {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        // Only the pusher that clears the bit unparks; a racing second pusher sees it clear.
        if self.state.fetch_and(!SLEEPING, Ordering::AcqRel) & SLEEPING != 0 {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Sets `flag` (CLOSED, or DEAD|CLOSED) and wakes the reactor so it sees it. Returns the
    /// state before.
    pub(crate) fn set_flag(&self, flag: u64) -> u64 {
        let prev = self.state.fetch_or(flag, Ordering::AcqRel);
        if prev & SLEEPING != 0 {
            self.wake();
        }
        prev
    }

    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn normal_len(state: u64) -> usize {
        (state & NORMAL_MASK) as usize
    }

    pub(crate) fn has_items(state: u64) -> bool {
        state & COUNTS != 0
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    // ---- reactor-thread side -------------------------------------------------------------

    pub(crate) fn set_thread(&self, t: Thread) {
        let _ = self.thread.set(t);
    }

    /// Pops up to `max` items into `buf` and returns their admission in one RMW. Items that
    /// were admitted but whose push has not landed yet stay counted; the caller sees a
    /// non-zero count and comes back for them.
    pub(crate) fn pop_batch(&self, buf: &mut Vec<Task>, max: usize) -> usize {
        let (mut weight, mut extras, start) = (0, 0, buf.len());
        while buf.len() - start < max {
            let Some(t) = self.queue.pop() else { break };
            weight += t.weight();
            extras += usize::from(!matches!(t, Task::Message(_)));
            buf.push(t);
        }
        if weight != 0 {
            self.state.fetch_sub(weight, Ordering::AcqRel);
        }
        if extras != 0 {
            self.pending.fetch_sub(extras, Ordering::AcqRel);
        }
        buf.len() - start
    }

    /// The reactor thread announces that it will park, if the state is still `cur` (a value it
    /// has just read and found nothing in that should keep it awake). From a successful CAS
    /// on, any push sees SLEEPING in the value its RMW returns and wakes the thread; a push
    /// admitted before it changed the word and made the CAS fail. `false`: don't park.
    pub(crate) fn announce_sleep(&self, cur: u64) -> bool {
        self.state
            .compare_exchange(cur, cur | SLEEPING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Parks the reactor thread after [`announce_sleep`](Mailbox::announce_sleep) succeeded,
    /// until a push or a flag wakes it or `timeout` passes. `park` keeps a token, so a wake
    /// between the announcement and the park makes it return at once.
    pub(crate) fn park(&self, timeout: Option<Duration>) {
        match timeout {
            Some(d) => thread::park_timeout(d),
            None => thread::park(),
        }
        self.state.fetch_and(!SLEEPING, Ordering::AcqRel);
    }

    /// Parks a reactor that has no instance running until a command or a stop request comes
    /// (or `timeout` passes). Messages pushed meanwhile may wake it too: the caller loops.
    pub(crate) fn wait_signal(&self, timeout: Option<Duration>) {
        let cur = self.state();
        if cur & SIGNAL != 0 || self.stop.requested.load(Ordering::Acquire) {
            return;
        }
        if self.announce_sleep(cur) {
            self.park(timeout);
        }
    }

    /// Takes the bus messages still queued, from a thread other than the reactor's (which
    /// `stop` gave up waiting for: its handler has not returned). Replies and job results met
    /// on the way go back in: they are for the reactor's continuations. Popping beside the
    /// reactor is safe as it is for `DropOldest`: each item is popped once, and whoever pops a
    /// message undoes its admission. Called once CLOSED is set, so nothing new is admitted; a
    /// message admitted just before and still landing is left to the reactor.
    pub(crate) fn take_messages(&self, mut each: impl FnMut(Message)) {
        let mut keep = Vec::new();
        while let Some(t) = self.queue.pop() {
            match t {
                Task::Message(m) => {
                    self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
                    each(m);
                }
                t => keep.push(t),
            }
        }
        for t in keep {
            self.queue.push(t);
        }
    }

    /// Pops every remaining item once the reactor is DEAD, waiting out pushes that were
    /// admitted but have not landed. Nothing can be admitted any more, so this ends.
    pub(crate) fn drain_dead(&self, mut each: impl FnMut(Task)) {
        debug_assert!(self.state() & DEAD != 0);
        let backoff = Backoff::new();
        let mut buf = Vec::new();
        loop {
            if self.pop_batch(&mut buf, BATCH) > 0 {
                buf.drain(..).for_each(&mut each);
                backoff.reset();
            } else if Mailbox::has_items(self.state()) {
                backoff.snooze();
            } else {
                return;
            }
        }
    }
}
