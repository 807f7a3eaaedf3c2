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
use crate::types::{panic_message, BoxError, DeadLetterReason, DownReason, Error, Message, Topic};

/// Why the component stopped handling messages, with the message it failed on.
pub(super) struct Failure {
    pub(super) message: Option<Message>,
    pub(super) reason: DeadLetterReason,
}

/// Runs one task. `Err` means the instance failed and must go down; `Ok(false)`, a message
/// whose handler's error was dead-lettered under [`OnError::Continue`].
pub(super) fn dispatch<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    task: Task,
) -> Result<bool, Failure> {
    match task {
        Task::Message(msg) => {
            // Kept so the message can be dead-lettered if the handler fails. Only the envelope:
            // the payload is the handler's to take (see `DeadLetter::message`).
            let keep = msg.envelope();
            // Two clock reads, only for a component that opted in.
            let latency = core.reactor.mailbox.latency.as_deref();
            let started = latency.map(|_| Instant::now());
            let r = catch_unwind(AssertUnwindSafe(|| {
                comp.handle(msg, &mut Context { core, local })
            }));
            if let (Some(h), Some(t)) = (latency, started) {
                h.record(t.elapsed());
            }
            match r {
                Ok(Ok(())) => Ok(true),
                Ok(Err(e)) if core.settings.on_error == OnError::Continue => {
                    let mb = &core.reactor.mailbox;
                    mb.counters.errors.fetch_add(1, Ordering::Relaxed);
                    logs::limited!(
                        mb.counters.limits.errors,
                        tracing::Level::WARN,
                        target: logs::REACTOR,
                        reason = %e,
                        topic = keep.topic().as_str(),
                        "handler failed, message dead-lettered"
                    );
                    mb.dead_letter(keep, DeadLetterReason::Failed(e.to_string()));
                    Ok(false)
                }
                Ok(Err(e)) => Err(Failure {
                    message: Some(keep),
                    reason: DeadLetterReason::Failed(e.to_string()),
                }),
                Err(p) => Err(Failure {
                    message: Some(keep),
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
                let mb = &core.reactor.mailbox;
                if dispatch(comp, core, local, Task::Message(msg))? {
                    mb.counters.handled.fetch_add(1, Ordering::Relaxed);
                }
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

/// A reply nobody waits for any more, found on the reactor's side: counted and dead-lettered
/// exactly as when the deliverer finds it (a bare "no reply" notice is not a reply).
pub(super) fn late_reply(mb: &Mailbox, outcome: Result<Message, Error>) {
    if let Ok(reply) = outcome {
        mb.counters.late_replies.fetch_add(1, Ordering::Relaxed);
        mb.late_reply(reply);
    }
}

/// Accounts for a task that will not be handled; `true` if it was a bus message.
pub(super) fn abandon(mb: &Mailbox, task: Task, reason: &DeadLetterReason) -> bool {
    match task {
        Task::Message(m) => {
            mb.dead_letter(m, reason.clone());
            true
        }
        Task::Reply { outcome, .. } => {
            late_reply(mb, outcome);
            false
        }
        Task::Job { .. } => {
            mb.counters.late_jobs.fetch_add(1, Ordering::Relaxed);
            false
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
