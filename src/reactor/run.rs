//! The reactor thread: start, run loop, drain, stop. See `README.md` beside this file.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use crossbeam::utils::Backoff;

use super::context::{Component, Cont, Context, Core, Local};
use super::mailbox::{IdlePolicy, Mailbox, Task, CLOSED, DEAD};
use super::Router;
use crate::types::{panic_message, DeadLetterReason, Error, Message};

/// Most messages taken from the queue per pass: bounds the time between timer checks and
/// amortises the admission counter's RMW.
const BATCH: usize = 64;

/// The batch for a mailbox of `capacity`: messages in the reactor's hand have left the
/// mailbox (their room is free again), so the batch is what a component may hold beyond its
/// capacity. A quarter of the capacity keeps that small for small mailboxes (a mailbox of 4
/// holds at most 4 + 1, as a channel whose consumer took one item out would).
pub(crate) fn batch_size(capacity: usize) -> usize {
    (capacity / 4).clamp(1, BATCH)
}

thread_local! {
    static ON_REACTOR: Cell<bool> = const { Cell::new(false) };
}

/// `true` on a reactor thread, where blocking waits are refused.
pub(crate) fn on_reactor_thread() -> bool {
    ON_REACTOR.with(Cell::get)
}

/// How a reactor thread ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exit {
    pub(crate) handled: u64,
    pub(crate) drained: u64,
    pub(crate) abandoned: u64,
    pub(crate) failure: Option<DeadLetterReason>,
}

/// Builds a component on its own thread.
pub(crate) type Factory<C> = Arc<dyn Fn() -> C + Send + Sync>;

/// Spawns the reactor thread. It builds the component, runs `start`, and reports the outcome
/// on `started` before handling any message; its last act is to send its [`Exit`] on `done`.
pub(crate) fn spawn<C: Component>(
    core: Core,
    factory: Factory<C>,
    builder: thread::Builder,
    started: Sender<Result<(), String>>,
    done: Sender<Exit>,
) -> std::io::Result<JoinHandle<()>> {
    builder.spawn(move || {
        ON_REACTOR.with(|f| f.set(true));
        core.reactor.mailbox.set_thread(thread::current());
        let exit = run(&core, &factory, &started);
        drop(core);
        let _ = done.send(exit);
    })
}

/// Accounts for what a reactor that never ran holds: marks it finished and dead-letters its
/// queued messages. Returns how many.
pub(crate) fn abandon_unstarted(reactor: &super::Reactor, router: &Arc<dyn super::Router>) -> u64 {
    close_for_good(&reactor.mailbox, &**router, &DeadLetterReason::Stopped)
}

/// Why the component stopped handling messages, with the message it failed on.
struct Failure {
    message: Option<Message>,
    reason: DeadLetterReason,
}

fn run<C: Component>(
    core: &Core,
    factory: &Factory<C>,
    started: &Sender<Result<(), String>>,
) -> Exit {
    let mb = &*core.reactor.mailbox;
    let mut local = Local::<C>::new();
    let mut exit = Exit::default();

    let built = catch_unwind(AssertUnwindSafe(|| {
        let mut comp = factory();
        comp.start(&mut Context {
            core,
            local: &mut local,
        })
        .map(|()| comp)
        .map_err(|e| e.to_string())
    }));
    let mut comp = match built {
        Ok(Ok(c)) => {
            let _ = started.send(Ok(()));
            c
        }
        Ok(Err(reason)) => {
            local.abandon_all();
            return start_failed(core, exit, reason, started);
        }
        Err(p) => {
            local.abandon_all();
            let reason = format!("panicked: {}", panic_message(&*p));
            return start_failed(core, exit, reason, started);
        }
    };

    let batch_max = batch_size(mb.capacity);
    let mut batch: Vec<Task> = Vec::with_capacity(batch_max);
    // Set once the stop request is seen: messages handled from then on are `drained`, and
    // none is started after this deadline.
    let mut drain: Option<Instant> = None;
    let landing = Backoff::new();
    let mut idle = IdlePolicy::default();
    loop {
        let n = mb.pop_batch(&mut batch, batch_max);
        let mut tasks = batch.drain(..);
        let mut handled = 0u64;
        let mut outcome = Ok(());
        for task in tasks.by_ref() {
            if drain.is_none() {
                drain = mb.stop_requested();
            }
            let is_message = matches!(task, Task::Message(_));
            if is_message && drain.is_some_and(|d| Instant::now() >= d) {
                // Past the drain deadline no message is started: it is abandoned like those
                // still queued. Replies and job results still reach their continuations.
                exit.abandoned += u64::from(abandon(
                    &core.reactor.mailbox,
                    &*core.router,
                    task,
                    &DeadLetterReason::Stopped,
                ));
                continue;
            }
            outcome = dispatch(&mut comp, core, &mut local, task);
            if outcome.is_err() {
                break;
            }
            if is_message {
                handled += 1;
                exit.drained += u64::from(drain.is_some());
            }
        }
        let rest: Vec<Task> = tasks.collect();
        exit.handled += handled;
        mb.counters.handled.fetch_add(handled, Ordering::Relaxed);
        if let Err(f) = outcome {
            return fail(core, exit, &mut local, f, rest);
        }
        if !local.timers.is_empty() {
            if let Err(f) = fire_timers(&mut comp, core, &mut local) {
                return fail(core, exit, &mut local, f, Vec::new());
            }
        }

        if drain.is_none() {
            drain = mb.stop_requested();
        }
        if let Some(deadline) = drain {
            if Mailbox::normal_len(mb.state()) == 0 || Instant::now() >= deadline {
                break;
            }
        }
        if n > 0 {
            landing.reset();
            idle.busy();
        } else if Mailbox::has_items(mb.state()) {
            // Admitted but not landed yet: its pusher is between its `fetch_add` and its push
            // (perhaps preempted). Back off rather than spin a core it may need.
            landing.snooze();
        } else if drain.is_none() {
            let timeout = local
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            mb.idle(&mut idle, timeout);
        }
    }

    // Orderly stop.
    let deadline = drain.unwrap_or_else(Instant::now);
    let mut failure = settle(&mut comp, core, &mut local, &mut exit, deadline)
        .err()
        .map(|f| f.reason);
    if failure.is_none() {
        let r = catch_unwind(AssertUnwindSafe(|| {
            comp.stop(&mut Context {
                core,
                local: &mut local,
            })
        }));
        if let Err(p) = r {
            failure = Some(DeadLetterReason::Panicked(panic_message(&*p)));
        }
    }
    if failure.is_some() {
        mb.counters.failures.fetch_add(1, Ordering::Relaxed);
    }
    local.abandon_all();
    exit.failure = failure;
    finish(core, exit, DeadLetterReason::Stopped)
}

