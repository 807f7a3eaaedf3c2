//! Running component code on the reactor thread, each call under `catch_unwind`: a message's
//! `handle`, a continuation with its reply or job result, due timers and the idle callback.
//! And accounting for a task that will not run (dead-lettered, or counted late).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::context::{Action, Component, Cont, Context, Entry, Local};
use super::mailbox::{Mailbox, Task};
use super::state::Core;
use super::timer::next_period;
use super::OnError;
use crate::logs::{self, take_panic_location};
use crate::types::{
    panic_message, BoxError, DeadLetterReason, DownReason, Error, Message, Payload, Topic,
    Unhandled,
};

/// Why the component stopped handling messages, with the message it failed on.
pub(super) struct Failure {
    pub(super) message: Option<Message>,
    pub(super) reason: DeadLetterReason,
}

/// Runs one task. `Err` means the instance failed and must go down; `Ok(false)`, a message
/// whose handler's error was dead-lettered under [`OnError::Continue`].
///
/// A message is counted here, whichever way it came (the mailbox, or a `send_after` timer):
/// handled (and drained, once a stop was seen), or abandoned under `OnError::Continue`. The
/// one a failure comes back with is the caller's to dead-letter and count.
pub(super) fn dispatch<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    task: Task,
) -> Result<bool, Failure> {
    match task {
        Task::Message(msg) => {
            // Kept so the message can be dead-lettered if the handler fails: the envelope,
            // and the payload only where the component asked for it (see `DeadLetter::message`).
            let keep = msg.envelope();
            let keeps_payload = core.settings.keep_payloads;
            if keeps_payload {
                msg.keep_payload();
            }
            // Two clock reads, only for a component that opted in.
            let latency = core.reactor.mailbox.latency.as_deref();
            let started = latency.map(|_| Instant::now());
            let r = catch_unwind(AssertUnwindSafe(|| {
                comp.handle(msg, &mut Context { core, local })
            }));
            if let (Some(h), Some(t)) = (latency, started) {
                h.record(t.elapsed());
            }
            let mb = &core.reactor.mailbox;
            match r {
                Ok(Ok(())) => {
                    if keeps_payload {
                        drop(Message::take_kept_payload());
                    }
                    mb.tally.handled(local.draining);
                    Ok(true)
                }
                Ok(Err(e)) => {
                    let kept = keeps_payload.then(Message::take_kept_payload).flatten();
                    let (failed, reason) = handed_back(e, keep, kept);
                    if core.settings.on_error == OnError::Continue {
                        mb.counters.errors.fetch_add(1, Ordering::Relaxed);
                        logs::limited!(
                            mb.counters.limits.errors,
                            tracing::Level::WARN,
                            target: logs::REACTOR,
                            reason = %down_reason(&reason),
                            topic = failed.topic().as_str(),
                            "handler failed, message dead-lettered"
                        );
                        mb.abandon_message(failed, reason);
                        Ok(false)
                    } else {
                        Err(Failure {
                            message: Some(failed),
                            reason,
                        })
                    }
                }
                Err(p) => Err(Failure {
                    message: Some(with_kept(
                        keep,
                        keeps_payload.then(Message::take_kept_payload).flatten(),
                    )),
                    reason: DeadLetterReason::Panicked(panic_message(&*p)),
                }),
            }
        }
        Task::Reply { id, outcome } => match local.take(id) {
            Some(p) => run_cont(comp, core, local, p.cont, outcome).map(|()| true),
            None => {
                late_reply(&core.reactor.mailbox, outcome);
                Ok(true)
            }
        },
        Task::Job { id, outcome } => match local.take(id) {
            Some(p) => run_cont(comp, core, local, p.cont, outcome).map(|()| true),
            None => {
                let mb = &core.reactor.mailbox;
                mb.counters.late_jobs.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
        },
    }
}

/// The message a handler's error is about, and the reason: the whole message when the
/// handler handed it back ([`Unhandled`]), else the envelope the reactor kept (with the
/// payload, when it kept that too).
#[cold]
fn handed_back(e: BoxError, keep: Message, kept: Option<Payload>) -> (Message, DeadLetterReason) {
    match e.downcast::<Unhandled>() {
        Ok(u) => {
            let (message, error) = u.into_parts();
            (message, DeadLetterReason::Failed(error.to_string()))
        }
        Err(e) => (
            with_kept(keep, kept),
            DeadLetterReason::Failed(e.to_string()),
        ),
    }
}

fn with_kept(keep: Message, kept: Option<Payload>) -> Message {
    match kept {
        Some(p) => keep.with_payload(p),
        None => keep,
    }
}

/// An outcome a continuation can take: a reply or a job result.
pub(super) trait Outcome {
    fn call<C: Component>(self, cont: Cont<C>, comp: &mut C, ctx: &mut Context<'_, C>);
}

impl Outcome for Result<Message, Error> {
    fn call<C: Component>(self, cont: Cont<C>, comp: &mut C, ctx: &mut Context<'_, C>) {
        match cont {
            Cont::Reply(f) => f(comp, ctx, self),
            Cont::Job(f) => f(comp, ctx, self.map(|m| Box::new(m) as _)),
        }
    }
}

impl Outcome for Result<Box<dyn std::any::Any + Send>, Error> {
    fn call<C: Component>(self, cont: Cont<C>, comp: &mut C, ctx: &mut Context<'_, C>) {
        match cont {
            Cont::Job(f) => f(comp, ctx, self),
            // Ids are unique per reactor and a job id is only ever given a job permit.
            Cont::Reply(_) => unreachable!("job outcome for a request id"),
        }
    }
}

impl Outcome for Error {
    fn call<C: Component>(self, cont: Cont<C>, comp: &mut C, ctx: &mut Context<'_, C>) {
        match cont {
            Cont::Reply(f) => f(comp, ctx, Err(self)),
            Cont::Job(f) => f(comp, ctx, Err(self)),
        }
    }
}

pub(super) fn run_cont<C: Component, O: Outcome>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    cont: Cont<C>,
    outcome: O,
) -> Result<(), Failure> {
    catch_unwind(AssertUnwindSafe(|| {
        outcome.call(cont, comp, &mut Context { core, local })
    }))
    .map_err(|p| Failure {
        message: None,
        reason: DeadLetterReason::Panicked(panic_message(&*p)),
    })
}

/// A component callback's result as a failure, if it was one.
pub(super) fn callback_outcome(
    r: std::thread::Result<Result<(), BoxError>>,
) -> Result<(), Failure> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure {
            message: None,
            reason: DeadLetterReason::Failed(e.to_string()),
        }),
        Err(p) => Err(Failure {
            message: None,
            reason: DeadLetterReason::Panicked(panic_message(&*p)),
        }),
    }
}

