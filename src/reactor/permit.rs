//! Reply places: a request or job reserves room for its outcome in the requester's mailbox
//! (a [`Permit`], held by whoever will deliver it) and the reactor keeps the other side (a
//! [`Ticket`]); one CAS decides who lets go. See "Permits" in `README.md`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::mailbox::{JobOutcome, Mailbox, Task};
use crate::types::{Error, Message, ReplySink};

// A permit's life, decided by one CAS so the deliverer and the reactor never both act:
//   PENDING --deliverer takes it--> TAKEN      (the outcome goes into the mailbox; its place is
//                                               returned when the reactor pops it)
//   PENDING --reactor abandons it--> ABANDONED (timeout or stop: the place is returned at once;
//                                               a later outcome is late and never enters the
//                                               mailbox)
const PENDING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// What the deliverer's [`Permit`] and the reactor's [`Ticket`] share.
struct PermitSlot {
    mailbox: Arc<Mailbox>,
    id: u64,
    job: bool,
    timeout: Option<Duration>,
    state: AtomicU8,
}

impl PermitSlot {
    fn release(&self) {
        self.mailbox.release_place();
    }
}

/// A reserved place for one reply or job result in a mailbox, held by whoever will deliver
/// it. While it is held, the outcome it will carry is guaranteed room. Dropped unused, it
/// delivers `Err(NoReply)` in its place so the waiting continuation is not stranded.
pub(crate) struct Permit {
    slot: Arc<PermitSlot>,
    armed: bool,
}

/// The reactor's side of a [`Permit`]: lets it give the place back when it stops waiting.
pub(crate) struct Ticket(Arc<PermitSlot>);

/// Why an outcome did not reach its requester.
pub(crate) enum Undelivered<T> {
    /// The requester stopped waiting (timeout or stop) before the outcome came.
    Late(T),
    /// The requester's reactor is gone.
    Gone(T),
}

impl Permit {
    /// Reserves one place, or `None` when `max_pending` places are out already.
    pub(crate) fn acquire(
        mailbox: &Arc<Mailbox>,
        id: u64,
        job: bool,
        timeout: Option<Duration>,
    ) -> Option<(Permit, Ticket)> {
        if !mailbox.reserve_place() {
            return None;
        }
        let slot = Arc::new(PermitSlot {
            mailbox: Arc::clone(mailbox),
            id,
            job,
            timeout,
            state: AtomicU8::new(PENDING),
        });
        Some((
            Permit {
                slot: Arc::clone(&slot),
                armed: true,
            },
            Ticket(slot),
        ))
    }

    /// The place goes back unused and nobody is told (the request never left).
    pub(crate) fn cancel(mut self) {
        self.armed = false;
        let s = &self.slot;
        if s.state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            s.release();
        }
    }

    /// `true` once the requester stopped waiting: a job need not run.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) == ABANDONED
    }

    /// Delivers a job's outcome.
    pub(crate) fn deliver_job(
        mut self,
        outcome: JobOutcome,
    ) -> Result<(), Undelivered<JobOutcome>> {
        let id = self.slot.id;
        self.push(Task::Job { id, outcome }, true)
            .map_err(|u| match u {
                Undelivered::Late(Task::Job { outcome, .. }) => Undelivered::Late(outcome),
                Undelivered::Gone(Task::Job { outcome, .. }) => Undelivered::Gone(outcome),
                _ => unreachable!("a job permit carries a job"),
            })
    }

    /// A job not started by its deadline: its continuation gets `Timeout` unless the reactor
    /// already stopped waiting. Nothing ran, so nothing is counted as late.
    pub(crate) fn skip_job(mut self, after: Duration) {
        let id = self.slot.id;
        let _ = self.push(
            Task::Job {
                id,
                outcome: Err(Error::Timeout { after }),
            },
            false,
        );
    }

    /// `count_late`: whether an outcome nobody waits for any more counts as a late reply or
    /// job result (a reply message or a job's result does; a notice that nothing will come,
    /// or a skipped job, does not).
    fn push(&mut self, task: Task, count_late: bool) -> Result<(), Undelivered<Task>> {
        self.armed = false;
        let s = &self.slot;
        let count = || {
            if count_late {
                let c = if s.job {
                    &s.mailbox.counters.late_jobs
                } else {
                    &s.mailbox.counters.late_replies
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
        };
        if s.state
            .compare_exchange(PENDING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            count();
            return Err(Undelivered::Late(task));
        }
        s.mailbox.push_extra(task).map_err(|task| {
            // The item will never be popped, so the place comes back here.
            s.release();
            count();
            Undelivered::Gone(task)
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.armed {
            let error = Error::NoReply {
                reason: "the reply slot was dropped unused".into(),
            };
            let id = self.slot.id;
            let task = if self.slot.job {
                Task::Job {
                    id,
                    outcome: Err(error),
                }
            } else {
                Task::Reply {
                    id,
                    outcome: Err(error),
                }
            };
            let _ = self.push(task, false);
        }
    }
}

/// However the reactor lets go of a wait (a failure, a start that failed, a dropped
/// continuation), the place goes back: abandoning twice is harmless.
impl Drop for Ticket {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl Ticket {
    /// The requester stops waiting: `true` if the place was still pending and is now given
    /// back; `false` if the outcome was already taken for delivery (it is in the mailbox, or
    /// will be within a few instructions).
    pub(crate) fn abandon(&self) -> bool {
        let s = &self.0;
        let won = s
            .state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            s.release();
        }
        won
    }
}

impl ReplySink for Permit {
    fn deliver(mut self: Box<Self>, outcome: Result<Message, Error>) -> Result<(), Error> {
        let id = self.slot.id;
        let is_reply = outcome.is_ok();
        let (why, outcome) = match self.push(Task::Reply { id, outcome }, is_reply) {
            Ok(()) => return Ok(()),
            Err(Undelivered::Late(Task::Reply { outcome, .. })) => {
                let after = self.slot.timeout.unwrap_or_default();
                (Error::Timeout { after }, outcome)
            }
            Err(Undelivered::Gone(Task::Reply { outcome, .. })) => {
                let target = self.slot.mailbox.name.clone();
                (Error::Stopped { target }, outcome)
            }
            Err(_) => unreachable!("a reply permit carries a reply"),
        };
        // Nobody reads it: counted on the bus and dead-lettered, naming this component.
        if let Ok(reply) = outcome {
            self.slot.mailbox.late_reply(reply);
        }
        Err(why)
    }

    fn cancel(self: Box<Self>) {
        Permit::cancel(*self);
    }
}
