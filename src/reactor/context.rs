//! The `Component` trait and the `Context` a component sees on its reactor thread, with the
//! continuations and timer callbacks a context registers. The engine state behind a context
//! is in `state.rs`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::mailbox::CLOSED;
use super::permit::Permit;
use super::state::{self, Core};
use super::timer::{self, TimerId};
use super::unsent::{UnsentJob, UnsentRequest};
use super::{Reactor, WatchId, Watcher};
use crate::bus::{PublishReport, SubscriptionId};
use crate::logs;
use crate::types::{
    panic_message, BoxError, DeadLetterReason, Down, DownReason, Error, Message, MessageId,
    ReplyHandle, SendError,
};
use crate::worker::{log_job_panic, WorkerPool};

/// A unit of business logic with private state, run by its own reactor thread.
///
/// Every method runs on that thread, one call at a time, so the state needs no locks. The
/// runtime builds the component on its reactor thread from the factory given to
/// [`Runtime::deploy`](crate::Runtime::deploy), so a component need not even be `Send`.
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, Context, Message};
///
/// struct Counter { seen: u64 }
///
/// impl Component for Counter {
///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
///         self.seen += 1;
///         if msg.expects_reply() {
///             ctx.reply(&mut msg, Message::typed(self.seen))?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Component: Sized + 'static {
    /// Called once on the reactor thread before the first message. An error fails
    /// [`Runtime::start`](crate::Runtime::start) with [`Error::StartFailed`]. Default: nothing.
    ///
    /// # Errors
    ///
    /// Whatever the component decides makes it unable to run.
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message. A panic or an `Err` is a failure (an `Err` only dead-letters the
    /// message under [`OnError::Continue`](crate::OnError::Continue)): the instance goes down
    /// and the message goes to the dead-letter topic with the reason. The handler owns the
    /// message, so its dead letter carries only the envelope, unless the handler hands it back
    /// in its error ([`Unhandled`](crate::Unhandled)) or the component keeps payloads for this
    /// ([`ComponentOptions::keep_failed_payloads`](crate::ComponentOptions::keep_failed_payloads)). Its restart mode decides
    /// the rest: a `temporary` component (the default) stays down and what remains in its
    /// mailbox is dead-lettered too; a `permanent` or `transient` one is rebuilt from its
    /// factory by its supervisor and the queued messages go to the new instance. The rest of
    /// the runtime keeps running.
    ///
    /// # Errors
    ///
    /// Whatever the component decides is a failure it cannot continue from.
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError>;

    /// Called on a restarted instance, after its [`start`](Component::start) returned and
    /// before its first message, with why the previous instance went down and what it left.
    /// Not called on the first instance. An error or panic fails the restart as one in
    /// `start` does. Default: nothing.
    ///
    /// A restarted instance is built fresh by the factory and its `start` runs again, so what
    /// `start` sets up comes back, timers included. What the previous instance set up later
    /// does not: its timers ([`after`](Context::after), [`every`](Context::every),
    /// [`send_after`](Context::send_after)) belonged to it and were dropped with it (a pending
    /// `send_after` message is dead-lettered), and so was its state.
    /// [`Restarted::timers_dropped`] says how many there were. To have them back, keep what
    /// they depend on where a restart does not reach (a store, or state shared through the
    /// factory) and arm them again here; a periodic timer every instance needs belongs in
    /// `start`.
    ///
    /// # Errors
    ///
    /// Whatever the component decides makes it unable to run; the supervisor counts it as a
    /// failed restart.
    ///
    /// # Examples
    ///
    /// A poller whose period is set by a message at run time; the period lives outside the
    /// instance, so a restarted instance arms its poll again.
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message, Restarted};
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// struct Poller { period: Arc<Mutex<Option<Duration>>> } // shared by the factory
    ///
    /// impl Poller {
    ///     fn arm(&self, ctx: &mut Context<'_, Self>) {
    ///         if let Some(p) = *self.period.lock().unwrap() {
    ///             ctx.every(p, |_this: &mut Self, ctx| { let _ = ctx.publish("poll", Message::empty()); });
    ///         }
    ///     }
    /// }
    ///
    /// impl Component for Poller {
    ///     fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let secs = *msg.try_get::<u64>()?;
    ///         *self.period.lock().unwrap() = Some(Duration::from_secs(secs));
    ///         self.arm(ctx);
    ///         Ok(())
    ///     }
    ///
    ///     fn restarted(&mut self, _restart: &Restarted, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         // The previous instance's timer went down with it (`Restarted::timers_dropped`).
    ///         self.arm(ctx);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn restarted(
        &mut self,
        restart: &Restarted,
        ctx: &mut Context<'_, Self>,
    ) -> Result<(), BoxError> {
        let _ = (restart, ctx);
        Ok(())
    }

    /// Called once on an orderly stop, after the mailbox has been drained (or the drain
    /// deadline passed) and after pending continuations got [`Error::Stopped`]. Not called
    /// after a failure. Default: nothing.
    ///
    /// An instance stopped by its supervisor so that it can be restarted (a sibling failed
    /// under `all-for-one` or `rest-for-one`) gets `stop` too, but its queued messages are
    /// kept for the next instance rather than drained.
    fn stop(&mut self, ctx: &mut Context<'_, Self>) {
        let _ = ctx;
    }

    /// Called when a component this instance watches ([`Context::watch`]) goes down. An
    /// error or panic fails the instance, as in `handle`. Default: nothing.
    ///
    /// # Errors
    ///
    /// Whatever the component decides is a failure it cannot continue from.
    fn down(&mut self, down: Down, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = (down, ctx);
        Ok(())
    }

    /// Called once the component has received no message for its idle timeout
    /// ([`ComponentOptions::idle_timeout`](crate::ComponentOptions::idle_timeout)), as a
    /// gen-server's timeout: once per quiet spell; the next message starts the count again.
    /// An error or panic fails the instance. Default: nothing.
    ///
    /// # Errors
    ///
    /// Whatever the component decides is a failure it cannot continue from.
    fn idle(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }
}

