//! Requests from plain threads: a one-shot slot the replier fills and the requester waits on.
//!
//! The decision "delivered" versus "late" is taken under the slot's mutex, so a reply racing
//! with the waiter's timeout is either returned to the waiter or counted late, never lost.
//! The waiter spins briefly on an atomic flag before parking, which keeps a same-machine round
//! trip well under a futex wake-up when the responder is quick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::BusInner;
use crate::types::{on_reactor_thread, Error, Message, MessageId, ReplySink};

/// Spin iterations before the waiter parks (a few microseconds).
const SPINS: u32 = 2_000;

struct Slot {
    outcome: Option<Result<Message, Error>>,
    closed: bool,
    waiter: Option<Thread>,
}

pub(super) struct Oneshot {
    ready: AtomicBool,
    timeout: Duration,
    slot: Mutex<Slot>,
}

impl Oneshot {
    pub(super) fn new(timeout: Duration) -> Arc<Oneshot> {
        Arc::new(Oneshot {
            ready: AtomicBool::new(false),
            timeout,
            slot: Mutex::new(Slot {
                outcome: None,
                closed: false,
                waiter: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reply nobody waits for any more: counted and dead-lettered on the requester's bus.
fn late(bus: &Weak<BusInner>, outcome: Result<Message, Error>, timeout: Duration) -> Error {
    if let (Ok(reply), Some(bus)) = (outcome, bus.upgrade()) {
        bus.late_reply(reply, None);
    }
    Error::Timeout { after: timeout }
}

/// The replier's side.
pub(super) struct Sink {
    shot: Arc<Oneshot>,
    // Where a late reply is accounted for.
    bus: Weak<BusInner>,
}

impl Sink {
    pub(super) fn new(shot: Arc<Oneshot>, bus: Weak<BusInner>) -> Sink {
        Sink { shot, bus }
    }
}

impl ReplySink for Sink {
    fn deliver(self: Box<Self>, outcome: Result<Message, Error>) -> Result<(), Error> {
        let waiter = {
            let mut slot = self.shot.lock();
            if slot.closed {
                drop(slot);
                return Err(late(&self.bus, outcome, self.shot.timeout));
            }
            slot.outcome = Some(outcome);
            self.shot.ready.store(true, Ordering::Release);
            slot.waiter.clone()
        };
        if let Some(w) = waiter {
            w.unpark();
        }
        Ok(())
    }

    fn cancel(self: Box<Self>) {}
}

/// A request sent from a plain thread, waiting for its reply.
///
/// Returned by [`Bus::request`](crate::Bus::request). [`wait`](PendingReply::wait) blocks
/// until the reply comes or the request's timeout passes. Dropping it without waiting is
/// allowed: a reply that then arrives is counted as late and dead-lettered.
pub struct PendingReply {
    shot: Arc<Oneshot>,
    id: MessageId,
    deadline: Instant,
    // Counts the timeout, and a reply that comes after it.
    bus: Weak<BusInner>,
}

impl std::fmt::Debug for PendingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingReply")
            .field("request", &self.id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl PendingReply {
    pub(super) fn new(shot: Arc<Oneshot>, id: MessageId, bus: Weak<BusInner>) -> PendingReply {
        let deadline = Instant::now() + shot.timeout;
        PendingReply {
            shot,
            id,
            deadline,
            bus,
        }
    }

    /// The id of the request (replies carry it as their correlation).
    pub fn request_id(&self) -> MessageId {
        self.id
    }

    /// `true` once an outcome (reply or error) has arrived.
    pub fn is_ready(&self) -> bool {
        self.shot.ready.load(Ordering::Acquire)
    }

    /// Blocks until the reply arrives or the request's timeout passes.
    ///
    /// # Errors
    ///
    /// - [`Error::Timeout`] when the timeout passes first; a reply arriving after that is
    ///   counted as late and dead-lettered.
    /// - [`Error::NoReply`] when the responder dropped the request unanswered (for example
    ///   its component failed or stopped with the request queued).
    /// - Whatever error the responder sent with [`ReplyHandle::fail`](crate::ReplyHandle::fail).
    /// - [`Error::WouldDeadlock`] when called on a reactor thread, where a blocking wait would
    ///   stall the component (use [`Context::request`](crate::Context::request) there).
    pub fn wait(self) -> Result<Message, Error> {
        if on_reactor_thread() {
            return Err(Error::WouldDeadlock);
        }
        self.shot.lock().waiter = Some(thread::current());
        for _ in 0..SPINS {
            if self.is_ready() {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            if self.is_ready() {
                return self.take().expect("ready implies an outcome");
            }
            let now = Instant::now();
            if now >= self.deadline {
                let mut slot = self.shot.lock();
                return match slot.outcome.take() {
                    Some(outcome) => outcome,
                    None => {
                        slot.closed = true;
                        drop(slot);
                        if let Some(bus) = self.bus.upgrade() {
                            bus.request_timed_out();
                        }
                        Err(Error::Timeout {
                            after: self.shot.timeout,
                        })
                    }
                };
            }
            thread::park_timeout(self.deadline - now);
        }
    }

    fn take(&self) -> Option<Result<Message, Error>> {
        self.shot.lock().outcome.take()
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        let unread = {
            let mut slot = self.shot.lock();
            slot.closed = true;
            slot.outcome.take()
        };
        if let (Some(Ok(reply)), Some(bus)) = (unread, self.bus.upgrade()) {
            bus.late_reply(reply, None);
        }
    }
}

/// The callback of a request made with [`Bus::request_callback`](crate::Bus::request_callback),
/// shared by the replier's sink and the requester's [`ReplyTicket`]: whichever takes it first
/// runs it, so it runs exactly once.
type Callback = Box<dyn FnOnce(Result<Message, Error>) + Send>;

pub(super) struct CallbackSlot {
    timeout: Duration,
    callback: Mutex<Option<Callback>>,
}

impl CallbackSlot {
    pub(super) fn new(timeout: Duration, callback: Callback) -> Arc<CallbackSlot> {
        Arc::new(CallbackSlot {
            timeout,
            callback: Mutex::new(Some(callback)),
        })
    }

    fn take(&self) -> Option<Callback> {
        self.callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The replier's side of a callback request.
pub(super) struct CallbackSink {
    slot: Arc<CallbackSlot>,
    // Where a late reply is accounted for.
    bus: Weak<BusInner>,
}

impl CallbackSink {
    pub(super) fn new(slot: Arc<CallbackSlot>, bus: Weak<BusInner>) -> CallbackSink {
        CallbackSink { slot, bus }
    }
}

impl ReplySink for CallbackSink {
    fn deliver(self: Box<Self>, outcome: Result<Message, Error>) -> Result<(), Error> {
        match self.slot.take() {
            Some(callback) => {
                callback(outcome);
                Ok(())
            }
            None => Err(late(&self.bus, outcome, self.slot.timeout)),
        }
    }

    fn cancel(self: Box<Self>) {}
}

/// The requester's side of a request whose outcome goes to a callback
/// ([`Bus::request_callback`](crate::Bus::request_callback)).
///
/// The bus runs no timer of its own: the holder of the ticket enforces the timeout by calling
/// [`expire`](ReplyTicket::expire) once [`deadline`](ReplyTicket::deadline) has passed (an
/// event loop does this from its own timer). Dropping the ticket does not cancel the request:
/// the callback still runs when the outcome comes.
pub struct ReplyTicket {
    slot: Arc<CallbackSlot>,
    id: MessageId,
    deadline: Instant,
    // Counts the timeout.
    bus: Weak<BusInner>,
}

impl std::fmt::Debug for ReplyTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTicket")
            .field("request", &self.id)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl ReplyTicket {
    pub(super) fn new(slot: Arc<CallbackSlot>, id: MessageId, bus: Weak<BusInner>) -> ReplyTicket {
        let deadline = Instant::now() + slot.timeout;
        ReplyTicket {
            slot,
            id,
            deadline,
            bus,
        }
    }

    /// The id of the request (replies carry it as their correlation).
    pub fn request_id(&self) -> MessageId {
        self.id
    }

    /// When the request's timeout passes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Gives up waiting: if no outcome has come yet, runs the callback with
    /// [`Error::Timeout`] on the calling thread and returns `true`; a reply arriving later is
    /// counted as late and dead-lettered. Returns `false` when the callback already ran (or is
    /// running) with the outcome.
    pub fn expire(&self) -> bool {
        match self.slot.take() {
            Some(callback) => {
                if let Some(bus) = self.bus.upgrade() {
                    bus.request_timed_out();
                }
                callback(Err(Error::Timeout {
                    after: self.slot.timeout,
                }));
                true
            }
            None => false,
        }
    }
}
