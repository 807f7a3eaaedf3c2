//! Failure handling: a panic or an `Err` in a handler or a continuation fails that component
//! only; what it held goes to the dead-letter topic with the reason; dead letters never
//! recurse. (Panics print to stderr through the default hook; that is expected.)

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Component, ComponentOptions, Context, DeadLetter, DeadLetterReason, Error, Inbox,
    Message, MessageId, Payload, Reactor, Restart, Runtime, SendError, ShutdownReport, Unhandled,
    DEAD_LETTER_TOPIC,
};
use support::{wait_until, DropCounter, Tracked, SOON};

/// How a [`Bomb`] fails.
#[derive(Clone, Copy)]
enum Blow {
    Panic,
    Fail,
}

/// Waits for its gate to open (its sender dropped), then fails on the message it holds.
/// Counts calls of its `stop`, which must not run after a failure.
struct Bomb {
    gate: Receiver<()>,
    blow: Blow,
    stops: Arc<AtomicUsize>,
}

impl Component for Bomb {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.gate.recv();
        let seq = msg.get::<Tracked>().map_or(u64::MAX, |t| t.seq);
        match self.blow {
            Blow::Panic => panic!("kaboom on {seq}"),
            Blow::Fail => Err(format!("refused {seq}").into()),
        }
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers every request with its own payload.
struct Echo;

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let reply = Message::new(msg.payload().clone());
        ctx.reply(&mut msg, reply)?;
        Ok(())
    }
}

fn echo_answers(rt: &Runtime, n: u32) -> Result<()> {
    let reply = rt.bus().request("echo", Message::typed(n), SOON)?.wait()?;
    assert_eq!(reply.get::<u32>(), Some(&n), "echo still answers");
    Ok(())
}

/// A runtime with a [`Bomb`] ("bomb", topic `bomb`) busy on tracked message 0, `queued`
/// tracked messages 1..=queued waiting behind it, and an [`Echo`] ("echo", topic `echo`).
struct Armed {
    rt: Runtime,
    bomb: Reactor,
    fuse: Sender<()>,
    dead: Option<Inbox>,
    counter: DropCounter,
    stops: Arc<AtomicUsize>,
    /// The id of message 0, the one the bomb fails on.
    first: MessageId,
}

fn armed(blow: Blow, queued: u64, dead_letter_capacity: Option<usize>) -> Result<Armed> {
    let counter = DropCounter::default();
    let (fuse, gate) = channel::unbounded::<()>();
    let stops = Arc::new(AtomicUsize::new(0));
    let bomb_stops = Arc::clone(&stops);
    let rt = Runtime::builder().worker_threads(1).build()?;
    let dead = dead_letter_capacity
        .map(|cap| rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, cap))
        .transpose()?;
    let bomb = rt.deploy_with(
        "bomb",
        ComponentOptions::new().subscribe("bomb"),
        move || Bomb {
            gate: gate.clone(),
            blow,
            stops: Arc::clone(&bomb_stops),
        },
    )?;
    rt.deploy_with("echo", ComponentOptions::new().subscribe("echo"), || Echo)?;
    rt.start()?;
    let m0 = counter.message(0);
    let first = m0.id();
    rt.bus().send("bomb", m0)?;
    wait_until("the bomb takes message 0", || bomb.is_empty());
    for seq in 1..=queued {
        rt.bus().send("bomb", counter.message(seq))?;
    }
    assert_eq!(bomb.len() as u64, queued);
    Ok(Armed {
        rt,
        bomb,
        fuse,
        dead,
        counter,
        stops,
        first,
    })
}

/// A dead letter in brief: the sequence number of its tracked payload, the reason, the
/// component.
type Letter = (u64, DeadLetterReason, Option<String>);

