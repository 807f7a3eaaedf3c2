//! The backpressure contract, written once and run against every enqueue path (as flume ran
//! crossbeam's test suite on itself).
//!
//! Each path implements [`EnqueuePath`]; the three contract cases below run on every one:
//!
//! - full: admits exactly `capacity`, then `Error::Backpressure { target, capacity, rejected }`
//!   with the very item that was refused (a message's sequence number, or a job that still runs
//!   when called), never `Stopped`; once room is made the item is accepted;
//! - stopped: after the target stops, `Error::Stopped` with the item, never `Backpressure`,
//!   even while the stopping mailbox or closed pool queue is still full;
//! - every item made is dropped exactly once by the end, wherever it ended: handled, run,
//!   handed back, drained or dead-lettered at stop, or dropped with its queue.
//!
//! The paths: `Reactor::execute`, `Bus::send`, `Bus::publish` (the refusal is in
//! `PublishReport::refused`), `Bus::request` from a plain thread, `Context::request` (bounded
//! by the requester's `max_pending`), `WorkerPool::try_execute`, `Context::spawn_blocking`
//! (bounded by the pool's queue), and a bus `Inbox` subscriber.

mod support;

use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Bus, Component, ComponentOptions, Context, DeadLetter, DeadLetterReason, Error,
    Inbox, Message, MessageId, PendingReply, Reactor, Runtime, ShutdownReport, WorkerPool,
    DEAD_LETTER_TOPIC,
};
use support::{wait_until, DropCounter, Gated, Probe, Tracked, SOON};

/// Capacity of every bounded thing under test: small, so filling it is cheap.
const CAP: usize = 3;

/// A job as the pool paths submit it: owns a tracked message, reports its sequence number
/// (and the thread it ran on) when it runs.
type Job = Box<dyn FnOnce() + Send>;

// ---- the contract ------------------------------------------------------------------------

