//! The reactor thread: start, run loop, drain, stop. See `README.md` beside this file.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use crossbeam::utils::Backoff;

use super::context::{Component, Cont, Context, Core, Local};
use super::mailbox::{Control, IdlePolicy, Mailbox, Task, CLOSED, DEAD};
use super::timer::{next_period, Action, Entry};
use super::{InstanceDown, OnError};
use crate::types::{panic_message, BoxError, DeadLetterReason, DownReason, Error, Message, Wake};

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
        let me: Weak<dyn Wake> = Arc::downgrade(&core.reactor.mailbox) as _;
        core.settings.clock.register(me);
        let exit = run(&core, &factory, &started);
        drop(core);
        let _ = done.send(exit);
    })
}

/// Accounts for what a reactor that never ran holds: marks it finished and dead-letters its
/// queued messages. Returns how many.
pub(crate) fn abandon_unstarted(reactor: &super::Reactor) -> u64 {
    close_for_good(&reactor.mailbox, &DeadLetterReason::Stopped)
}

/// Dead-letters the messages queued for a reactor whose thread `stop` gave up on (a handler,
/// continuation or `stop` that has not returned by its drain deadline plus the grace): past
/// that deadline the thread would abandon them anyway once it returns, and this way they are
/// accounted for, and reach the dead-letter subscribers, before `stop` returns. Returns how
/// many. The thread itself still owns what it had taken out of the mailbox.
pub(crate) fn abandon_queued(reactor: &super::Reactor) -> u64 {
    let mb = &*reactor.mailbox;
    let mut abandoned = 0;
    mb.take_messages(|m| {
        abandoned += 1;
        mb.dead_letter(m, DeadLetterReason::Stopped);
    });
    abandoned
}

/// Why the component stopped handling messages, with the message it failed on.
struct Failure {
    message: Option<Message>,
    reason: DeadLetterReason,
}

/// How an instance's life ended.
enum End {
    /// The runtime asked the reactor to stop: the instance was stopped in order.
    Shutdown,
    /// The instance stopped itself ([`Context::stop`]) and was stopped in order.
    Normal,
    /// The instance failed. `rest`: the tasks it had taken out but not run.
    Failed(Failure, Vec<Task>),
    /// Its supervisor stopped it for a restart: stopped in order, queued messages kept.
    Suspended(Sender<()>),
    /// Its supervisor stopped it for good: stopped in order.
    Exit(DeadLetterReason),
}

/// What an instance that went down waits for.
enum Next {
    Restart(Sender<Result<(), String>>),
    Exit(DeadLetterReason, DownReason),
}

fn build<C: Component>(
    core: &Core,
    factory: &Factory<C>,
    local: &mut Local<C>,
) -> Result<C, String> {
    let built = catch_unwind(AssertUnwindSafe(|| {
        let mut comp = factory();
        comp.start(&mut Context { core, local })
            .map(|()| comp)
            .map_err(|e| e.to_string())
    }));
    match built {
        Ok(r) => r,
        Err(p) => Err(format!("panicked: {}", panic_message(&*p))),
    }
}

