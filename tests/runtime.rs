//! Runtime lifecycle: start and stop order, the drain at stop, what a stopped runtime answers,
//! threads left behind (none), `Drop`, handlers that never return, start failures, deploy
//! errors and what a failed deploy leaves behind (nothing).

mod support;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Component, ComponentOptions, ComponentState, Context, DeadLetter, DeadLetterReason,
    Error, Inbox, Message, Reactor, Runtime, SendError, DEAD_LETTER_TOPIC,
};
use support::{threads_named, wait_until, DropCounter, Gated, Probe, Tracked, SOON};

type Log = Arc<Mutex<Vec<String>>>;

/// Writes `start {name}` and `stop {name}` into a shared log; can be told to fail its start.
struct Recorder {
    name: String,
    log: Log,
    fail_start: bool,
}

impl Component for Recorder {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        if self.fail_start {
            return Err(format!("{} cannot start", self.name).into());
        }
        Ok(())
    }

    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
    }
}

fn recorder(
    log: &Log,
    name: &str,
    fail_start: bool,
) -> impl Fn() -> Recorder + Send + Sync + 'static {
    let (log, name) = (Arc::clone(log), name.to_owned());
    move || Recorder {
        name: name.clone(),
        log: Arc::clone(&log),
        fail_start,
    }
}

fn logged(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Handles message `seq == 0` only once `hold` opens (its sender is dropped), and then takes
/// `first_work` more; every other message takes `work` (simulated work on the reactor thread,
/// never waited on by an assertion). Reports each handled sequence number.
struct Slow {
    hold: Receiver<()>,
    first_work: Duration,
    work: Duration,
    handled: Sender<u64>,
}

impl Component for Slow {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let seq = msg
            .get::<Tracked>()
            .ok_or("expected a tracked payload")?
            .seq;
        if seq == 0 {
            let _ = self.hold.recv();
            thread::sleep(self.first_work);
        } else {
            thread::sleep(self.work);
        }
        let _ = self.handled.send(seq);
        Ok(())
    }
}

fn rt_builder() -> reactorium::RuntimeBuilder {
    Runtime::builder().worker_threads(1)
}

fn send(rt: &Runtime, topic: &str, msg: Message) -> Result<()> {
    rt.bus().send(topic, msg)?;
    Ok(())
}

/// Sends message 0 and waits until the reactor has taken it out of its mailbox: its handler is
/// then running (blocked on its gate), so whatever is sent next stays queued in the mailbox.
fn occupy(rt: &Runtime, reactor: &Reactor, topic: &str, first: Message) -> Result<()> {
    send(rt, topic, first)?;
    wait_until("the reactor takes the first message", || reactor.is_empty());
    Ok(())
}

/// Runs `rt.stop()` on another thread; once the reactor refuses new work (the stop has begun),
/// calls `during` on this thread. Returns what `stop` returned.
fn stop_while(
    rt: &Runtime,
    reactor: &Reactor,
    during: impl FnOnce(),
) -> Result<reactorium::ShutdownReport, Error> {
    thread::scope(|s| {
        let stopping = s.spawn(|| rt.stop());
        wait_until("stop closes the reactor", || reactor.is_stopped());
        during();
        stopping.join().expect("stop panicked")
    })
}

/// A dead letter in brief: the sequence number of its tracked payload, the reason, the
/// component.
type Letter = (u64, DeadLetterReason, Option<String>);

/// Every dead letter now in `inbox`, in brief and whole (the whole letters keep the payloads
/// alive).
fn dead_letters(inbox: &Inbox) -> (Vec<Letter>, Vec<Message>) {
    let letters: Vec<Message> = std::iter::from_fn(|| inbox.try_recv()).collect();
    let summary = letters
        .iter()
        .map(|m| {
            let dl = m.get::<DeadLetter>().expect("a dead letter");
            let seq = dl.message.get::<Tracked>().map_or(u64::MAX, |t| t.seq);
            (
                seq,
                dl.reason.clone(),
                dl.component.as_deref().map(str::to_owned),
            )
        })
        .collect();
    (summary, letters)
}