/// Runs what is due: timers, deadlines, then the idle timeout.
///
/// On a manual clock, everything run here sees `now`, the instant read once at the top, as
/// [`Context::now`]: a test that waits for one callback's effect may move the clock on at
/// once, while this pass still runs the rest of what was due (the idle callback comes after
/// the timers due at the same instant); those must not see the later time.
pub(super) fn fire_timers<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
) -> Result<(), Failure> {
    let now = core.settings.clock.now();
    if core.settings.clock.is_manual() {
        local.fired_at = Some(now);
    }
    let r = fire_due(comp, core, local, now);
    local.fired_at = None;
    r
}

fn fire_due<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    now: Instant,
) -> Result<(), Failure> {
    while let Some((at, id, entry)) = local.timers.pop_due(now) {
        match entry {
            Entry::Deadline => {
                let Some(p) = local.take(id) else { continue };
                if p.ticket.abandon() {
                    let after = p.deadline.map_or(Duration::ZERO, |(_, d)| d);
                    if matches!(p.cont, Cont::Reply(_)) {
                        core.bus.request_timed_out();
                    }
                    run_cont(comp, core, local, p.cont, Error::Timeout { after })?;
                } else {
                    // The outcome was taken for delivery before the deadline: it is in the
                    // mailbox, or will be within a few instructions, and goes to the
                    // continuation then.
                    local.restore(id, p);
                }
            }
            Entry::User {
                period,
                action: Action::Call(mut f),
            } => {
                local.timers.firing(id);
                catch_unwind(AssertUnwindSafe(|| {
                    f(comp, &mut Context { core, local });
                }))
                .map_err(|p| Failure {
                    message: None,
                    reason: DeadLetterReason::Panicked(panic_message(&*p)),
                })?;
                // A periodic timer goes on unless its callback cancelled it.
                if let (Some(p), false) = (period, local.timers.fired_cancelled()) {
                    let next = next_period(at, p, now);
                    local.timers.user(next, id, period, Action::Call(f));
                }
            }
            Entry::User {
                action: Action::Deliver(msg),
                ..
            } => {
                dispatch(comp, core, local, Task::Message(msg))?;
            }
        }
    }
    if local.idle_at.is_some_and(|at| at <= now) {
        local.idle_at = None;
        let r = catch_unwind(AssertUnwindSafe(|| comp.idle(&mut Context { core, local })));
        callback_outcome(r)?;
    }
    Ok(())
}

