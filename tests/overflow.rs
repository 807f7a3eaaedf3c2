//! Mailbox overflow policies and dead letters.
//!
//! - `Overflow::Reject` (the default) hands the message back in `Error::Backpressure`;
//! - `DropNewest` / `DropOldest` accept, drop one message, count it
//!   (`ReactorStats::dropped`, `ComponentReport::dropped`) and dead-letter it with
//!   `DeadLetterReason::Overflow(policy)`; a request among the dropped is told `NoReply` at once;
//! - every accepted message is handled, abandoned or dropped, exactly once, also under
//!   concurrent producers;
//! - a dead letter that a dead-letter subscriber drops is only counted, never published again;
//! - each dead-letter reason names its component (or none, for a plain thread's late reply).
//!
//! A mailbox is filled deterministically by sending before `Runtime::start`: nothing drains it
//! until then.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Component, Context, DeadLetter, DeadLetterReason, Error, Inbox, Message, Overflow,
    Payload, ReplyHandle, Runtime, SendError, DEAD_LETTER_TOPIC,
};
use support::{on, run_on, runtime, wait_until, DropCounter, Tracked, SOON};

// ---- helpers ---------------------------------------------------------------------------------

/// Long enough that an outcome arriving "promptly" cannot be this timeout firing.
const LONG: Duration = Duration::from_secs(30);

/// The stress payload: which producer sent it, and its place in that producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    producer: usize,
    seq: u64,
}

/// The sequence number a test payload carries (`u64`, [`Tracked`] or [`Item`]).
fn seq_of(m: &Message) -> Option<u64> {
    m.get::<u64>()
        .copied()
        .or_else(|| m.get::<Tracked>().map(|t| t.seq))
        .or_else(|| m.get::<Item>().map(|i| i.seq))
}

/// Reports the sequence number (and the whole `Item`, if it is one) of every message it
/// handles, in the order it handles them.
struct Recorder {
    tx: Sender<(u64, Option<Item>)>,
}

impl Component for Recorder {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let seq = seq_of(&msg).ok_or("no sequence number")?;
        let _ = self.tx.send((seq, msg.get::<Item>().copied()));
        Ok(())
    }
}

/// Handles every message by doing nothing (used where it never runs, or need not).
struct Quiet;

impl Component for Quiet {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A `Recorder` factory and the receiving end of what it records.
fn recorder() -> (
    impl Fn() -> Recorder + Send + Sync + 'static,
    Receiver<(u64, Option<Item>)>,
) {
    let (tx, rx) = channel::unbounded();
    (move || Recorder { tx: tx.clone() }, rx)
}

/// Receives `n` handled sequence numbers, in order.
fn recv_handled(rx: &Receiver<(u64, Option<Item>)>, n: usize) -> Result<Vec<u64>> {
    (0..n)
        .map(|_| Ok(rx.recv_timeout(SOON)?.0))
        .collect::<Result<Vec<_>>>()
}

/// Sends `msg` on `topic`; a refusal fails the test.
fn send(rt: &Runtime, topic: &str, msg: Message) -> Result<()> {
    rt.bus().send(topic, msg)?;
    Ok(())
}

/// The dead letter a message from the dead-letter topic carries.
fn letter(m: &Message) -> &DeadLetter {
    assert_eq!(m.topic().as_str(), DEAD_LETTER_TOPIC);
    m.get::<DeadLetter>()
        .unwrap_or_else(|| panic!("expected a dead letter, got {m:?}"))
}

/// Receives `n` dead letters (whole: they keep their payloads alive until dropped).
fn recv_letters(inbox: &Inbox, n: usize) -> Result<Vec<Message>> {
    (0..n)
        .map(|_| Ok(inbox.recv_timeout(SOON)?))
        .collect::<Result<Vec<_>>>()
}

/// Every dead letter queued on `inbox` now.
fn drain_letters(inbox: &Inbox) -> Vec<Message> {
    std::iter::from_fn(|| inbox.try_recv()).collect()
}

/// Sequence number, reason and component of each letter.
fn summary(letters: &[Message]) -> Vec<(Option<u64>, DeadLetterReason, Option<String>)> {
    letters
        .iter()
        .map(|m| {
            let dl = letter(m);
            (
                seq_of(&dl.message),
                dl.reason.clone(),
                dl.component.as_deref().map(str::to_owned),
            )
        })
        .collect()
}

/// The summary expected of letters for messages `seqs` of component `sink`.
fn sink_letters(
    seqs: impl IntoIterator<Item = u64>,
    reason: DeadLetterReason,
) -> Vec<(Option<u64>, DeadLetterReason, Option<String>)> {
    seqs.into_iter()
        .map(|s| (Some(s), reason.clone(), Some("sink".to_owned())))
        .collect()
}

// ---- the three policies ----------------------------------------------------------------------

#[test]
fn reject_is_the_default_and_hands_the_message_back() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, handled) = recorder();
    let sink = rt.deploy_with("sink", on("work").mailbox_capacity(2), factory)?;

    send(&rt, "work", Message::typed(0u64))?;
    send(&rt, "work", Message::typed(1u64))?;
    match rt.bus().send("work", Message::typed(2u64)) {
        Err(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("sink", 2));
            assert_eq!(rejected.get::<u64>(), Some(&2), "our message, handed back");
        }
        other => panic!("expected Backpressure, got {other:?}"),
    }
    let stats = sink.stats();
    assert_eq!((stats.rejected, stats.dropped, stats.queued), (1, 0, 2));
    // The direct path refuses the same way.
    match sink.send(Message::typed(3u64)) {
        Err(SendError::Backpressure { rejected, .. }) => {
            assert_eq!(rejected.get::<u64>(), Some(&3))
        }
        other => panic!("expected Backpressure from Reactor::send, got {other:?}"),
    }
    let stats = sink.stats();
    assert_eq!(
        (stats.rejected, stats.dropped, stats.dead_lettered),
        (2, 0, 0)
    );
    // A refused message is the sender's again, not a dead letter.
    assert_eq!(rt.bus().stats().dead_letters, 0);
    assert!(dead.is_empty());

    rt.start()?;
    assert_eq!(recv_handled(&handled, 2)?, [0, 1]);
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (2, 0, 0));
    assert!(handled.try_recv().is_err(), "the refused ones never ran");
    assert!(dead.is_empty());
    Ok(())
}

