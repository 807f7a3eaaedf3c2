//! The bus: subscriptions and topic patterns, `send` / `publish` / `request`, inboxes for plain
//! threads, and the dead-letter topic. Depends on `metrics` and `types` only.
//!
//! It sits *below* `reactor`: it knows a component only as something it can deliver to, the
//! one-method [`Deliver`] trait that the reactor's mailbox implements, found by name through
//! the [`ReactorProvider`] the runtime gives it. The reactor, above, holds a [`Bus`] in every
//! component's context and sends through its public methods. (The first layout had it the
//! other way round: the bus named `Reactor`, so the reactor re-declared the bus as a private
//! nine-method trait to reach it; see `docs/decisions.md`.)

mod reply;
mod report;
mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam::channel::{self, Receiver, RecvTimeoutError};

pub use reply::{PendingReply, ReplyTicket};
pub use report::PublishReport;
pub(crate) use table::Deliver;
pub use table::SubscriptionId;

use crate::logs::{self, RateLimit};
use crate::metrics::Striped;
use crate::types::{
    on_reactor_thread, DeadLetter, DeadLetterReason, Error, Message, Name, Pattern, ReplyHandle,
    SendError, Topic, DEAD_LETTER_TOPIC,
};
use table::{Sub, Table, Target};

/// Finds a component's mailbox by name. The runtime's registry implements it.
pub(crate) trait ReactorProvider: Send + Sync {
    fn mailbox(&self, name: &str) -> Option<Arc<dyn Deliver>>;
}

/// The message bus: hierarchical topics with NATS-style patterns.
///
/// Cheap to clone (a handle); `Send + Sync`. Every call returns at once: delivery is a
/// non-blocking [`Reactor::send`](crate::Reactor::send) (or a non-blocking push into an
/// [`Inbox`]), so a full recipient gives [`SendError::Backpressure`] with the message handed
/// back, never a wait.
///
/// - [`send`](Bus::send) delivers to one subscriber, round robin among a topic's subscribers
///   (like a NATS queue group);
/// - [`publish`](Bus::publish) delivers a copy to every subscriber and reports who refused;
/// - [`request`](Bus::request) sends to one subscriber and returns a [`PendingReply`].
///
/// # Examples
///
/// ```
/// use reactorium::{Bus, Message};
/// use std::time::Duration;
///
/// let bus = Bus::new();
/// let inbox = bus.subscribe_inbox("orders.*", 16)?;
/// bus.send("orders.created", Message::typed(42u32))?;
/// let got = inbox.recv_timeout(Duration::from_secs(1))?;
/// assert_eq!(got.topic().as_str(), "orders.created");
/// assert_eq!(got.get::<u32>(), Some(&42));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

/// A handle that does not keep the bus alive: what a mailbox holds to reach its bus (the bus's
/// table holds the mailbox, so a strong handle would be a cycle).
#[derive(Clone)]
pub(crate) struct WeakBus(Weak<BusInner>);

impl WeakBus {
    pub(crate) fn upgrade(&self) -> Option<Bus> {
        self.0.upgrade().map(|inner| Bus { inner })
    }
}

struct BusInner {
    table: ArcSwap<Table>,
    writer: Mutex<()>,
    next_sub: AtomicU64,
    provider: OnceLock<Weak<dyn ReactorProvider>>,
    stats: Counters,
    /// Rate limits of the dead-letter events no component owns (inboxes, replies to plain
    /// threads) and of the dead letters that could not be delivered. A component's own dead
    /// letters are limited by its mailbox.
    limits: Limits,
}

#[derive(Default)]
struct Limits {
    dead_letters: RateLimit,
    dropped: RateLimit,
}

/// Reports a dead letter at `debug` on `reactorium::bus`, through `limit`: `recipient` is the
/// component or inbox the message was for (the requester, for a late reply; none for a reply
/// to a plain thread).
pub(crate) fn log_dead_letter(
    limit: &RateLimit,
    recipient: Option<&str>,
    msg: &Message,
    reason: &DeadLetterReason,
) {
    logs::limited!(
        limit,
        tracing::Level::DEBUG,
        target: logs::BUS,
        recipient,
        topic = msg.topic().as_str(),
        reason = %reason,
        "dead letter"
    );
}