/// What a restarted instance is told: [`Component::restarted`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restarted {
    /// Why the previous instance went down: a failure, an orderly stop of its own (a
    /// `permanent` component), or [`DownReason::Shutdown`] when its supervisor stopped it to
    /// restart its group.
    pub reason: DownReason,
    /// How many times its supervisor has built a fresh instance, this one included (as
    /// [`ReactorStats::restarts`](crate::ReactorStats::restarts) reads now).
    pub restarts: u64,
    /// How many timers ([`after`](Context::after), [`every`](Context::every),
    /// [`send_after`](Context::send_after)) the previous instance still had when it went
    /// down: dropped with it. Each pending `send_after` message was dead-lettered.
    pub timers_dropped: usize,
}

impl Restarted {
    pub(super) fn new(reason: DownReason) -> Restarted {
        Restarted {
            reason,
            restarts: 0,
            timers_dropped: 0,
        }
    }
}

type ReplyCont<C> = Box<dyn for<'a> FnOnce(&mut C, &mut Context<'a, C>, Result<Message, Error>)>;
type JobCont<C> =
    Box<dyn for<'a> FnOnce(&mut C, &mut Context<'a, C>, Result<Box<dyn Any + Send>, Error>)>;

/// A continuation waiting for a reply or a job result.
pub(crate) enum Cont<C: Component> {
    Reply(ReplyCont<C>),
    Job(JobCont<C>),
}

/// A timer callback. May run many times (a periodic timer).
pub(crate) type TimerFn<C> = Box<dyn for<'a> FnMut(&mut C, &mut Context<'a, C>)>;

/// What a component's timer does when it fires.
pub(crate) enum Action<C: Component> {
    Call(TimerFn<C>),
    /// A message for the component's own `handle` (one-shot timers only).
    Deliver(Message),
}

/// The reactor thread's own state for a component of type `C`.
pub(crate) type Local<C> = state::Local<Cont<C>, Action<C>>;
/// An entry of its timers.
pub(crate) type Entry<C> = timer::Entry<Action<C>>;

