//! The bounded mailbox and its wake-up protocol. See `README.md` beside this file.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam::queue::SegQueue;
use crossbeam::utils::{Backoff, CachePadded};

use super::Router;
use crate::metrics::Histogram;
use crate::types::{
    intern, DeadLetterReason, Down, Error, Message, Name, NotDelivered, Overflow, ReplySink, Str,
    Wake,
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
/// off the state word's cache line.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) handled: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) late_jobs: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) restarts: AtomicU64,
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
    // Where dead letters go: the bus, weakly (the bus's table holds this mailbox).
    router: Weak<dyn Router>,
    state: CachePadded<AtomicU64>,
    queue: SegQueue<Task>,
    // Permits handed out and not yet returned (their item not yet popped).
    pending: CachePadded<AtomicUsize>,
    // The reactor thread, set once when it starts (before it can first sleep); read only by a
    // pusher that saw SLEEPING, without a lock.
    thread: OnceLock<Thread>,
    pub(crate) counters: CachePadded<Counters>,
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
}

#[derive(Default)]
struct StopRequest {
    requested: AtomicBool,
    drain_deadline: Mutex<Option<Instant>>,
}

impl Wake for Mailbox {
    fn wake(&self) {
        self.command(Control::Tick);
    }
}

impl Mailbox {
    pub(crate) fn new(name: Name, config: MailboxConfig, router: Weak<dyn Router>) -> Mailbox {
        Mailbox {
            source: intern(&name),
            name,
            capacity: config.capacity,
            max_pending: config.max_pending,
            overflow: config.overflow,
            router,
            state: CachePadded::new(AtomicU64::new(0)),
            queue: SegQueue::new(),
            pending: CachePadded::new(AtomicUsize::new(0)),
            thread: OnceLock::new(),
            counters: CachePadded::new(Counters::default()),
            high_water: CachePadded::new(AtomicUsize::new(0)),
            latency: config.handler_latency.then(|| Box::new(Histogram::new())),
            stop: CachePadded::new(StopRequest::default()),
            control: Mutex::new(Vec::new()),
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
        if let Some(late) = self.router.upgrade().and_then(|r| r.late().upgrade()) {
            late.late_reply(reply, Some(self.name.clone()));
        }
    }

    /// Publishes `m` on the dead-letter topic with `reason` and counts it. A request among
    /// them is answered at once with `NoReply` rather than left to time out.
    pub(crate) fn dead_letter(&self, mut m: Message, reason: DeadLetterReason) {
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = m.take_reply_handle() {
            let _ = r.fail(Error::NoReply {
                reason: format!("`{}`: {reason}", self.name),
            });
        }
        if let Some(router) = self.router.upgrade() {
            router.dead_letter(m, reason, Some(self.name.clone()));
        }
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
    pub(crate) fn push(&self, msg: Message) -> Result<(), Error<Message>> {
        let prev = self.state.fetch_add(NORMAL_ONE, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
            return Err(Error::Stopped {
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
    fn overflow(&self, msg: Message, prev: u64) -> Result<(), Error<Message>> {
        match self.overflow {
            Overflow::Reject => {
                self.state.fetch_sub(NORMAL_ONE, Ordering::AcqRel);
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Error::Backpressure {
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

    /// Queues a reply or job result on a permit: no capacity check (its room was reserved),
    /// refused only once the reactor thread is gone.
    fn push_extra(&self, task: Task) -> Result<(), Task> {
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

    /// Called by the reactor when it found nothing to do: spins, then yields the core, as long
    /// as `policy` has learned is worth it, then parks until a push, a flag, or `timeout`
    /// wakes it. Teaches `policy` how the wait ended.
    pub(crate) fn idle(&self, policy: &mut IdlePolicy, timeout: Option<Duration>) {
        let busy = COUNTS | CLOSED | SIGNAL;
        if self.state.load(Ordering::Acquire) & busy == CLOSED {
            // A stop request between its two stores (see `request_stop`): let the stopping
            // thread finish rather than spin against it.
            thread::yield_now();
            return;
        }
        let (spins, yields) = if policy.fresh {
            (0, 0)
        } else {
            (policy.spins, policy.yields)
        };
        for _ in 0..spins {
            if self.state.load(Ordering::Acquire) & busy != 0 {
                policy.spin_paid_off();
                return;
            }
            std::hint::spin_loop();
        }
        for _ in 0..yields {
            if self.state.load(Ordering::Acquire) & busy != 0 {
                policy.yield_paid_off();
                return;
            }
            thread::yield_now();
        }
        if !policy.fresh {
            policy.waited_in_vain();
        }
        let cur = self.state.load(Ordering::Acquire);
        if cur & busy != 0 {
            return;
        }
        // Announce the sleep only if nothing is admitted: any later push sees SLEEPING.
        if self
            .state
            .compare_exchange(cur, cur | SLEEPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let parked = Instant::now();
        match timeout {
            Some(d) => thread::park_timeout(d),
            None => thread::park(),
        }
        self.state.fetch_and(!SLEEPING, Ordering::AcqRel);
        if !policy.fresh {
            policy.parked_for(parked.elapsed());
        }
    }

    /// Parks a reactor that has no instance running until a command or a stop request comes
    /// (or `timeout` passes). Messages pushed meanwhile may wake it too: the caller loops.
    pub(crate) fn wait_signal(&self, timeout: Option<Duration>) {
        let cur = self.state();
        if cur & SIGNAL != 0 || self.stop.requested.load(Ordering::Acquire) {
            return;
        }
        if self
            .state
            .compare_exchange(cur, cur | SLEEPING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        match timeout {
            Some(d) => thread::park_timeout(d),
            None => thread::park(),
        }
        self.state.fetch_and(!SLEEPING, Ordering::AcqRel);
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
            if self.pop_batch(&mut buf, 64) > 0 {
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

// The idle wait, tuned on this 2-core VM, where a pause is ~37 ns, an uncontended
// `yield_now` ~0.8 µs, and a futex wake of a parked thread several µs (an IPI, which in a VM
// is an exit). See README.md beside this file, "Idle: spin, yield, park".
/// The most pauses an idle reactor spins (~4.7 µs).
const MAX_SPINS: u32 = 128;
/// The least spin worth having once spinning has paid off.
const MIN_SPINS: u32 = 8;
/// The most times an idle reactor yields the core before parking.
const MAX_YIELDS: u32 = 16;
/// A park shorter than this means the reactor should have waited longer before parking.
const SHORT_PARK: Duration = Duration::from_micros(50);

/// How an idle reactor waits before it parks: spin (cheap to end, but holds the core), then
/// yield the core (lets other threads run, and still needs no futex wake to end), then park.
/// Both budgets are learned per reactor from how its waits end:
///
/// - a message that comes while spinning doubles the spin (ping-pong, request/reply);
/// - one that comes while yielding halves the spin and doubles the yields: the sender needed
///   the core this reactor was spinning on (many reactors, few cores, as in a fan-out);
/// - a wait that ends in a park halves the spin and takes one yield off (a ring, where the
///   next message is many hops away): waiting was wasted;
/// - a park cut short (under `SHORT_PARK`) doubles the yields: the futex wake cost the
///   sender more than waiting a little longer would have.
///
/// Yields grow fast and shrink slowly, because a parked reactor costs every sender a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdlePolicy {
    spins: u32,
    yields: u32,
    /// No message handled yet: park at once. Ten thousand freshly started reactors spinning
    /// and yielding would starve the thread starting the next one (at 10,000 components the
    /// start took seconds).
    fresh: bool,
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy {
            spins: MAX_SPINS,
            yields: MAX_YIELDS,
            fresh: true,
        }
    }
}

impl IdlePolicy {
    /// The reactor found work: from now on, waiting before parking may pay off.
    pub(crate) fn busy(&mut self) {
        self.fresh = false;
    }

    fn spin_paid_off(&mut self) {
        self.spins = (self.spins * 2).clamp(MIN_SPINS, MAX_SPINS);
    }

    fn yield_paid_off(&mut self) {
        self.spins /= 2;
        self.yields = (self.yields * 2).clamp(1, MAX_YIELDS);
    }

    fn waited_in_vain(&mut self) {
        self.spins /= 2;
        self.yields = self.yields.saturating_sub(1);
    }

    fn parked_for(&mut self, d: Duration) {
        if d < SHORT_PARK {
            self.yields = (self.yields * 2).clamp(1, MAX_YIELDS);
        }
    }
}

// A permit's life, decided by one CAS so the deliverer and the reactor never both act:
//   PENDING --deliverer takes it--> TAKEN      (the outcome goes into the mailbox; its place is
//                                               returned when the reactor pops it)
//   PENDING --reactor abandons it--> ABANDONED (timeout or stop: the place is returned at once;
//                                               a later outcome is late and never enters the
//                                               mailbox)
const PENDING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// What the deliverer's [`Permit`] and the reactor's [`Ticket`] share.
struct PermitSlot {
    mailbox: Arc<Mailbox>,
    id: u64,
    job: bool,
    timeout: Option<Duration>,
    state: AtomicU8,
}

impl PermitSlot {
    fn release(&self) {
        self.mailbox.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A reserved place for one reply or job result in a mailbox, held by whoever will deliver
/// it. While it is held, the outcome it will carry is guaranteed room. Dropped unused, it
/// delivers `Err(NoReply)` in its place so the waiting continuation is not stranded.
pub(crate) struct Permit {
    slot: Arc<PermitSlot>,
    armed: bool,
}

/// The reactor's side of a [`Permit`]: lets it give the place back when it stops waiting.
pub(crate) struct Ticket(Arc<PermitSlot>);

/// Why an outcome did not reach its requester.
pub(crate) enum Undelivered<T> {
    /// The requester stopped waiting (timeout or stop) before the outcome came.
    Late(T),
    /// The requester's reactor is gone.
    Gone(T),
}

impl Permit {
    /// Reserves one place, or `None` when `max_pending` places are out already.
    pub(crate) fn acquire(
        mailbox: &Arc<Mailbox>,
        id: u64,
        job: bool,
        timeout: Option<Duration>,
    ) -> Option<(Permit, Ticket)> {
        let prev = mailbox.pending.fetch_add(1, Ordering::AcqRel);
        if prev >= mailbox.max_pending {
            mailbox.pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let slot = Arc::new(PermitSlot {
            mailbox: Arc::clone(mailbox),
            id,
            job,
            timeout,
            state: AtomicU8::new(PENDING),
        });
        Some((
            Permit {
                slot: Arc::clone(&slot),
                armed: true,
            },
            Ticket(slot),
        ))
    }

    /// The place goes back unused and nobody is told (the request never left).
    pub(crate) fn cancel(mut self) {
        self.armed = false;
        let s = &self.slot;
        if s.state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            s.release();
        }
    }

    /// `true` once the requester stopped waiting: a job need not run.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) == ABANDONED
    }

    /// Delivers a job's outcome.
    pub(crate) fn deliver_job(
        mut self,
        outcome: JobOutcome,
    ) -> Result<(), Undelivered<JobOutcome>> {
        let id = self.slot.id;
        self.push(Task::Job { id, outcome }, true)
            .map_err(|u| match u {
                Undelivered::Late(Task::Job { outcome, .. }) => Undelivered::Late(outcome),
                Undelivered::Gone(Task::Job { outcome, .. }) => Undelivered::Gone(outcome),
                _ => unreachable!("a job permit carries a job"),
            })
    }

    /// A job not started by its deadline: its continuation gets `Timeout` unless the reactor
    /// already stopped waiting. Nothing ran, so nothing is counted as late.
    pub(crate) fn skip_job(mut self, after: Duration) {
        let id = self.slot.id;
        let _ = self.push(
            Task::Job {
                id,
                outcome: Err(Error::Timeout { after }),
            },
            false,
        );
    }

    /// `count_late`: whether an outcome nobody waits for any more counts as a late reply or
    /// job result (a reply message or a job's result does; a notice that nothing will come,
    /// or a skipped job, does not).
    fn push(&mut self, task: Task, count_late: bool) -> Result<(), Undelivered<Task>> {
        self.armed = false;
        let s = &self.slot;
        let count = || {
            if count_late {
                let c = if s.job {
                    &s.mailbox.counters.late_jobs
                } else {
                    &s.mailbox.counters.late_replies
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        if s.state
            .compare_exchange(PENDING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            count();
            return Err(Undelivered::Late(task));
        }
        s.mailbox.push_extra(task).map_err(|task| {
            // The item will never be popped, so the place comes back here.
            s.release();
            count();
            Undelivered::Gone(task)
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            let error = Error::NoReply {
                reason: "the reply slot was dropped unused".into(),
            };
            let id = self.slot.id;
            let task = if self.slot.job {
                Task::Job {
                    id,
                    outcome: Err(error),
                }
            } else {
                Task::Reply {
                    id,
                    outcome: Err(error),
                }
            };
            let _ = self.push(task, false);
        }
    }
}

/// However the reactor lets go of a wait (a failure, a start that failed, a dropped
/// continuation), the place goes back: abandoning twice is harmless.
impl Drop for Ticket {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl Ticket {
    /// The requester stops waiting: `true` if the place was still pending and is now given
    /// back; `false` if the outcome was already taken for delivery (it is in the mailbox, or
    /// will be within a few instructions).
    pub(crate) fn abandon(&self) -> bool {
        let s = &self.0;
        let won = s
            .state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            s.release();
        }
        won
    }
}

impl ReplySink for Permit {
    fn deliver(
        mut self: Box<Self>,
        outcome: Result<Message, Error>,
    ) -> Result<(), Box<NotDelivered>> {
        let id = self.slot.id;
        let is_reply = outcome.is_ok();
        let (why, outcome) = match self.push(Task::Reply { id, outcome }, is_reply) {
            Ok(()) => return Ok(()),
            Err(Undelivered::Late(Task::Reply { outcome, .. })) => {
                let after = self.slot.timeout.unwrap_or_default();
                (Error::Timeout { after }, outcome)
            }
            Err(Undelivered::Gone(Task::Reply { outcome, .. })) => {
                let target = self.slot.mailbox.name.clone();
                (
                    Error::Stopped {
                        target,
                        rejected: (),
                    },
                    outcome,
                )
            }
            Err(_) => unreachable!("a reply permit carries a reply"),
        };
        Err(Box::new(NotDelivered {
            why,
            outcome,
            requester: Some(self.slot.mailbox.name.clone()),
        }))
    }

    fn cancel(self: Box<Self>) {
        Permit::cancel(*self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_policy_learns_from_how_waits_end() {
        let mut p = IdlePolicy::default();
        assert_eq!((p.spins, p.yields), (MAX_SPINS, MAX_YIELDS));
        // A ring: every wait ends in a long park; the reactor learns to park at once.
        for _ in 0..MAX_YIELDS {
            p.waited_in_vain();
            p.parked_for(Duration::from_millis(1));
        }
        assert_eq!((p.spins, p.yields), (0, 0));
        // A fan-out: short parks, then messages during the yields.
        p.parked_for(Duration::from_micros(5));
        assert_eq!(p.yields, 1);
        for _ in 0..8 {
            p.yield_paid_off();
        }
        assert_eq!((p.spins, p.yields), (0, MAX_YIELDS));
        // Ping-pong: messages during the spin grow it back, to the cap.
        for _ in 0..8 {
            p.spin_paid_off();
        }
        assert_eq!(p.spins, MAX_SPINS);
    }
}