/// The bus's counters. Sends, publishes and requests come from every thread that sends, so
/// they are striped (one cache line per stripe of threads, summed on read): one shared atomic
/// would bounce between all producers on every message. The rest count failures, rare by
/// comparison, in plain atomics.
#[derive(Default)]
struct Counters {
    traffic: Striped<3>,
    request_timeouts: AtomicU64,
    no_subscriber: AtomicU64,
    dead_letters: AtomicU64,
    dead_letters_dropped: AtomicU64,
    late_replies: AtomicU64,
}

// Indexes into `Counters::traffic`.
const SENDS: usize = 0;
const PUBLISHES: usize = 1;
const REQUESTS: usize = 2;

/// A snapshot of the bus's counters.
///
/// `sends`, `publishes` and `requests` count calls, whether the bus delivered the message or
/// handed it back refused: the refusals are counted where they happen (a mailbox's
/// [`ReactorStats::rejected`](crate::ReactorStats::rejected), `no_subscriber` here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Subscriptions now.
    pub subscriptions: usize,
    /// Messages sent to one recipient: [`Bus::send`], [`Bus::send_to`] and their
    /// [`Context`](crate::Context) counterparts. Requests are counted apart.
    pub sends: u64,
    /// Messages published: [`Bus::publish`] and [`Context::publish`](crate::Context::publish)
    /// (one per call, however many subscribers got a copy). Dead letters are not counted here.
    pub publishes: u64,
    /// Requests made: [`Bus::request`] from plain threads and
    /// [`Context::request`](crate::Context::request) from components.
    pub requests: u64,
    /// Requests whose requester stopped waiting at its timeout: [`PendingReply::wait`]
    /// returning [`Error::Timeout`], and component continuations called with it.
    pub request_timeouts: u64,
    /// Sends, publishes and requests refused for lack of a subscriber.
    pub no_subscriber: u64,
    /// Messages sent to the dead-letter topic (whether or not anyone subscribes to it).
    pub dead_letters: u64,
    /// Dead letters that a dead-letter subscriber refused (full or stopped): counted only,
    /// never dead-lettered again.
    pub dead_letters_dropped: u64,
    /// Replies that arrived after their requester stopped waiting.
    pub late_replies: u64,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("stats", &self.stats()).finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus with no subscriptions. A [`Runtime`](crate::Runtime) makes its own; use
    /// [`Runtime::bus`](crate::Runtime::bus) to reach it.
    pub fn new() -> Bus {
        Bus {
            inner: Arc::new(BusInner {
                table: ArcSwap::from_pointee(Table::default()),
                writer: Mutex::new(()),
                next_sub: AtomicU64::new(1),
                provider: OnceLock::new(),
                stats: Counters::default(),
                limits: Limits::default(),
            }),
        }
    }

    pub(crate) fn set_provider(&self, provider: Weak<dyn ReactorProvider>) {
        let _ = self.inner.provider.set(provider);
    }

    pub(crate) fn downgrade(&self) -> WeakBus {
        WeakBus(Arc::downgrade(&self.inner))
    }

    /// Never blocks. Delivers `msg` to one subscriber of `topic`.
    ///
    /// Subscribers take turns (round robin). If the chosen one is full or stopped, the others
    /// are tried once each, so a send fails only when every subscriber refused. Messages from
    /// one thread to one subscriber keep their order.
    ///
    /// # Errors
    ///
    /// The message is handed back in every case:
    /// - [`SendError::Backpressure`] when every subscriber is full (naming the last one tried);
    /// - [`SendError::Stopped`] when every subscriber has stopped;
    /// - [`SendError::NoSubscriber`] when nothing subscribes to `topic`;
    /// - [`SendError::InvalidTopic`] when `topic` is malformed (or has a wildcard).
    pub fn send(&self, topic: &str, msg: Message) -> Result<(), SendError<Message>> {
        self.inner.stats.traffic.incr(SENDS);
        self.inner.send_one(topic, msg)
    }

    /// Never blocks. Delivers a copy of `msg` to every subscriber of `topic`. The copies share
    /// the payload; at most one (the last) carries a reply handle.
    ///
    /// # Errors
    ///
    /// [`SendError::NoSubscriber`] and [`SendError::InvalidTopic`] as for [`send`](Bus::send).
    /// A subscriber that refuses does not fail the publish: it is listed in the report's
    /// `refused` with its copy of the message.
    pub fn publish(&self, topic: &str, msg: Message) -> Result<PublishReport, SendError<Message>> {
        self.inner.publish(topic, msg)
    }

    /// Never blocks. Sends `msg` as a request to one subscriber of `topic` (as
    /// [`send`](Bus::send)) and returns a [`PendingReply`] to wait on. The reply must come
    /// within `timeout`.
    ///
    /// For a plain thread. Inside a component, use [`Context::request`](crate::Context::request):
    /// the reply then arrives as a continuation and the reactor never blocks.
    ///
    /// # Errors
    ///
    /// As [`send`](Bus::send); the message is handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{Bus, Message};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let service = bus.subscribe_inbox("math.double", 8)?;
    /// let pending = bus.request("math.double", Message::typed(21u32), Duration::from_secs(1))?;
    ///
    /// let mut req = service.recv()?;
    /// let n = *req.get::<u32>().unwrap();
    /// req.take_reply_handle().unwrap().send(Message::typed(n * 2))?;
    ///
    /// assert_eq!(pending.wait()?.get::<u32>(), Some(&42));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn request(
        &self,
        topic: &str,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<PendingReply, SendError<Message>> {
        let shot = reply::Oneshot::new(timeout);
        let id = msg.id;
        let sink = reply::Sink::new(Arc::clone(&shot), Arc::downgrade(&self.inner));
        msg.set_reply(ReplyHandle::new(Box::new(sink), id));
        match self.send_request(topic, msg) {
            Ok(()) => Ok(PendingReply::new(shot, id, Arc::downgrade(&self.inner))),
            Err(e) => Err(e.map(|mut m| {
                if let Some(r) = m.take_reply_handle() {
                    r.cancel();
                }
                m
            })),
        }
    }

    /// Never blocks. Sends `msg` as a request to one subscriber of `topic` (as
    /// [`send`](Bus::send)); its outcome goes to `callback` instead of a waiting thread.
    ///
    /// For event loops that must not hold a thread per request (the HTTP front-end is one).
    /// `callback` runs exactly once, on whichever thread settles the request: the replier's
    /// (often a component's reactor, so keep it short and non-blocking: hand the outcome to
    /// your own loop), or the thread that calls [`ReplyTicket::expire`]. It gets the reply,
    /// the responder's error ([`Error::NoReply`] when the request was dropped unanswered), or
    /// [`Error::Timeout`] from `expire`.
    ///
    /// The bus runs no timer for these requests: the caller enforces `timeout` by calling
    /// [`ReplyTicket::expire`] once [`ReplyTicket::deadline`] has passed.
    ///
    /// # Errors
    ///
    /// As [`send`](Bus::send); the message is handed back and `callback` is dropped unrun.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{Bus, Message};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let service = bus.subscribe_inbox("math.double", 8)?;
    /// let (tx, rx) = crossbeam::channel::bounded(1);
    /// let ticket = bus
    ///     .request_callback("math.double", Message::typed(21u32), Duration::from_secs(1), move |r| {
    ///         let _ = tx.send(r.map(|m| *m.get::<u32>().unwrap()));
    ///     })?;
    ///
    /// let mut req = service.recv()?;
    /// let n = *req.get::<u32>().unwrap();
    /// req.take_reply_handle().unwrap().send(Message::typed(n * 2))?;
    /// assert_eq!(rx.recv()?.ok(), Some(42));
    /// assert!(!ticket.expire()); // settled already: nothing to expire
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn request_callback<F>(
        &self,
        topic: &str,
        mut msg: Message,
        timeout: Duration,
        callback: F,
    ) -> Result<ReplyTicket, SendError<Message>>
    where
        F: FnOnce(Result<Message, Error>) + Send + 'static,
    {
        let slot = reply::CallbackSlot::new(timeout, Box::new(callback));
        let id = msg.id;
        let sink = reply::CallbackSink::new(Arc::clone(&slot), Arc::downgrade(&self.inner));
        msg.set_reply(ReplyHandle::new(Box::new(sink), id));
        match self.send_request(topic, msg) {
            Ok(()) => Ok(ReplyTicket::new(slot, id, Arc::downgrade(&self.inner))),
            Err(e) => Err(e.map(|mut m| {
                if let Some(r) = m.take_reply_handle() {
                    r.cancel();
                }
                m
            })),
        }
    }

    /// Subscribes the deployed component `component` to `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a malformed pattern; [`Error::NoComponent`] when no
    /// component of that name is deployed in the runtime this bus belongs to.
    pub fn subscribe(&self, pattern: &str, component: &str) -> Result<SubscriptionId, Error> {
        let mailbox = self
            .inner
            .provider
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.mailbox(component))
            .ok_or_else(|| Error::NoComponent {
                name: component.to_owned(),
            })?;
        self.subscribe_mailbox(pattern, mailbox)
    }

    /// Subscribes a component's mailbox to `pattern`. (`Bus::subscribe_reactor`, the public
    /// form that takes a [`Reactor`](crate::Reactor), is defined beside `Reactor`.)
    pub(crate) fn subscribe_mailbox(
        &self,
        pattern: &str,
        mailbox: Arc<dyn Deliver>,
    ) -> Result<SubscriptionId, Error> {
        let pattern = Pattern::new(pattern)?;
        Ok(self.inner.add(pattern, Target::Reactor(mailbox)))
    }

    /// Removes every subscription of `mailbox`; `false` if it had none.
    pub(crate) fn unsubscribe_mailbox(&self, mailbox: &dyn Deliver) -> bool {
        self.inner.update(|t| t.without_mailbox(mailbox))
    }

    /// Subscribes a plain thread: messages matching `pattern` queue in the returned
    /// [`Inbox`] (at most `capacity`; more are refused with `Backpressure`). Dropping the
    /// inbox unsubscribes it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a malformed pattern; [`Error::InvalidConfig`] for a zero
    /// capacity.
    pub fn subscribe_inbox(&self, pattern: &str, capacity: usize) -> Result<Inbox, Error> {
        if capacity == 0 {
            return Err(Error::InvalidConfig {
                reason: "an inbox needs a capacity of at least 1".into(),
            });
        }
        let pattern = Pattern::new(pattern)?;
        let (tx, rx) = channel::bounded(capacity);
        let name: Name = format!("inbox({pattern})").into();
        let target = Target::Inbox {
            name: name.clone(),
            tx,
            capacity,
        };
        let id = self.inner.add(pattern, target);
        Ok(Inbox {
            rx,
            id,
            name,
            bus: Arc::downgrade(&self.inner),
        })
    }

    /// Removes a subscription; `false` if there was no such subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.update(|t| t.without(id))
    }

    /// Never blocks. Delivers `msg` to the component named `name`, whatever it subscribes to
    /// (the registry's direct address). The message keeps its topic.
    ///
    /// # Errors
    ///
    /// The message is handed back in every case:
    /// - [`SendError::Backpressure`] when the component's mailbox is full;
    /// - [`SendError::Stopped`] when it has stopped (or is stopping);
    /// - [`SendError::NoComponent`] when no component has that name (or this bus belongs to no
    ///   runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message, Runtime, SendError};
    ///
    /// struct Quiet;
    /// impl Component for Quiet {
    ///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy("quiet", || Quiet)?; // subscribes to nothing
    /// rt.bus().send_to("quiet", Message::empty())?;
    /// let refused = rt.bus().send_to("loud", Message::empty());
    /// assert!(matches!(refused, Err(SendError::NoComponent { .. })));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn send_to(&self, name: &str, msg: Message) -> Result<(), SendError<Message>> {
        self.inner.stats.traffic.incr(SENDS);
        let mailbox = self
            .inner
            .provider
            .get()
            .and_then(Weak::upgrade)
            .and_then(|p| p.mailbox(name));
        match mailbox {
            Some(m) => m.deliver(msg),
            None => Err(SendError::NoComponent {
                name: name.to_owned(),
                rejected: msg,
            }),
        }
    }

    /// Sends a message that carries a reply handle to one subscriber of `topic`: as `send`,
    /// counted as a request. [`Context::request`](crate::Context::request) uses it too.
    pub(crate) fn send_request(&self, topic: &str, msg: Message) -> Result<(), SendError<Message>> {
        self.inner.stats.traffic.incr(REQUESTS);
        self.inner.send_one(topic, msg)
    }

    /// A component's request timed out: its continuation got `Error::Timeout`.
    pub(crate) fn request_timed_out(&self) {
        self.inner.request_timed_out();
    }

    /// Accounts for a reply nobody will read (a front-end's client hung up): counted as late
    /// and dead-lettered, as a reply after a timeout is.
    pub(crate) fn late_reply(&self, reply: Message) {
        log_dead_letter(
            &self.inner.limits.dead_letters,
            None,
            &reply,
            &DeadLetterReason::LateReply,
        );
        self.inner.late_reply(reply, None);
    }

    /// As [`late_reply`](Bus::late_reply), for a reply to a request the component
    /// `requester` made.
    pub(crate) fn late_reply_for(&self, reply: Message, requester: Name) {
        self.inner.late_reply(reply, Some(requester));
    }

    /// Publishes `msg` on the dead-letter topic with `reason`; a dead letter that cannot be
    /// delivered is only counted (dead letters never recurse).
    pub(crate) fn dead_letter(&self, msg: Message, reason: DeadLetterReason, component: Name) {
        self.inner.dead_letter(msg, reason, Some(component));
    }

    /// The mailboxes with a subscription that matches `topic`, each once, in subscription
    /// order. Not for the message path: `stop` asks it once.
    pub(crate) fn mailboxes_subscribed(&self, topic: &str) -> Vec<Arc<dyn Deliver>> {
        let table = self.inner.table.load();
        let mut out: Vec<Arc<dyn Deliver>> = Vec::new();
        for sub in table.matching(topic) {
            if let Target::Reactor(m) = &sub.target {
                if !out
                    .iter()
                    .any(|o| std::ptr::addr_eq(Arc::as_ptr(o), Arc::as_ptr(m)))
                {
                    out.push(Arc::clone(m));
                }
            }
        }
        out
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BusStats {
        let s = &self.inner.stats;
        BusStats {
            subscriptions: self.inner.table.load().len(),
            sends: s.traffic.sum(SENDS),
            publishes: s.traffic.sum(PUBLISHES),
            requests: s.traffic.sum(REQUESTS),
            request_timeouts: s.request_timeouts.load(Ordering::Relaxed),
            no_subscriber: s.no_subscriber.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
            dead_letters_dropped: s.dead_letters_dropped.load(Ordering::Relaxed),
            late_replies: s.late_replies.load(Ordering::Relaxed),
        }
    }
}