/// How a refused item comes back once its target has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// `Error::Stopped` naming this target.
    Stopped(&'static str),
    /// `Error::NoSubscriber` for this topic (an `Inbox` unsubscribes when dropped, so a
    /// stopped inbox has no subscription left to refuse with `Stopped`).
    NoSubscriber(&'static str),
}

/// One way of handing work to a bounded target.
trait EnqueuePath {
    type Item: Send + 'static;

    /// The target a `Backpressure` must name.
    fn full_target(&self) -> &str;
    /// What a send after [`stop_then_try`](EnqueuePath::stop_then_try) must report.
    fn gone(&self) -> Gone;
    /// Counts the drops of every item this path makes.
    fn drops(&self) -> DropCounter;
    /// A fresh item carrying `seq`.
    fn make(&mut self, seq: u64) -> Self::Item;
    /// The sequence number an item carries. A message comes back for reuse; a job is run
    /// (on this thread), which proves it is the job that was submitted, and so is consumed.
    fn identify(&mut self, item: Self::Item) -> (u64, Option<Self::Item>);
    /// One attempt on the path. Never blocks.
    fn try_one(&mut self, item: Self::Item) -> Result<(), Error<Self::Item>>;
    /// Lets the target take at least one item out of its full queue, and waits until it has.
    fn make_room(&mut self);
    /// Stops the target (the runtime, the pool, the inbox), then makes one attempt.
    fn stop_then_try(&mut self, item: Self::Item) -> Result<(), Error<Self::Item>>;
    /// Stops whatever still runs and checks that every accepted item ended exactly once, and
    /// that the target's own counters agree with `tally`.
    fn finish(self, tally: &Tally);
}

/// What the contract saw happen.
#[derive(Debug, Default)]
struct Tally {
    /// Sequence numbers of accepted items.
    accepted: Vec<u64>,
    /// Refusals with `Backpressure`.
    full: u64,
}

/// Drives one path and counts what it made.
struct Contract<P: EnqueuePath> {
    path: P,
    drops: DropCounter,
    made: u64,
    tally: Tally,
}

impl<P: EnqueuePath> Contract<P> {
    fn new(path: P) -> Self {
        let drops = path.drops();
        Contract {
            path,
            drops,
            made: 0,
            tally: Tally::default(),
        }
    }

    fn item(&mut self) -> (u64, P::Item) {
        let seq = self.made;
        self.made += 1;
        (seq, self.path.make(seq))
    }

    /// Offers fresh items until one is refused; returns its sequence number and the error.
    fn fill_until_full(&mut self) -> (u64, Error<P::Item>) {
        loop {
            let (seq, item) = self.item();
            match self.path.try_one(item) {
                Ok(()) => {
                    self.tally.accepted.push(seq);
                    assert!(
                        self.tally.accepted.len() <= CAP,
                        "accepted {} items with a capacity of {CAP}",
                        self.tally.accepted.len()
                    );
                }
                Err(e) => return (seq, e),
            }
        }
    }

    /// Checks a refusal is `Backpressure` naming the target and its capacity, and that the
    /// refused item is item `seq`; gives the item back when it can be reused.
    fn expect_full(&mut self, seq: u64, err: Error<P::Item>) -> Option<P::Item> {
        assert!(err.is_backpressure(), "full, yet reported as {err:?}");
        assert!(!err.is_stopped(), "full reported as stopped: {err:?}");
        let Error::Backpressure {
            target,
            capacity,
            rejected,
        } = err
        else {
            unreachable!("checked above")
        };
        assert_eq!(&*target, self.path.full_target());
        assert_eq!(capacity, CAP);
        self.tally.full += 1;
        let (got, back) = self.path.identify(rejected);
        assert_eq!(got, seq, "the refused item is the one offered");
        back
    }

    /// Checks a refusal is the path's "gone" answer, and that the refused item is item `seq`.
    fn expect_gone(&mut self, seq: u64, err: Error<P::Item>) {
        assert!(
            !err.is_backpressure(),
            "stopped, yet reported as full: {err:?}"
        );
        let rejected = match (self.path.gone(), err) {
            (Gone::Stopped(want), Error::Stopped { target, rejected }) => {
                assert_eq!(&*target, want);
                rejected
            }
            (Gone::NoSubscriber(want), Error::NoSubscriber { topic, rejected }) => {
                assert_eq!(topic, want);
                rejected
            }
            (want, err) => panic!("expected {want:?}, got {err:?}"),
        };
        let (got, _) = self.path.identify(rejected);
        assert_eq!(got, seq, "the refused item is the one offered");
    }

    /// Ends the run: every item made has been dropped exactly once.
    fn finish(self) {
        let Contract {
            path,
            drops,
            made,
            tally,
        } = self;
        path.finish(&tally);
        assert_eq!(
            drops.dropped() as u64,
            made,
            "items made vs dropped (accepted: {:?})",
            tally.accepted
        );
    }
}

/// (a) A full target admits exactly its capacity, then refuses with `Backpressure` and hands the
/// same item back; it keeps refusing while full; once room is made, the item goes in.
fn check_full<P: EnqueuePath>(path: P) {
    let mut c = Contract::new(path);
    let (seq, err) = c.fill_until_full();
    assert_eq!(c.tally.accepted.len(), CAP, "admitted exactly the capacity");
    let back = c.expect_full(seq, err);
    assert_eq!(
        c.drops.dropped() as u64,
        u64::from(back.is_none()), // a job handed back was run (and so dropped) to identify it
        "a refusal drops nothing: the refused item is in the caller's hands"
    );

    let (seq2, item2) = c.item();
    let err2 = c.path.try_one(item2).expect_err("still full");
    let _ = c.expect_full(seq2, err2);

    c.path.make_room();
    let (retry_seq, retry) = match back {
        Some(item) => (seq, item),
        None => c.item(),
    };
    c.path
        .try_one(retry)
        .map_err(Error::without_payload)
        .expect("accepted once there is room");
    c.tally.accepted.push(retry_seq);
    c.finish();
}

/// (b) After its target stops, a path answers with its "gone" error (`Stopped`), hands the
/// item back, and never says `Backpressure`: on the mailbox and pool paths the target is still
/// full when the refusal is asked for, so "stopped" must win over "full".
fn check_stopped<P: EnqueuePath>(path: P) {
    let mut c = Contract::new(path);
    let (seq, err) = c.fill_until_full();
    drop(c.expect_full(seq, err));
    let (seq, item) = c.item();
    let err = c
        .path
        .stop_then_try(item)
        .expect_err("a stopped target takes nothing");
    c.expect_gone(seq, err);
    c.finish();
}

/// (c) A whole life: fill, refuse, make room, retry, stop with items queued, refuse again.
/// Every item made is dropped exactly once, and each accepted one ended exactly once.
fn check_nothing_lost<P: EnqueuePath>(path: P) {
    let mut c = Contract::new(path);
    let (seq, err) = c.fill_until_full();
    let back = c.expect_full(seq, err);
    drop(back);
    c.path.make_room();
    let (seq, item) = c.item();
    c.path
        .try_one(item)
        .map_err(Error::without_payload)
        .expect("accepted once there is room");
    c.tally.accepted.push(seq);
    let (seq, item) = c.item();
    let err = c.path.stop_then_try(item).expect_err("stopped");
    c.expect_gone(seq, err);
    c.finish();
}

macro_rules! contract {
    ($($(#[$doc:meta])* $name:ident => $path:expr;)*) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;

            #[test]
            fn full_returns_same_item() {
                check_full($path);
            }

            #[test]
            fn stopped_returns_same_item() {
                check_stopped($path);
            }

            #[test]
            fn every_item_dropped_exactly_once() {
                check_nothing_lost($path);
            }
        }
    )*};
}

contract! {
    /// `Reactor::execute` on a component's handle.
    reactor_execute => GatedRuntime::new(Via::Execute);
    /// `Bus::send` to a component's exact topic.
    bus_send => GatedRuntime::new(Via::Send);
    /// `Bus::publish` to a topic with one component subscribed.
    bus_publish => GatedRuntime::new(Via::Publish);
    /// `Bus::request` from a plain thread.
    bus_request => GatedRuntime::new(Via::Request);
    /// `Context::request` inside a component: bounded by its `max_pending`.
    context_request => ContextRequest::new();
    /// `WorkerPool::try_execute`.
    pool_try_execute => PoolExecute::new();
    /// `Context::spawn_blocking`: bounded by the pool's queue.
    context_spawn_blocking => ContextSpawn::new();
    /// `Bus::send` to a plain thread's `Inbox`.
    inbox_send => InboxSend::new();
}

// ---- helpers shared by the paths ---------------------------------------------------------

fn seq_of(msg: &Message) -> u64 {
    msg.get::<Tracked>().expect("a tracked message").seq
}

/// Tracked messages, with the id each was made with.
#[derive(Default)]
struct Messages {
    drops: DropCounter,
    ids: Vec<MessageId>,
}

impl Messages {
    fn make(&mut self, seq: u64) -> Message {
        assert_eq!(self.ids.len() as u64, seq, "made in sequence");
        let msg = self.drops.message(seq);
        self.ids.push(msg.id());
        msg
    }

    /// A handed-back message is the one offered (its id, not only its payload), and carries
    /// no reply handle any more.
    fn identify(&self, msg: Message) -> (u64, Option<Message>) {
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
fn publish_one(bus: &Bus, topic: &str, msg: Message) -> Result<(), Error<Message>> {
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
fn dead_letters(inbox: &Inbox, component: &str) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(letter) = inbox.try_recv() {
        let dl = letter.get::<DeadLetter>().expect("a dead letter");
        assert_eq!(dl.reason, DeadLetterReason::Stopped);
        assert_eq!(dl.component.as_deref(), Some(component));
        out.push(seq_of(&dl.message));
    }
    out
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Occupies the pool's only worker until the returned gate is dropped (or sent to).
fn block_worker(pool: &WorkerPool) -> Sender<()> {
    let (started_tx, started_rx) = channel::bounded(1);
    let (gate_tx, gate_rx) = channel::bounded::<()>(1);
    pool.try_execute(move || {
        let _ = started_tx.send(());
        let _ = gate_rx.recv();
    })
    .map_err(Error::without_payload)
    .expect("an idle pool takes the blocker");
    started_rx
        .recv_timeout(SOON)
        .expect("the worker runs the blocker");
    gate_tx
}

/// Jobs that own a tracked message and report `(seq, thread)` when they run.
struct Jobs {
    drops: DropCounter,
    ran_tx: Sender<(u64, ThreadId)>,
    ran_rx: Receiver<(u64, ThreadId)>,
    /// Sequence numbers of jobs that ran elsewhere than on the test thread.
    ran_elsewhere: Vec<u64>,
}

impl Jobs {
    fn new() -> Jobs {
        let (ran_tx, ran_rx) = channel::unbounded();
        Jobs {
            drops: DropCounter::default(),
            ran_tx,
            ran_rx,
            ran_elsewhere: Vec::new(),
        }
    }

    fn make(&self, seq: u64) -> Job {
        let msg = self.drops.message(seq);
        let ran = self.ran_tx.clone();
        Box::new(move || {
            let seq = seq_of(&msg);
            drop(msg);
            let _ = ran.send((seq, thread::current().id()));
        })
    }

    /// Runs a handed-back job here: it reports its sequence number from this thread.
    fn identify(&mut self, job: Job) -> u64 {
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
    fn wait_ran_elsewhere(&mut self, n: usize) -> Vec<u64> {
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
struct Driver {
    at_stop: Arc<Mutex<Option<Cmd>>>,
}

type Cmd = Box<dyn for<'c> FnOnce(&mut Context<'c, Driver>) + Send>;

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
fn on_driver<R, F>(driver: &Reactor, f: F) -> R
where
    R: Send + 'static,
    F: for<'c> FnOnce(&mut Context<'c, Driver>) -> R + Send + 'static,
{
    let (tx, rx) = channel::bounded(1);
    let cmd: Cmd = Box::new(move |ctx| {
        let _ = tx.send(f(ctx));
    });
    driver
        .execute(Message::typed(CmdCell(Mutex::new(Some(cmd)))))
        .map_err(Error::without_payload)
        .expect("the driver takes commands");
    rx.recv_timeout(SOON).expect("the driver ran the command")
}

// ---- paths through a component's mailbox -------------------------------------------------

const SINK_TOPIC: &str = "bp.sink";

#[derive(Debug, Clone, Copy)]
enum Via {
    Execute,
    Send,
    Publish,
    Request,
}

/// A running runtime with one `Gated` component, "sink", whose mailbox holds `CAP`. A plug
/// message holds its handler at the shut gate, so nothing leaves the mailbox while the
/// contract fills it; each gate token lets one handler through.
struct GatedRuntime {
    via: Via,
    msgs: Messages,
    rt: Runtime,
    sink: Reactor,
    gate: Option<Sender<()>>,
    handled: Receiver<Message>,
    dead: Inbox,
    report: Option<ShutdownReport>,
    pending: Vec<PendingReply>,
}

/// One attempt through `via`; a request's pending reply is kept in `pending`.
fn offer(
    via: Via,
    rt: &Runtime,
    sink: &Reactor,
    pending: &mut Vec<PendingReply>,
    msg: Message,
) -> Result<(), Error<Message>> {
    let bus = rt.bus();
    match via {
        Via::Execute => sink.execute(msg),
        Via::Send => bus.send(SINK_TOPIC, msg),
        Via::Publish => publish_one(bus, SINK_TOPIC, msg),
        Via::Request => {
            let id = msg.id();
            let p = bus.request(SINK_TOPIC, msg, SOON)?;
            assert_eq!(p.request_id(), id);
            pending.push(p);
            Ok(())
        }
    }
}

impl GatedRuntime {
    fn new(via: Via) -> GatedRuntime {
        let rt = Runtime::builder()
            .workers(1)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let (gate, gate_rx) = channel::unbounded();
        let (handled_tx, handled) = channel::unbounded();
        let sink = rt
            .deploy_with(
                "sink",
                ComponentOptions::new().mailbox(CAP).subscribe(SINK_TOPIC),
                move || Gated {
                    gate: gate_rx.clone(),
                    handled: handled_tx.clone(),
                },
            )
            .unwrap();
        let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64).unwrap();
        sink.execute(Message::empty()).unwrap(); // the plug (untracked)
        rt.start().unwrap();
        wait_until("the sink takes the plug", || sink.is_empty());
        GatedRuntime {
            via,
            msgs: Messages::default(),
            rt,
            sink,
            gate: Some(gate),
            handled,
            dead,
            report: None,
            pending: Vec::new(),
        }
    }
}

impl EnqueuePath for GatedRuntime {
    type Item = Message;

    fn full_target(&self) -> &str {
        "sink"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("sink")
    }

    fn drops(&self) -> DropCounter {
        self.msgs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Message {
        self.msgs.make(seq)
    }

    fn identify(&mut self, item: Message) -> (u64, Option<Message>) {
        self.msgs.identify(item)
    }

    fn try_one(&mut self, msg: Message) -> Result<(), Error<Message>> {
        offer(self.via, &self.rt, &self.sink, &mut self.pending, msg)
    }

    fn make_room(&mut self) {
        // One token: the plug's handler returns, the reactor takes the mailbox into its
        // batch, and the next handler waits at the gate again.
        self.gate.as_ref().unwrap().send(()).unwrap();
        wait_until("the sink takes messages out of its mailbox", || {
            self.sink.len() < CAP
        });
    }

    fn stop_then_try(&mut self, msg: Message) -> Result<(), Error<Message>> {
        // Stop while the handler is held, so the stopping mailbox still holds its messages
        // (full, in the stop case): the refusal must say Stopped, not Backpressure.
        let queued = self.sink.len();
        let Self {
            via,
            rt,
            sink,
            gate,
            pending,
            report,
            ..
        } = self;
        let r = thread::scope(|s| {
            let stopping = s.spawn(|| rt.stop());
            wait_until("the sink refuses new messages", || sink.is_stopped());
            assert_eq!(sink.len(), queued, "nothing left the mailbox yet");
            let r = offer(*via, rt, sink, pending, msg);
            *gate = None; // let the handlers run: the drain ends the stop
            *report = Some(stopping.join().unwrap().unwrap());
            r
        });
        assert!(self.sink.is_finished());
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        if self.report.is_none() {
            self.report = Some(self.rt.stop().unwrap());
        }
        let report = self.report.take().unwrap();
        let c = report.component("sink").unwrap().clone();
        let handled: Vec<Message> = self.handled.try_iter().collect();
        let plugs = handled
            .iter()
            .filter(|m| m.get::<Tracked>().is_none())
            .count();
        assert_eq!(plugs, 1);
        let handled: Vec<u64> = handled
            .into_iter()
            .filter_map(|m| m.get::<Tracked>().map(|t| t.seq))
            .collect();
        let dead = dead_letters(&self.dead, "sink");
        assert_eq!(c.handled, 1 + handled.len() as u64, "{report:?}");
        assert_eq!(c.abandoned, dead.len() as u64, "{report:?}");
        assert!(c.joined && c.failure.is_none(), "{report:?}");
        let ended = sorted(handled.into_iter().chain(dead).collect());
        assert_eq!(
            ended,
            sorted(tally.accepted.clone()),
            "each accepted message handled or dead-lettered, once"
        );
        let stats = self.sink.stats();
        assert_eq!(stats.handled, c.handled);
        assert_eq!(stats.dead_lettered, c.abandoned);
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        assert_eq!(stats.queued, 0);
        // Requests: the Gated sink never replies, so each one ends in NoReply as soon as its
        // message is dropped (handled above, or dead-lettered at stop).
        let requests = match self.via {
            Via::Request => tally.accepted.len(),
            _ => 0,
        };
        assert_eq!(self.pending.len(), requests);
        for p in self.pending.drain(..) {
            match p.wait() {
                Err(Error::NoReply { .. }) => {}
                other => panic!("an unanswered request ends in NoReply, got {other:?}"),
            }
        }
    }
}

// ---- Context::request ----------------------------------------------------------------------

const ASK_TOPIC: &str = "bp.ask";

/// A "driver" component (max_pending = `CAP`) requests from a "responder" `Probe` that hands
/// each request to the test, which answers or drops it. Deployed driver first, so `stop` stops
/// the responder first and the driver's `stop` can still ask it.
struct ContextRequest {
    msgs: Messages,
    rt: Runtime,
    driver: Reactor,
    at_stop: Arc<Mutex<Option<Cmd>>>,
    asked: Receiver<(Message, String)>,
    outcomes_tx: Sender<bool>,
    outcomes: Receiver<bool>,
    commands: u64,
    /// Requests accepted and not yet taken from `asked`.
    outstanding: usize,
    /// Sequence numbers of the requests the responder got.
    received: Vec<u64>,
    report: Option<ShutdownReport>,
}

impl ContextRequest {
    fn new() -> ContextRequest {
        let rt = Runtime::builder()
            .workers(1)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let at_stop: Arc<Mutex<Option<Cmd>>> = Arc::default();
        let slot = Arc::clone(&at_stop);
        let driver = rt
            .deploy_with(
                "driver",
                ComponentOptions::new().max_pending(CAP),
                move || Driver {
                    at_stop: Arc::clone(&slot),
                },
            )
            .unwrap();
        let (tx, asked) = channel::unbounded();
        rt.deploy_with(
            "responder",
            ComponentOptions::new().mailbox(64).subscribe(ASK_TOPIC),
            move || Probe { tx: tx.clone() },
        )
        .unwrap();
        rt.start().unwrap();
        let (outcomes_tx, outcomes) = channel::unbounded();
        ContextRequest {
            msgs: Messages::default(),
            rt,
            driver,
            at_stop,
            asked,
            outcomes_tx,
            outcomes,
            commands: 0,
            outstanding: 0,
            received: Vec::new(),
            report: None,
        }
    }

    /// Takes the next request the responder got.
    fn next_asked(&mut self) -> Message {
        let (req, _) = self
            .asked
            .recv_timeout(SOON)
            .expect("the responder gets every accepted request");
        self.outstanding -= 1;
        self.received.push(seq_of(&req));
        req
    }

    /// Drops every request still unanswered (each requester's continuation gets NoReply and
    /// its place is freed), then waits until the driver has no place reserved.
    fn drop_unanswered(&mut self) {
        while self.outstanding > 0 {
            drop(self.next_asked());
        }
        let driver = self.driver.clone();
        wait_until("the driver's places are all returned", || {
            driver.stats().pending == 0
        });
    }
}

impl EnqueuePath for ContextRequest {
    type Item = Message;

    fn full_target(&self) -> &str {
        "driver"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("responder")
    }

    fn drops(&self) -> DropCounter {
        self.msgs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Message {
        self.msgs.make(seq)
    }

    fn identify(&mut self, item: Message) -> (u64, Option<Message>) {
        self.msgs.identify(item)
    }

    fn try_one(&mut self, msg: Message) -> Result<(), Error<Message>> {
        let out = self.outcomes_tx.clone();
        self.commands += 1;
        let r = on_driver(&self.driver, move |ctx| {
            let (before, places) = (ctx.pending(), ctx.reactor().stats().pending);
            let r = ctx.request(ASK_TOPIC, msg, SOON, move |_, _, reply| {
                let _ = out.send(reply.is_ok());
            });
            // A refused request leaves no continuation and no reserved place behind.
            let more = usize::from(r.is_ok());
            assert_eq!(ctx.pending(), before + more);
            assert_eq!(ctx.reactor().stats().pending, places + more);
            r.map(drop)
        });
        if r.is_ok() {
            self.outstanding += 1;
        }
        r
    }

    fn make_room(&mut self) {
        let mut req = self.next_asked();
        let handle = req.take_reply_handle().expect("a request");
        handle.send(Message::empty()).expect("the driver waits");
        drop(req);
        let driver = self.driver.clone();
        wait_until("the answered request frees its place", || {
            driver.stats().pending < CAP
        });
    }

    fn stop_then_try(&mut self, msg: Message) -> Result<(), Error<Message>> {
        // With places free, the only refusal left is the stopped responder.
        self.drop_unanswered();
        let (tx, rx) = channel::bounded(1);
        *self.at_stop.lock().unwrap() = Some(Box::new(move |ctx| {
            let r = ctx.request(ASK_TOPIC, msg, SOON, |_, _, _| {});
            let _ = tx.send(r.map(drop));
        }));
        self.report = Some(self.rt.stop().unwrap());
        rx.recv_timeout(SOON).expect("the driver's stop ran")
    }

    fn finish(mut self, tally: &Tally) {
        if self.report.is_none() {
            self.drop_unanswered();
            self.report = Some(self.rt.stop().unwrap());
        }
        let report = self.report.take().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            sorted(self.received.clone()),
            sorted(tally.accepted.clone()),
            "the responder got each accepted request once"
        );
        assert_eq!(
            report.component("responder").unwrap().handled as usize,
            tally.accepted.len()
        );
        assert_eq!(report.component("driver").unwrap().handled, self.commands);
        // Each accepted request's continuation ran once: replied, NoReply or Stopped.
        let outcomes: Vec<bool> = self.outcomes.try_iter().collect();
        assert_eq!(outcomes.len(), tally.accepted.len());
        assert_eq!(self.driver.stats().late_replies, 0);
    }
}

// ---- WorkerPool::try_execute -------------------------------------------------------------

/// A one-thread pool (queue `CAP`) whose worker is held by a blocker job.
struct PoolExecute {
    jobs: Jobs,
    pool: WorkerPool,
    gate: Option<Sender<()>>,
}

impl PoolExecute {
    fn new() -> PoolExecute {
        let pool = WorkerPool::builder()
            .num_threads(1)
            .queue_capacity(CAP)
            .thread_name("bp-pool")
            .build()
            .unwrap();
        let gate = Some(block_worker(&pool));
        PoolExecute {
            jobs: Jobs::new(),
            pool,
            gate,
        }
    }
}

impl EnqueuePath for PoolExecute {
    type Item = Job;

    fn full_target(&self) -> &str {
        "bp-pool"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("bp-pool")
    }

    fn drops(&self) -> DropCounter {
        self.jobs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Job {
        self.jobs.make(seq)
    }

    fn identify(&mut self, job: Job) -> (u64, Option<Job>) {
        (self.jobs.identify(job), None)
    }

    fn try_one(&mut self, job: Job) -> Result<(), Error<Job>> {
        self.pool.try_execute(job)
    }

    fn make_room(&mut self) {
        self.gate = None;
        wait_until("the worker takes a queued job", || {
            self.pool.stats().queued < CAP
        });
    }

    fn stop_then_try(&mut self, job: Job) -> Result<(), Error<Job>> {
        // Shut down without waiting: the worker may still be held, the queue still full.
        self.pool.shutdown(Duration::ZERO);
        let r = self.try_one(job);
        self.gate = None;
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        self.pool.shutdown(SOON);
        let ran = self.jobs.wait_ran_elsewhere(tally.accepted.len());
        assert_eq!(
            sorted(ran),
            sorted(tally.accepted.clone()),
            "each accepted job ran once"
        );
        let stats = self.pool.stats();
        wait_until("the pool counts every job it ran", || {
            self.pool.stats().completed == 1 + tally.accepted.len() as u64
        });
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        assert_eq!(stats.panicked, 0);
    }
}

// ---- Context::spawn_blocking -------------------------------------------------------------

/// A "driver" component offloading to a one-thread pool (queue `CAP`) whose worker is held.
/// Its `max_pending` is larger than the queue, so the pool is what fills.
struct ContextSpawn {
    jobs: Jobs,
    rt: Runtime,
    driver: Reactor,
    gate: Option<Sender<()>>,
    outcomes_tx: Sender<bool>,
    outcomes: Receiver<bool>,
    commands: u64,
}

impl ContextSpawn {
    fn new() -> ContextSpawn {
        let rt = Runtime::builder()
            .workers(1)
            .worker_queue(CAP)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let driver = rt
            .deploy_with(
                "driver",
                ComponentOptions::new().max_pending(4 * CAP),
                || Driver {
                    at_stop: Arc::default(),
                },
            )
            .unwrap();
        rt.start().unwrap();
        let gate = Some(block_worker(rt.pool()));
        let (outcomes_tx, outcomes) = channel::unbounded();
        ContextSpawn {
            jobs: Jobs::new(),
            rt,
            driver,
            gate,
            outcomes_tx,
            outcomes,
            commands: 0,
        }
    }
}

impl EnqueuePath for ContextSpawn {
    type Item = Job;

    fn full_target(&self) -> &str {
        "bp-worker"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("bp-worker")
    }

    fn drops(&self) -> DropCounter {
        self.jobs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Job {
        self.jobs.make(seq)
    }

    fn identify(&mut self, job: Job) -> (u64, Option<Job>) {
        (self.jobs.identify(job), None)
    }

    fn try_one(&mut self, job: Job) -> Result<(), Error<Job>> {
        let out = self.outcomes_tx.clone();
        self.commands += 1;
        on_driver(&self.driver, move |ctx| {
            let (before, places) = (ctx.pending(), ctx.reactor().stats().pending);
            let r = ctx.spawn_blocking(job, move |_, _, done| {
                let _ = out.send(done.is_ok());
            });
            // A refused job leaves no continuation and no reserved place behind.
            let more = usize::from(r.is_ok());
            assert_eq!(ctx.pending(), before + more);
            assert_eq!(ctx.reactor().stats().pending, places + more);
            r.map(drop)
        })
    }

    fn make_room(&mut self) {
        self.gate = None;
        wait_until("the worker takes a queued job", || {
            self.rt.pool().stats().queued < CAP
        });
    }

    fn stop_then_try(&mut self, job: Job) -> Result<(), Error<Job>> {
        self.rt.pool().shutdown(Duration::ZERO);
        let r = self.try_one(job);
        self.gate = None;
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        let ran = self.jobs.wait_ran_elsewhere(tally.accepted.len());
        assert_eq!(
            sorted(ran),
            sorted(tally.accepted.clone()),
            "each accepted job ran once"
        );
        // Each accepted job's continuation runs once, on the driver, with the job's result.
        for _ in &tally.accepted {
            let ok = self
                .outcomes
                .recv_timeout(SOON)
                .expect("each accepted job's continuation runs");
            assert!(ok, "the job's result came back");
        }
        let report = self.rt.stop().unwrap();
        assert!(
            self.outcomes.try_recv().is_err(),
            "no continuation ran twice"
        );
        let c = report.component("driver").unwrap();
        assert_eq!(c.handled, self.commands);
        assert!(c.failure.is_none() && c.abandoned == 0, "{report:?}");
        let stats = self.rt.pool().stats();
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        let driver = self.driver.stats();
        assert_eq!((driver.late_jobs, driver.pending), (0, 0));
    }
}

// ---- Bus::send into an Inbox -------------------------------------------------------------

const INBOX_TOPIC: &str = "bp.inbox";

/// A plain thread's inbox of capacity `CAP`. "Stopping" it is dropping it.
struct InboxSend {
    msgs: Messages,
    bus: Bus,
    inbox: Option<Inbox>,
    received: Vec<u64>,
    dropped_with_inbox: usize,
}

impl InboxSend {
    fn new() -> InboxSend {
        let bus = Bus::new();
        let inbox = Some(bus.subscribe_inbox(INBOX_TOPIC, CAP).unwrap());
        InboxSend {
            msgs: Messages::default(),
            bus,
            inbox,
            received: Vec::new(),
            dropped_with_inbox: 0,
        }
    }
}

impl EnqueuePath for InboxSend {
    type Item = Message;

    fn full_target(&self) -> &str {
        "inbox(bp.inbox)"
    }

    fn gone(&self) -> Gone {
        Gone::NoSubscriber(INBOX_TOPIC)
    }

    fn drops(&self) -> DropCounter {
        self.msgs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Message {
        self.msgs.make(seq)
    }

    fn identify(&mut self, item: Message) -> (u64, Option<Message>) {
        self.msgs.identify(item)
    }

    fn try_one(&mut self, msg: Message) -> Result<(), Error<Message>> {
        self.bus.send(INBOX_TOPIC, msg)
    }

    fn make_room(&mut self) {
        let inbox = self.inbox.as_ref().unwrap();
        let msg = inbox.try_recv().expect("a full inbox has a message");
        assert_eq!(msg.topic().as_str(), INBOX_TOPIC);
        self.received.push(seq_of(&msg));
    }

    fn stop_then_try(&mut self, msg: Message) -> Result<(), Error<Message>> {
        let inbox = self.inbox.take().unwrap();
        self.dropped_with_inbox = inbox.len();
        drop(inbox); // drops what it still holds
        self.try_one(msg)
    }

    fn finish(mut self, tally: &Tally) {
        if let Some(inbox) = self.inbox.take() {
            while let Some(m) = inbox.try_recv() {
                self.received.push(seq_of(&m));
            }
        }
        assert_eq!(
            self.received.len() + self.dropped_with_inbox,
            tally.accepted.len()
        );
        let mut expected = sorted(tally.accepted.clone());
        expected.truncate(self.received.len()); // FIFO: the first accepted were received
        assert_eq!(sorted(self.received.clone()), expected);
        assert_eq!(self.bus.stats().subscriptions, 0);
    }
}

// ---- cases particular to one path ----------------------------------------------------------

/// A publish that one subscriber refuses still reaches the others; the report shows the
/// partial fan-out, and the refused copy is the same message (same id).
#[test]
fn publish_reports_partial_fanout_with_refused_copy() -> Result<()> {
    let rt = Runtime::builder().workers(1).build()?;
    let (gate, gate_rx) = channel::unbounded::<()>();
    let (handled_tx, _handled) = channel::unbounded();
    rt.deploy_with(
        "full",
        ComponentOptions::new().mailbox(1).subscribe("bp.fan"),
        move || Gated {
            gate: gate_rx.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    let inbox = rt.bus().subscribe_inbox("bp.*", 8)?;
    rt.bus().send("bp.fan", Message::empty())?; // round robin: 1st to "full" ...
    assert_eq!(inbox.len(), 0);
    // ... now "full" is full; the inbox has room.
    let drops = DropCounter::default();
    let msg = drops.message(7);
    let id = msg.id();
    let mut report = rt.bus().publish("bp.fan", msg)?;
    assert_eq!(report.delivered, 1);
    assert!(!report.is_complete());
    assert_eq!(report.refused.len(), 1);
    match report.refused.pop().unwrap() {
        Error::Backpressure {
            target,
            capacity,
            rejected,
        } => {
            assert_eq!((&*target, capacity), ("full", 1));
            assert_eq!(rejected.id(), id);
            assert_eq!(seq_of(&rejected), 7);
        }
        other => panic!("expected Backpressure, got {other:?}"),
    }
    let delivered = inbox.try_recv().expect("the inbox took its copy");
    assert_eq!(delivered.id(), id);
    drop(delivered);
    assert_eq!(
        drops.dropped(),
        1,
        "the copies share one payload, dropped once"
    );
    drop(gate);
    Ok(())
}

/// `Bus::send` tries every subscriber; with one full and one stopped it says Backpressure
/// ("retry later" is the useful answer), and Stopped only when every subscriber has stopped.
#[test]
fn send_reports_full_over_stopped_among_subscribers() -> Result<()> {
    let rt = Runtime::builder().workers(1).build()?;
    let full = rt.deploy_with("full", ComponentOptions::new().mailbox(1), || Gated {
        gate: channel::never(),
        handled: channel::unbounded().0,
    })?;
    // A reactor of another runtime, stopped: it refuses with Stopped.
    let other = Runtime::builder().workers(1).build()?;
    let gone = other.deploy_with("gone", ComponentOptions::new(), || Gated {
        gate: channel::never(),
        handled: channel::unbounded().0,
    })?;
    other.stop()?;
    assert!(gone.is_stopped());

    let bus = rt.bus();
    bus.subscribe_reactor("bp.mixed", &gone)?;
    bus.subscribe_reactor("bp.mixed", &full)?;
    bus.subscribe_reactor("bp.dead", &gone)?;
    full.execute(Message::empty())?; // fills "full" (not started: nothing leaves)

    let drops = DropCounter::default();
    for seq in 0..4 {
        // every starting point of the round robin gives the same answer
        match bus.send("bp.mixed", drops.message(seq)) {
            Err(Error::Backpressure {
                target,
                capacity,
                rejected,
            }) => {
                assert_eq!((&*target, capacity), ("full", 1));
                assert_eq!(seq_of(&rejected), seq);
            }
            other => panic!("expected Backpressure, got {other:?}"),
        }
        match bus.send("bp.dead", drops.message(100 + seq)) {
            Err(Error::Stopped { target, rejected }) => {
                assert_eq!(&*target, "gone");
                assert_eq!(seq_of(&rejected), 100 + seq);
            }
            other => panic!("expected Stopped, got {other:?}"),
        }
    }
    assert_eq!(drops.dropped(), 8);
    Ok(())
}

/// Inside a component, a request to a full responder is refused naming the responder, and
/// the place reserved for its reply is given back at once.
#[test]
fn context_request_to_full_responder_names_responder_and_frees_place() -> Result<()> {
    let rt = Runtime::builder().workers(1).build()?;
    let driver = rt.deploy_with("driver", ComponentOptions::new().max_pending(8), || {
        Driver {
            at_stop: Arc::default(),
        }
    })?;
    let (gate, gate_rx) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let responder = rt.deploy_with(
        "responder",
        ComponentOptions::new().mailbox(2).subscribe(ASK_TOPIC),
        move || Gated {
            gate: gate_rx.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    // One message taken into the blocked handler, then two fill the mailbox.
    responder.execute(Message::empty())?;
    wait_until("the responder takes its first message", || {
        responder.is_empty()
    });
    responder.execute(Message::empty())?;
    responder.execute(Message::empty())?;

    let drops = DropCounter::default();
    let msg = drops.message(1);
    let id = msg.id();
    let (err, pending_after) = on_driver(&driver, move |ctx| {
        let r = ctx.request(ASK_TOPIC, msg, SOON, |_, _, _| {
            panic!("a refused request has no continuation")
        });
        (r.err(), ctx.pending())
    });
    match err {
        Some(Error::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("responder", 2));
            assert_eq!(rejected.id(), id);
            assert!(!rejected.expects_reply());
        }
        other => panic!("expected Backpressure, got {other:?}"),
    }
    assert_eq!(pending_after, 0);
    assert_eq!(driver.stats().pending, 0, "the reserved place came back");
    assert_eq!(drops.dropped(), 1);
    drop(gate);
    let report = rt.stop()?;
    assert_eq!(report.component("responder").unwrap().handled, 3);
    assert_eq!(handled.try_iter().count(), 3);
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

/// `spawn_blocking` is also bounded by the component's own `max_pending`: then the refusal
/// names the component, and the job handed back still runs when called.
#[test]
fn spawn_blocking_past_max_pending_names_component() -> Result<()> {
    let rt = Runtime::builder().workers(1).worker_queue(64).build()?;
    let driver = rt.deploy_with("driver", ComponentOptions::new().max_pending(2), || {
        Driver {
            at_stop: Arc::default(),
        }
    })?;
    rt.start()?;
    let gate = block_worker(rt.pool());
    let (done_tx, done) = channel::unbounded();
    let (ran_tx, ran) = channel::unbounded();
    let refused = on_driver(&driver, move |ctx| {
        let mut refused = Vec::new();
        for i in 0..4u32 {
            let ran = ran_tx.clone();
            let done = done_tx.clone();
            let job = move || {
                let _ = ran.send(i);
                i
            };
            if let Err(e) = ctx.spawn_blocking(job, move |_, _, r| {
                let _ = done.send(r.ok());
            }) {
                refused.push((i, e));
            }
        }
        refused
    });
    assert_eq!(refused.len(), 2);
    for (i, e) in refused {
        match e {
            Error::Backpressure {
                target,
                capacity,
                rejected,
            } => {
                assert_eq!((&*target, capacity), ("driver", 2));
                assert_eq!(rejected(), i, "the job handed back is the one submitted");
                assert_eq!(ran.try_recv().ok(), Some(i));
            }
            other => panic!("expected Backpressure, got {other:?}"),
        }
    }
    drop(gate);
    let mut results: Vec<_> = (0..2)
        .map(|_| done.recv_timeout(SOON).expect("continuation"))
        .collect();
    results.sort();
    assert_eq!(results, [Some(0), Some(1)]);
    assert_eq!(rt.pool().stats().rejected, 0, "the pool refused nothing");
    rt.stop()?;
    Ok(())
}

/// Messages queued for a runtime that never started are dead-lettered by `stop`, counted as
/// abandoned, and each dropped exactly once; a request among them is answered NoReply.
#[test]
fn queued_at_stop_of_unstarted_runtime_dead_lettered() -> Result<()> {
    let rt = Runtime::builder().workers(1).build()?;
    rt.deploy_with(
        "idle",
        ComponentOptions::new().mailbox(8).subscribe("bp.idle"),
        || Gated {
            gate: channel::never(),
            handled: channel::unbounded().0,
        },
    )?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let drops = DropCounter::default();
    for seq in 0..7 {
        rt.bus().send("bp.idle", drops.message(seq))?;
    }
    let pending = rt
        .bus()
        .request("bp.idle", drops.message(7), SOON)
        .map_err(Error::without_payload)?;
    let report = rt.stop()?;
    let c = report.component("idle").unwrap();
    assert_eq!((c.handled, c.abandoned), (0, 8));
    assert!(!report.is_clean());
    assert!(matches!(pending.wait(), Err(Error::NoReply { .. })));
    assert_eq!(
        sorted(dead_letters(&dead, "idle")),
        (0..8).collect::<Vec<_>>()
    );
    assert_eq!(drops.dropped(), 8);
    assert_eq!(report.bus.dead_letters, 8);
    Ok(())
}

/// A component that, on its first message, says so and waits until its reactor has been
/// asked to stop.
struct HoldsUntilStop {
    entered: Sender<()>,
    seen: Sender<u64>,
    first: bool,
}

impl Component for HoldsUntilStop {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if std::mem::take(&mut self.first) {
            let _ = self.entered.send(());
            let reactor = ctx.reactor().clone();
            wait_until("stop is asked", || reactor.is_stopped());
        }
        let _ = self.seen.send(seq_of(&msg));
        Ok(())
    }
}

/// With a zero drain deadline, the message in hand when the stop comes is handled and every
/// other one is dead-lettered and counted: handled + abandoned = accepted, each exactly once,
/// the handled ones a prefix in send order.
#[test]
fn left_after_drain_deadline_dead_lettered_once() -> Result<()> {
    const N: u64 = 256;
    let rt = Runtime::builder()
        .workers(1)
        .drain_timeout(Duration::ZERO)
        .build()?;
    let (seen_tx, seen) = channel::unbounded();
    let (entered_tx, entered) = channel::bounded(1);
    let reactor = rt.deploy_with(
        "holds",
        ComponentOptions::new()
            .mailbox(N as usize)
            .subscribe("bp.holds"),
        move || HoldsUntilStop {
            entered: entered_tx.clone(),
            seen: seen_tx.clone(),
            first: true,
        },
    )?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, N as usize)?;
    let drops = DropCounter::default();
    for seq in 0..N {
        rt.bus().send("bp.holds", drops.message(seq))?;
    }
    rt.start()?;
    entered.recv_timeout(SOON)?;
    let report = rt.stop()?;
    let c = report.component("holds").unwrap();
    let handled: Vec<u64> = seen.try_iter().collect();
    let abandoned = dead_letters(&dead, "holds");
    assert_eq!(c.handled, handled.len() as u64);
    assert_eq!(c.abandoned, abandoned.len() as u64);
    // The deadline is checked before each message: none is started after it.
    assert_eq!(
        (c.handled, c.abandoned),
        (1, N - 1),
        "only the message in hand when the stop came is handled"
    );
    assert_eq!(handled, (0..c.handled).collect::<Vec<_>>());
    assert_eq!(sorted(abandoned), (c.handled..N).collect::<Vec<_>>());
    assert_eq!(reactor.stats().dead_lettered, c.abandoned);
    assert_eq!(drops.dropped() as u64, N);
    Ok(())
}

/// `without_payload` turns a refusal carrying a job (not `Sync`) into an error that `?`
/// carries into `anyhow`; a refusal carrying a message goes into `anyhow` as it is, and the
/// message can even be taken back out.
#[test]
fn without_payload_converts_into_anyhow() {
    let pool = WorkerPool::builder()
        .num_threads(1)
        .queue_capacity(1)
        .thread_name("bp-anyhow")
        .build()
        .unwrap();
    let gate = block_worker(&pool);
    let (tx, rx) = channel::unbounded();
    let submit = |n: u32| -> Result<()> {
        let tx = tx.clone();
        pool.try_execute(move || tx.send(n).unwrap())
            .map_err(Error::without_payload)?;
        Ok(())
    };
    submit(1).expect("the queue has room for one");
    let err = submit(2).expect_err("the queue is full");
    match err.downcast_ref::<Error>() {
        Some(Error::Backpressure {
            target, capacity, ..
        }) => assert_eq!((&**target, *capacity), ("bp-anyhow", 1)),
        other => panic!("expected Backpressure, got {other:?}"),
    }
    assert_eq!(err.to_string(), "`bp-anyhow` is full (capacity 1)");
    drop(gate);
    assert_eq!(rx.recv_timeout(SOON).unwrap(), 1);
    pool.shutdown(SOON);
    let stopped = submit(3).expect_err("the pool is shut down");
    assert!(matches!(
        stopped.downcast_ref::<Error>(),
        Some(Error::Stopped { .. })
    ));

    let bus = Bus::new();
    let _inbox = bus.subscribe_inbox("bp.full", 1).unwrap();
    let send = |m: Message| -> Result<()> {
        bus.send("bp.full", m)?; // Error<Message> is Send + Sync: `?` as it is
        Ok(())
    };
    send(Message::empty()).unwrap();
    let msg = Message::typed(5u8);
    let id = msg.id();
    let err = send(msg).expect_err("the inbox is full");
    let back = err
        .downcast::<Error<Message>>()
        .expect("the original error")
        .into_inner()
        .expect("with the message");
    assert_eq!(back.id(), id);
}

/// `Send`/`Sync` of the handles and errors the contract hands between threads.
#[test]
fn handles_and_errors_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Reactor>();
    send_sync::<Bus>();
    send_sync::<WorkerPool>();
    send_sync::<Error<Message>>();
    send::<Error<Job>>();
    send::<PendingReply>();
    send::<Inbox>();
}