/// Receives `n` dead letters, in brief and whole (the whole letters keep the payloads alive).
/// The letter of the message the handler failed on (id `failed`) carries its envelope only:
/// it is reported as sequence 0 after checking that its payload is empty.
fn recv_dead_letters(
    inbox: &Inbox,
    n: usize,
    failed: MessageId,
) -> Result<(Vec<Letter>, Vec<Message>)> {
    let mut summary = Vec::new();
    let mut letters = Vec::new();
    for _ in 0..n {
        let m = inbox.recv_timeout(SOON)?;
        let dl = m.get::<DeadLetter>().expect("a dead letter");
        assert_eq!(m.topic().as_str(), DEAD_LETTER_TOPIC);
        let seq = if dl.message.id() == failed {
            assert!(
                matches!(dl.message.payload(), Payload::Empty),
                "the failed message's payload went with its handler"
            );
            assert_eq!(dl.message.topic().as_str(), "bomb");
            0
        } else {
            dl.message.get::<Tracked>().map_or(u64::MAX, |t| t.seq)
        };
        summary.push((
            seq,
            dl.reason.clone(),
            dl.component.as_deref().map(str::to_owned),
        ));
        letters.push(m);
    }
    Ok((summary, letters))
}

#[test]
fn handler_panic_stops_only_that_component() -> Result<()> {
    let a = armed(Blow::Panic, 0, Some(16))?;
    drop(a.fuse);
    let (letters, _keep) = recv_dead_letters(a.dead.as_ref().unwrap(), 1, a.first)?;
    assert_eq!(letters[0].0, 0);

    assert!(a.bomb.is_stopped());
    assert_eq!(a.bomb.stats().failures, 1);
    match a.rt.bus().send("bomb", Message::typed(1u32)) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "bomb");
            assert_eq!(rejected.get::<u32>(), Some(&1));
        }
        other => panic!("expected Stopped from send, got {other:?}"),
    }
    match a.bomb.send(Message::typed(2u32)) {
        Err(SendError::Stopped { rejected, .. }) => assert_eq!(rejected.get::<u32>(), Some(&2)),
        other => panic!("expected Stopped from Reactor::send, got {other:?}"),
    }
    // The rest of the runtime keeps running.
    echo_answers(&a.rt, 7)?;
    let report = a.rt.stop()?;
    let echo = report.component("echo").expect("reported");
    assert!(echo.joined && echo.failure.is_none(), "{echo:?}");
    assert_eq!(echo.handled, 1);
    Ok(())
}

#[test]
fn handler_panic_dead_letters_its_message_and_the_rest_of_the_mailbox() -> Result<()> {
    const QUEUED: u64 = 5;
    let a = armed(Blow::Panic, QUEUED, Some(16))?;
    // A request among the queued messages is told at once that no reply will come.
    let pending =
        a.rt.bus()
            .request("bomb", a.counter.message(QUEUED + 1), SOON)?;
    drop(a.fuse);

    let (letters, keep) =
        recv_dead_letters(a.dead.as_ref().unwrap(), QUEUED as usize + 2, a.first)?;
    // The panicking message first, then the mailbox in order, all with the panic's text.
    let seqs: Vec<u64> = letters.iter().map(|l| l.0).collect();
    assert_eq!(seqs, (0..=QUEUED + 1).collect::<Vec<_>>());
    for (seq, reason, component) in &letters {
        match reason {
            DeadLetterReason::Panicked(text) => {
                assert!(text.contains("kaboom on 0"), "message {seq}: {text}");
            }
            other => panic!("message {seq}: expected Panicked, got {other:?}"),
        }
        assert_eq!(component.as_deref(), Some("bomb"));
    }
    match pending.wait() {
        Err(Error::NoReply { reason }) => assert!(reason.contains("kaboom on 0"), "{reason}"),
        other => panic!("expected NoReply, got {other:?}"),
    }

    let report = a.rt.stop()?;
    let bomb = report.component("bomb").expect("reported");
    assert_eq!((bomb.handled, bomb.abandoned), (0, QUEUED + 2), "{bomb:?}");
    assert_eq!(a.bomb.stats().dead_lettered, QUEUED + 2);
    assert_eq!(report.bus.dead_letters, QUEUED + 2);
    // Each message dropped exactly once: the failed one's payload with its handler, the
    // others with their letters.
    assert_eq!(a.counter.dropped(), 1);
    drop(keep);
    assert_eq!(a.counter.dropped() as u64, QUEUED + 2);
    Ok(())
}