/// The reactor thread's life: instance after instance, until the runtime stops it or its
/// supervisor gives up on it. See "Restarts" in README.md.
fn run<C: Component>(
    core: &Core,
    factory: &Factory<C>,
    started: &Sender<Result<(), String>>,
) -> Exit {
    let mb = &*core.reactor.mailbox;
    let mut local = Local::<C>::new();
    let mut exit = Exit::default();
    // Tasks a failed instance had taken out but not run: the next instance runs them first.
    let mut carry: Vec<Task> = Vec::new();
    let mut restart_ack: Option<Sender<Result<(), String>>> = None;
    loop {
        local.reset();
        let down = match build(core, factory, &mut local) {
            Ok(mut comp) => {
                match restart_ack.take() {
                    Some(ack) => {
                        let _ = ack.send(Ok(()));
                    }
                    None => {
                        let _ = started.send(Ok(()));
                    }
                }
                let end = run_instance(&mut comp, core, &mut local, &mut exit, &mut carry);
                drop(comp);
                match end {
                    End::Shutdown => {
                        let reason = exit_down_reason(&exit);
                        let exit = finish(core, exit, DeadLetterReason::Stopped);
                        report(core, reason, false);
                        return exit;
                    }
                    End::Exit(dl) => {
                        let exit = finish(core, exit, dl);
                        report(core, DownReason::Shutdown, false);
                        return exit;
                    }
                    End::Suspended(ack) => {
                        // The supervisor tells the watchers: it knows what comes next.
                        let _ = ack.send(());
                        None
                    }
                    End::Normal if !core.settings.await_after_normal => {
                        let reason = exit
                            .failure
                            .as_ref()
                            .map_or(DownReason::Normal, down_reason);
                        let exit = finish(core, exit, DeadLetterReason::Stopped);
                        report(core, reason, false);
                        return exit;
                    }
                    End::Normal => Some(DownReason::Normal),
                    End::Failed(f, rest) => {
                        // The instance's continuations and timers die with it: places go
                        // back, and a new instance never runs an old one's callbacks.
                        local.abandon_all();
                        mb.counters.failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(m) = f.message {
                            exit.abandoned += 1;
                            mb.dead_letter(m, f.reason.clone());
                        }
                        let down = down_reason(&f.reason);
                        if !core.settings.await_after_failure {
                            // Never restarted: refuse new messages now, account for the rest.
                            mb.set_flag(CLOSED);
                            for task in rest {
                                exit.abandoned += u64::from(abandon(mb, task, &f.reason));
                            }
                            let mut exit = finish(core, exit, f.reason.clone());
                            exit.failure = Some(f.reason);
                            report(core, down, false);
                            return exit;
                        }
                        carry = rest;
                        exit.failure = Some(f.reason);
                        Some(down)
                    }
                }
            }
            Err(reason) => {
                local.abandon_all();
                let Some(ack) = restart_ack.take() else {
                    return start_failed(core, exit, reason, started);
                };
                mb.counters.failures.fetch_add(1, Ordering::Relaxed);
                let _ = ack.send(Err(reason.clone()));
                exit.failure = Some(DeadLetterReason::Failed(reason.clone()));
                Some(DownReason::Failed(format!("start failed: {reason}")))
            }
        };
        if let Some(reason) = down {
            report(core, reason, true);
        }
        match await_command(mb) {
            Next::Restart(ack) => {
                mb.reopen();
                mb.counters.restarts.fetch_add(1, Ordering::Relaxed);
                exit.failure = None;
                restart_ack = Some(ack);
            }
            Next::Exit(dl, down) => {
                for task in carry.drain(..) {
                    exit.abandoned += u64::from(abandon(mb, task, &dl));
                }
                let mut exit = finish(core, exit, dl.clone());
                if down.is_failure() {
                    exit.failure = Some(dl);
                }
                report(core, down, false);
                return exit;
            }
        }
    }
}

/// Tells the supervisor an instance went down (`awaiting`: the reactor waits for its word).
fn report(core: &Core, reason: DownReason, awaiting: bool) {
    core.system.down(InstanceDown {
        name: core.reactor.mailbox.name.clone(),
        reason,
        awaiting,
        at: core.settings.clock.now(),
    });
}

fn down_reason(reason: &DeadLetterReason) -> DownReason {
    match reason {
        DeadLetterReason::Panicked(m) => DownReason::Panicked(m.clone()),
        DeadLetterReason::Failed(m) => DownReason::Failed(m.clone()),
        _ => DownReason::Shutdown,
    }
}

/// The reason a stop by the runtime reports: a panic in `stop` makes it a failure.
fn exit_down_reason(exit: &Exit) -> DownReason {
    exit.failure
        .as_ref()
        .map_or(DownReason::Shutdown, down_reason)
}