#[test]
fn drop_newest_accepts_drops_the_arrival_and_dead_letters_it() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, handled) = recorder();
    let sink = rt.deploy_with(
        "sink",
        on("work")
            .mailbox_capacity(2)
            .overflow(Overflow::DropNewest),
        factory,
    )?;

    for seq in 0..5u64 {
        // Full or not, the sender gets Ok.
        send(&rt, "work", Message::typed(seq))?;
    }
    let stats = sink.stats();
    assert_eq!(
        (
            stats.queued,
            stats.dropped,
            stats.rejected,
            stats.dead_lettered
        ),
        (2, 3, 0, 3)
    );
    let letters = recv_letters(&dead, 3)?;
    assert_eq!(
        summary(&letters),
        sink_letters(2..5, DeadLetterReason::Overflow(Overflow::DropNewest))
    );
    for m in &letters {
        // The whole message, as it was sent.
        assert_eq!(letter(m).message.topic().as_str(), "work");
    }
    assert!(dead.is_empty());
    assert_eq!(rt.bus().stats().dead_letters, 3);

    rt.start()?;
    assert_eq!(
        recv_handled(&handled, 2)?,
        [0, 1],
        "the first two, in order"
    );
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (2, 0, 3));
    assert!(handled.try_recv().is_err());
    Ok(())
}

#[test]
fn drop_oldest_makes_room_for_the_arrival_and_dead_letters_the_oldest() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, handled) = recorder();
    let sink = rt.deploy_with(
        "sink",
        on("work")
            .mailbox_capacity(3)
            .overflow(Overflow::DropOldest),
        factory,
    )?;

    for seq in 0..5u64 {
        send(&rt, "work", Message::typed(seq))?;
    }
    let stats = sink.stats();
    assert_eq!(
        (
            stats.queued,
            stats.dropped,
            stats.rejected,
            stats.dead_lettered
        ),
        (3, 2, 0, 2)
    );
    let letters = recv_letters(&dead, 2)?;
    assert_eq!(
        summary(&letters),
        sink_letters(0..2, DeadLetterReason::Overflow(Overflow::DropOldest))
    );
    assert!(dead.is_empty());

    rt.start()?;
    assert_eq!(
        recv_handled(&handled, 3)?,
        [2, 3, 4],
        "the freshest, in order"
    );
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (3, 0, 2));
    assert_eq!(sink.stats().dropped, 2);
    assert!(handled.try_recv().is_err());
    Ok(())
}

// ---- requests --------------------------------------------------------------------------------