#[test]
fn handler_error_dead_letters_with_failed_reason() -> Result<()> {
    const QUEUED: u64 = 3;
    let a = armed(Blow::Fail, QUEUED, Some(16))?;
    drop(a.fuse);

    let (letters, keep) =
        recv_dead_letters(a.dead.as_ref().unwrap(), QUEUED as usize + 1, a.first)?;
    let want: Vec<_> = (0..=QUEUED)
        .map(|seq| {
            (
                seq,
                DeadLetterReason::Failed("refused 0".into()),
                Some("bomb".to_owned()),
            )
        })
        .collect();
    assert_eq!(letters, want);
    assert!(a.bomb.is_stopped());
    echo_answers(&a.rt, 3)?;

    let report = a.rt.stop()?;
    let bomb = report.component("bomb").expect("reported");
    assert_eq!(bomb.failure.as_deref(), Some("handler failed: refused 0"));
    assert_eq!((bomb.handled, bomb.abandoned), (0, QUEUED + 1));
    drop(keep);
    assert_eq!(a.counter.dropped() as u64, QUEUED + 1);
    Ok(())
}

#[test]
fn shutdown_report_shows_the_failure() -> Result<()> {
    let a = armed(Blow::Panic, 2, None)?;
    drop(a.fuse);
    wait_until("the bomb fails", || a.bomb.is_stopped());

    let report: ShutdownReport = a.rt.stop()?;
    let bomb = report.component("bomb").expect("reported");
    let failure = bomb.failure.as_deref().expect("a failure is reported");
    assert!(failure.contains("kaboom on 0"), "{failure}");
    assert!(bomb.joined);
    assert_eq!((bomb.handled, bomb.abandoned), (0, 3));
    assert!(report.component("echo").unwrap().failure.is_none());
    assert!(!report.is_clean());
    assert_eq!(
        a.stops.load(Ordering::SeqCst),
        0,
        "`stop` does not run after a failure"
    );
    Ok(())
}

/// On any message, asks `echo` (or, with `job`, the worker pool) for something and panics in
/// the continuation that gets the answer.
struct Asker {
    job: bool,
}

impl Component for Asker {
    fn handle(&mut self, _msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if self.job {
            ctx.spawn_blocking(
                || 6 * 7,
                |_this: &mut Self, _ctx, r| panic!("job continuation exploded on {r:?}"),
            )?;
        } else {
            ctx.request(
                "echo",
                Message::typed(1u32),
                SOON,
                |_this: &mut Self, _ctx, r| {
                    panic!("reply continuation exploded on {:?}", r.map(|m| m.id()))
                },
            )?;
        }
        Ok(())
    }
}

fn continuation_panic_fails_only_the_asker(job: bool, text: &str) -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy_with("echo", ComponentOptions::new().subscribe("echo"), || Echo)?;
    let asker = rt.deploy_with(
        "asker",
        ComponentOptions::new().subscribe("ask"),
        move || Asker { job },
    )?;
    rt.start()?;
    rt.bus().send("ask", Message::empty())?;
    wait_until("the continuation panics", || asker.is_stopped());

    assert_eq!(asker.stats().failures, 1);
    assert!(matches!(
        rt.bus().send("ask", Message::empty()),
        Err(SendError::Stopped { .. })
    ));
    echo_answers(&rt, 9)?;
    let report = rt.stop()?;
    let failure = report
        .component("asker")
        .and_then(|c| c.failure.clone())
        .expect("the asker's failure is reported");
    assert!(failure.contains(text), "{failure}");
    assert!(report.component("echo").unwrap().failure.is_none());
    Ok(())
}

#[test]
fn panic_in_request_continuation_fails_only_that_component() -> Result<()> {
    continuation_panic_fails_only_the_asker(false, "reply continuation exploded")
}

#[test]
fn panic_in_spawn_blocking_continuation_fails_only_that_component() -> Result<()> {
    continuation_panic_fails_only_the_asker(true, "job continuation exploded on Ok(42)")
}

/// Panics in its `stop`.
struct BadStop;

impl Component for BadStop {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        panic!("stop exploded");
    }
}