impl BusInner {
    fn add(&self, pattern: Pattern, target: Target) -> SubscriptionId {
        let id = SubscriptionId(self.next_sub.fetch_add(1, Ordering::Relaxed));
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.table.load().with(pattern, Sub { id, target });
        self.table.store(Arc::new(next));
        id
    }

    fn update(&self, f: impl FnOnce(&Table) -> Option<Table>) -> bool {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match f(&self.table.load()) {
            Some(next) => {
                self.table.store(Arc::new(next));
                true
            }
            None => false,
        }
    }

    /// The topic a message sent to `name` carries: the table's interned copy when `name` is an
    /// exact subscription, else a fresh one (validated).
    fn topic(table: &Table, name: &str) -> Result<Topic, &'static str> {
        match table.exact.get(name).and_then(|g| g.topic.clone()) {
            Some(t) => Ok(t),
            None => Topic::parse(name),
        }
    }

    fn no_subscriber(&self, topic: &str, msg: Message) -> SendError<Message> {
        self.stats.no_subscriber.fetch_add(1, Ordering::Relaxed);
        SendError::NoSubscriber {
            topic: topic.to_owned(),
            rejected: msg,
        }
    }

    fn prepare(
        &self,
        table: &Table,
        topic: &str,
        mut msg: Message,
    ) -> Result<Message, SendError<Message>> {
        match Self::topic(table, topic) {
            Ok(t) => {
                msg.topic = t;
                Ok(msg)
            }
            Err(reason) => Err(SendError::InvalidTopic {
                topic: topic.to_owned(),
                reason,
                rejected: msg,
            }),
        }
    }
}