/// Checks that `pending` is answered `NoReply` well before its (long) timeout, and that the
/// dead letter of the dropped request is the request (no longer expecting a reply).
fn dropped_request_gets_no_reply(
    pending: reactorium::PendingReply,
    dead: &Inbox,
    policy: Overflow,
    seq: u64,
) -> Result<()> {
    let asked = Instant::now();
    match pending.wait() {
        Err(Error::NoReply { reason }) => assert!(reason.contains("sink"), "{reason}"),
        other => panic!("expected NoReply at once, got {other:?}"),
    }
    assert!(asked.elapsed() < SOON, "answered at once, not at a timeout");
    let letters = recv_letters(dead, 1)?;
    assert_eq!(
        summary(&letters),
        sink_letters([seq], DeadLetterReason::Overflow(policy))
    );
    assert!(!letter(&letters[0]).message.expects_reply());
    Ok(())
}

#[test]
fn request_dropped_as_newest_gets_no_reply_at_once() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, _handled) = recorder();
    let sink = rt.deploy_with(
        "sink",
        on("work")
            .mailbox_capacity(1)
            .overflow(Overflow::DropNewest),
        factory,
    )?;
    send(&rt, "work", Message::typed(0u64))?;
    let pending = rt.bus().request("work", Message::typed(1u64), LONG)?;
    dropped_request_gets_no_reply(pending, &dead, Overflow::DropNewest, 1)?;
    assert_eq!(sink.stats().dropped, 1);
    assert_eq!(sink.stats().pending, 0);
    Ok(())
}

#[test]
fn request_dropped_as_oldest_gets_no_reply_at_once() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, handled) = recorder();
    let sink = rt.deploy_with(
        "sink",
        on("work")
            .mailbox_capacity(2)
            .overflow(Overflow::DropOldest),
        factory,
    )?;
    let pending = rt.bus().request("work", Message::typed(0u64), LONG)?;
    send(&rt, "work", Message::typed(1u64))?;
    send(&rt, "work", Message::typed(2u64))?; // pushes the request out
    dropped_request_gets_no_reply(pending, &dead, Overflow::DropOldest, 0)?;
    assert_eq!(sink.stats().dropped, 1);
    rt.start()?;
    assert_eq!(recv_handled(&handled, 2)?, [1, 2]);
    rt.stop()?;
    Ok(())
}

// ---- nothing lost ----------------------------------------------------------------------------

/// Sends `SENT` tracked messages into a mailbox of `CAP` under `policy`, then either starts
/// the runtime (the queued ones are handled) or not (they are abandoned at stop), and checks
/// that each message ends exactly once.
fn every_message_ends_once(policy: Overflow, start: bool) -> Result<()> {
    const SENT: u64 = 10;
    const CAP: u64 = 4;
    let counter = DropCounter::default();
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64)?;
    let (factory, handled) = recorder();
    rt.deploy_with(
        "sink",
        on("work").mailbox_capacity(CAP as usize).overflow(policy),
        factory,
    )?;
    for seq in 0..SENT {
        send(&rt, "work", counter.message(seq))?;
    }
    if start {
        rt.start()?;
    }
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!(
        c.handled + c.abandoned + c.dropped,
        SENT,
        "accepted = handled + abandoned + dropped: {c:?}"
    );
    assert_eq!(c.dropped, SENT - CAP, "{c:?}");
    if start {
        assert_eq!((c.handled, c.abandoned), (CAP, 0), "{c:?}");
    } else {
        assert_eq!((c.handled, c.abandoned), (0, CAP), "{c:?}");
    }
    assert_eq!(report.bus.dead_letters, c.dropped + c.abandoned);
    assert_eq!(report.bus.dead_letters_dropped, 0);

    let ran: Vec<u64> = handled.try_iter().map(|(s, _)| s).collect();
    let letters = drain_letters(&dead);
    assert_eq!(letters.len() as u64, c.dropped + c.abandoned);
    let mut ends: Vec<u64> = ran.clone();
    for m in &letters {
        let dl = letter(m);
        assert_eq!(dl.component.as_deref(), Some("sink"));
        match &dl.reason {
            DeadLetterReason::Overflow(p) => assert_eq!(*p, policy),
            DeadLetterReason::Stopped => assert!(!start, "abandoned although started"),
            other => panic!("unexpected reason {other:?}"),
        }
        ends.push(seq_of(&dl.message).expect("the whole message"));
    }
    ends.sort_unstable();
    assert_eq!(
        ends,
        (0..SENT).collect::<Vec<_>>(),
        "each message ends once"
    );
    // The handled ones are gone already; the letters still hold the others.
    assert_eq!(counter.dropped() as u64, c.handled);
    drop(letters);
    drop(dead);
    assert_eq!(
        counter.dropped() as u64,
        SENT,
        "every payload dropped exactly once"
    );
    Ok(())
}

