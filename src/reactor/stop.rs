//! The orderly stop of an instance: settle (queued outcomes reach their continuations, every
//! continuation still waiting gets `Stopped`), then `Component::stop`. See "Stop and exit" in
//! `README.md` beside this file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use crossbeam::utils::Backoff;

use super::context::{Component, Context, Local};
use super::dispatch::{abandon, dispatch, end_instance, log_failure, run_cont, Failure};
use super::mailbox::{Task, BATCH};
use super::state::{Core, Exit};
use crate::types::{panic_message, DeadLetterReason, Error};

/// How an instance's life ended.
pub(super) enum End {
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

/// How the run loop left: the drain deadline it set (if a stop was seen), and a supervisor's
/// command, if one ended it.
pub(super) struct Leaving {
    pub(super) drain: Option<Instant>,
    pub(super) suspend: Option<Sender<()>>,
    pub(super) exit_for_good: Option<DeadLetterReason>,
}

/// Stops the instance in order, after its run loop has ended: settles, calls `stop` (a panic
/// there is the instance's failure), and says how its life ended. A suspended instance's
/// queued messages go to `carry`, for the next instance.
pub(super) fn stop_instance<C: Component>(
    comp: &mut C,
    core: &Core,
    local: &mut Local<C>,
    exit: &mut Exit,
    leaving: Leaving,
    carry: &mut Vec<Task>,
) -> End {
    let mb = &*core.reactor.mailbox;
    let Leaving {
        drain,
        suspend,
        exit_for_good,
    } = leaving;
    let keep = suspend.is_some().then_some(carry);
    let deadline = drain.unwrap_or_else(Instant::now);
    let mut failure = settle(comp, core, local, deadline, keep)
        .err()
        .map(|f| f.reason);
    if failure.is_none() {
        let r = catch_unwind(AssertUnwindSafe(|| comp.stop(&mut Context { core, local })));
        if let Err(p) = r {
            failure = Some(DeadLetterReason::Panicked(panic_message(&*p)));
        }
    }
    if let Some(reason) = &failure {
        mb.counters.failures.fetch_add(1, Ordering::Relaxed);
        log_failure(reason, None);
    }
    end_instance(
        core,
        local,
        failure.as_ref().unwrap_or(&DeadLetterReason::Stopped),
    );
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
    drain_deadline: Instant,
    mut keep: Option<&mut Vec<Task>>,
) -> Result<(), Failure> {
    let mb = &core.reactor.mailbox;
    // From here on `Context::request` and `spawn_blocking` answer `Stopped`: continuations
    // that ask again cannot keep the reactor alive.
    local.settling = true;
    let cutoff = drain_deadline.max(Instant::now()) + Duration::from_millis(100);
    let mut buf = Vec::new();
    let mut run_queued = |comp: &mut C, local: &mut Local<C>| -> Result<usize, Failure> {
        let n = mb.pop_batch(&mut buf, BATCH);
        let mut tasks = buf.drain(..);
        while let Some(task) = tasks.next() {
            if let Task::Message(m) = task {
                match keep.as_deref_mut() {
                    Some(kept) => kept.push(Task::Message(m)),
                    None => mb.abandon_message(m, DeadLetterReason::Stopped),
                }
            } else if let Err(f) = dispatch(comp, core, local, task) {
                for t in tasks {
                    abandon(mb, t, &f.reason);
                }
                return Err(f);
            }
        }
        Ok(n)
    };
    while run_queued(comp, local)? > 0 && Instant::now() < cutoff {}

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
                };
                run_cont(comp, core, local, p.cont, stopped)?;
            } else {
                local.restore(id, p);
                in_flight = true;
            }
        }
        if in_flight && run_queued(comp, local)? == 0 {
            landing.snooze();
        }
    }
    Ok(())
}