impl BusInner {
    fn request_timed_out(&self) {
        self.stats.request_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self, topic: &str, msg: Message) -> Result<PublishReport, SendError<Message>> {
        self.stats.traffic.incr(PUBLISHES);
        let table = self.table.load();
        let msg = self.prepare(&table, topic, msg)?;
        let total = table.matching(topic).count();
        if total == 0 {
            return Err(self.no_subscriber(topic, msg));
        }
        let mut report = PublishReport::default();
        let mut subs = table.matching(topic);
        for _ in 1..total {
            let sub = subs.next().expect("counted");
            match sub.target.deliver(msg.clone()) {
                Ok(()) => report.delivered += 1,
                Err(e) => report.refused.push(e),
            }
        }
        // The last subscriber gets the original (and with it any reply handle).
        match subs.next().expect("counted").target.deliver(msg) {
            Ok(()) => report.delivered += 1,
            Err(e) => report.refused.push(e),
        }
        Ok(report)
    }

    fn dead_letter(&self, msg: Message, reason: DeadLetterReason, component: Option<Name>) {
        if msg.topic().as_str() == DEAD_LETTER_TOPIC {
            // A dead letter that could not be delivered (dropped by a dead-letter subscriber's
            // overflow policy, or left queued when it stopped) is only counted: no recursion.
            self.stats
                .dead_letters_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.log_dropped(component.as_deref());
            return;
        }
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        let table = self.table.load();
        if table.matching(DEAD_LETTER_TOPIC).next().is_none() {
            return;
        }
        let letter = Message::typed(DeadLetter {
            message: msg,
            reason,
            component,
        });
        // Delivered like a publish, but a refusal is only counted: dead letters never recurse.
        let mut letter = self
            .prepare(&table, DEAD_LETTER_TOPIC, letter)
            .expect("valid topic");
        letter.source = None;
        // The last subscriber gets the original, as in `publish`: with one subscriber, no
        // copy shares the payload, so it can `take` the `DeadLetter` out at once.
        let mut subs = table.matching(DEAD_LETTER_TOPIC).peekable();
        while let Some(sub) = subs.next() {
            let copy = if subs.peek().is_some() {
                letter.clone()
            } else {
                std::mem::replace(&mut letter, Message::empty())
            };
            if let Err(e) = sub.target.deliver(copy) {
                self.stats
                    .dead_letters_dropped
                    .fetch_add(1, Ordering::Relaxed);
                let refused_by = match &e {
                    SendError::Backpressure { target, .. } | SendError::Stopped { target, .. } => {
                        Some(&**target)
                    }
                    _ => None,
                };
                self.log_dropped(refused_by);
            }
        }
    }