#[test]
fn drop_oldest_loses_nothing_when_handled() -> Result<()> {
    every_message_ends_once(Overflow::DropOldest, true)
}

#[test]
fn drop_oldest_loses_nothing_when_never_started() -> Result<()> {
    every_message_ends_once(Overflow::DropOldest, false)
}

#[test]
fn drop_newest_loses_nothing_when_handled() -> Result<()> {
    every_message_ends_once(Overflow::DropNewest, true)
}

#[test]
fn drop_newest_loses_nothing_when_never_started() -> Result<()> {
    every_message_ends_once(Overflow::DropNewest, false)
}

// ---- concurrency -----------------------------------------------------------------------------

/// Four producer threads send `PER` messages each into one running component with a mailbox
/// of 8 under `policy`; then the runtime stops. Every message is handled or dead-lettered,
/// exactly once; each producer's handled messages keep their order.
fn concurrent_producers(policy: Overflow) -> Result<()> {
    const PRODUCERS: usize = 4;
    const PER: u64 = 20_000;
    const TOTAL: u64 = PRODUCERS as u64 * PER;
    let began = Instant::now();
    let rt = runtime()?;
    let dead = rt
        .bus()
        .subscribe_inbox(DEAD_LETTER_TOPIC, TOTAL as usize + 16)?;
    let (factory, handled) = recorder();
    let sink = rt.deploy_with(
        "sink",
        on("work").mailbox_capacity(8).overflow(policy),
        factory,
    )?;
    rt.start()?;

    std::thread::scope(|s| {
        for producer in 0..PRODUCERS {
            let bus = rt.bus().clone();
            s.spawn(move || {
                for seq in 0..PER {
                    if let Err(e) = bus.send("work", Message::typed(Item { producer, seq })) {
                        panic!("producer {producer}, message {seq}: a drop policy never refuses, got {e:?}");
                    }
                }
            });
        }
    });
    // The running component handles what it kept by itself, before any stop: no lost
    // wake-up, no message stranded in its mailbox.
    wait_until("the sink handles every message it kept", || {
        let s = sink.stats();
        s.handled + s.dropped == TOTAL
    });
    let before_stop = sink.stats();
    assert_eq!(before_stop.queued, 0);
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported").clone();
    assert_eq!(c.abandoned, 0, "nothing was left to abandon: {c:?}");
    assert_eq!(c.drained, 0, "nothing was left to drain: {c:?}");
    assert_eq!(
        (c.handled, c.dropped),
        (before_stop.handled, before_stop.dropped)
    );
    assert!(c.joined && c.failure.is_none(), "{c:?}");
    assert_eq!(c.handled + c.dropped + c.abandoned, TOTAL, "{c:?}");
    assert_eq!(c.dropped, sink.stats().dropped);
    assert!(
        c.handled > 0 && c.dropped > 0,
        "both paths exercised: {c:?}"
    );

    // What was handled, per producer, in order.
    let ran: Vec<Item> = handled
        .try_iter()
        .map(|(_, i)| i.expect("an item"))
        .collect();
    assert_eq!(ran.len() as u64, c.handled);
    let mut last: BTreeMap<usize, u64> = BTreeMap::new();
    for i in &ran {
        if let Some(&prev) = last.get(&i.producer) {
            assert!(
                i.seq > prev,
                "producer {}: {} handled after {prev}",
                i.producer,
                i.seq
            );
        }
        last.insert(i.producer, i.seq);
    }

    // What was dropped: every one seen on the dead-letter topic, none lost.
    let letters = drain_letters(&dead);
    assert_eq!(letters.len() as u64, c.dropped + c.abandoned);
    assert_eq!(report.bus.dead_letters, c.dropped + c.abandoned);
    assert_eq!(report.bus.dead_letters_dropped, 0);
    let mut overflowed = 0u64;
    let mut ends: Vec<Item> = ran;
    for m in &letters {
        let dl = letter(m);
        assert_eq!(dl.component.as_deref(), Some("sink"));
        match &dl.reason {
            DeadLetterReason::Overflow(p) if *p == policy => overflowed += 1,
            DeadLetterReason::Stopped => {}
            other => panic!("unexpected reason {other:?}"),
        }
        ends.push(*dl.message.get::<Item>().expect("the whole message"));
    }
    assert_eq!(overflowed, c.dropped);
    ends.sort_unstable();
    let all: Vec<Item> = (0..PRODUCERS)
        .flat_map(|producer| (0..PER).map(move |seq| Item { producer, seq }))
        .collect();
    assert!(
        ends == all,
        "every message handled or dead-lettered, exactly once"
    );
    eprintln!(
        "{policy}: handled {}, dropped {}, abandoned {} in {:?}",
        c.handled,
        c.dropped,
        c.abandoned,
        began.elapsed()
    );
    Ok(())
}

