//! The reactor thread's life: it builds an instance, runs it until it ends, and then either
//! ends too or waits for its supervisor's word and builds the next. See "One thread, many
//! instances" in `README.md` beside this file.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};

use crossbeam::channel::Sender;

use super::context::{Component, Context, Local, Restarted};
use super::dispatch::{abandon, down_reason, end_instance, log_failure};
use super::instance::run_instance;
use super::mailbox::{Control, Mailbox, Task, CLOSED, DEAD};
use super::state::{Core, Exit};
use super::stop::End;
use super::InstanceDown;
use crate::logs;
use crate::types::{
    mark_reactor_thread, panic_message, DeadLetterReason, DownReason, Message, Wake,
};

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
        mark_reactor_thread();
        let exit = {
            // Entered for the thread's whole life: every event on this thread, the runtime's
            // and the component's own, carries the component's name. Made with the mailbox,
            // on the deploying thread (see `Mailbox::span`).
            let _entered = core.reactor.mailbox.span.enter();
            core.reactor.mailbox.set_thread(thread::current());
            let me: Weak<dyn Wake> = Arc::downgrade(&core.reactor.mailbox) as _;
            core.settings.clock.register(me);
            let exit = match catch_unwind(AssertUnwindSafe(|| run(&core, &factory, &started))) {
                Ok(exit) => exit,
                Err(p) => {
                    // Component code runs under its own `catch_unwind`: this is the runtime's
                    // own panic (a bug). Reported here too: `set_panic_hook` keeps it quiet.
                    tracing::error!(
                        target: logs::REACTOR,
                        reason = %panic_message(&*p),
                        "reactor thread panicked outside component code"
                    );
                    resume_unwind(p)
                }
            };
            log_exit(&exit, &core.reactor.mailbox);
            exit
        };
        drop(core);
        let _ = done.send(exit);
    })
}

/// The thread's last event: how its component's life ended.
fn log_exit(exit: &Exit, mb: &Mailbox) {
    let handled = mb.tally.handled_count();
    let abandoned = mb.counters.abandoned.load(Ordering::Relaxed);
    match &exit.failure {
        None => tracing::info!(
            target: logs::REACTOR,
            handled,
            drained = mb.tally.drained_count(),
            abandoned,
            "component stopped"
        ),
        Some(r) => tracing::warn!(
            target: logs::REACTOR,
            reason = %down_reason(r),
            handled,
            abandoned,
            "component stopped after a failure"
        ),
    }
}

/// Reports a component whose factory or `start` failed (or panicked).
fn log_start_failure(reason: &str) {
    tracing::error!(target: logs::REACTOR, reason, "component failed to start");
}

/// Accounts for what a reactor that never ran holds: marks it finished and dead-letters its
/// queued messages (counted as abandoned).
pub(crate) fn abandon_unstarted(reactor: &super::Reactor) {
    close_for_good(&reactor.mailbox, &DeadLetterReason::Stopped);
}

/// Dead-letters the messages queued for a reactor whose thread `stop` gave up on (a handler,
/// continuation or `stop` that has not returned by its drain deadline plus the grace): past
/// that deadline the thread would abandon them anyway once it returns, and this way they are
/// accounted for (counted as abandoned), and reach the dead-letter subscribers, before `stop`
/// returns. The thread itself still owns what it had taken out of the mailbox.
pub(crate) fn abandon_queued(reactor: &super::Reactor) {
    let mb = &*reactor.mailbox;
    mb.take_messages(|m| mb.abandon_message(m, DeadLetterReason::Stopped));
}

/// What an instance that went down waits for.
enum Next {
    Restart(Sender<Result<(), String>>),
    Exit(DeadLetterReason, DownReason),
}

/// Builds an instance and runs its `start`, and, for a restarted one, its `restarted`.
fn build<C: Component>(
    core: &Core,
    factory: &Factory<C>,
    local: &mut Local<C>,
    restarted: Option<&Restarted>,
) -> Result<C, String> {
    let built = catch_unwind(AssertUnwindSafe(|| {
        let mut comp = factory();
        comp.start(&mut Context { core, local })
            .map_err(|e| e.to_string())?;
        if let Some(r) = restarted {
            comp.restarted(r, &mut Context { core, local })
                .map_err(|e| format!("restarted: {e}"))?;
        }
        Ok(comp)
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
    // What the next instance's `restarted` is told; `None` for the first instance.
    let mut restarted: Option<Restarted> = None;
    loop {
        local.reset();
        let down = match build(core, factory, &mut local, restarted.as_ref()) {
            Ok(mut comp) => {
                match restart_ack.take() {
                    Some(ack) => {
                        tracing::info!(
                            target: logs::REACTOR,
                            restarts = mb.counters.restarts.load(Ordering::Relaxed),
                            "component restarted"
                        );
                        let _ = ack.send(Ok(()));
                    }
                    None => {
                        tracing::info!(target: logs::REACTOR, "component started");
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
                        restarted = Some(Restarted::new(DownReason::Shutdown));
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
                        end_instance(core, &mut local, &f.reason);
                        mb.counters.failures.fetch_add(1, Ordering::Relaxed);
                        log_failure(&f.reason, f.message.as_ref().map(Message::topic));
                        if let Some(m) = f.message {
                            mb.abandon_message(m, f.reason.clone());
                        }
                        let down = down_reason(&f.reason);
                        if !core.settings.await_after_failure {
                            // Never restarted: refuse new messages now, account for the rest.
                            mb.set_flag(CLOSED);
                            for task in rest {
                                abandon(mb, task, &f.reason);
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
                end_instance(core, &mut local, &DeadLetterReason::Failed(reason.clone()));
                let Some(ack) = restart_ack.take() else {
                    return start_failed(core, exit, reason, started);
                };
                mb.counters.failures.fetch_add(1, Ordering::Relaxed);
                log_start_failure(&reason);
                let _ = ack.send(Err(reason.clone()));
                exit.failure = Some(DeadLetterReason::Failed(reason.clone()));
                Some(DownReason::Failed(format!("start failed: {reason}")))
            }
        };
        if let Some(reason) = down {
            restarted = Some(Restarted::new(reason.clone()));
            report(core, reason, true);
        }
        match await_command(mb) {
            Next::Restart(ack) => {
                mb.reopen();
                let restarts = mb.counters.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(r) = &mut restarted {
                    r.restarts = restarts;
                    r.timers_dropped = local.timers_dropped;
                }
                exit.failure = None;
                restart_ack = Some(ack);
            }
            Next::Exit(dl, down) => {
                for task in carry.drain(..) {
                    abandon(mb, task, &dl);
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

fn start_failed(
    core: &Core,
    exit: Exit,
    reason: String,
    started: &Sender<Result<(), String>>,
) -> Exit {
    log_start_failure(&reason);
    let _ = started.send(Err(reason.clone()));
    let mut exit = finish(core, exit, DeadLetterReason::Stopped);
    exit.failure = Some(DeadLetterReason::Failed(reason));
    exit
}

/// The thread's last act: refuse everything, then account for what is left.
fn finish(core: &Core, exit: Exit, reason: DeadLetterReason) -> Exit {
    close_for_good(&core.reactor.mailbox, &reason);
    exit
}

/// Sets DEAD, so nothing more is admitted, and accounts for every task still queued.
fn close_for_good(mb: &Mailbox, reason: &DeadLetterReason) {
    mb.set_flag(DEAD | CLOSED);
    mb.drain_dead(|task| abandon(mb, task, reason));
}
