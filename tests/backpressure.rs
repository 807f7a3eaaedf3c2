//! The backpressure contract, written once and run against every enqueue path (as flume ran
//! crossbeam's test suite on itself).
//!
//! Each path implements [`EnqueuePath`]; the three contract cases below run on every one:
//!
//! - full: admits exactly `capacity`, then
//!   `SendError::Backpressure { target, capacity, rejected }` with the very item that was
//!   refused (a message's sequence number, or a job that still runs when called), never
//!   `Stopped`; once room is made the item is accepted;
//! - stopped: after the target stops, `SendError::Stopped` with the item, never `Backpressure`,
//!   even while the stopping mailbox or closed pool queue is still full;
//! - every item made is dropped exactly once by the end, wherever it ended: handled, run,
//!   handed back, drained or dead-lettered at stop, or dropped with its queue.
//!
//! The paths: `Reactor::send`, `Bus::send`, `Bus::publish` (the refusal is in
//! `PublishReport::refused`), `Bus::request` from a plain thread, `Context::request` (bounded
//! by the requester's `max_pending`), `WorkerPool::execute`, `Context::spawn_blocking`
//! (bounded by the pool's queue), and a bus `Inbox` subscriber.

mod support;

// The fixtures live in `tests/backpressure/`. A crate root's `mod x;` looks beside the root
// (`tests/x.rs`, where Cargo would take it for a test crate of its own), hence the paths.
#[path = "backpressure/cases.rs"]
mod cases;
#[path = "backpressure/helpers.rs"]
mod helpers;
#[path = "backpressure/inbox_path.rs"]
mod inbox_path;
#[path = "backpressure/mailbox_paths.rs"]
mod mailbox_paths;
#[path = "backpressure/pool_paths.rs"]
mod pool_paths;
#[path = "backpressure/request_paths.rs"]
mod request_paths;

use reactorium::SendError;
use support::DropCounter;

// The paths the contract runs on (the `contract!` modules reach them through `super::*`).
use inbox_path::InboxSend;
use mailbox_paths::{GatedRuntime, Via};
use pool_paths::{ContextSpawn, PoolExecute};
use request_paths::ContextRequest;

/// Capacity of every bounded thing under test: small, so filling it is cheap.
const CAP: usize = 3;

// ---- the contract ------------------------------------------------------------------------

/// How a refused item comes back once its target has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// `SendError::Stopped` naming this target.
    Stopped(&'static str),
    /// `SendError::NoSubscriber` for this topic (an `Inbox` unsubscribes when dropped, so a
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
    fn try_one(&mut self, item: Self::Item) -> Result<(), SendError<Self::Item>>;
    /// Lets the target take at least one item out of its full queue, and waits until it has.
    fn make_room(&mut self);
    /// Stops the target (the runtime, the pool, the inbox), then makes one attempt.
    fn stop_then_try(&mut self, item: Self::Item) -> Result<(), SendError<Self::Item>>;
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
    fn fill_until_full(&mut self) -> (u64, SendError<P::Item>) {
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
    /// refused item is item `seq`; gives the item back when it can be reused. The match names
    /// every case of `SendError`: a case added to it must be placed in the contract here.
    fn expect_full(&mut self, seq: u64, err: SendError<P::Item>) -> Option<P::Item> {
        assert!(err.is_backpressure(), "full, yet reported as {err:?}");
        assert!(!err.is_stopped(), "full reported as stopped: {err:?}");
        let rejected = match err {
            SendError::Backpressure {
                target,
                capacity,
                rejected,
            } => {
                assert_eq!(&*target, self.path.full_target());
                assert_eq!(capacity, CAP);
                rejected
            }
            other @ (SendError::Stopped { .. }
            | SendError::NoSubscriber { .. }
            | SendError::NoComponent { .. }
            | SendError::InvalidTopic { .. }) => panic!("full, yet reported as {other:?}"),
        };
        self.tally.full += 1;
        let (got, back) = self.path.identify(rejected);
        assert_eq!(got, seq, "the refused item is the one offered");
        back
    }

    /// Checks a refusal is the path's "gone" answer, and that the refused item is item `seq`.
    /// As in `expect_full`, every case of `SendError` is named.
    fn expect_gone(&mut self, seq: u64, err: SendError<P::Item>) {
        assert!(
            !err.is_backpressure(),
            "stopped, yet reported as full: {err:?}"
        );
        let rejected = match (self.path.gone(), err) {
            (Gone::Stopped(want), SendError::Stopped { target, rejected }) if target == want => {
                rejected
            }
            (Gone::NoSubscriber(want), SendError::NoSubscriber { topic, rejected })
                if topic == want =>
            {
                rejected
            }
            (
                want,
                other @ (SendError::Stopped { .. }
                | SendError::NoSubscriber { .. }
                | SendError::Backpressure { .. }
                | SendError::NoComponent { .. }
                | SendError::InvalidTopic { .. }),
            ) => panic!("expected {want:?}, got {other:?}"),
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
    c.path.try_one(retry).expect("accepted once there is room");
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
    c.path.try_one(item).expect("accepted once there is room");
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
    /// `Reactor::send` on a component's handle.
    reactor_send => GatedRuntime::new(Via::ReactorSend);
    /// `Bus::send` to a component's exact topic.
    bus_send => GatedRuntime::new(Via::Send);
    /// `Bus::publish` to a topic with one component subscribed.
    bus_publish => GatedRuntime::new(Via::Publish);
    /// `Bus::request` from a plain thread.
    bus_request => GatedRuntime::new(Via::Request);
    /// `Context::request` inside a component: bounded by its `max_pending`.
    context_request => ContextRequest::new();
    /// `WorkerPool::execute`.
    pool_execute => PoolExecute::new();
    /// `Context::spawn_blocking`: bounded by the pool's queue.
    context_spawn_blocking => ContextSpawn::new();
    /// `Bus::send` to a plain thread's `Inbox`.
    inbox_send => InboxSend::new();
}