#[test]
fn concurrent_producers_drop_oldest_lose_nothing_and_keep_order() -> Result<()> {
    concurrent_producers(Overflow::DropOldest)
}

#[test]
fn concurrent_producers_drop_newest_lose_nothing_and_keep_order() -> Result<()> {
    concurrent_producers(Overflow::DropNewest)
}

// ---- dead letters never recurse ---------------------------------------------------------------

#[test]
fn dead_letter_subscriber_overflow_is_counted_not_republished() -> Result<()> {
    const SENT: u64 = 5;
    let counter = DropCounter::default();
    let rt = runtime()?;
    // A plain observer of everything published on the dead-letter topic.
    let seen = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64)?;
    // The source of dead letters: keeps one message, drops the rest.
    let source = rt.deploy_with(
        "source",
        on("work")
            .mailbox_capacity(1)
            .overflow(Overflow::DropNewest),
        || Quiet,
    )?;
    // A dead-letter subscriber that keeps one letter and drops the rest. Never started.
    let (factory, _handled) = recorder();
    let dlq = rt.deploy_with(
        "dlq",
        on(DEAD_LETTER_TOPIC)
            .mailbox_capacity(1)
            .overflow(Overflow::DropNewest),
        factory,
    )?;

    for seq in 0..SENT {
        send(&rt, "work", counter.message(seq))?;
    }
    // Four drops at the source: four dead letters. The dlq kept the first and dropped three,
    // which are only counted.
    assert_eq!(source.stats().dropped, SENT - 1);
    assert_eq!(dlq.stats().dropped, SENT - 2);
    let stats = rt.bus().stats();
    assert_eq!(
        (stats.dead_letters, stats.dead_letters_dropped),
        (SENT - 1, SENT - 2)
    );
    let letters = recv_letters(&seen, (SENT - 1) as usize)?;
    assert_eq!(
        summary(&letters),
        (1..SENT)
            .map(|s| (
                Some(s),
                DeadLetterReason::Overflow(Overflow::DropNewest),
                Some("source".to_owned())
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        seen.is_empty(),
        "nothing from the dlq's own drops was published"
    );

    // Stop (reverse deploy order): the dlq's queued letter is abandoned and only counted; the
    // source's queued message becomes a fifth dead letter, which the stopped dlq refuses
    // (counted) and the observer receives.
    let report = rt.stop()?;
    let d = report.component("dlq").expect("reported");
    assert_eq!((d.handled, d.abandoned, d.dropped), (0, 1, SENT - 2));
    let s = report.component("source").expect("reported");
    assert_eq!((s.handled, s.abandoned, s.dropped), (0, 1, SENT - 1));
    // Dropped dead letters: the dlq's three overflow drops, its abandoned letter, and the
    // fifth letter it refused once stopped.
    assert_eq!(
        (report.bus.dead_letters, report.bus.dead_letters_dropped),
        (SENT, SENT)
    );
    let last = recv_letters(&seen, 1)?;
    assert_eq!(
        summary(&last),
        [(
            Some(0),
            DeadLetterReason::Stopped,
            Some("source".to_owned())
        )]
    );
    assert!(seen.is_empty());
    // Still exact a moment later: nothing loops in the background.
    assert_eq!(rt.bus().stats(), report.bus);
    drop((letters, last));
    assert_eq!(counter.dropped() as u64, SENT);
    Ok(())
}

#[test]
fn dead_letters_are_counted_without_any_subscriber() -> Result<()> {
    let rt = runtime()?;
    let sink = rt.deploy_with(
        "sink",
        on("work")
            .mailbox_capacity(1)
            .overflow(Overflow::DropNewest),
        || Quiet,
    )?;
    assert_eq!(rt.bus().stats().dead_letters, 0);
    for seq in 0..4u64 {
        send(&rt, "work", Message::typed(seq))?;
        assert_eq!(rt.bus().stats().dead_letters, seq);
    }
    assert_eq!(sink.stats().dropped, 3);
    let report = rt.stop()?;
    // Three overflow drops, and the queued one abandoned at stop.
    assert_eq!(report.bus.dead_letters, 4);
    assert_eq!(report.bus.dead_letters_dropped, 0);
    assert_eq!(sink.stats().dead_lettered, 4);
    Ok(())
}

// ---- one dead letter per reason -----------------------------------------------------------------

/// Fails on every message, by panicking or by returning an error.
struct Faulty {
    panic: bool,
}

impl Component for Faulty {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let seq = seq_of(&msg).unwrap_or(u64::MAX);
        if self.panic {
            panic!("kaboom on {seq}");
        }
        Err(format!("refused {seq}").into())
    }
}