    /// Reports a dead letter that could not be delivered (`debug`, rate-limited): `recipient`
    /// is the dead-letter subscriber that refused it, or the component whose queue held it.
    fn log_dropped(&self, recipient: Option<&str>) {
        logs::limited!(
            self.limits.dropped,
            tracing::Level::DEBUG,
            target: logs::BUS,
            recipient,
            "dead letter dropped"
        );
    }

    /// Counts a reply nobody will read and dead-letters it.
    fn late_reply(&self, reply: Message, requester: Option<Name>) {
        self.stats.late_replies.fetch_add(1, Ordering::Relaxed);
        self.dead_letter(reply, DeadLetterReason::LateReply, requester);
    }

    /// Delivers to one subscriber of `topic`: the exact subscriber when it is alone, else
    /// round robin. Counted by the caller.
    fn send_one(&self, topic: &str, msg: Message) -> Result<(), SendError<Message>> {
        let table = self.table.load();
        // Fast path: one exact subscriber, no wildcard to consult.
        if table.wild.is_empty() {
            return match table.exact.get(topic) {
                Some(g) if g.subs.len() == 1 => {
                    let mut msg = msg;
                    msg.topic = g.topic.clone().expect("exact group has a topic");
                    g.subs[0].target.deliver(msg)
                }
                Some(_) => self.send_round_robin(&table, topic, msg),
                None => {
                    let msg = self.prepare(&table, topic, msg)?;
                    Err(self.no_subscriber(topic, msg))
                }
            };
        }
        self.send_round_robin(&table, topic, msg)
    }