#[test]
fn panic_in_stop_is_reported_and_the_thread_joined() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let reactor = rt.deploy("bad-stop", || BadStop)?;
    rt.start()?;
    let report = rt.stop()?;
    let c = report.component("bad-stop").expect("reported");
    assert!(c.joined);
    assert!(
        c.failure
            .as_deref()
            .is_some_and(|f| f.contains("stop exploded")),
        "{c:?}"
    );
    assert_eq!(reactor.stats().failures, 1);
    Ok(())
}

#[test]
fn full_dead_letter_inbox_counts_drops_without_recursing() -> Result<()> {
    const QUEUED: u64 = 5;
    let a = armed(Blow::Panic, QUEUED, Some(1))?;
    drop(a.fuse);
    wait_until("the bomb fails", || a.bomb.is_stopped());
    let report = a.rt.stop()?;

    // All six were dead letters; the inbox took the first, the other five were refused and
    // only counted (a refused dead letter is not dead-lettered again).
    assert_eq!(report.bus.dead_letters, QUEUED + 1);
    assert_eq!(report.bus.dead_letters_dropped, QUEUED);
    let dead = a.dead.as_ref().unwrap();
    assert_eq!(dead.len(), 1);
    let first = dead.try_recv().unwrap();
    let dl = first.get::<DeadLetter>().unwrap();
    assert_eq!(
        dl.message.id(),
        a.first,
        "the failed message's envelope comes first"
    );
    drop(first);
    assert_eq!(a.counter.dropped() as u64, QUEUED + 1);
    Ok(())
}

#[test]
fn dead_letters_are_counted_without_any_subscriber() -> Result<()> {
    const QUEUED: u64 = 4;
    let a = armed(Blow::Panic, QUEUED, None)?;
    assert_eq!(a.rt.bus().stats().dead_letters, 0);
    drop(a.fuse);
    wait_until("the bomb fails", || a.bomb.is_stopped());
    let report = a.rt.stop()?;
    assert_eq!(report.bus.dead_letters, QUEUED + 1);
    assert_eq!(report.bus.dead_letters_dropped, 0);
    assert_eq!(a.bomb.stats().dead_lettered, QUEUED + 1);
    assert_eq!(a.counter.dropped() as u64, QUEUED + 1);
    Ok(())
}

#[test]
fn dead_letter_topic_delivers_to_a_plain_wildcard_subscriber() -> Result<()> {
    // `$sys.>` reaches dead letters like any other topic.
    let a = armed(Blow::Fail, 0, None)?;
    let sys = a.rt.bus().subscribe_inbox("$sys.>", 4)?;
    drop(a.fuse);
    let letter = sys.recv_timeout(SOON)?;
    let dl = letter.get::<DeadLetter>().expect("a dead letter");
    assert_eq!(dl.reason, DeadLetterReason::Failed("refused 0".into()));
    assert_eq!(letter.source(), None);
    Ok(())
}

// ---- the payload of the message a handler failed on ------------------------------------------

/// How a [`Poisoned`] handler fails on a message whose text is `"poison"`.
#[derive(Clone, Copy, Debug)]
enum Poison {
    /// Returns `Unhandled` with the message.
    HandBack,
    /// Panics.
    Panic,
    /// Takes the typed payload out (every message), then panics on a poisoned one.
    TakeThenPanic,
}

/// Handles messages carrying a text (JSON) or a [`Tracked`]; fails on `"poison"` (text) or
/// on tracked sequence 0, as `how` says. Reports each message it handled.
struct Poisoned {
    how: Poison,
    handled: Sender<String>,
}

impl Component for Poisoned {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if let Poison::TakeThenPanic = self.how {
            let tracked = msg.take::<Tracked>().map_err(|_| "not taken")?;
            assert_ne!(tracked.seq, 0, "poisoned input");
            let _ = self.handled.send(format!("#{}", tracked.seq));
            return Ok(());
        }
        let text = msg.as_json().and_then(|v| v.as_str()).unwrap_or_default();
        match (text == "poison", self.how) {
            (true, Poison::HandBack) => Err(Unhandled::new(msg, "poisoned input").into()),
            (true, _) => panic!("poisoned input"),
            (false, _) => {
                let _ = self.handled.send(text.to_owned());
                Ok(())
            }
        }
    }
}