/// Runs a `Faulty` on one message and returns the reason of its dead letter, after checking
/// the letter carries the message's envelope (id, topic, headers) without the payload, and
/// names the component.
fn faulty_reason(panic: bool) -> Result<DeadLetterReason> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    rt.deploy_with("faulty", on("work"), move || Faulty { panic })?;
    let msg = Message::typed(7u64).with_header("trace", "t-7");
    let id = msg.id();
    send(&rt, "work", msg)?;
    rt.start()?;
    // Read in place: `take` may find the payload still shared with the bus's own copy of the
    // letter for a moment after delivery.
    let m = dead.recv_timeout(SOON)?;
    let dl = letter(&m);
    assert_eq!(dl.message.id(), id);
    assert_eq!(dl.message.topic().as_str(), "work");
    assert_eq!(dl.message.header("trace"), Some("t-7"));
    assert!(
        matches!(dl.message.payload(), Payload::Empty),
        "the payload went down with the handler"
    );
    assert_eq!(dl.component.as_deref(), Some("faulty"));
    let report = rt.stop()?;
    let c = report.component("faulty").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (0, 1, 0));
    assert!(c.failure.is_some());
    assert!(dead.is_empty(), "one letter only");
    Ok(dl.reason.clone())
}

#[test]
fn dead_letter_for_handler_panic() -> Result<()> {
    match faulty_reason(true)? {
        DeadLetterReason::Panicked(text) => assert!(text.contains("kaboom on 7"), "{text}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    Ok(())
}

#[test]
fn dead_letter_for_handler_error() -> Result<()> {
    assert_eq!(
        faulty_reason(false)?,
        DeadLetterReason::Failed("refused 7".into())
    );
    Ok(())
}

#[test]
fn dead_letter_for_component_never_started() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (factory, handled) = recorder();
    rt.deploy_with("sink", on("work"), factory)?;
    for seq in 0..3u64 {
        send(&rt, "work", Message::typed(seq))?;
    }
    assert!(dead.is_empty());
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (0, 3, 0));
    let letters = recv_letters(&dead, 3)?;
    assert_eq!(
        summary(&letters),
        sink_letters(0..3, DeadLetterReason::Stopped)
    );
    assert!(handled.try_recv().is_err());
    Ok(())
}

/// Stops itself on the first message it handles.
struct StopsAtOnce {
    handled: Sender<u64>,
}

impl Component for StopsAtOnce {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.handled.send(seq_of(&msg).unwrap_or(u64::MAX));
        ctx.stop();
        Ok(())
    }
}

#[test]
fn dead_letter_for_messages_left_past_the_drain_deadline() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (tx, handled) = channel::unbounded();
    let sink = rt.deploy_with(
        "sink",
        on("work").drain_timeout(Duration::ZERO),
        move || StopsAtOnce {
            handled: tx.clone(),
        },
    )?;
    for seq in 0..4u64 {
        send(&rt, "work", Message::typed(seq))?;
    }
    rt.start()?;
    // The first stops the component with a drain deadline of now: the rest are not started.
    let letters = recv_letters(&dead, 3)?;
    assert_eq!(
        summary(&letters),
        sink_letters(1..4, DeadLetterReason::Stopped)
    );
    wait_until("the sink's thread ends", || sink.is_finished());
    assert_eq!(handled.try_iter().collect::<Vec<_>>(), [0]);
    let report = rt.stop()?;
    let c = report.component("sink").expect("reported");
    assert_eq!((c.handled, c.abandoned, c.dropped), (1, 3, 0));
    assert!(c.failure.is_none(), "{c:?}");
    Ok(())
}