/// A component's view of the runtime, valid during one call on its reactor thread.
///
/// Sending from a context stamps the message's [`source`](Message::source) with the
/// component's name. Continuations given to [`request`](Context::request) and
/// [`spawn_blocking`](Context::spawn_blocking) run later on this same reactor thread, with the
/// component and a fresh context, so they may touch the component's state freely.
pub struct Context<'a, C: Component> {
    pub(crate) core: &'a Core,
    pub(crate) local: &'a mut Local<C>,
}

impl<C: Component> std::fmt::Debug for Context<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("component", &self.name())
            .field("pending", &self.local.pending.len())
            .finish()
    }
}

impl<'a, C: Component> Context<'a, C> {
    /// This component's name.
    pub fn name(&self) -> &str {
        self.core.reactor.name()
    }

    /// This component's reactor: a handle other threads can [`send`](Reactor::send) to.
    pub fn reactor(&self) -> &Reactor {
        &self.core.reactor
    }

    /// The runtime's worker pool, for fire-and-forget jobs. To get a result back on this
    /// reactor, use [`spawn_blocking`](Context::spawn_blocking).
    pub fn pool(&self) -> &WorkerPool {
        &self.core.pool
    }

    /// Requests and jobs of this component whose continuation has not run yet.
    pub fn pending(&self) -> usize {
        self.local.pending.len()
    }

    pub(super) fn stamp(&self, mut msg: Message) -> Message {
        msg.source = Some(self.core.reactor.mailbox.source.clone());
        msg
    }

    /// Never blocks. Sends `msg` to one subscriber of `topic`; see
    /// [`Bus::send`](crate::Bus::send).
    ///
    /// # Errors
    ///
    /// As [`Bus::send`](crate::Bus::send); the message is handed back.
    pub fn send(&self, topic: &str, msg: Message) -> Result<(), SendError<Message>> {
        self.core.bus.send(topic, self.stamp(msg))
    }

    /// Never blocks. Sends a copy of `msg` to every subscriber of `topic`; see
    /// [`Bus::publish`](crate::Bus::publish).
    ///
    /// # Errors
    ///
    /// As [`Bus::publish`](crate::Bus::publish).
    pub fn publish(&self, topic: &str, msg: Message) -> Result<PublishReport, SendError<Message>> {
        self.core.bus.publish(topic, self.stamp(msg))
    }