#[test]
fn start_runs_in_deploy_order_and_stop_in_reverse() -> Result<()> {
    let log = Log::default();
    let rt = rt_builder().build()?;
    for name in ["first", "second", "third"] {
        rt.deploy(name, recorder(&log, name, false))?;
    }
    rt.start()?;
    assert_eq!(logged(&log), ["start first", "start second", "start third"]);

    let report = rt.stop()?;
    assert_eq!(
        logged(&log),
        [
            "start first",
            "start second",
            "start third",
            "stop third",
            "stop second",
            "stop first"
        ]
    );
    let order: Vec<&str> = report.components.iter().map(|c| &*c.name).collect();
    assert_eq!(order, ["third", "second", "first"]);
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[test]
fn stop_drains_queued_messages_when_the_handler_catches_up() -> Result<()> {
    const QUEUED: u64 = 10;
    let (open, gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder().drain_timeout(Duration::from_secs(5)).build()?;
    let reactor = rt.deploy_with(
        "gated",
        ComponentOptions::new().subscribe("work"),
        move || Gated {
            gate: gate.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    occupy(&rt, &reactor, "work", Message::typed(0u64))?;
    for seq in 1..=QUEUED {
        send(&rt, "work", Message::typed(seq))?;
    }
    assert_eq!(reactor.len(), QUEUED as usize);

    // The gate opens only once the stop has begun: everything queued is handled by the drain.
    let report = stop_while(&rt, &reactor, || drop(open))?;

    let c = report.component("gated").expect("reported");
    assert_eq!((c.handled, c.drained, c.abandoned), (QUEUED + 1, QUEUED, 0));
    assert!(c.joined && c.failure.is_none(), "{c:?}");
    let seqs: Vec<u64> = handled
        .try_iter()
        .map(|m| *m.get::<u64>().unwrap())
        .collect();
    assert_eq!(seqs, (0..=QUEUED).collect::<Vec<_>>());
    assert_eq!(report.bus.dead_letters, 0);
    Ok(())
}

#[test]
fn messages_handled_after_the_stop_request_count_as_drained() -> Result<()> {
    // All queued before start, so the reactor takes them out of its mailbox in one go; the
    // handler then waits on the gate, which opens only once the stop has begun.
    const QUEUED: u64 = 10;
    let (open, gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder().drain_timeout(Duration::from_secs(5)).build()?;
    let reactor = rt.deploy_with(
        "gated",
        ComponentOptions::new().subscribe("work"),
        move || Gated {
            gate: gate.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    for seq in 0..QUEUED {
        send(&rt, "work", Message::typed(seq))?;
    }
    rt.start()?;

    let report = stop_while(&rt, &reactor, || drop(open))?;

    assert_eq!(handled.try_iter().count(), QUEUED as usize);
    let c = report.component("gated").expect("reported");
    assert_eq!((c.handled, c.abandoned), (QUEUED, 0), "{c:?}");
    // At most the first message's handler began before the stop was asked; the others ran
    // entirely during the drain.
    assert!(
        c.drained >= QUEUED - 1,
        "messages handled after stop was asked are the drain: {c:?}"
    );
    Ok(())
}

/// Deploys a [`Slow`] component with `queued` messages waiting behind message 0, stops the
/// runtime with a 100 ms drain deadline, and checks that every message is accounted for.
/// Returns the component's report.
fn stop_slow_component(
    queued: u64,
    first_work: Duration,
    work: Duration,
) -> Result<reactorium::ComponentReport> {
    let counter = DropCounter::default();
    let (open, hold) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder()
        .drain_timeout(Duration::from_millis(100))
        .build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 1024)?;
    let reactor = rt.deploy_with(
        "slow",
        ComponentOptions::new()
            .mailbox_capacity(1024)
            .subscribe("work"),
        move || Slow {
            hold: hold.clone(),
            first_work,
            work,
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    occupy(&rt, &reactor, "work", counter.message(0))?;
    for seq in 1..=queued {
        send(&rt, "work", counter.message(seq))?;
    }
    assert_eq!(reactor.len() as u64, queued);

    let report = stop_while(&rt, &reactor, || drop(open))?;
    let c = report.component("slow").expect("reported").clone();

    // Queued at stop = drained + abandoned; handled = the one before the stop + the drain.
    assert_eq!(c.drained + c.abandoned, queued, "{c:?}");
    assert_eq!(c.handled, 1 + c.drained, "{c:?}");
    let seqs: Vec<u64> = handled.try_iter().collect();
    assert_eq!(seqs, (0..c.handled).collect::<Vec<_>>(), "handled in order");

    // Every abandoned message was dead-lettered as `Stopped`, in queue order.
    let (letters, keep) = dead_letters(&dead);
    let want: Vec<_> = (c.handled..=queued)
        .map(|seq| (seq, DeadLetterReason::Stopped, Some("slow".to_owned())))
        .collect();
    assert_eq!(letters, want);
    assert_eq!(report.bus.dead_letters, c.abandoned);

    // Each message dropped exactly once: the handled ones already, the rest with their letter.
    assert_eq!(counter.dropped() as u64, c.handled);
    drop(keep);
    assert_eq!(counter.dropped() as u64, queued + 1);
    Ok(c)
}

#[test]
fn stop_dead_letters_what_is_left_after_the_drain_timeout() -> Result<()> {
    let c = stop_slow_component(200, Duration::ZERO, Duration::from_millis(2))?;
    assert!(
        c.abandoned > 0,
        "a 100 ms drain cannot handle 200 x 2 ms: {c:?}"
    );
    Ok(())
}

#[test]
fn drain_timeout_bounds_the_drain_of_a_few_slow_messages() -> Result<()> {
    // Ten messages of 40 ms each cannot all be handled within a 100 ms drain deadline.
    let c = stop_slow_component(10, Duration::ZERO, Duration::from_millis(40))?;
    assert!(
        c.abandoned > 0,
        "the drain ran past its 100 ms deadline to handle 10 x 40 ms: {c:?}"
    );
    Ok(())
}

#[test]
fn drain_deadline_counts_from_the_stop_request() -> Result<()> {
    // The handler busy at the stop request takes 300 ms more; by then the 100 ms drain
    // deadline has passed, so the five messages queued behind it are left.
    let c = stop_slow_component(5, Duration::from_millis(300), Duration::ZERO)?;
    assert_eq!(
        (c.drained, c.abandoned),
        (0, 5),
        "the drain deadline passed while message 0 was handled: {c:?}"
    );
    Ok(())
}

#[test]
fn stopped_runtime_answers_stopped_not_backpressure() -> Result<()> {
    let (tx, _rx) = channel::unbounded();
    let rt = rt_builder().build()?;
    let reactor = rt.deploy_with("probe", ComponentOptions::new().subscribe("p"), move || {
        Probe { tx: tx.clone() }
    })?;
    rt.start()?;
    rt.stop()?;

    assert!(reactor.is_stopped() && reactor.is_finished());
    match reactor.send(Message::typed(1u32)) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "probe");
            assert_eq!(rejected.get::<u32>(), Some(&1));
        }
        other => panic!("expected Stopped from Reactor::send, got {other:?}"),
    }
    match rt.bus().send("p", Message::typed(2u32)) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "probe");
            assert_eq!(rejected.get::<u32>(), Some(&2));
        }
        other => panic!("expected Stopped from send, got {other:?}"),
    }
    let report = rt.bus().publish("p", Message::typed(3u32))?;
    assert_eq!(report.delivered, 0);
    assert!(matches!(&report.refused[..], [SendError::Stopped { .. }]));
    assert_eq!(
        reactor.stats().rejected,
        0,
        "no send was counted as backpressure"
    );
    Ok(())
}

#[test]
fn stop_leaves_no_thread_behind() -> Result<()> {
    const PREFIX: &str = "Rd1-";
    let rt = rt_builder()
        .worker_threads(2)
        .thread_name_prefix(PREFIX)
        .build()?;
    for name in ["alpha", "beta"] {
        rt.deploy_with(name, ComponentOptions::new().subscribe(name), || Sink)?;
    }
    rt.start()?;
    let want = [
        "Rd1-alpha",
        "Rd1-beta",
        "Rd1-supervisor",
        "Rd1-worker-0",
        "Rd1-worker-1",
    ];
    wait_until("reactor and worker threads run", || {
        let mut names = threads_named(PREFIX);
        names.sort();
        names == want
    });

    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.pool.joined, 2);
    wait_until("every thread has ended", || {
        threads_named(PREFIX).is_empty()
    });
    Ok(())
}

struct Sink;

impl Component for Sink {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn dropping_a_running_runtime_stops_it_and_loses_nothing() -> Result<()> {
    const PREFIX: &str = "Re1-";
    const QUEUED: u64 = 20;
    let counter = DropCounter::default();
    let (open, gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder()
        .thread_name_prefix(PREFIX)
        .drain_timeout(Duration::from_millis(100))
        .build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64)?;
    let reactor = rt.deploy_with(
        "gated",
        ComponentOptions::new().subscribe("work"),
        move || Gated {
            gate: gate.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    occupy(&rt, &reactor, "work", counter.message(0))?;
    for seq in 1..=QUEUED {
        send(&rt, "work", counter.message(seq))?;
    }
    // The reactor, one worker... and the supervisor thread.
    wait_until("threads run", || threads_named(PREFIX).len() == 3);

    // Drop on another thread, so a hang fails the test instead of hanging it.
    let (dropped_tx, dropped) = channel::bounded(1);
    let dropper = thread::spawn(move || {
        drop(rt);
        let _ = dropped_tx.send(());
    });
    wait_until("drop begins the stop", || reactor.is_stopped());
    drop(open);
    dropped
        .recv_timeout(SOON)
        .expect("dropping the runtime hung");
    dropper.join().expect("drop panicked");
    wait_until("every thread has ended", || {
        threads_named(PREFIX).is_empty()
    });

    // Every message was handled or dead-lettered, and none has been dropped on the way.
    let handled: Vec<Message> = handled.try_iter().collect();
    let (letters, keep) = dead_letters(&dead);
    assert_eq!(handled.len() + letters.len(), QUEUED as usize + 1);
    assert!(letters
        .iter()
        .all(|(_, reason, _)| *reason == DeadLetterReason::Stopped));
    assert_eq!(counter.dropped(), 0);
    drop((handled, keep));
    assert_eq!(counter.dropped(), QUEUED as usize + 1);
    Ok(())
}

#[test]
fn dropping_an_unstarted_runtime_dead_letters_what_was_queued() -> Result<()> {
    const PREFIX: &str = "Rn1-";
    let counter = DropCounter::default();
    let (tx, rx) = channel::unbounded();
    let rt = rt_builder().thread_name_prefix(PREFIX).build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    rt.deploy_with(
        "idle",
        ComponentOptions::new().subscribe("idle"),
        move || Probe { tx: tx.clone() },
    )?;
    for seq in 0..5 {
        send(&rt, "idle", counter.message(seq))?;
    }
    drop(rt);

    assert!(rx.try_recv().is_err(), "nothing was handled");
    let (letters, keep) = dead_letters(&dead);
    let want: Vec<_> = (0..5)
        .map(|seq| (seq, DeadLetterReason::Stopped, Some("idle".to_owned())))
        .collect();
    assert_eq!(letters, want);
    assert_eq!(counter.dropped(), 0);
    drop(keep);
    assert_eq!(counter.dropped(), 5);
    wait_until("worker threads have ended", || {
        threads_named(PREFIX).is_empty()
    });
    Ok(())
}

#[test]
fn stop_gives_up_on_a_handler_that_never_returns() -> Result<()> {
    const PREFIX: &str = "Rf1-";
    let (open, gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder()
        .thread_name_prefix(PREFIX)
        .drain_timeout(Duration::from_millis(100))
        .build()?;
    let stuck = rt.deploy_with(
        "stuck",
        ComponentOptions::new().subscribe("stuck"),
        move || Gated {
            gate: gate.clone(),
            handled: handled_tx.clone(),
        },
    )?;
    rt.deploy_with("fine", ComponentOptions::new().subscribe("fine"), || Sink)?;
    rt.start()?;
    occupy(&rt, &stuck, "stuck", Message::typed(1u32))?;

    let report = rt.stop()?;
    let c = report.component("stuck").expect("reported");
    assert!(!c.joined, "{c:?}");
    assert!(report.component("fine").expect("reported").joined);
    assert!(!report.is_clean());
    wait_until("only the stuck thread is left", || {
        threads_named(PREFIX) == ["Rf1-stuck"]
    });

    // Let the handler return: its thread then finishes on its own.
    drop(open);
    let msg = handled.recv_timeout(SOON)?;
    assert_eq!(msg.get::<u32>(), Some(&1));
    wait_until("the stuck thread ends once released", || {
        threads_named(PREFIX).is_empty()
    });
    assert!(stuck.is_finished());
    Ok(())
}

#[test]
fn failed_start_stops_the_components_already_started() -> Result<()> {
    let log = Log::default();
    let rt = rt_builder().build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 16)?;
    rt.deploy("a", recorder(&log, "a", false))?;
    rt.deploy("b", recorder(&log, "b", true))?;
    rt.deploy_with(
        "c",
        ComponentOptions::new().subscribe("c"),
        recorder(&log, "c", false),
    )?;
    send(&rt, "c", DropCounter::default().message(7))?;

    match rt.start() {
        Err(Error::StartFailed { component, reason }) => {
            assert_eq!(&*component, "b");
            assert!(reason.contains("b cannot start"), "{reason}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    // `a` was stopped again; `b` failed in its start so its stop does not run; `c` never
    // started.
    assert_eq!(logged(&log), ["start a", "start b", "stop a"]);
    // What was queued for the component that never started is dead-lettered.
    let (letters, _keep) = dead_letters(&dead);
    assert_eq!(
        letters,
        [(7, DeadLetterReason::Stopped, Some("c".to_owned()))]
    );
    // The runtime is left stopped.
    assert!(matches!(rt.start(), Err(Error::InvalidState { .. })));
    assert!(matches!(rt.stop(), Err(Error::InvalidState { .. })));
    Ok(())
}

#[test]
fn panicking_factory_fails_start_and_stops_the_rest() -> Result<()> {
    let log = Log::default();
    let rt = rt_builder().build()?;
    rt.deploy("a", recorder(&log, "a", false))?;
    let exploding = recorder(&log, "b", false);
    let explode = true;
    rt.deploy("b", move || {
        if explode {
            panic!("factory exploded");
        }
        exploding()
    })?;

    match rt.start() {
        Err(Error::StartFailed { component, reason }) => {
            assert_eq!(&*component, "b");
            assert!(reason.contains("factory exploded"), "{reason}");
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(logged(&log), ["start a", "stop a"]);
    Ok(())
}

#[test]
fn deploy_rejects_bad_names_capacities_patterns_and_duplicates() -> Result<()> {
    let rt = rt_builder().build()?;
    for bad in ["", "has space", "$sys"] {
        match rt.deploy(bad, || Sink) {
            Err(Error::InvalidConfig { .. }) => {}
            other => panic!("name {bad:?}: expected InvalidConfig, got {other:?}"),
        }
    }
    for opts in [
        ComponentOptions::new().mailbox_capacity(0),
        ComponentOptions::new().max_pending(0),
    ] {
        match rt.deploy_with("zero", opts.clone(), || Sink) {
            Err(Error::InvalidConfig { .. }) => {}
            other => panic!("{opts:?}: expected InvalidConfig, got {other:?}"),
        }
    }
    for bad in ["a..b", "a.>.b", "ord*", ""] {
        match rt.deploy_with("topical", ComponentOptions::new().subscribe(bad), || Sink) {
            Err(Error::InvalidTopic { topic, .. }) => assert_eq!(topic, bad),
            other => panic!("pattern {bad:?}: expected InvalidTopic, got {other:?}"),
        }
    }
    // The refused deploys left nothing behind: the names are free.
    assert!(rt.components().is_empty());
    assert_eq!(rt.bus().stats().subscriptions, 0);
    rt.deploy_with("zero", ComponentOptions::new().mailbox_capacity(1), || Sink)?;
    rt.deploy_with("topical", ComponentOptions::new().subscribe("a.b"), || Sink)?;

    match rt.deploy("zero", || Sink) {
        Err(Error::AlreadyDeployed { name }) => assert_eq!(&*name, "zero"),
        other => panic!("expected AlreadyDeployed, got {other:?}"),
    }
    let names: Vec<String> = rt.components().iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["zero", "topical"]);
    Ok(())
}

#[test]
fn deploy_and_stop_after_stop_are_invalid_state() -> Result<()> {
    let rt = rt_builder().build()?;
    rt.deploy("only", || Sink)?;
    rt.start()?;
    assert!(matches!(rt.start(), Err(Error::InvalidState { .. })));
    rt.stop()?;
    assert!(matches!(rt.stop(), Err(Error::InvalidState { .. })));
    assert!(matches!(
        rt.deploy("late", || Sink),
        Err(Error::InvalidState { .. })
    ));
    assert!(matches!(rt.start(), Err(Error::InvalidState { .. })));
    Ok(())
}

#[test]
fn deploy_into_a_running_runtime_starts_the_component_at_once() -> Result<()> {
    const PREFIX: &str = "Ri1-";
    let log = Log::default();
    let rt = rt_builder().thread_name_prefix(PREFIX).build()?;
    rt.deploy("early", recorder(&log, "early", false))?;
    rt.start()?;
    rt.deploy("late", recorder(&log, "late", false))?;
    // `deploy` returned after the component's `start` did.
    assert_eq!(logged(&log), ["start early", "start late"]);
    assert!(threads_named(PREFIX).contains(&"Ri1-late".to_owned()));

    // A running runtime whose new component cannot start drops it again.
    match rt.deploy_with(
        "broken",
        ComponentOptions::new().subscribe("broken"),
        recorder(&log, "broken", true),
    ) {
        Err(Error::StartFailed { component, .. }) => assert_eq!(&*component, "broken"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert!(rt.component("broken").is_none());
    assert!(matches!(
        rt.bus().send("broken", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));

    rt.stop()?;
    assert_eq!(
        logged(&log),
        [
            "start early",
            "start late",
            "start broken",
            "stop late",
            "stop early"
        ]
    );
    Ok(())
}

/// The runtime keeps a component in one registry entry; it used to keep three tables (the
/// deploy list, the name index, the supervision tree) in step by hand. A deploy that fails
/// must leave no trace in any view of the runtime, and free its name.
#[test]
fn a_failed_deploy_leaves_no_trace_and_frees_its_name() -> Result<()> {
    let log = Log::default();
    let rt = rt_builder().build()?;
    let early = rt.deploy_with(
        "early",
        ComponentOptions::new().subscribe("in"),
        recorder(&log, "early", false),
    )?;
    rt.start()?;
    let subscriptions = rt.bus().stats().subscriptions;
    let names = |rt: &Runtime| -> Vec<String> {
        rt.components().iter().map(|c| c.name.to_string()).collect()
    };

    // Refused as a duplicate: the component of that name is left as it was.
    match rt.deploy_with(
        "early",
        ComponentOptions::new().subscribe("other"),
        recorder(&log, "duplicate", false),
    ) {
        Err(Error::AlreadyDeployed { name }) => assert_eq!(&*name, "early"),
        other => panic!("expected AlreadyDeployed, got {other:?}"),
    }
    assert_eq!(rt.bus().stats().subscriptions, subscriptions);
    assert_eq!(
        rt.component("early").unwrap().state,
        ComponentState::Running
    );

    // Fails to start on a running runtime, after its entry and subscriptions were made.
    match rt.deploy_with(
        "broken",
        ComponentOptions::new()
            .subscribe("in")
            .subscribe("broken.>"),
        recorder(&log, "broken", true),
    ) {
        Err(Error::StartFailed { component, .. }) => assert_eq!(&*component, "broken"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(names(&rt), ["early"]);
    let counted: Vec<String> = rt
        .stats()
        .components
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(counted, ["early"]);
    assert!(
        rt.is_ready(),
        "a failed entry left behind would not be running"
    );
    assert!(rt.component("broken").is_none());
    assert!(matches!(rt.watch("broken"), Err(Error::NoComponent { .. })));
    assert_eq!(rt.bus().stats().subscriptions, subscriptions);
    assert!(matches!(
        rt.bus().send_to("broken", Message::empty()),
        Err(SendError::NoComponent { .. })
    ));
    assert!(matches!(
        rt.bus().send("broken.x", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    // `in` still has one subscriber: round robin never lands on the failed component.
    for _ in 0..2 {
        send(&rt, "in", Message::empty())?;
    }
    wait_until("early handles both", || early.stats().handled == 2);

    // The name is free again, and the new component is a whole one.
    let again = rt.deploy_with(
        "broken",
        ComponentOptions::new().subscribe("broken.>"),
        recorder(&log, "broken", false),
    )?;
    assert_eq!(names(&rt), ["early", "broken"]);
    assert_eq!(
        rt.component("broken").unwrap().state,
        ComponentState::Running
    );
    send(&rt, "broken.x", Message::empty())?;
    wait_until("the new broken handles it", || again.stats().handled == 1);
    let report = rt.stop()?;
    let stopped: Vec<String> = report
        .components
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(stopped, ["broken", "early"]);
    assert_eq!(
        logged(&log),
        [
            "start early",
            "start broken",
            "start broken",
            "stop broken",
            "stop early"
        ]
    );
    Ok(())
}

#[test]
fn messages_sent_before_start_are_handled_after_it() -> Result<()> {
    const PREFIX: &str = "Rb1-";
    let (tx, rx) = channel::unbounded();
    let rt = rt_builder().thread_name_prefix(PREFIX).build()?;
    let reactor = rt.deploy_with(
        "early",
        ComponentOptions::new().subscribe("in"),
        move || Probe { tx: tx.clone() },
    )?;
    for n in 0..3u32 {
        send(&rt, "in", Message::typed(n))?;
    }
    assert_eq!(reactor.len(), 3);
    assert!(rx.try_recv().is_err(), "no reactor thread before start");

    rt.start()?;
    for n in 0..3u32 {
        let (msg, thread) = rx.recv_timeout(SOON)?;
        assert_eq!(msg.get::<u32>(), Some(&n));
        assert_eq!(thread, "Rb1-early");
    }
    let report = rt.stop()?;
    assert_eq!(report.component("early").expect("reported").handled, 3);
    Ok(())
}

// ---- the runtime called from its own components ----------------------------------------------

/// Calls `on_start` in `start` and `on_message` in `handle`, with a handle to its runtime.
struct Caller {
    rt: Arc<std::sync::OnceLock<std::sync::Weak<Runtime>>>,
    on_start: fn(&Runtime) -> String,
    on_message: fn(&Runtime) -> String,
    said: Sender<String>,
}

impl Component for Caller {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if let Some(rt) = self.rt.get().and_then(std::sync::Weak::upgrade) {
            let _ = self.said.send((self.on_start)(&rt));
        }
        Ok(())
    }

    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if let Some(rt) = self.rt.get().and_then(std::sync::Weak::upgrade) {
            let _ = self.said.send((self.on_message)(&rt));
        }
        Ok(())
    }
}

/// A runtime with one `Caller` named "caller" (subscribed to "call") and a `Probe` "other".
fn calling_runtime(
    on_start: fn(&Runtime) -> String,
    on_message: fn(&Runtime) -> String,
) -> Result<(Arc<Runtime>, Receiver<String>)> {
    let rt = Arc::new(
        Runtime::builder()
            .worker_threads(1)
            .drain_timeout(Duration::from_secs(60))
            .build()?,
    );
    let cell = Arc::new(std::sync::OnceLock::new());
    let _ = cell.set(Arc::downgrade(&rt));
    let (said_tx, said) = channel::unbounded();
    let (probe_tx, _probe_rx) = channel::unbounded();
    rt.deploy_with("other", ComponentOptions::new(), move || Probe {
        tx: probe_tx.clone(),
    })?;
    rt.deploy_with(
        "caller",
        ComponentOptions::new().subscribe("call"),
        move || Caller {
            rt: Arc::clone(&cell),
            on_start,
            on_message,
            said: said_tx.clone(),
        },
    )?;
    Ok((rt, said))
}

#[test]
fn component_start_may_read_the_runtime_and_may_not_deadlock_it() -> Result<()> {
    let (rt, said) = calling_runtime(
        |rt| {
            let names = rt
                .components()
                .iter()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let deploy = rt.deploy("late", || Gated {
                gate: channel::never(),
                handled: channel::unbounded().0,
            });
            format!("{names} / {:?}", deploy.err())
        },
        |_| String::new(),
    )?;
    // `start` holds the lifecycle while it waits for "caller" to start: reading the runtime
    // works, a nested deploy is refused instead of waiting forever.
    let rt2 = Arc::clone(&rt);
    let starter = thread::spawn(move || rt2.start());
    let what = said.recv_timeout(SOON)?;
    assert_eq!(what, "other,caller / Some(WouldDeadlock)");
    starter.join().expect("start returns")?;
    rt.stop()?;
    Ok(())
}

#[test]
fn stop_from_a_component_does_not_wait_for_itself() -> Result<()> {
    let (rt, said) = calling_runtime(
        |_| String::new(),
        |rt| match rt.stop() {
            Ok(report) => report
                .components
                .iter()
                .map(|c| format!("{}:{}", c.name, c.joined))
                .collect::<Vec<_>>()
                .join(","),
            Err(e) => format!("error: {e}"),
        },
    )?;
    rt.start()?;
    assert_eq!(said.recv_timeout(SOON)?, String::new()); // from `start`
    rt.bus().send("call", Message::empty())?;
    // With a 60 s drain timeout, waiting for itself would take a minute; SOON is 10 s.
    assert_eq!(said.recv_timeout(SOON)?, "caller:false,other:true");
    let caller = rt.component("caller").expect("deployed").reactor;
    wait_until("the caller's thread ends", || caller.is_finished());
    Ok(())
}

/// Calls `f` again while it answers `WouldDeadlock` (another lifecycle call is under way),
/// for at most `SOON`.
fn retry_while_would_deadlock<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        match f() {
            Err(Error::WouldDeadlock) if std::time::Instant::now() < deadline => {
                thread::yield_now();
            }
            other => return other,
        }
    }
}

/// `stop` called from a component reports what it knew of that component, whose thread it
/// cannot wait for: the messages it had handled, and those left in its mailbox, which the
/// thread handles after `stop` returned.
#[test]
fn stop_from_a_component_reports_what_it_left_queued() -> Result<()> {
    let rt = Arc::new(
        Runtime::builder()
            .worker_threads(1)
            .drain_timeout(Duration::from_secs(60))
            .build()?,
    );
    let cell = Arc::new(std::sync::OnceLock::new());
    let _ = cell.set(Arc::downgrade(&rt));
    let (said_tx, said) = channel::unbounded();
    // A mailbox of 4 is taken one message at a time, so three stay queued behind the first.
    let caller = rt.deploy_with(
        "caller",
        ComponentOptions::new()
            .subscribe("call")
            .mailbox_capacity(4),
        move || Caller {
            rt: Arc::clone(&cell),
            on_start: |_| String::new(),
            // The first message may come while `start` still holds the lifecycle.
            on_message: |rt| match retry_while_would_deadlock(|| rt.stop()) {
                Ok(report) => {
                    let c = report.component("caller").expect("reported");
                    format!("joined {} queued {}", c.joined, c.queued)
                }
                Err(e) => format!("error: {e}"),
            },
            said: said_tx.clone(),
        },
    )?;
    for _ in 0..4 {
        send(&rt, "call", Message::empty())?;
    }
    rt.start()?;
    assert_eq!(said.recv_timeout(SOON)?, String::new()); // from `start`
    assert_eq!(said.recv_timeout(SOON)?, "joined false queued 3");
    // After `stop` returned, the thread handles the three (whose own `stop` calls fail).
    for _ in 0..3 {
        let what = said.recv_timeout(SOON)?;
        assert!(what.starts_with("error: "), "{what}");
    }
    wait_until("the caller's thread ends", || caller.is_finished());
    assert_eq!(caller.stats().handled, 4);
    Ok(())
}

#[test]
fn dropping_the_last_runtime_handle_in_a_component_leaves_no_thread() -> Result<()> {
    const PREFIX: &str = "Rself-";
    let rt = Runtime::builder()
        .worker_threads(1)
        .thread_name_prefix(PREFIX)
        .drain_timeout(Duration::from_secs(60))
        .build()?;
    let holder: Arc<Mutex<Option<Runtime>>> = Arc::new(Mutex::new(None));
    let (done_tx, done) = channel::unbounded::<()>();
    let h = Arc::clone(&holder);
    struct DropsRuntime {
        holder: Arc<Mutex<Option<Runtime>>>,
        done: Sender<()>,
    }
    impl Component for DropsRuntime {
        fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
            drop(self.holder.lock().unwrap().take()); // the last handle: Drop runs here
            let _ = self.done.send(());
            Ok(())
        }
    }
    rt.deploy_with(
        "dropper",
        ComponentOptions::new().subscribe("drop"),
        move || DropsRuntime {
            holder: Arc::clone(&h),
            done: done_tx.clone(),
        },
    )?;
    rt.start()?;
    let bus = rt.bus().clone();
    *holder.lock().unwrap() = Some(rt);
    bus.send("drop", Message::empty())?;
    done.recv_timeout(SOON)?;
    wait_until("every runtime thread ends", || {
        threads_named(PREFIX).is_empty()
    });
    Ok(())
}

// ---- one drain deadline for the whole stop -----------------------------------------------------

/// The stop has one drain deadline, counted from its start, shared by every component: a
/// component asked to stop after another used up the time handles nothing more. It used to
/// get a fresh `drain_timeout` of its own, so a stop took up to components × drain_timeout.
#[test]
fn stop_gives_every_component_one_drain_deadline() -> Result<()> {
    const DRAIN: Duration = Duration::from_millis(200);
    let counter = DropCounter::default();
    let (open_down, down_gate) = channel::unbounded::<()>();
    let (open_up, up_gate) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder().drain_timeout(DRAIN).build()?;
    let gated = |gate: Receiver<()>| {
        let handled = handled_tx.clone();
        move || Gated {
            gate: gate.clone(),
            handled: handled.clone(),
        }
    };
    // Deployed first, so stopped last.
    let down = rt.deploy_with(
        "down",
        ComponentOptions::new().subscribe("down"),
        gated(down_gate),
    )?;
    let up = rt.deploy_with(
        "up",
        ComponentOptions::new().subscribe("up"),
        gated(up_gate),
    )?;
    rt.start()?;
    occupy(&rt, &up, "up", counter.message(0))?;
    occupy(&rt, &down, "down", counter.message(100))?;
    for seq in 1..=3 {
        send(&rt, "up", counter.message(seq))?;
    }
    for seq in 101..=105 {
        send(&rt, "down", counter.message(seq))?;
    }

    let report = thread::scope(|s| {
        let stopping = s.spawn(|| rt.stop());
        wait_until("stop asks `up` first", || up.is_stopped());
        let asked = std::time::Instant::now();
        assert!(!down.is_stopped(), "`down` is asked once `up` has stopped");
        // `up` holds its handler past the stop's drain deadline (which began before `asked`).
        wait_until("the stop's drain deadline has passed", || {
            asked.elapsed() >= DRAIN
        });
        drop(open_up);
        wait_until("`down` is asked next", || down.is_stopped());
        drop(open_down);
        stopping.join().expect("stop panicked")
    })?;

    let order: Vec<&str> = report.components.iter().map(|c| &*c.name).collect();
    assert_eq!(order, ["up", "down"]);
    let up_report = report.component("up").expect("reported");
    assert_eq!(
        (up_report.drained, up_report.abandoned),
        (0, 3),
        "{up_report:?}"
    );
    // `down` was asked after the deadline: what it held is abandoned, not drained.
    let down_report = report.component("down").expect("reported");
    assert_eq!(
        (down_report.drained, down_report.abandoned),
        (0, 5),
        "a component asked after the stop's deadline gets no drain of its own: {down_report:?}"
    );
    let mut seqs: Vec<u64> = handled
        .try_iter()
        .map(|m| m.get::<Tracked>().expect("tracked").seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [0, 100], "only the two handlers that were running");
    assert_eq!(report.bus.dead_letters, 8);
    Ok(())
}

/// Forwards every message to `to` once its gate opens, and sends `to` one last message,
/// `LAST`, from its `stop`.
struct Relay {
    gate: Receiver<()>,
    to: &'static str,
}

const LAST: u64 = 999;

impl Component for Relay {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.gate.recv();
        ctx.send(self.to, msg)?;
        Ok(())
    }

    fn stop(&mut self, ctx: &mut Context<'_, Self>) {
        ctx.send(self.to, Message::typed(LAST))
            .expect("the component downstream still takes messages");
    }
}

/// Components stop one after the other in reverse deploy order, each once the one deployed
/// after it has stopped: what a later component sends an earlier one while it drains, and
/// from its `stop`, still lands there and is handled.
#[test]
fn what_a_draining_component_sends_an_earlier_one_is_handled() -> Result<()> {
    const QUEUED: u64 = 20;
    let (open, gate) = channel::unbounded::<()>();
    let (probe_tx, probed) = channel::unbounded();
    let rt = rt_builder().drain_timeout(Duration::from_secs(5)).build()?;
    let sink = rt.deploy_with(
        "sink",
        ComponentOptions::new().subscribe("sink"),
        move || Probe {
            tx: probe_tx.clone(),
        },
    )?;
    let relay = rt.deploy_with(
        "relay",
        ComponentOptions::new().subscribe("relay"),
        move || Relay {
            gate: gate.clone(),
            to: "sink",
        },
    )?;
    rt.start()?;
    occupy(&rt, &relay, "relay", Message::typed(0u64))?;
    for seq in 1..=QUEUED {
        send(&rt, "relay", Message::typed(seq))?;
    }

    // The relay drains only once the stop has begun.
    let report = stop_while(&rt, &relay, || {
        assert!(!sink.is_stopped(), "the sink is asked after the relay");
        drop(open);
    })?;

    let seqs: Vec<u64> = probed
        .try_iter()
        .map(|(m, _)| *m.get::<u64>().expect("a u64"))
        .collect();
    let want: Vec<u64> = (0..=QUEUED).chain([LAST]).collect();
    assert_eq!(seqs, want, "the relay's drained output and its last word");
    let r = report.component("relay").expect("reported");
    assert_eq!((r.handled, r.drained, r.abandoned), (QUEUED + 1, QUEUED, 0));
    let s = report.component("sink").expect("reported");
    assert_eq!((s.handled, s.abandoned), (QUEUED + 2, 0), "{s:?}");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.bus.dead_letters, 0);
    Ok(())
}

// ---- a thread stop gave up on --------------------------------------------------------------------

/// When `stop` gives up on a thread whose handler does not return, it reports what it knew
/// then (the messages handled so far), dead-letters what was still queued before it returns,
/// and says the thread was left running. It used to report zeros, and the queued messages
/// were dead-lettered by the thread whenever its handler returned, after `stop` had.
#[test]
fn stop_reports_what_it_knew_of_a_thread_it_gave_up_on() -> Result<()> {
    const PREFIX: &str = "Rg1-";
    const BEFORE: u64 = 100;
    const QUEUED: u64 = 50;
    let counter = DropCounter::default();
    let (open, hold) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder()
        .thread_name_prefix(PREFIX)
        .drain_timeout(Duration::from_millis(200))
        .build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 1024)?;
    let stuck = rt.deploy_with(
        "stuck",
        ComponentOptions::new()
            .mailbox_capacity(1024)
            .subscribe("work"),
        move || Slow {
            hold: hold.clone(),
            first_work: Duration::ZERO,
            work: Duration::ZERO,
            handled: handled_tx.clone(),
        },
    )?;
    rt.start()?;
    for seq in 1..=BEFORE {
        send(&rt, "work", counter.message(seq))?;
    }
    wait_until("the first messages are handled", || {
        stuck.stats().handled == BEFORE
    });
    assert_eq!(
        handled.try_iter().collect::<Vec<_>>(),
        (1..=BEFORE).collect::<Vec<_>>()
    );
    // Message 0 holds its handler until `open` is dropped, long after the stop gave up.
    occupy(&rt, &stuck, "work", counter.message(0))?;
    for seq in BEFORE + 1..=BEFORE + QUEUED {
        send(&rt, "work", counter.message(seq))?;
    }

    let report = rt.stop()?;
    let c = report.component("stuck").expect("reported").clone();
    assert!(!c.joined, "{c:?}");
    assert_eq!(c.handled, BEFORE, "handled so far: {c:?}");
    assert_eq!(c.drained, 0, "{c:?}");
    assert_eq!(c.abandoned, QUEUED, "queued when stop gave up: {c:?}");
    assert_eq!(c.queued, 0, "nothing is left queued: {c:?}");
    // The dead letters came before `stop` returned.
    let (letters, keep) = dead_letters(&dead);
    let want: Vec<_> = (BEFORE + 1..=BEFORE + QUEUED)
        .map(|seq| (seq, DeadLetterReason::Stopped, Some("stuck".to_owned())))
        .collect();
    assert_eq!(letters, want);
    assert_eq!(report.bus.dead_letters, QUEUED);

    // Released, the handler returns; the thread ends and has nothing more to dead-letter.
    drop(open);
    assert_eq!(handled.recv_timeout(SOON)?, 0);
    wait_until("the stuck thread ends once released", || {
        threads_named(PREFIX).is_empty()
    });
    assert!(
        dead.try_recv().is_none(),
        "no dead letter after stop returned"
    );
    // Every message dropped exactly once.
    assert_eq!(handled.try_iter().count(), 0);
    drop(keep);
    assert_eq!(counter.dropped() as u64, 1 + BEFORE + QUEUED);
    Ok(())
}

/// Sends itself `n` empty messages with `send_after` from `start`.
struct SelfSender {
    n: u64,
}

impl Component for SelfSender {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        for _ in 0..self.n {
            ctx.send_after(Duration::ZERO, Message::empty());
        }
        Ok(())
    }

    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn timer_deliveries_count_as_handled_in_the_stats_and_the_report_alike() -> Result<()> {
    const N: u64 = 100;
    let rt = rt_builder().build()?;
    let reactor = rt.deploy("self-sender", || SelfSender { n: N })?;
    rt.start()?;
    wait_until("every delivery handled", || reactor.stats().handled == N);
    let report = rt.stop()?;
    let c = report.component("self-sender").expect("reported");
    assert_eq!((c.handled, c.drained, c.abandoned), (N, 0, 0), "{c:?}");
    assert_eq!(reactor.stats().handled, c.handled, "one count, read twice");
    Ok(())
}

#[test]
fn a_stuck_handler_leaves_the_count_right_up_to_it_in_its_batch() -> Result<()> {
    const PREFIX: &str = "Rg2-";
    let counter = DropCounter::default();
    let (open, hold) = channel::unbounded::<()>();
    let (handled_tx, handled) = channel::unbounded();
    let rt = rt_builder()
        .thread_name_prefix(PREFIX)
        .drain_timeout(Duration::from_millis(200))
        .build()?;
    let stuck = rt.deploy_with(
        "stuck",
        ComponentOptions::new()
            .mailbox_capacity(1024)
            .subscribe("work"),
        move || Slow {
            hold: hold.clone(),
            first_work: Duration::ZERO,
            work: Duration::ZERO,
            handled: handled_tx.clone(),
        },
    )?;
    // Queued before start, so the reactor takes all ten out in its first batch; message 0
    // holds its handler until `open` is dropped, long after the stop gave up on it.
    for seq in [1, 2, 3, 4, 0, 5, 6, 7, 8, 9] {
        send(&rt, "work", counter.message(seq))?;
    }
    rt.start()?;
    for want in 1..=4 {
        assert_eq!(handled.recv_timeout(SOON)?, want);
    }
    // Counted as each handler returns, not when the batch is done.
    wait_until("the four handled before the stuck one are counted", || {
        stuck.stats().handled == 4
    });

    let report = rt.stop()?;
    let c = report.component("stuck").expect("reported").clone();
    assert!(!c.joined, "{c:?}");
    assert_eq!(c.handled, 4, "{c:?}");
    // Five more were in the reactor's hand with the stuck one: in no count yet.
    assert_eq!((c.drained, c.abandoned, c.queued), (0, 0, 0), "{c:?}");

    drop(open);
    assert_eq!(handled.recv_timeout(SOON)?, 0);
    wait_until("the stuck thread ends once released", || {
        threads_named(PREFIX).is_empty()
    });
    // Past its deadline, the thread abandoned the rest of its batch: every message dropped
    // exactly once, and the counts add up.
    assert_eq!(counter.dropped(), 10);
    assert_eq!(stuck.stats().handled, 5);
    assert_eq!(stuck.stats().dead_lettered, 5);
    Ok(())
}