/// Keeps the reply handle of each request it gets; answers the held one when a `Release`
/// comes, and reports the outcome of that answer.
struct Holder {
    held: Option<ReplyHandle>,
    outcomes: Sender<Result<(), Error>>,
    got_request: Sender<()>,
}

/// Tells a [`Holder`] to answer now, with this number.
struct Release(u64);

impl Component for Holder {
    fn handle(&mut self, mut msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if let Some(Release(n)) = msg.get::<Release>() {
            let handle = self.held.take().ok_or("nothing held")?;
            let _ = self.outcomes.send(handle.send(Message::typed(*n)));
        } else {
            self.held = Some(msg.take_reply_handle().ok_or("not a request")?);
            let _ = self.got_request.send(());
        }
        Ok(())
    }
}

/// What a test hears from its [`Holder`].
struct HolderLines {
    /// The outcome of each answer the holder sent.
    outcomes: Receiver<Result<(), Error>>,
    /// One notice per request the holder took.
    got_request: Receiver<()>,
}

/// Deploys a [`Holder`] on topic `hold`.
fn deploy_holder(rt: &Runtime) -> Result<HolderLines> {
    let (out_tx, outcomes) = channel::unbounded();
    let (req_tx, got_request) = channel::unbounded();
    rt.deploy_with("holder", on("hold"), move || Holder {
        held: None,
        outcomes: out_tx.clone(),
        got_request: req_tx.clone(),
    })?;
    Ok(HolderLines {
        outcomes,
        got_request,
    })
}

#[test]
fn dead_letter_for_late_reply_to_a_plain_thread() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let HolderLines {
        outcomes,
        got_request,
    } = deploy_holder(&rt)?;
    rt.start()?;

    let timeout = Duration::from_millis(50);
    let pending = rt.bus().request("hold", Message::typed(1u64), timeout)?;
    let request_id = pending.request_id();
    got_request.recv_timeout(SOON)?;
    match pending.wait() {
        Err(Error::Timeout { after }) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Only now does the responder answer.
    send(&rt, "hold", Message::typed(Release(2)))?;
    match outcomes.recv_timeout(SOON)? {
        Err(Error::Timeout { .. }) => {}
        other => panic!("the late reply must be refused with Timeout, got {other:?}"),
    }
    let m = dead.recv_timeout(SOON)?;
    let dl = letter(&m);
    assert_eq!(dl.reason, DeadLetterReason::LateReply);
    assert_eq!(dl.component, None, "a plain thread asked");
    assert_eq!(dl.message.get::<u64>(), Some(&2));
    assert_eq!(dl.message.correlation(), Some(request_id));
    assert_eq!(rt.bus().stats().late_replies, 1);
    assert!(dead.is_empty());
    rt.stop()?;
    Ok(())
}

#[test]
fn dead_letter_for_late_reply_to_a_component() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let HolderLines {
        outcomes,
        got_request,
    } = deploy_holder(&rt)?;
    let asker = rt.deploy_with("asker", on("asker"), || support::Remote)?;
    rt.start()?;

    let timeout = Duration::from_millis(50);
    let (tx, answers) = channel::unbounded();
    run_on(&rt, "asker", move |ctx| {
        ctx.request("hold", Message::typed(1u64), timeout, move |_, _, r| {
            let _ = tx.send(r);
        })
        .expect("request accepted");
    })?;
    got_request.recv_timeout(SOON)?;
    match answers.recv_timeout(SOON)? {
        Err(Error::Timeout { after }) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    send(&rt, "hold", Message::typed(Release(2)))?;
    match outcomes.recv_timeout(SOON)? {
        Err(Error::Timeout { .. }) => {}
        other => panic!("the late reply must be refused with Timeout, got {other:?}"),
    }
    let m = dead.recv_timeout(SOON)?;
    let dl = letter(&m);
    assert_eq!(dl.reason, DeadLetterReason::LateReply);
    assert_eq!(dl.component.as_deref(), Some("asker"), "the requester");
    assert_eq!(dl.message.get::<u64>(), Some(&2));
    assert_eq!(asker.stats().late_replies, 1);
    assert_eq!(rt.bus().stats().late_replies, 1);
    assert!(answers.try_recv().is_err(), "the continuation ran once");
    rt.stop()?;
    Ok(())
}