/// Deploys a [`Poisoned`] on topic `p` (restarted after each failure, so it handles what
/// comes next), with its options; returns the runtime, the dead-letter inbox and the feed of
/// what it handled.
fn poisoned(how: Poison, keep: bool) -> Result<(Runtime, Inbox, Receiver<String>)> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    let (tx, handled) = channel::unbounded();
    rt.deploy_with(
        "poisoned",
        ComponentOptions::new()
            .subscribe("p")
            .restart(Restart::Permanent)
            .keep_failed_payloads(keep),
        move || Poisoned {
            how,
            handled: tx.clone(),
        },
    )?;
    rt.start()?;
    Ok((rt, dead, handled))
}

fn text(s: &str) -> Message {
    Message::json(s.into())
}

fn next_letter(dead: &Inbox) -> Result<DeadLetter> {
    dead.recv_timeout(SOON)?
        .take::<DeadLetter>()
        .map_err(|m| anyhow::anyhow!("expected a dead letter, got {m:?}"))
}

#[test]
fn a_handler_that_hands_its_message_back_has_it_dead_lettered_whole() -> Result<()> {
    let (rt, dead, handled) = poisoned(Poison::HandBack, false)?;
    let poison = text("poison").with_header("tenant", "acme");
    let id = poison.id();
    rt.bus().send("p", poison)?;
    let letter = next_letter(&dead)?;
    assert_eq!(letter.message.id(), id);
    assert_eq!(
        letter.message.as_json(),
        Some(&"poison".into()),
        "the payload"
    );
    assert_eq!(letter.message.header("tenant"), Some("acme"));
    assert_eq!(
        letter.reason,
        DeadLetterReason::Failed("poisoned input".into())
    );

    // A request handed back is answered at once with the reason.
    let r = rt.bus().request("p", text("poison"), SOON)?.wait();
    match r {
        Err(Error::NoReply { reason }) => assert!(reason.contains("poisoned input"), "{reason}"),
        other => panic!("expected NoReply, got {other:?}"),
    }
    let letter = next_letter(&dead)?;
    assert_eq!(letter.message.as_json(), Some(&"poison".into()));
    assert!(!letter.message.expects_reply(), "the request was answered");

    rt.bus().send("p", text("fine"))?;
    assert_eq!(handled.recv_timeout(SOON)?, "fine");
    Ok(())
}

#[test]
fn a_panics_message_is_dead_lettered_whole_when_its_component_keeps_payloads() -> Result<()> {
    for keep in [false, true] {
        let (rt, dead, handled) = poisoned(Poison::Panic, keep)?;
        rt.bus().send("p", text("poison"))?;
        let letter = next_letter(&dead)?;
        assert!(
            matches!(letter.reason, DeadLetterReason::Panicked(ref m) if m == "poisoned input"),
            "{:?}",
            letter.reason
        );
        if keep {
            assert_eq!(letter.message.as_json(), Some(&"poison".into()), "kept");
        } else {
            assert!(
                matches!(letter.message.payload(), Payload::Empty),
                "not kept"
            );
        }
        rt.bus().send("p", text("fine"))?;
        assert_eq!(handled.recv_timeout(SOON)?, "fine");
    }
    Ok(())
}

#[test]
fn a_kept_payload_can_still_be_taken_and_is_not_kept_once_taken() -> Result<()> {
    let counter = DropCounter::default();
    let (rt, dead, handled) = poisoned(Poison::TakeThenPanic, true)?;
    for seq in [1, 0, 2] {
        rt.bus().send("p", counter.message(seq))?;
    }
    // `take` succeeds although the reactor holds a second reference while the handler runs.
    assert_eq!(handled.recv_timeout(SOON)?, "#1");
    assert_eq!(handled.recv_timeout(SOON)?, "#2");
    // The handler took the payload of message 0 before it panicked: its letter has none.
    let letter = next_letter(&dead)?;
    assert!(matches!(letter.reason, DeadLetterReason::Panicked(_)));
    assert!(matches!(letter.message.payload(), Payload::Empty));
    rt.stop()?;
    assert_eq!(counter.dropped(), 3, "each payload dropped exactly once");
    Ok(())
}