/// Waits, with no instance running, for the supervisor's word or the runtime's stop.
fn await_command(mb: &Mailbox) -> Next {
    loop {
        if mb.stop_requested().is_some() {
            return Next::Exit(DeadLetterReason::Stopped, DownReason::Shutdown);
        }
        for c in mb.take_commands() {
            match c {
                Control::Restart(ack) => return Next::Restart(ack),
                Control::Exit(dl) => {
                    let down = down_reason(&dl);
                    return Next::Exit(dl, down);
                }
                // Down already; a watch notice has no instance to go to (watches end with the
                // instance that made them).
                Control::Suspend(ack) => {
                    let _ = ack.send(());
                }
                Control::Down(_) | Control::Tick => {}
            }
        }
        mb.wait_signal(None);
    }
}

/// Runs one instance until it ends. `carry`: tasks to run first (left by a failed instance).
fn run_instance<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    exit: &mut Exit,
    carry: &mut Vec<Task>,
) -> End {
    let mb = &*core.reactor.mailbox;
    let settings = &core.settings;
    let batch_max = batch_size(mb.capacity);
    let mut batch: Vec<Task> = std::mem::take(carry);
    // Set once the stop request is seen: messages handled from then on are `drained`, and
    // none is started after this deadline.
    let mut drain: Option<Instant> = None;
    let mut suspend: Option<Sender<()>> = None;
    let mut exit_for_good: Option<DeadLetterReason> = None;
    let landing = Backoff::new();
    let mut idle = IdlePolicy::default();
    if let Some(d) = settings.idle_timeout {
        local.idle_at = Some(settings.clock.now() + d);
    }
    loop {
        let n = if batch.is_empty() {
            mb.pop_batch(&mut batch, batch_max)
        } else {
            batch.len()
        };
        let mut tasks = batch.drain(..);
        let mut handled = 0u64;
        let mut messages = 0u64;
        let mut outcome = Ok(true);
        for task in tasks.by_ref() {
            if drain.is_none() {
                drain = mb.stop_requested();
            }
            let is_message = matches!(task, Task::Message(_));
            if is_message && drain.is_some_and(|d| Instant::now() >= d) {
                // Past the drain deadline no message is started: it is abandoned like those
                // still queued. Replies and job results still reach their continuations.
                exit.abandoned += u64::from(abandon(mb, task, &DeadLetterReason::Stopped));
                continue;
            }
            outcome = dispatch(comp, core, local, task);
            match outcome {
                Err(_) => break,
                Ok(done) if is_message => {
                    messages += 1;
                    if done {
                        handled += 1;
                        exit.drained += u64::from(drain.is_some());
                    } else {
                        exit.abandoned += 1;
                    }
                }
                Ok(_) => {}
            }
            if local.stop_self && drain.is_none() {
                drain = Some(Instant::now() + settings.drain_timeout);
            }
        }
        let rest: Vec<Task> = tasks.collect();
        exit.handled += handled;
        mb.counters.handled.fetch_add(handled, Ordering::Relaxed);
        if let Err(f) = outcome {
            return End::Failed(f, rest);
        }
        if messages > 0 {
            if let Some(d) = settings.idle_timeout {
                local.idle_at = Some(settings.clock.now() + d);
            }
        }
        for c in mb.take_commands() {
            match c {
                Control::Down(d) => {
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        comp.down(d, &mut Context { core, local })
                    }));
                    if let Err(f) = callback_outcome(r) {
                        return End::Failed(f, Vec::new());
                    }
                }
                Control::Suspend(ack) => suspend = Some(ack),
                Control::Exit(dl) => exit_for_good = Some(dl),
                // Running already.
                Control::Restart(ack) => {
                    let _ = ack.send(Ok(()));
                }
                Control::Tick => {}
            }
        }
        if suspend.is_some() || exit_for_good.is_some() {
            break;
        }
        if local.next_deadline().is_some() {
            if let Err(f) = fire_timers(comp, core, local) {
                return End::Failed(f, Vec::new());
            }
        }

        if drain.is_none() {
            drain = mb.stop_requested();
            if drain.is_none() && local.stop_self {
                drain = Some(Instant::now() + settings.drain_timeout);
            }
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
                .and_then(|d| settings.clock.park_for(d));
            mb.idle(&mut idle, timeout);
        }
    }

    // Orderly stop of this instance. A suspended one keeps its queued messages for the next.
    let keep = suspend.is_some().then_some(&mut *carry);
    let deadline = drain.unwrap_or_else(Instant::now);
    let mut failure = settle(comp, core, local, exit, deadline, keep)
        .err()
        .map(|f| f.reason);
    if failure.is_none() {
        let r = catch_unwind(AssertUnwindSafe(|| comp.stop(&mut Context { core, local })));
        if let Err(p) = r {
            failure = Some(DeadLetterReason::Panicked(panic_message(&*p)));
        }
    }
    if failure.is_some() {
        mb.counters.failures.fetch_add(1, Ordering::Relaxed);
    }
    local.abandon_all();
    exit.failure = failure;
    if let Some(ack) = suspend {
        End::Suspended(ack)
    } else if let Some(dl) = exit_for_good {
        End::Exit(dl)
    } else if mb.stop_requested().is_some() || !local.stop_self {
        End::Shutdown
    } else {
        End::Normal
    }
}