    fn send_round_robin(
        &self,
        table: &Table,
        topic: &str,
        msg: Message,
    ) -> Result<(), SendError<Message>> {
        let msg = self.prepare(table, topic, msg)?;
        let total = table.matching(topic).count();
        if total == 0 {
            return Err(self.no_subscriber(topic, msg));
        }
        let start = table
            .cursor_for(topic)
            .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed) % total);
        let mut msg = msg;
        let mut last: Option<SendError<()>> = None;
        for sub in table.matching(topic).cycle().skip(start).take(total) {
            match sub.target.deliver(msg) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let (e, m) = e.split();
                    msg = m;
                    // Report Backpressure over Stopped: "retry later" is the useful answer.
                    if !matches!(last, Some(SendError::Backpressure { .. })) {
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.expect("at least one subscriber was tried").with(msg))
    }
}

/// A plain thread's subscription: a bounded queue the bus delivers into.
///
/// Made by [`Bus::subscribe_inbox`]. Dropping it unsubscribes; messages still queued go to
/// the dead-letter topic (reason `Stopped`, component `inbox(<pattern>)`), and a request among
/// them is answered at once with [`Error::NoReply`]. A send racing the drop (one that loaded
/// the subscription table just before it changed) may still land in the closing queue and
/// be dropped with it.
pub struct Inbox {
    rx: Receiver<Message>,
    id: SubscriptionId,
    name: Name,
    bus: Weak<BusInner>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("id", &self.id)
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl Inbox {
    /// The subscription's id.
    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// Never blocks: the next message, if one is queued.
    pub fn try_recv(&self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// Blocks until a message comes.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] when the bus is gone; [`Error::WouldDeadlock`] on a reactor thread.
    pub fn recv(&self) -> Result<Message, Error> {
        if on_reactor_thread() {
            return Err(Error::WouldDeadlock);
        }
        self.rx.recv().map_err(|_| self.gone())
    }

    /// Blocks until a message comes or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], [`Error::Stopped`] when the bus is gone, [`Error::WouldDeadlock`]
    /// on a reactor thread.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, Error> {
        if on_reactor_thread() {
            return Err(Error::WouldDeadlock);
        }
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => Error::Timeout { after: timeout },
            RecvTimeoutError::Disconnected => self.gone(),
        })
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// `true` when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn gone(&self) -> Error {
        Error::Stopped {
            target: "bus".into(),
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        bus.update(|t| t.without(self.id));
        // What was delivered but never read is accounted for, not dropped silently.
        while let Ok(mut m) = self.rx.try_recv() {
            if m.topic().as_str() == DEAD_LETTER_TOPIC {
                // A dead letter is never dead-lettered again: only counted.
                bus.stats
                    .dead_letters_dropped
                    .fetch_add(1, Ordering::Relaxed);
                bus.log_dropped(Some(&self.name));
                continue;
            }
            log_dead_letter(
                &bus.limits.dead_letters,
                Some(&self.name),
                &m,
                &DeadLetterReason::Stopped,
            );
            if let Some(r) = m.take_reply_handle() {
                let _ = r.fail(Error::NoReply {
                    reason: format!("`{}` was dropped with the request unread", self.name),
                });
            }
            bus.dead_letter(m, DeadLetterReason::Stopped, Some(self.name.clone()));
        }
    }
}