/// Ends what an instance left pending when it went down: continuations stop waiting (their
/// places given back), timers are dropped, and a pending `send_after` message is
/// dead-lettered with `reason` rather than lost (it never reached `handle`, so it is not
/// counted as abandoned, only as dead-lettered). The number of timers dropped is kept for
/// the next instance's [`Component::restarted`].
pub(super) fn end_instance<C: Component>(
    core: &Core,
    local: &mut Local<C>,
    reason: &DeadLetterReason,
) {
    let mb = &core.reactor.mailbox;
    local.abandon_all(|action| {
        if let Action::Deliver(m) = action {
            mb.dead_letter(m, reason.clone());
        }
    });
}

/// A reply nobody waits for any more, found on the reactor's side: counted and dead-lettered
/// exactly as when the deliverer finds it (a bare "no reply" notice is not a reply).
pub(super) fn late_reply(mb: &Mailbox, outcome: Result<Message, Error>) {
    if let Ok(reply) = outcome {
        mb.counters.late_replies.fetch_add(1, Ordering::Relaxed);
        mb.late_reply(reply);
    }
}

/// Accounts for a task that will not be handled: a message is dead-lettered and counted as
/// abandoned, a reply dead-lettered as late, a job result counted late.
pub(super) fn abandon(mb: &Mailbox, task: Task, reason: &DeadLetterReason) {
    match task {
        Task::Message(m) => mb.abandon_message(m, reason.clone()),
        Task::Reply { outcome, .. } => late_reply(mb, outcome),
        Task::Job { .. } => {
            mb.counters.late_jobs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How a failure reads in a `Down` notice and in the logs.
pub(super) fn down_reason(reason: &DeadLetterReason) -> DownReason {
    match reason {
        DeadLetterReason::Panicked(m) => DownReason::Panicked(m.clone()),
        DeadLetterReason::Failed(m) => DownReason::Failed(m.clone()),
        _ => DownReason::Shutdown,
    }
}

/// Reports a failure of the instance (one counted in `ReactorStats::failures`): `topic` is
/// that of the message its handler failed on, if it failed on one. A panic's location is
/// known when the application installed [`set_panic_hook`](crate::set_panic_hook).
pub(super) fn log_failure(reason: &DeadLetterReason, topic: Option<&Topic>) {
    let location = match reason {
        DeadLetterReason::Panicked(m) => take_panic_location(m),
        _ => None,
    };
    tracing::error!(
        target: logs::REACTOR,
        reason = %down_reason(reason),
        topic = topic.map(Topic::as_str).filter(|t| !t.is_empty()),
        location = location.as_deref(),
        "component failed"
    );
}