/// A component callback's result as a failure, if it was one.
fn callback_outcome(r: std::thread::Result<Result<(), BoxError>>) -> Result<(), Failure> {
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

/// The first steps of an orderly stop, before `Component::stop`: replies and job results
/// already queued reach their continuations (messages still queued, left by the drain
/// deadline, are abandoned); then every continuation still waiting stops waiting and gets
/// `Err(Stopped)`, except those whose outcome is already on its way, which get that outcome.
/// New requests and jobs are refused from here on, so this ends.
///
/// `keep`: where queued messages go instead of the dead-letter topic (a suspended instance's
/// messages wait for the next instance).
fn settle<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    exit: &mut Exit,
    drain_deadline: Instant,
    mut keep: Option<&mut Vec<Task>>,
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
                    match keep.as_deref_mut() {
                        Some(kept) => kept.push(Task::Message(m)),
                        None => {
                            exit.abandoned += 1;
                            mb.dead_letter(m, DeadLetterReason::Stopped);
                        }
                    }
                } else if let Err(f) = dispatch(comp, core, local, task) {
                    for t in tasks {
                        exit.abandoned += u64::from(abandon(mb, t, &f.reason));
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

/// Runs one task. `Err` means the instance failed and must go down; `Ok(false)`, a message
/// whose handler's error was dead-lettered under [`OnError::Continue`].
fn dispatch<C: Component>(
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

/// Runs what is due: timers, deadlines, then the idle timeout.
///
/// On a manual clock, everything run here sees `now`, the instant read once at the top, as
/// [`Context::now`]: a test that waits for one callback's effect may move the clock on at
/// once, while this pass still runs the rest of what was due (the idle callback comes after
/// the timers due at the same instant); those must not see the later time.
fn fire_timers<C: Component>(
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
                        core.router.request_timed_out();
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
fn late_reply(mb: &Mailbox, outcome: Result<Message, Error>) {
    if let Ok(reply) = outcome {
        mb.counters.late_replies.fetch_add(1, Ordering::Relaxed);
        mb.late_reply(reply);
    }
}

/// The thread's last act: refuse everything, then account for what is left.
fn finish(core: &Core, mut exit: Exit, reason: DeadLetterReason) -> Exit {
    exit.abandoned += close_for_good(&core.reactor.mailbox, &reason);
    exit
}

/// Sets DEAD, so nothing more is admitted, and accounts for every task still queued.
/// Returns how many bus messages were abandoned.
fn close_for_good(mb: &Mailbox, reason: &DeadLetterReason) -> u64 {
    mb.set_flag(DEAD | CLOSED);
    let mut abandoned = 0;
    mb.drain_dead(|task| abandoned += u64::from(abandon(mb, task, reason)));
    abandoned
}

/// Accounts for a task that will not be handled; `true` if it was a bus message.
fn abandon(mb: &Mailbox, task: Task, reason: &DeadLetterReason) -> bool {
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
