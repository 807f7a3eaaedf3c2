//! Cases particular to one path, which the shared contract does not cover, and the error
//! types' conversions and thread-safety.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, Sender};
use reactorium::{
    BoxError, Bus, Component, ComponentOptions, Context, Error, Inbox, Message, PendingReply,
    Reactor, Runtime, SendError, WorkerPool, DEAD_LETTER_TOPIC,
};

use crate::helpers::{block_worker, dead_letters, on_driver, seq_of, sorted, Driver, Job};
use crate::request_paths::ASK_TOPIC;
use crate::support::{wait_until, DropCounter, Gated, SOON};

/// A publish that one subscriber refuses still reaches the others; the report shows the
/// partial fan-out, and the refused copy is the same message (same id).
#[test]
fn publish_reports_partial_fanout_with_refused_copy() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let (gate, gate_rx) = channel::unbounded::<()>();
    let (handled_tx, _handled) = channel::unbounded();
    rt.deploy_with(
        "full",
        ComponentOptions::new()
            .mailbox_capacity(1)
            .subscribe("bp.fan"),
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
        SendError::Backpressure {
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
    let rt = Runtime::builder().worker_threads(1).build()?;
    let full = rt.deploy_with("full", ComponentOptions::new().mailbox_capacity(1), || {
        Gated {
            gate: channel::never(),
            handled: channel::unbounded().0,
        }
    })?;
    // A reactor of another runtime, stopped: it refuses with Stopped.
    let other = Runtime::builder().worker_threads(1).build()?;
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
    full.send(Message::empty())?; // fills "full" (not started: nothing leaves)

    let drops = DropCounter::default();
    for seq in 0..4 {
        // every starting point of the round robin gives the same answer
        match bus.send("bp.mixed", drops.message(seq)) {
            Err(SendError::Backpressure {
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
            Err(SendError::Stopped { target, rejected }) => {
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
    let rt = Runtime::builder().worker_threads(1).build()?;
    let driver = rt.deploy_with("driver", ComponentOptions::new().max_pending(8), || {
        Driver {
            at_stop: Arc::default(),
        }
    })?;
    let (gate, gate_rx) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let responder = rt.deploy_with(
        "responder",
        ComponentOptions::new()
            .mailbox_capacity(2)
            .subscribe(ASK_TOPIC),
        move || Gated {
            gate: gate_rx.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    // One message taken into the blocked handler, then two fill the mailbox.
    responder.send(Message::empty())?;
    wait_until("the responder takes its first message", || {
        responder.is_empty()
    });
    responder.send(Message::empty())?;
    responder.send(Message::empty())?;

    let drops = DropCounter::default();
    let msg = drops.message(1);
    let id = msg.id();
    let (err, pending_after) = on_driver(&driver, move |ctx| {
        let r = ctx.request(ASK_TOPIC, msg, SOON, |_, _, _| {
            panic!("a refused request's continuation comes back uncalled")
        });
        (r.err(), ctx.pending())
    });
    match err {
        Some(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("responder", 2));
            // The message and its continuation come back (dropped here, uncalled).
            assert_eq!(rejected.message.id(), id);
            assert!(!rejected.message.expects_reply());
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
    let rt = Runtime::builder()
        .worker_threads(1)
        .worker_queue_capacity(64)
        .build()?;
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
            SendError::Backpressure {
                target,
                capacity,
                rejected,
            } => {
                assert_eq!((&*target, capacity), ("driver", 2));
                assert_eq!(
                    (rejected.job)(),
                    i,
                    "the job handed back is the one submitted"
                );
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
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy_with(
        "idle",
        ComponentOptions::new()
            .mailbox_capacity(8)
            .subscribe("bp.idle"),
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
    let pending = rt.bus().request("bp.idle", drops.message(7), SOON)?;
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
        .worker_threads(1)
        .drain_timeout(Duration::ZERO)
        .build()?;
    let (seen_tx, seen) = channel::unbounded();
    let (entered_tx, entered) = channel::bounded(1);
    let reactor = rt.deploy_with(
        "holds",
        ComponentOptions::new()
            .mailbox_capacity(N as usize)
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

/// `Error::from` turns a refusal carrying a job that is not `Sync` (so `?` alone could not
/// take it into `anyhow`) into the payload-free `Error`, with the same case and text; a
/// refusal carrying a message goes into `anyhow` as it is, and the message can even be taken
/// back out.
#[test]
fn send_errors_convert_into_anyhow() {
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
        let n = std::cell::Cell::new(n); // `Send`, not `Sync`: so is the job
        pool.execute(move || tx.send(n.get()).unwrap())
            .map_err(Error::from)?;
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
        bus.send("bp.full", m)?; // SendError<Message> is Send + Sync: `?` as it is
        Ok(())
    };
    send(Message::empty()).unwrap();
    let msg = Message::typed(5u8);
    let id = msg.id();
    let err = send(msg).expect_err("the inbox is full");
    let back = err
        .downcast::<SendError<Message>>()
        .expect("the original error")
        .into_inner();
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
    send_sync::<SendError<Message>>();
    send::<SendError<Job>>();
    send::<PendingReply>();
    send::<Inbox>();
}