#[test]
fn dead_letter_for_overflow_names_component_and_policy() -> Result<()> {
    for policy in [Overflow::DropOldest, Overflow::DropNewest] {
        let rt = runtime()?;
        let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
        rt.deploy_with(
            "sink",
            on("work").mailbox_capacity(1).overflow(policy),
            || Quiet,
        )?;
        send(&rt, "work", Message::typed(0u64))?;
        send(&rt, "work", Message::typed(1u64))?;
        let dropped = if policy == Overflow::DropOldest { 0 } else { 1 };
        let letters = recv_letters(&dead, 1)?;
        assert_eq!(
            summary(&letters),
            sink_letters([dropped], DeadLetterReason::Overflow(policy))
        );
        assert_eq!(letters[0].source(), None, "{policy}");
    }
    Ok(())
}

// ---- dead letters at shutdown --------------------------------------------------------------------

/// Reports the sequence number of the message inside every dead letter it handles.
struct LetterRecorder {
    tx: Sender<u64>,
}

impl Component for LetterRecorder {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let seq = seq_of(&letter(&msg).message).ok_or("no sequence number")?;
        let _ = self.tx.send(seq);
        Ok(())
    }
}

/// A component deployed to collect dead letters, deployed after the components it hears
/// about, still gets their shutdown dead letters: components subscribed to the dead-letter
/// topic stop after every other component. (In plain reverse deploy order it stopped first,
/// and every shutdown letter was only counted in `dead_letters_dropped`.)
#[test]
fn shutdown_dead_letters_reach_a_dead_letter_subscriber_deployed_last() -> Result<()> {
    const QUEUED: u64 = 20;
    let counter = DropCounter::default();
    let (open, gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = runtime()?;
    let seen = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64)?;
    // No drain time: whatever it has queued when the stop begins is abandoned.
    let source = rt.deploy_with(
        "source",
        on("work").drain_timeout(Duration::ZERO),
        move || support::Gated {
            gate: gate.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    // Two dead-letter subscribers deployed after it: on the exact topic and on a wildcard.
    let (dlq_tx, dlq) = channel::unbounded();
    let (audit_tx, audit) = channel::unbounded();
    rt.deploy_with("dlq", on(DEAD_LETTER_TOPIC), move || LetterRecorder {
        tx: dlq_tx.clone(),
    })?;
    rt.deploy_with("audit", on("$sys.>"), move || LetterRecorder {
        tx: audit_tx.clone(),
    })?;
    rt.start()?;
    send(&rt, "work", counter.message(0))?;
    wait_until("the source takes message 0", || source.is_empty());
    for seq in 1..=QUEUED {
        send(&rt, "work", counter.message(seq))?;
    }

    let report = std::thread::scope(|s| {
        let stopping = s.spawn(|| rt.stop());
        wait_until("the stop asks the source", || source.is_stopped());
        drop(open);
        stopping.join().expect("stop panicked")
    })?;

    let s = report.component("source").expect("reported");
    assert_eq!((s.handled, s.abandoned), (1, QUEUED), "{s:?}");
    assert!(handled.try_recv().is_ok());
    let want: Vec<u64> = (1..=QUEUED).collect();
    assert_eq!(
        dlq.try_iter().collect::<Vec<_>>(),
        want,
        "the dlq got every letter"
    );
    assert_eq!(
        audit.try_iter().collect::<Vec<_>>(),
        want,
        "so did the wildcard"
    );
    assert_eq!(
        (report.bus.dead_letters, report.bus.dead_letters_dropped),
        (QUEUED, 0)
    );
    let order: Vec<&str> = report.components.iter().map(|c| &*c.name).collect();
    assert_eq!(
        order,
        ["source", "audit", "dlq"],
        "dead-letter subscribers last"
    );
    for name in ["dlq", "audit"] {
        let c = report.component(name).expect("reported");
        assert_eq!((c.handled, c.abandoned), (QUEUED, 0), "{c:?}");
    }
    // A plain thread's inbox, which no stop closes, got them too.
    let letters = drain_letters(&seen);
    assert_eq!(
        summary(&letters),
        (1..=QUEUED)
            .map(|s| (
                Some(s),
                DeadLetterReason::Stopped,
                Some("source".to_owned())
            ))
            .collect::<Vec<_>>()
    );
    drop(letters);
    assert_eq!(counter.dropped() as u64, QUEUED + 1);
    Ok(())
}