    /// Never blocks. Sends `msg` as a request to one subscriber of `topic`; `then` runs later
    /// on this reactor with the reply, or with [`Error::Timeout`] once `timeout` has passed,
    /// or with [`Error::NoReply`] if the responder drops the request unanswered.
    ///
    /// Room for the reply is reserved now, so a reply is never refused by this component's
    /// full mailbox; the number of outstanding requests and jobs is bounded by the
    /// component's `max_pending` ([`ComponentOptions::max_pending`](crate::ComponentOptions::max_pending)).
    /// A reply that comes after the timeout is counted and dead-lettered.
    ///
    /// # Errors
    ///
    /// - [`SendError::Backpressure`] naming this component when `max_pending` requests and jobs
    ///   are outstanding, or naming the responder when its mailbox is full.
    /// - [`SendError::Stopped`], [`SendError::NoSubscriber`] as for [`send`](Context::send);
    ///   [`SendError::Stopped`] naming this component once it is stopping (from the end of its
    ///   drain, through `Component::stop`): no new request can be made then.
    ///
    /// In every error case the work comes back whole, as an [`UnsentRequest`]: the message
    /// (without its reply handle) and `then`, not called. `?` drops both (it needs `then` to be
    /// `Send + Sync` to reach a [`BoxError`], as a closure that holds a reply handle or a
    /// channel's sender is; `.map_err(reactorium::Error::from)?` drops them first otherwise).
    ///
    /// # Answering the busy case
    ///
    /// A continuation that holds a [`ReplyHandle`] (a request this component serves by asking
    /// another) is the one place that answers it. When the request is refused, give the
    /// refusal to the continuation: [`run_then`](SendError::run_then) calls it now with the
    /// error, so the original requester hears "busy" ([`Error::Backpressure`], a `503` over
    /// HTTP) instead of [`Error::NoReply`] from a dropped handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    /// use std::time::Duration;
    ///
    /// struct Asker { answers: Vec<u64> }
    ///
    /// impl Component for Asker {
    ///     fn handle(&mut self, _msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         ctx.request("prices.quote", Message::typed(7u64), Duration::from_secs(1),
    ///             |this: &mut Self, _ctx, reply| {
    ///                 if let Ok(reply) = reply {
    ///                     this.answers.extend(reply.get::<u64>());
    ///                 }
    ///             })?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// Forwarding: a front that answers each request with its backend's answer, whatever
    /// that is, the backend's refusal included.
    ///
    /// ```
    /// use reactorium::{BoxError, Component, ComponentOptions, Context, Error, Message, Runtime};
    /// use std::time::Duration;
    ///
    /// struct Front;
    ///
    /// impl Component for Front {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let Some(caller) = msg.take_reply_handle() else { return Ok(()) };
    ///         let asked = ctx.request("backend", msg, Duration::from_secs(5),
    ///             move |_this: &mut Self, _ctx, outcome| {
    ///                 let _ = match outcome {
    ///                     Ok(reply) => caller.send(reply),
    ///                     Err(e) => caller.fail(e),
    ///                 };
    ///             });
    ///         if let Err(refused) = asked {
    ///             refused.run_then(self, ctx); // `then` answers the caller with the refusal
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy_with("front", ComponentOptions::new().subscribe("front"), || Front)?;
    /// rt.start()?;
    /// // The backend here is a plain thread's inbox with room for one, and it is full.
    /// let backend = rt.bus().subscribe_inbox("backend", 1)?;
    /// rt.bus().send("backend", Message::empty())?;
    ///
    /// let busy = rt.bus().request("front", Message::empty(), Duration::from_secs(5))?.wait();
    /// assert!(matches!(busy, Err(Error::Backpressure { ref target, .. }) if target == "inbox(backend)"));
    /// # drop(backend);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn request<F>(
        &mut self,
        topic: &str,
        msg: Message,
        timeout: Duration,
        then: F,
    ) -> Result<MessageId, SendError<UnsentRequest<F>>>
    where
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<Message, Error>) + 'static,
    {
        if self.local.settling {
            return Err(self.stopping(UnsentRequest { message: msg, then }));
        }
        let id = self.next_id();
        let Some((permit, ticket)) =
            Permit::acquire(&self.core.reactor.mailbox, id, false, Some(timeout))
        else {
            return Err(self.pending_full(UnsentRequest { message: msg, then }));
        };
        let mut msg = self.stamp(msg);
        let request_id = msg.id;
        msg.set_reply(ReplyHandle::new(Box::new(permit), request_id));
        match self.core.bus.send_request(topic, msg) {
            Ok(()) => {
                let now = self.now();
                self.local
                    .insert(now, id, Some(timeout), ticket, Cont::Reply(Box::new(then)));
                Ok(request_id)
            }
            Err(e) => Err(e.map(|mut message| {
                if let Some(r) = message.take_reply_handle() {
                    r.cancel();
                }
                UnsentRequest { message, then }
            })),
        }
    }

    /// Answers the request `request` with `reply`, taking its reply handle.
    ///
    /// Nothing here fails the handler, so `ctx.reply(&mut msg, ..)?` is safe whatever came in:
    ///
    /// - A requester that no longer waits (its timeout passed, an HTTP client hung up, the
    ///   requesting component stopped) is not this component's failure: the reply is counted
    ///   as late ([`BusStats::late_replies`](crate::BusStats)) and dead-lettered.
    /// - A message that expects no reply (a plain [`send`](crate::Bus::send) or
    ///   [`publish`](crate::Bus::publish), or a request answered already) is not one either:
    ///   the reply is dead-lettered with
    ///   [`DeadLetterReason::UnrequestedReply`](crate::DeadLetterReason::UnrequestedReply),
    ///   its correlation set to `request`'s id, and counted in
    ///   [`ReactorStats::dead_lettered`](crate::ReactorStats::dead_lettered); so a component
    ///   that answers every message keeps running when one is sent to it plainly, and the
    ///   stray reply is not lost silently. Ask [`Message::expects_reply`] first to do
    ///   something else.
    ///
    /// To learn whether the reply was read, use [`Message::take_reply_handle`] and
    /// [`ReplyHandle::send`], which report it.
    ///
    /// # Errors
    ///
    /// None today: every case above returns `Ok`. The `Result` is kept so that a reply path
    /// that can fail (a requester in another process) can say so.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    ///
    /// struct Echo;
    ///
    /// impl Component for Echo {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let answer = msg.clone();
    ///         ctx.reply(&mut msg, answer)?; // a plain send: the reply is dead-lettered
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn reply(&self, request: &mut Message, reply: Message) -> Result<(), Error> {
        let mut reply = self.stamp(reply);
        match request.take_reply_handle() {
            Some(h) => match h.send(reply) {
                // Late: counted and dead-lettered by the handle.
                Err(Error::Timeout { .. } | Error::Stopped { .. }) => Ok(()),
                other => other,
            },
            None => {
                reply.set_correlation(request.id());
                self.core
                    .reactor
                    .mailbox
                    .dead_letter(reply, DeadLetterReason::UnrequestedReply);
                Ok(())
            }
        }
    }

    /// Never blocks. Runs `job` on the worker pool; `then` runs later on this reactor with its
    /// result, or with [`Error::Panicked`] if the job panicked (the worker survives).
    ///
    /// # Errors
    ///
    /// [`SendError::Backpressure`] when the pool's queue is full (naming the pool) or when this
    /// component has `max_pending` requests and jobs outstanding (naming the component);
    /// [`SendError::Stopped`] when the pool has shut down or has no threads
    /// ([`RuntimeBuilder::worker_threads(0)`](crate::RuntimeBuilder::worker_threads)), or
    /// naming this component once it is stopping (from the end of its drain, through
    /// `Component::stop`). The work comes back whole, as an [`UnsentJob`]: the job, not run,
    /// and `then`, not called; [`run_then`](SendError::run_then) calls `then` with the
    /// refusal, so a continuation that was to answer a request answers "busy" (see
    /// [`request`](Context::request), "Answering the busy case").
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    ///
    /// struct Hasher { last: Option<u64> }
    ///
    /// impl Component for Hasher {
    ///     fn handle(&mut self, _msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         ctx.spawn_blocking(|| (1..=20u64).product::<u64>(), |this: &mut Self, _ctx, r| {
    ///             this.last = r.ok();
    ///         })?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn spawn_blocking<R, J, F>(
        &mut self,
        job: J,
        then: F,
    ) -> Result<u64, SendError<UnsentJob<J, F>>>
    where
        R: Send + 'static,
        J: FnOnce() -> R + Send + 'static,
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<R, Error>) + 'static,
    {
        self.offload(None, job, then)
    }

    /// As [`spawn_blocking`](Context::spawn_blocking), with a deadline: once `timeout` has
    /// passed, `then` gets [`Error::Timeout`]. A job that has not started by then is skipped;
    /// one that is running cannot be killed, so its late result is discarded and counted
    /// ([`ReactorStats::late_jobs`](crate::ReactorStats::late_jobs)).
    ///
    /// # Errors
    ///
    /// As [`spawn_blocking`](Context::spawn_blocking).
    pub fn spawn_blocking_timeout<R, J, F>(
        &mut self,
        timeout: Duration,
        job: J,
        then: F,
    ) -> Result<u64, SendError<UnsentJob<J, F>>>
    where
        R: Send + 'static,
        J: FnOnce() -> R + Send + 'static,
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<R, Error>) + 'static,
    {
        self.offload(Some(timeout), job, then)
    }

    fn offload<R, J, F>(
        &mut self,
        timeout: Option<Duration>,
        job: J,
        then: F,
    ) -> Result<u64, SendError<UnsentJob<J, F>>>
    where
        R: Send + 'static,
        J: FnOnce() -> R + Send + 'static,
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<R, Error>) + 'static,
    {
        if self.local.settling {
            return Err(self.stopping(UnsentJob { job, then }));
        }
        let id = self.next_id();
        let Some((permit, ticket)) = Permit::acquire(&self.core.reactor.mailbox, id, true, timeout)
        else {
            return Err(self.pending_full(UnsentJob { job, then }));
        };
        let slot = match self.core.pool.try_reserve() {
            Ok(slot) => slot,
            Err(e) => {
                permit.cancel();
                return Err(e.with(UnsentJob { job, then }));
            }
        };
        let clock = self.core.settings.clock.clone();
        let now = self.now();
        let deadline = timeout.map(|t| now + t);
        // The job runs in this component's span, so its events (and its panic's) name it.
        let span = logs::current_span();
        slot.execute(Box::new(move || {
            let _entered = span.enter();
            if permit.is_abandoned() {
                // The component stopped waiting (deadline or stop): the job need not run.
                permit.cancel();
                return;
            }
            if deadline.is_some_and(|d| clock.now() >= d) {
                // Not started by its deadline: skipped. The continuation gets Timeout, from
                // here or from the reactor's own timer, whichever is first.
                permit.skip_job(timeout.unwrap_or_default());
                return;
            }
            let outcome = match catch_unwind(AssertUnwindSafe(job)) {
                Ok(r) => Ok(Box::new(r) as Box<dyn Any + Send>),
                Err(p) => {
                    log_job_panic(&*p);
                    Err(Error::Panicked {
                        message: panic_message(&*p),
                    })
                }
            };
            // Err: the component stopped waiting or is gone; the permit counted it as a late
            // job and the result is dropped here.
            let _ = permit.deliver_job(outcome);
        }));
        let cont: JobCont<C> = Box::new(move |c, ctx, r| {
            then(
                c,
                ctx,
                r.map(|b| *b.downcast::<R>().expect("job result has the job's type")),
            );
        });
        self.local.insert(now, id, timeout, ticket, Cont::Job(cont));
        Ok(id)
    }

    /// Subscribes this component to `pattern` (`a.b`, `a.*`, `a.>`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] when the pattern is malformed.
    pub fn subscribe(&self, pattern: &str) -> Result<SubscriptionId, Error> {
        self.core.bus.subscribe_reactor(pattern, &self.core.reactor)
    }

    /// Removes a subscription; `false` if it did not exist.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.core.bus.unsubscribe(id)
    }

    /// Never blocks. Sends `msg` straight to the component named `name`, whatever it
    /// subscribes to; see [`Bus::send_to`](crate::Bus::send_to).
    ///
    /// # Errors
    ///
    /// As [`Bus::send_to`](crate::Bus::send_to); the message is handed back.
    pub fn send_to(&self, name: &str, msg: Message) -> Result<(), SendError<Message>> {
        self.core.bus.send_to(name, self.stamp(msg))
    }

    /// Now, on the runtime's [`Clock`](crate::Clock) (a manual clock in tests).
    ///
    /// On a manual clock, a timer, timeout or idle callback sees the instant the reactor
    /// found it due at, even if the test moved the clock on while the reactor ran it: the
    /// reactor sees the move on its next pass, as it sees the tick that comes with it.
    pub fn now(&self) -> Instant {
        self.local
            .fired_at
            .unwrap_or_else(|| self.core.settings.clock.now())
    }

    /// Runs `f` on this reactor once `delay` has passed. Timers belong to this instance: they
    /// are dropped when it goes down, and a restarted instance sets its own (in `start`, or
    /// in [`Component::restarted`], which says how many were dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    /// use std::time::Duration;
    ///
    /// struct Reminder { reminded: bool }
    ///
    /// impl Component for Reminder {
    ///     fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         ctx.after(Duration::from_secs(30), |this: &mut Self, _ctx| this.reminded = true);
    ///         Ok(())
    ///     }
    ///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn after<F>(&mut self, delay: Duration, f: F) -> TimerId
    where
        F: FnOnce(&mut C, &mut Context<'_, C>) + 'static,
    {
        let mut f = Some(f);
        let call = move |c: &mut C, ctx: &mut Context<'_, C>| {
            if let Some(f) = f.take() {
                f(c, ctx);
            }
        };
        self.set_timer(delay, None, Action::Call(Box::new(call)))
    }

    /// Runs `f` on this reactor every `period`, first after one period, until cancelled or
    /// the instance goes down. A reactor that falls behind skips the missed ticks rather than
    /// running them in a burst. A zero period is taken as one millisecond.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    /// use std::time::Duration;
    ///
    /// struct Heartbeat;
    ///
    /// impl Component for Heartbeat {
    ///     fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         ctx.every(Duration::from_secs(1), |_this: &mut Self, ctx| {
    ///             // Backpressure or no subscriber: this beat is skipped, the next one comes.
    ///             let _ = ctx.publish("heartbeat", Message::empty());
    ///         });
    ///         Ok(())
    ///     }
    ///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn every<F>(&mut self, period: Duration, f: F) -> TimerId
    where
        F: FnMut(&mut C, &mut Context<'_, C>) + 'static,
    {
        let period = period.max(Duration::from_millis(1));
        self.set_timer(period, Some(period), Action::Call(Box::new(f)))
    }

    /// Delivers `msg` to this component's own `handle` once `delay` has passed. It does not
    /// go through the mailbox, so it is never refused for lack of room. Like every timer it
    /// belongs to this instance: if the instance goes down first (a failure, a stop, a
    /// restart), `msg` is dead-lettered, with the failure's reason or
    /// [`DeadLetterReason::Stopped`], and counted in
    /// [`ReactorStats::dead_lettered`](crate::ReactorStats::dead_lettered).
    pub fn send_after(&mut self, delay: Duration, msg: Message) -> TimerId {
        let msg = self.stamp(msg);
        self.set_timer(delay, None, Action::Deliver(msg))
    }

    /// Cancels a timer: `true` if it had not fired yet (a periodic one: if it was running).
    /// A cancelled [`send_after`](Context::send_after) drops its message.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.local.timers.cancel(id.0)
    }

    fn set_timer(&mut self, delay: Duration, period: Option<Duration>, a: Action<C>) -> TimerId {
        let id = self.next_id();
        let at = self.now() + delay;
        self.local.timers.user(at, id, period, a);
        TimerId(id)
    }

    /// Asks this instance to stop once the current call returns: its mailbox refuses new
    /// messages, what is queued is handled (within its drain timeout), then `stop` runs. An
    /// orderly stop: watchers get [`DownReason::Normal`](crate::DownReason::Normal), and only
    /// a `permanent` component is restarted after it.
    pub fn stop(&mut self) {
        self.local.stop_self = true;
        self.core.reactor.mailbox.set_flag(CLOSED);
    }

    /// Watches the component named `name`: when an instance of it goes down, this
    /// instance's [`Component::down`] runs with the reason. Watching a component that is down
    /// for good calls `down` at once (on this reactor, after this call). The watch ends with
    /// [`unwatch`](Context::unwatch), when `name` is down for good, or when this instance goes
    /// down.
    ///
    /// # Errors
    ///
    /// [`Error::NoComponent`] when no component has that name.
    pub fn watch(&self, name: &str) -> Result<WatchId, Error> {
        self.core
            .system
            .watch(name, Watcher::Reactor(self.core.reactor.clone()))
    }

    /// Ends a watch; `false` if it had ended already.
    pub fn unwatch(&self, id: WatchId) -> bool {
        self.core.system.unwatch(id)
    }

    fn next_id(&mut self) -> u64 {
        self.local.next_id()
    }

    fn stopping<T>(&self, rejected: T) -> SendError<T> {
        SendError::Stopped {
            target: self.core.reactor.mailbox.name.clone(),
            rejected,
        }
    }

    fn pending_full<T>(&self, rejected: T) -> SendError<T> {
        SendError::Backpressure {
            target: self.core.reactor.mailbox.name.clone(),
            capacity: self.core.reactor.mailbox.max_pending,
            rejected,
        }
    }
}