/// The first steps of an orderly stop, before `Component::stop`: replies and job results
/// already queued reach their continuations (messages still queued, left by the drain
/// deadline, are abandoned); then every continuation still waiting stops waiting and gets
/// `Err(Stopped)`, except those whose outcome is already on its way, which get that outcome.
/// New requests and jobs are refused from here on, so this ends.
fn settle<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    exit: &mut Exit,
    drain_deadline: Instant,
) -> Result<(), Failure> {
    let mb = &core.reactor.mailbox;
    // From here on `Context::request` and `spawn_blocking` answer `Stopped`: continuations
    // that ask again cannot keep the reactor alive.
    local.settling = true;
    let cutoff = drain_deadline.max(Instant::now()) + Duration::from_millis(100);
    let mut buf = Vec::new();
    let mut run_queued =
        |comp: &mut C, local: &mut Local<C>, exit: &mut Exit| -> Result<usize, Failure> {
            let n = mb.pop_batch(&mut buf, BATCH);
            let mut tasks = buf.drain(..);
            while let Some(task) = tasks.next() {
                if let Task::Message(m) = task {
                    exit.abandoned += 1;
                    dead_letter(
                        &core.reactor.mailbox,
                        &*core.router,
                        m,
                        DeadLetterReason::Stopped,
                    );
                } else if let Err(f) = dispatch(comp, core, local, task) {
                    for t in tasks {
                        exit.abandoned +=
                            u64::from(abandon(&core.reactor.mailbox, &*core.router, t, &f.reason));
                    }
                    return Err(f);
                }
            }
            Ok(n)
        };
    while run_queued(comp, local, exit)? > 0 && Instant::now() < cutoff {}

    // No new request can be made now, so this ends once the outcomes already in flight have
    // landed; the cutoff bounds even that.
    let landing = Backoff::new();
    let mut first_round = true;
    while !local.pending.is_empty() && (first_round || Instant::now() < cutoff) {
        first_round = false;
        let mut ids: Vec<u64> = local.pending.keys().copied().collect();
        ids.sort_unstable();
        let mut in_flight = false;
        for id in ids {
            let Some(p) = local.take(id) else { continue };
            if p.ticket.abandon() {
                let stopped = Error::Stopped {
                    target: mb.name.clone(),
                    rejected: (),
                };
                run_cont(comp, core, local, p.cont, stopped)?;
            } else {
                local.restore(id, p);
                in_flight = true;
            }
        }
        if in_flight && run_queued(comp, local, exit)? == 0 {
            landing.snooze();
        }
    }
    Ok(())
}

fn start_failed(
    core: &Core,
    exit: Exit,
    reason: String,
    started: &Sender<Result<(), String>>,
) -> Exit {
    let _ = started.send(Err(reason.clone()));
    let mut exit = finish(core, exit, DeadLetterReason::Stopped);
    exit.failure = Some(DeadLetterReason::Failed(reason));
    exit
}

