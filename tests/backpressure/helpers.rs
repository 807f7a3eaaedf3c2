//! Helpers shared by the paths: tracked messages and jobs, and the `Driver` component
//! through which the contract reaches `Context` methods.

use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Bus, Component, Context, DeadLetter, DeadLetterReason, Inbox, Message, MessageId,
    Reactor, SendError, WorkerPool,
};

use crate::support::{DropCounter, Tracked, SOON};

/// A job as the pool paths submit it: owns a tracked message, reports its sequence number
/// (and the thread it ran on) when it runs.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) fn seq_of(msg: &Message) -> u64 {
    msg.get::<Tracked>().expect("a tracked message").seq
}

/// Tracked messages, with the id each was made with.
#[derive(Default)]
pub(crate) struct Messages {
    pub(crate) drops: DropCounter,
    ids: Vec<MessageId>,
}

impl Messages {
    pub(crate) fn make(&mut self, seq: u64) -> Message {
        assert_eq!(self.ids.len() as u64, seq, "made in sequence");
        let msg = self.drops.message(seq);
        self.ids.push(msg.id());
        msg
    }

    /// How many were made.
    pub(crate) fn made(&self) -> u64 {
        self.ids.len() as u64
    }

    /// A handed-back message is the one offered (its id, not only its payload), and carries
    /// no reply handle any more.
    pub(crate) fn identify(&self, msg: Message) -> (u64, Option<Message>) {
        assert!(
            !msg.expects_reply(),
            "a refused request comes back without its reply handle"
        );
        let seq = seq_of(&msg);
        assert_eq!(msg.id(), self.ids[seq as usize], "the message offered");
        (seq, Some(msg))
    }
}

/// `Bus::publish` to a topic with one subscriber, as a single-target path.
pub(crate) fn publish_one(bus: &Bus, topic: &str, msg: Message) -> Result<(), SendError<Message>> {
    let mut report = bus.publish(topic, msg)?;
    assert_eq!(
        report.delivered + report.refused.len(),
        1,
        "one subscriber, one copy"
    );
    match report.refused.pop() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Drains a dead-letter inbox: the sequence numbers of the tracked messages inside, after
/// checking each letter's reason and component.
pub(crate) fn dead_letters(inbox: &Inbox, component: &str) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(letter) = inbox.try_recv() {
        let dl = letter.get::<DeadLetter>().expect("a dead letter");
        assert_eq!(dl.reason, DeadLetterReason::Stopped);
        assert_eq!(dl.component.as_deref(), Some(component));
        out.push(seq_of(&dl.message));
    }
    out
}

pub(crate) fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Occupies the pool's only worker until the returned gate is dropped (or sent to).
pub(crate) fn block_worker(pool: &WorkerPool) -> Sender<()> {
    let (started_tx, started_rx) = channel::bounded(1);
    let (gate_tx, gate_rx) = channel::bounded::<()>(1);
    pool.execute(move || {
        let _ = started_tx.send(());
        let _ = gate_rx.recv();
    })
    .expect("an idle pool takes the blocker");
    started_rx
        .recv_timeout(SOON)
        .expect("the worker runs the blocker");
    gate_tx
}

/// Jobs that own a tracked message and report `(seq, thread)` when they run.
pub(crate) struct Jobs {
    pub(crate) drops: DropCounter,
    ran_tx: Sender<(u64, ThreadId)>,
    ran_rx: Receiver<(u64, ThreadId)>,
    /// Sequence numbers of jobs that ran elsewhere than on the test thread.
    ran_elsewhere: Vec<u64>,
}

impl Jobs {
    pub(crate) fn new() -> Jobs {
        let (ran_tx, ran_rx) = channel::unbounded();
        Jobs {
            drops: DropCounter::default(),
            ran_tx,
            ran_rx,
            ran_elsewhere: Vec::new(),
        }
    }

    pub(crate) fn make(&self, seq: u64) -> Job {
        let msg = self.drops.message(seq);
        let ran = self.ran_tx.clone();
        Box::new(move || {
            let seq = seq_of(&msg);
            drop(msg);
            let _ = ran.send((seq, thread::current().id()));
        })
    }

    /// Runs a handed-back job here: it reports its sequence number from this thread.
    pub(crate) fn identify(&mut self, job: Job) -> u64 {
        job();
        let me = thread::current().id();
        loop {
            let (seq, on) = self.ran_rx.try_recv().expect("the job ran when called");
            if on == me {
                return seq;
            }
            self.ran_elsewhere.push(seq);
        }
    }

    /// Waits until `n` jobs have run elsewhere; returns their sequence numbers.
    pub(crate) fn wait_ran_elsewhere(&mut self, n: usize) -> Vec<u64> {
        while self.ran_elsewhere.len() < n {
            let (seq, on) = self
                .ran_rx
                .recv_timeout(SOON)
                .expect("every accepted job runs");
            assert_ne!(on, thread::current().id());
            self.ran_elsewhere.push(seq);
        }
        assert!(self.ran_rx.try_recv().is_err(), "no job ran twice");
        std::mem::take(&mut self.ran_elsewhere)
    }
}

/// A component that runs closures sent to it, on its reactor thread: the way the contract
/// reaches `Context` methods. A closure left in `at_stop` runs in its `stop`.
pub(crate) struct Driver {
    pub(crate) at_stop: Arc<Mutex<Option<Cmd>>>,
}

pub(crate) type Cmd = Box<dyn for<'c> FnOnce(&mut Context<'c, Driver>) + Send>;

/// The payload of a command message (a closure is not `Sync`; the mutex makes it so).
struct CmdCell(Mutex<Option<Cmd>>);

impl Component for Driver {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let cmd = msg
            .get::<CmdCell>()
            .and_then(|c| c.0.lock().unwrap().take());
        if let Some(cmd) = cmd {
            cmd(ctx);
        }
        Ok(())
    }

    fn stop(&mut self, ctx: &mut Context<'_, Self>) {
        let cmd = self.at_stop.lock().unwrap().take();
        if let Some(cmd) = cmd {
            cmd(ctx);
        }
    }
}

/// Runs `f` on the driver's reactor thread and returns its result.
pub(crate) fn on_driver<R, F>(driver: &Reactor, f: F) -> R
where
    R: Send + 'static,
    F: for<'c> FnOnce(&mut Context<'c, Driver>) -> R + Send + 'static,
{
    let (tx, rx) = channel::bounded(1);
    let cmd: Cmd = Box::new(move |ctx| {
        let _ = tx.send(f(ctx));
    });
    driver
        .send(Message::typed(CmdCell(Mutex::new(Some(cmd)))))
        .expect("the driver takes commands");
    rx.recv_timeout(SOON).expect("the driver ran the command")
}
