//! One instance's run loop: pop a batch, run it, take the supervisor's commands, fire due
//! timers, then wait for more, until a stop, a command or a failure ends it. See "The run
//! loop" in `README.md` beside this file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crossbeam::channel::Sender;
use crossbeam::utils::Backoff;

use super::context::{Component, Context, Local};
use super::dispatch::{abandon, callback_outcome, dispatch, fire_timers, Failure};
use super::idle::IdlePolicy;
use super::mailbox::{batch_size, Control, Mailbox, Task};
use super::state::{Core, Exit};
use super::stop::{stop_instance, End, Leaving};
use crate::types::DeadLetterReason;

/// The run loop's state, for one instance.
struct Loop {
    /// Tasks taken out of the mailbox and not yet run (reused: no allocation per batch).
    batch: Vec<Task>,
    batch_max: usize,
    /// Set once the stop request is seen: messages handled from then on are `drained`, and
    /// none is started after this deadline.
    drain: Option<Instant>,
    suspend: Option<Sender<()>>,
    exit_for_good: Option<DeadLetterReason>,
    landing: Backoff,
    idle: IdlePolicy,
}

/// Runs one instance until it ends. `carry`: tasks to run first (left by a failed instance).
pub(super) fn run_instance<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    exit: &mut Exit,
    carry: &mut Vec<Task>,
) -> End {
    let mb = &*core.reactor.mailbox;
    let mut lp = Loop {
        batch: std::mem::take(carry),
        batch_max: batch_size(mb.capacity),
        drain: None,
        suspend: None,
        exit_for_good: None,
        landing: Backoff::new(),
        idle: IdlePolicy::default(),
    };
    rearm_idle(core, local);
    loop {
        let n = if lp.batch.is_empty() {
            mb.pop_batch(&mut lp.batch, lp.batch_max)
        } else {
            lp.batch.len()
        };
        if let Err(failed) = run_batch(comp, core, local, &mut lp) {
            let (f, rest) = *failed;
            return End::Failed(f, rest);
        }
        if let Err(f) = take_commands(comp, core, local, &mut lp) {
            return End::Failed(f, Vec::new());
        }
        if lp.suspend.is_some() || lp.exit_for_good.is_some() {
            break;
        }
        if local.next_deadline().is_some() {
            if let Err(f) = fire_timers(comp, core, local) {
                return End::Failed(f, Vec::new());
            }
        }
        if drained(core, local, &mut lp) {
            break;
        }
        wait(core, local, &mut lp, n);
    }
    let leaving = Leaving {
        drain: lp.drain,
        suspend: lp.suspend,
        exit_for_good: lp.exit_for_good,
    };
    stop_instance(comp, core, local, exit, leaving, carry)
}

/// Arms the idle timeout, if the component has one, from now.
fn rearm_idle<C: Component>(core: &Core, local: &mut Local<C>) {
    if let Some(d) = core.settings.idle_timeout {
        local.idle_at = Some(core.settings.clock.now() + d);
    }
}

/// Runs the tasks in `lp.batch`: the drain deadline is checked before each message (past it,
/// messages are abandoned; replies and job results still run). On a failure, the tasks not
/// run come back with it (boxed: a rare path). Each message is counted as it is run (in
/// `dispatch`), so a handler that never returns leaves the count right up to it.
fn run_batch<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    lp: &mut Loop,
) -> Result<(), Box<(Failure, Vec<Task>)>> {
    let mb = &*core.reactor.mailbox;
    let mut tasks = lp.batch.drain(..);
    let mut messages = 0u64;
    let mut outcome = Ok(true);
    for task in tasks.by_ref() {
        if lp.drain.is_none() {
            lp.drain = mb.stop_requested();
            local.draining = lp.drain.is_some();
        }
        let is_message = matches!(task, Task::Message(_));
        if is_message && lp.drain.is_some_and(|d| Instant::now() >= d) {
            // Past the drain deadline no message is started: it is abandoned like those
            // still queued. Replies and job results still reach their continuations.
            abandon(mb, task, &DeadLetterReason::Stopped);
            continue;
        }
        outcome = dispatch(comp, core, local, task);
        if outcome.is_err() {
            break;
        }
        messages += u64::from(is_message);
        if local.stop_self && lp.drain.is_none() {
            lp.drain = Some(Instant::now() + core.settings.drain_timeout);
            local.draining = true;
        }
    }
    let rest: Vec<Task> = tasks.collect();
    if let Err(f) = outcome {
        return Err(Box::new((f, rest)));
    }
    if messages > 0 {
        rearm_idle(core, local);
    }
    Ok(())
}

/// Takes the commands waiting: a watched component's `Down` runs `Component::down` now; a
/// supervisor's `Suspend` or `Exit` ends the loop after this batch.
fn take_commands<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    lp: &mut Loop,
) -> Result<(), Failure> {
    for c in core.reactor.mailbox.take_commands() {
        match c {
            Control::Down(d) => {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    comp.down(d, &mut Context { core, local })
                }));
                callback_outcome(r)?;
            }
            Control::Suspend(ack) => lp.suspend = Some(ack),
            Control::Exit(dl) => lp.exit_for_good = Some(dl),
            // Running already.
            Control::Restart(ack) => {
                let _ = ack.send(Ok(()));
            }
            Control::Tick => {}
        }
    }
    Ok(())
}

/// Notes a stop (the runtime's, or the instance's own) and says whether the drain is over:
/// no message admitted any more, or the drain deadline passed.
fn drained<C: Component>(core: &Core, local: &mut Local<C>, lp: &mut Loop) -> bool {
    let mb = &*core.reactor.mailbox;
    if lp.drain.is_none() {
        lp.drain = mb.stop_requested();
        if lp.drain.is_none() && local.stop_self {
            lp.drain = Some(Instant::now() + core.settings.drain_timeout);
        }
        local.draining = lp.drain.is_some();
    }
    lp.drain
        .is_some_and(|deadline| Mailbox::normal_len(mb.state()) == 0 || Instant::now() >= deadline)
}

/// After a pass that found `n` tasks: go round at once if it found some; back off while a
/// push is admitted but not landed; otherwise wait (spin, yield, sleep) until a push, a
/// command or the next timer. A draining reactor does not sleep.
fn wait<C: Component>(core: &Core, local: &Local<C>, lp: &mut Loop, n: usize) {
    let mb = &*core.reactor.mailbox;
    if n > 0 {
        lp.landing.reset();
        lp.idle.busy();
    } else if Mailbox::has_items(mb.state()) {
        // Admitted but not landed yet: its pusher is between its `fetch_add` and its push
        // (perhaps preempted). Back off rather than spin a core it may need.
        lp.landing.snooze();
    } else if lp.drain.is_none() {
        let timeout = local
            .next_deadline()
            .and_then(|d| core.settings.clock.park_for(d));
        lp.idle.wait(mb, timeout);
    }
}