/// Runs one task. `Err` means the component failed and must stop.
fn dispatch<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    task: Task,
) -> Result<(), Failure> {
    match task {
        Task::Message(msg) => {
            // Kept so the message can be dead-lettered if the handler fails. Only the envelope:
            // the payload is the handler's to take (see `DeadLetter::message`).
            let keep = msg.envelope();
            let r = catch_unwind(AssertUnwindSafe(|| {
                comp.handle(msg, &mut Context { core, local })
            }));
            match r {
                Ok(Ok(())) => Ok(()),
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
            Some(p) => run_cont(comp, core, local, p.cont, outcome),
            None => {
                late_reply(&core.reactor.mailbox, &*core.router, outcome);
                Ok(())
            }
        },
        Task::Job { id, outcome } => match local.take(id) {
            Some(p) => run_cont(comp, core, local, p.cont, outcome),
            None => {
                let mb = &core.reactor.mailbox;
                mb.counters.late_jobs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        },
    }
}

/// An outcome a continuation can take: a reply or a job result.
trait Outcome {
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

fn run_cont<C: Component, O: Outcome>(
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

fn fire_timers<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
) -> Result<(), Failure> {
    let now = Instant::now();
    while let Some((&(at, id), ())) = local.timers.first_key_value() {
        if at > now {
            break;
        }
        let Some(p) = local.take(id) else { continue };
        if p.ticket.abandon() {
            let after = p.deadline.map_or(Duration::ZERO, |(_, d)| d);
            run_cont(comp, core, local, p.cont, Error::Timeout { after })?;
        } else {
            // The outcome was taken for delivery before the deadline: it is in the mailbox,
            // or will be within a few instructions, and goes to the continuation then.
            local.restore(id, p);
        }
    }
    Ok(())
}

/// A reply nobody waits for any more, found on the reactor's side: counted and dead-lettered
/// exactly as when the deliverer finds it (a bare "no reply" notice is not a reply).
fn late_reply(mb: &Mailbox, router: &dyn Router, outcome: Result<Message, Error>) {
    if let Ok(reply) = outcome {
        mb.counters.late_replies.fetch_add(1, Ordering::Relaxed);
        if let Some(late) = router.late().upgrade() {
            late.late_reply(reply, Some(mb.name.clone()));
        }
    }
}

/// The component failed: dead-letter the message it failed on and everything still queued.
/// Waiting continuations are dropped uncalled, their places given back.
fn fail<C: Component>(
    core: &Core,
    mut exit: Exit,
    local: &mut Local<C>,
    f: Failure,
    rest: Vec<Task>,
) -> Exit {
    let mb = &core.reactor.mailbox;
    local.abandon_all();
    mb.counters.failures.fetch_add(1, Ordering::Relaxed);
    mb.set_flag(CLOSED);
    if let Some(m) = f.message {
        exit.abandoned += 1;
        dead_letter(&core.reactor.mailbox, &*core.router, m, f.reason.clone());
    }
    for task in rest {
        exit.abandoned += u64::from(abandon(
            &core.reactor.mailbox,
            &*core.router,
            task,
            &f.reason,
        ));
    }
    let mut exit = finish(core, exit, f.reason.clone());
    exit.failure = Some(f.reason);
    exit
}

/// The thread's last act: refuse everything, then account for what is left.
fn finish(core: &Core, mut exit: Exit, reason: DeadLetterReason) -> Exit {
    exit.abandoned += close_for_good(&core.reactor.mailbox, &*core.router, &reason);
    exit
}

/// Sets DEAD, so nothing more is admitted, and accounts for every task still queued.
/// Returns how many bus messages were abandoned.
fn close_for_good(mb: &Mailbox, router: &dyn Router, reason: &DeadLetterReason) -> u64 {
    mb.set_flag(DEAD | CLOSED);
    let mut abandoned = 0;
    mb.drain_dead(|task| abandoned += u64::from(abandon(mb, router, task, reason)));
    abandoned
}

/// Accounts for a task that will not be handled; `true` if it was a bus message.
fn abandon(mb: &Mailbox, router: &dyn Router, task: Task, reason: &DeadLetterReason) -> bool {
    match task {
        Task::Message(m) => {
            dead_letter(mb, router, m, reason.clone());
            true
        }
        Task::Reply { outcome, .. } => {
            late_reply(mb, router, outcome);
            false
        }
        Task::Job { .. } => {
            mb.counters.late_jobs.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

fn dead_letter(mb: &Mailbox, router: &dyn Router, mut m: Message, reason: DeadLetterReason) {
    mb.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    // A request that will not be handled: tell the requester now rather than at its timeout.
    if let Some(r) = m.take_reply_handle() {
        let _ = r.fail(Error::NoReply {
            reason: format!("`{}`: {reason}", mb.name),
        });
    }
    router.dead_letter(m, reason, Some(mb.name.clone()));
}
