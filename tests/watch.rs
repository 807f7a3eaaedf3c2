//! Watches, the registry and sending by name: the `Down` notices a plain thread and a component
//! get (and when they stop getting them), the states `components` / `component` report through a life and
//! a held-back restart, `send_to` and its refusals, and two supervision properties that the
//! counters and journals must agree on under load: every accepted message accounted for across
//! restarts, and never two instances of one component alive at once.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    BoxError, Component, ComponentOptions, ComponentState, Context, Down, DownReason, Error,
    ManualClock, Message, Restart, RestartBackoff, Runtime, SendError, Strategy, SupervisorOptions,
    Watch,
};
use support::life::{
    expect_line, life, permanent, runtime_with, send_to, temporary, text, Journal,
};
use support::{run_on, thread_name, wait_until, Probe, Remote, SOON};

fn down(name: &str, reason: DownReason, restarting: bool) -> Down {
    Down {
        name: name.into(),
        reason,
        restarting,
    }
}

fn boom(name: &str) -> DownReason {
    DownReason::Panicked(format!("boom in {name}"))
}

fn next_down(watch: &Watch) -> Result<Down> {
    Ok(watch.recv_timeout(SOON)?)
}

/// The watch has ended and holds nothing more: `recv_timeout` answers `Stopped` (at once, as
/// soon as the registry has let go of it; a watch still kept would time out instead).
fn assert_ended(watch: &Watch, what: &str) {
    match watch.recv_timeout(SOON) {
        Err(e) if e.is_stopped() => {}
        other => panic!("{what}: expected the watch to have ended, got {other:?}"),
    }
}

fn state(rt: &Runtime, name: &str) -> ComponentState {
    rt.component(name).expect("registered").state
}

fn wait_state(rt: &Runtime, name: &str, want: ComponentState) {
    wait_until(&format!("{name} is {want:?}"), || state(rt, name) == want);
}

// ---- 1. why a component went down ------------------------------------------------------------

#[test]
fn a_plain_watch_is_told_each_reason_and_ends_with_the_final_notice() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let rt = runtime_with(SupervisorOptions::default())?;
    for name in ["quits", "panics", "fails", "idle"] {
        rt.deploy_with(name, temporary(), life(name, &journal))?;
    }
    let quits = rt.watch("quits")?;
    let panics = rt.watch("panics")?;
    let fails = rt.watch("fails")?;
    let idle = rt.watch("idle")?;
    rt.start()?;
    expect_line(&feed, "idle#1 start");

    send_to(&rt, "quits", "quit");
    assert_eq!(next_down(&quits)?, down("quits", DownReason::Normal, false));
    // An orderly stop ran `stop`.
    assert!(journal.lines().contains(&"quits#1 stop".to_owned()));

    send_to(&rt, "panics", "boom");
    assert_eq!(next_down(&panics)?, down("panics", boom("panics"), false));

    send_to(&rt, "fails", "fail");
    assert_eq!(
        next_down(&fails)?,
        down(
            "fails",
            DownReason::Failed("failed on purpose".into()),
            false
        )
    );

    // Each final notice ended its watch.
    assert_ended(&quits, "quits");
    assert_ended(&panics, "panics");
    assert_ended(&fails, "fails");
    assert!(idle.try_recv().is_none(), "idle has not gone down");

    let report = rt.stop()?;
    // `stop` returns after the supervisor has passed every last notice on.
    assert_eq!(
        idle.try_recv(),
        Some(down("idle", DownReason::Shutdown, false))
    );
    assert_ended(&idle, "idle");
    assert_eq!(report.component("idle").unwrap().failure, None);
    Ok(())
}

// ---- 2. a supervised component: one notice per instance, the watch persists -----------------

#[test]
fn a_watch_on_a_permanent_component_persists_across_restarts() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("phoenix", permanent(), life("phoenix", &journal))?;
    let watch = rt.watch("phoenix")?;
    rt.start()?;
    for n in 1..=2 {
        expect_line(&feed, &format!("phoenix#{n} start"));
        send_to(&rt, "phoenix", "boom");
        assert_eq!(next_down(&watch)?, down("phoenix", boom("phoenix"), true));
    }
    expect_line(&feed, "phoenix#3 start");
    wait_state(&rt, "phoenix", ComponentState::Running);
    assert!(watch.try_recv().is_none(), "one notice per instance only");
    assert_eq!(rt.component("phoenix").unwrap().restarts, 2);

    let report = rt.stop()?;
    assert_eq!(
        watch.try_recv(),
        Some(down("phoenix", DownReason::Shutdown, false))
    );
    assert_ended(&watch, "phoenix");
    assert_eq!(report.component("phoenix").unwrap().restarts, 2);
    Ok(())
}

// ---- components that watch ------------------------------------------------------------------

/// What a [`Watcher`] saw, in the order it saw it.
#[derive(Debug)]
enum Seen {
    Started(u64),
    Down {
        instance: u64,
        down: Down,
        thread: String,
    },
    Pong(u64),
}

/// Watches `target` in `start`; reports each `Down` (with its thread). `"boom"` panics,
/// a typed `u64` is answered with `Pong`.
struct Watcher {
    target: &'static str,
    instance: u64,
    seen: Sender<Seen>,
}

fn watcher(target: &'static str, seen: &Sender<Seen>) -> impl Fn() -> Watcher + Send + Sync {
    let seen = seen.clone();
    let instances = Arc::new(AtomicU64::new(0));
    move || Watcher {
        target,
        instance: instances.fetch_add(1, Ordering::SeqCst) + 1,
        seen: seen.clone(),
    }
}

impl Component for Watcher {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.watch(self.target)?;
        let _ = self.seen.send(Seen::Started(self.instance));
        Ok(())
    }

    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if let Some(n) = msg.get::<u64>() {
            let _ = self.seen.send(Seen::Pong(*n));
            return Ok(());
        }
        match msg.as_json().and_then(|v| v.as_str()) {
            Some("boom") => panic!("boom in watcher"),
            _ => Ok(()),
        }
    }

    fn down(&mut self, down: Down, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.seen.send(Seen::Down {
            instance: self.instance,
            down,
            thread: thread_name(),
        });
        Ok(())
    }
}

fn next_seen(seen: &Receiver<Seen>) -> Result<Seen> {
    Ok(seen.recv_timeout(SOON)?)
}

// ---- 3. watching what is down for good; watching nothing ------------------------------------

#[test]
fn watching_a_component_down_for_good_answers_at_once_and_unknown_names_are_not_found() -> Result<()>
{
    let (journal, feed) = Journal::with_feed();
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("crashed", temporary(), life("crashed", &journal))?;
    rt.deploy_with("finished", temporary(), life("finished", &journal))?;
    rt.deploy_with("remote", support::on("errand"), || Remote)?;
    rt.start()?;
    expect_line(&feed, "finished#1 start");

    send_to(&rt, "crashed", "boom");
    send_to(&rt, "finished", "quit");
    wait_state(&rt, "crashed", ComponentState::Failed);
    wait_state(&rt, "finished", ComponentState::Stopped);

    // The last notice is there when `watch` returns, and no watch is kept.
    let w = rt.watch("crashed")?;
    assert_eq!(w.try_recv(), Some(down("crashed", boom("crashed"), false)));
    assert_ended(&w, "crashed");
    let w = rt.watch("finished")?;
    assert_eq!(
        w.try_recv(),
        Some(down("finished", DownReason::Normal, false))
    );
    assert_ended(&w, "finished");
    // Ending a watch that was never kept: nothing to end.
    assert!(!rt.unwatch(w.id()));

    match rt.watch("nobody") {
        Err(Error::NoComponent { name, .. }) => assert_eq!(name, "nobody"),
        other => panic!("expected NoComponent, got {other:?}"),
    }

    // A component's watch on what is down for good: `down` runs at once, on its reactor.
    let (seen_tx, seen) = channel::unbounded();
    rt.deploy_with("late", temporary(), watcher("crashed", &seen_tx))?;
    assert!(matches!(next_seen(&seen)?, Seen::Started(1)));
    match next_seen(&seen)? {
        Seen::Down {
            instance: 1,
            down: d,
            thread,
        } => {
            assert_eq!(d, down("crashed", boom("crashed"), false));
            assert_eq!(thread, "late");
        }
        other => panic!("expected the Down of `crashed`, got {other:?}"),
    }

    // And from a component, an unknown name is `NoComponent` too.
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "errand", move |ctx| {
        let _ = tx.send(ctx.watch("nobody"));
    })?;
    match rx.recv_timeout(SOON)? {
        Err(Error::NoComponent { name, .. }) => assert_eq!(name, "nobody"),
        other => panic!("expected NoComponent from Context::watch, got {other:?}"),
    }

    // A plain watch's blocking wait refuses to run on a reactor thread.
    let w = rt.watch("late")?;
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "errand", move |_ctx| {
        let _ = tx.send(w.recv_timeout(SOON));
    })?;
    assert!(matches!(rx.recv_timeout(SOON)?, Err(Error::WouldDeadlock)));
    Ok(())
}

// ---- 4. unwatch -----------------------------------------------------------------------------

#[test]
fn an_unwatched_watch_hears_nothing_more() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("target", permanent(), life("target", &journal))?;
    rt.deploy_with("once", temporary(), life("once", &journal))?;
    let dropped = rt.watch("target")?;
    let kept = rt.watch("target")?;
    rt.start()?;
    expect_line(&feed, "once#1 start");

    assert!(rt.unwatch(dropped.id()));
    assert!(!rt.unwatch(dropped.id()), "unwatch twice");

    send_to(&rt, "target", "boom");
    // Both watches are told in one pass under the watches lock: once `kept` has its notice,
    // `dropped` would have had its own.
    assert_eq!(next_down(&kept)?, down("target", boom("target"), true));
    assert!(dropped.try_recv().is_none());
    // The registry let go of it: the handle reports the watch ended.
    assert_ended(&dropped, "unwatched");

    expect_line(&feed, "target#2 start");
    send_to(&rt, "target", "fail");
    assert_eq!(
        next_down(&kept)?,
        down(
            "target",
            DownReason::Failed("failed on purpose".into()),
            true
        )
    );
    assert!(dropped.try_recv().is_none());
    assert!(rt.unwatch(kept.id()));
    assert!(!rt.unwatch(kept.id()));

    // A watch that ended with its final notice cannot be unwatched either.
    let ends = rt.watch("once")?;
    send_to(&rt, "once", "quit");
    assert_eq!(next_down(&ends)?, down("once", DownReason::Normal, false));
    assert!(!rt.unwatch(ends.id()));

    rt.stop()?;
    assert!(kept.try_recv().is_none(), "unwatched before the shutdown");
    Ok(())
}

/// Dropping a `Watch` ends it, as dropping an `Inbox` unsubscribes: the registry lets go of
/// it at once (so `unwatch` finds nothing), and the other watches on the same component go on.
#[test]
fn dropping_a_watch_ends_it() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("target", permanent(), life("target", &journal))?;
    let dropped = rt.watch("target")?;
    let dropped_id = dropped.id();
    let kept = rt.watch("target")?;
    rt.start()?;
    expect_line(&feed, "target#1 start");

    drop(dropped);
    assert!(!rt.unwatch(dropped_id), "the drop ended the watch");

    send_to(&rt, "target", "boom");
    assert_eq!(next_down(&kept)?, down("target", boom("target"), true));
    assert!(rt.unwatch(kept.id()), "the other watch was kept");
    drop(kept); // after `unwatch`: nothing left to end
    rt.stop()?;
    Ok(())
}

// ---- 5. a component's watch belongs to its instance ------------------------------------------

#[test]
fn a_component_watch_runs_on_its_reactor_and_ends_with_its_instance() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let (seen_tx, seen) = channel::unbounded();
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("target", permanent(), life("target", &journal))?;
    rt.deploy_with("watcher", permanent(), watcher("target", &seen_tx))?;
    rt.start()?;
    assert!(matches!(next_seen(&seen)?, Seen::Started(1)));

    send_to(&rt, "target", "boom");
    match next_seen(&seen)? {
        Seen::Down {
            instance,
            down: d,
            thread,
        } => {
            assert_eq!(instance, 1);
            assert_eq!(d, down("target", boom("target"), true));
            assert_eq!(
                thread, "watcher",
                "`down` runs on the watcher's reactor thread"
            );
        }
        other => panic!("expected a Down, got {other:?}"),
    }
    expect_line(&feed, "target#2 start");

    // A new watcher instance: the old one's watch ended with it; the new one watches again.
    send_to(&rt, "watcher", "boom");
    assert!(matches!(next_seen(&seen)?, Seen::Started(2)));
    wait_state(&rt, "watcher", ComponentState::Running);
    wait_state(&rt, "target", ComponentState::Running);
    // Registered after the watcher's watches: once this one is told, every notice for the
    // watcher's reactor has been queued on it.
    let last = rt.watch("target")?;

    send_to(&rt, "target", "boom");
    assert_eq!(next_down(&last)?, down("target", boom("target"), true));
    // Two round trips through the watcher: commands queued before the first ping are taken
    // after the batch that holds it, so by the second pong every notice has reached `down`.
    let mut events = Vec::new();
    for n in [1u64, 2] {
        rt.bus().send_to("watcher", Message::typed(n))?;
        loop {
            match next_seen(&seen)? {
                Seen::Pong(p) if p == n => break,
                other => events.push(other),
            }
        }
    }
    let downs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Seen::Down {
                instance,
                down: d,
                thread,
            } => Some((*instance, d.clone(), thread.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        downs,
        [(
            2,
            down("target", boom("target"), true),
            "watcher".to_owned()
        )],
        "exactly one notice, to the new instance (all seen: {events:?})"
    );
    rt.stop()?;
    Ok(())
}

// ---- 6. the registry's view -----------------------------------------------------------------

#[test]
fn the_registry_follows_each_component_through_its_life() -> Result<()> {
    let clock = ManualClock::new();
    let (journal, feed) = Journal::with_feed();
    let rt = Runtime::builder()
        .worker_threads(1)
        .drain_timeout(Duration::from_secs(1))
        .clock(clock.clock())
        .supervisor(
            SupervisorOptions::default().backoff(RestartBackoff::Fixed(Duration::from_secs(3600))),
        )
        .build()?;
    rt.deploy_with("alpha", permanent(), life("alpha", &journal))?;
    let transient = ComponentOptions::new().restart(Restart::Transient);
    rt.deploy_with("beta", transient, life("beta", &journal))?;
    rt.deploy_with("gamma", temporary(), life("gamma", &journal))?;

    let listed = |rt: &Runtime| -> Vec<(String, ComponentState)> {
        rt.components()
            .into_iter()
            .map(|c| (c.name.to_string(), c.state))
            .collect()
    };
    let names = |states: [ComponentState; 3]| -> Vec<(String, ComponentState)> {
        ["alpha", "beta", "gamma"]
            .into_iter()
            .map(str::to_owned)
            .zip(states)
            .collect()
    };
    use ComponentState::{Deployed, Failed, Restarting, Running, Stopped};
    assert_eq!(listed(&rt), names([Deployed; 3]));
    let infos = rt.components();
    assert_eq!(
        infos.iter().map(|c| c.restart).collect::<Vec<_>>(),
        [Restart::Permanent, Restart::Transient, Restart::Temporary]
    );
    assert!(infos
        .iter()
        .all(|c| &*c.supervisor == "root" && c.restarts == 0 && c.last_down.is_none()));
    assert!(infos[0]
        .reactor
        .same(&rt.component("alpha").unwrap().reactor));
    assert!(rt.component("nobody").is_none());

    rt.start()?;
    // `start` returns once every component's `start` has: all are running.
    assert_eq!(listed(&rt), names([Running; 3]));

    // A restart held back by the backoff: `Restarting`, and the mailbox takes messages.
    let alpha = rt.watch("alpha")?;
    send_to(&rt, "alpha", "boom");
    assert_eq!(next_down(&alpha)?, down("alpha", boom("alpha"), true));
    // The registry is updated before the watchers are told.
    let info = rt.component("alpha").unwrap();
    assert_eq!(info.state, Restarting);
    assert_eq!(info.last_down, Some(boom("alpha")));
    for i in 0..3 {
        rt.bus().send_to("alpha", text(&format!("m{i}")))?;
    }
    // A round trip through the supervisor (another component's Down) shows it still waits.
    send_to(&rt, "beta", "quit");
    wait_state(&rt, "beta", Stopped);
    assert_eq!(state(&rt, "alpha"), Restarting);
    assert_eq!(rt.component("alpha").unwrap().restarts, 0);

    clock.advance(Duration::from_secs(3600));
    expect_line(&feed, "alpha#2 start");
    for i in 0..3 {
        expect_line(&feed, &format!("alpha#2 handled m{i}"));
    }
    wait_state(&rt, "alpha", Running);
    assert_eq!(rt.component("alpha").unwrap().restarts, 1);

    // A transient that stopped itself: `Stopped`, for good, with a normal reason.
    let beta = rt.component("beta").unwrap();
    assert_eq!(
        (beta.last_down, beta.restarts),
        (Some(DownReason::Normal), 0)
    );

    // A temporary that panicked: `Failed`.
    send_to(&rt, "gamma", "boom");
    wait_state(&rt, "gamma", Failed);
    let gamma = rt.component("gamma").unwrap();
    assert_eq!((gamma.last_down, gamma.restarts), (Some(boom("gamma")), 0));

    assert_eq!(listed(&rt), names([Running, Stopped, Failed]));

    // A second failure, and the runtime stops while the restart is held back: the message
    // queued for the next instance is abandoned, the watch ends with `Shutdown`.
    send_to(&rt, "alpha", "boom");
    assert_eq!(next_down(&alpha)?, down("alpha", boom("alpha"), true));
    assert_eq!(state(&rt, "alpha"), Restarting);
    send_to(&rt, "alpha", "never");
    let report = rt.stop()?;
    assert_eq!(
        alpha.try_recv(),
        Some(down("alpha", DownReason::Shutdown, false))
    );
    assert_ended(&alpha, "alpha");
    let a = report.component("alpha").unwrap();
    assert_eq!((a.handled, a.abandoned, a.restarts), (3, 3, 1));
    assert!(!journal.lines().contains(&"alpha#3 start".to_owned()));
    assert_eq!(listed(&rt), names([Stopped, Stopped, Failed]));
    assert_eq!(
        rt.component("alpha").unwrap().last_down,
        Some(DownReason::Shutdown)
    );
    Ok(())
}

// ---- 7. send_to ------------------------------------------------------------------------------

#[test]
fn send_to_reaches_a_component_by_name_and_hands_back_what_it_cannot_deliver() -> Result<()> {
    let (journal, feed) = Journal::with_feed();
    let (probe_tx, probed) = channel::unbounded();
    let rt = runtime_with(SupervisorOptions::default())?;
    // Subscribes to nothing: reachable by name only.
    rt.deploy_with("sink", ComponentOptions::new(), move || Probe {
        tx: probe_tx.clone(),
    })?;
    rt.deploy_with("quitter", temporary(), life("quitter", &journal))?;
    rt.deploy_with("remote", support::on("errand"), || Remote)?;
    // A mailbox of 1, nothing draining it until `start`.
    rt.deploy_with(
        "full",
        temporary().mailbox_capacity(1),
        life("full", &journal),
    )?;

    // Backpressure: nothing drains `full` before `start`.
    rt.bus().send_to("full", text("first"))?;
    match rt.bus().send_to("full", text("second")) {
        Err(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("full", 1));
            assert_eq!(rejected.as_json().and_then(|v| v.as_str()), Some("second"));
        }
        other => panic!("expected Backpressure, got {other:?}"),
    }
    // An unknown name: the message comes back.
    match rt.bus().send_to("ghost", text("lost")) {
        Err(SendError::NoComponent { name, rejected }) => {
            assert_eq!(name, "ghost");
            assert_eq!(rejected.as_json().and_then(|v| v.as_str()), Some("lost"));
        }
        other => panic!("expected NoComponent, got {other:?}"),
    }
    assert!(
        rt.bus().send("ghost", text("x")).is_err(),
        "no topic either"
    );

    rt.start()?;
    expect_line(&feed, "full#1 handled first");
    rt.bus().send_to("sink", text("direct"))?;
    let (msg, thread) = probed.recv_timeout(SOON)?;
    assert_eq!(msg.as_json().and_then(|v| v.as_str()), Some("direct"));
    assert_eq!(thread, "sink");

    // Stopped: a component that stopped itself refuses, handing the message back.
    let quitter = rt.watch("quitter")?;
    send_to(&rt, "quitter", "quit");
    assert_eq!(
        next_down(&quitter)?,
        down("quitter", DownReason::Normal, false)
    );
    match rt.bus().send_to("quitter", text("late")) {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "quitter");
            assert_eq!(rejected.as_json().and_then(|v| v.as_str()), Some("late"));
        }
        other => panic!("expected Stopped, got {other:?}"),
    }

    // From inside a component: the same, stamped with the sender's name.
    let (tx, rx) = channel::bounded(1);
    run_on(&rt, "errand", move |ctx| {
        let sent = ctx.send_to("sink", text("from remote"));
        let ghost = match ctx.send_to("ghost", text("lost")) {
            Err(SendError::NoComponent { name, rejected }) => {
                Some((name, rejected.as_json().cloned()))
            }
            _ => None,
        };
        let stopped = ctx
            .send_to("quitter", text("late"))
            .is_err_and(|e| e.is_stopped());
        let _ = tx.send((sent, ghost, stopped));
    })?;
    let (sent, ghost, stopped) = rx.recv_timeout(SOON)?;
    sent?;
    assert_eq!(ghost, Some(("ghost".to_owned(), Some("lost".into()))));
    assert!(stopped);
    let (msg, thread) = probed.recv_timeout(SOON)?;
    assert_eq!(msg.as_json().and_then(|v| v.as_str()), Some("from remote"));
    assert_eq!(msg.source(), Some("remote"));
    assert_eq!(thread, "sink");

    let report = rt.stop()?;
    assert_eq!(report.component("full").unwrap().handled, 1);
    assert_eq!(report.component("sink").unwrap().handled, 2);
    Ok(())
}

// ---- 8. restarts under load: every message accounted for -------------------------------------

/// Panics on every message whose `u64` payload is `99 (mod 100)`; records every seq it was
/// given (a seq seen twice is a duplicate delivery).
struct Poisoned {
    seen: Arc<Mutex<HashSet<u64>>>,
    duplicates: Arc<AtomicU64>,
    panics: Arc<AtomicU64>,
    handled: Arc<AtomicU64>,
}

impl Component for Poisoned {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let seq = *msg.get::<u64>().ok_or("not a u64")?;
        if !self.seen.lock().unwrap().insert(seq) {
            self.duplicates.fetch_add(1, Ordering::SeqCst);
        }
        if seq % 100 == 99 {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!("poison {seq}");
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Sent {
    accepted: u64,
    backpressure: u64,
    stopped: u64,
    other: u64,
}

#[test]
fn restarts_under_load_account_for_every_message() -> Result<()> {
    const PRODUCERS: u64 = 3;
    const PER_PRODUCER: u64 = 2000;
    let rt = Runtime::builder()
        .worker_threads(1)
        .drain_timeout(Duration::from_secs(5))
        .supervisor(SupervisorOptions::default().intensity(1000, Duration::from_secs(60)))
        .build()?;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let duplicates = Arc::new(AtomicU64::new(0));
    let panics = Arc::new(AtomicU64::new(0));
    let handled = Arc::new(AtomicU64::new(0));
    {
        let (seen, duplicates, panics, handled) = (
            seen.clone(),
            duplicates.clone(),
            panics.clone(),
            handled.clone(),
        );
        rt.deploy_with(
            "poisoned",
            permanent().mailbox_capacity(64).subscribe("load"),
            move || Poisoned {
                seen: seen.clone(),
                duplicates: duplicates.clone(),
                panics: panics.clone(),
                handled: handled.clone(),
            },
        )?;
    }
    rt.start()?;

    let deadline = Instant::now() + SOON;
    let sent: Vec<Sent> = thread::scope(|s| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let rt = &rt;
                s.spawn(move || {
                    let mut sent = Sent::default();
                    for i in 0..PER_PRODUCER {
                        let mut msg = Message::typed(p * PER_PRODUCER + i);
                        loop {
                            match rt.bus().send("load", msg) {
                                Ok(()) => {
                                    sent.accepted += 1;
                                    break;
                                }
                                Err(SendError::Backpressure { rejected, .. }) => {
                                    sent.backpressure += 1;
                                    assert!(Instant::now() < deadline, "no room for too long");
                                    msg = rejected;
                                    thread::yield_now();
                                }
                                Err(SendError::Stopped { .. }) => {
                                    sent.stopped += 1;
                                    break;
                                }
                                Err(_) => {
                                    sent.other += 1;
                                    break;
                                }
                            }
                        }
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = sent.iter().fold(Sent::default(), |a, s| Sent {
        accepted: a.accepted + s.accepted,
        backpressure: a.backpressure + s.backpressure,
        stopped: a.stopped + s.stopped,
        other: a.other + s.other,
    });
    // Never refused for good while running: the mailbox stays open across restarts.
    assert_eq!((total.stopped, total.other), (0, 0), "{total:?}");
    assert_eq!(total.accepted, PRODUCERS * PER_PRODUCER);

    let report = rt.stop()?;
    assert!(rt.failure().is_none(), "{:?}", rt.failure());
    let c = report.component("poisoned").unwrap();
    let panics = panics.load(Ordering::SeqCst);
    let dead_letters = rt.bus().stats().dead_letters;
    let seen = seen.lock().unwrap().len() as u64;
    let summary = format!(
        "{total:?} {c:?} panics={panics} dead_letters={dead_letters} seen={seen} \
         duplicates={}",
        duplicates.load(Ordering::SeqCst)
    );
    assert_eq!(duplicates.load(Ordering::SeqCst), 0, "{summary}");
    assert_eq!(
        c.handled + c.abandoned + c.dropped,
        total.accepted,
        "{summary}"
    );
    assert_eq!(c.dropped, 0, "{summary}");
    assert_eq!(c.handled, handled.load(Ordering::SeqCst), "{summary}");
    // Every message given to the handler was either handled or the one it panicked on.
    assert_eq!(seen, c.handled + panics, "{summary}");
    // Only this component dead-letters: the message each panic was on, and whatever a stop
    // during a restart left queued.
    assert_eq!(dead_letters, c.abandoned, "{summary}");
    assert_eq!(report.bus.dead_letters, c.abandoned, "{summary}");
    assert!(c.abandoned >= panics, "{summary}");
    // One restart per panic, except perhaps the last if the runtime stopped first.
    assert!(
        c.restarts <= panics && c.restarts + 1 >= panics,
        "{summary}"
    );
    // A poison seq still queued when a panic during the drain ended the reactor is abandoned
    // unseen: at most one panic per poison seq.
    assert!(panics <= PRODUCERS * PER_PRODUCER / 100, "{summary}");
    Ok(())
}

// ---- 9. never two instances at once -----------------------------------------------------------

/// Journals `start`, `stop` and its drop; `alive` is its component's "an instance exists"
/// flag, which a start must find clear.
struct Mortal {
    name: &'static str,
    alive: Arc<AtomicBool>,
    overlaps: Arc<AtomicU64>,
    journal: Journal,
}

impl Component for Mortal {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if self.alive.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.journal.log(format!("{} start", self.name));
        Ok(())
    }

    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        match msg.as_json().and_then(|v| v.as_str()) {
            Some("boom") => panic!("boom in {}", self.name),
            _ => Ok(()),
        }
    }

    fn stop(&mut self, _ctx: &mut Context<'_, Self>) {
        self.journal.log(format!("{} stop", self.name));
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl Drop for Mortal {
    fn drop(&mut self) {
        self.journal.log(format!("{} drop", self.name));
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// Checks `name`'s lines are lives `start, [stop,] drop`, one after another; returns each
/// life's shape ("start stop drop" or "start drop").
fn lives(lines: &[String], name: &str) -> Result<Vec<String>> {
    let prefix = format!("{name} ");
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for what in lines.iter().filter_map(|l| l.strip_prefix(&prefix)) {
        match (current.as_slice(), what) {
            ([], "start") | (["start"], "stop") => current.push(what),
            (["start"] | ["start", "stop"], "drop") => {
                current.push(what);
                out.push(current.join(" "));
                current.clear();
            }
            _ => bail!("{name}: {what:?} after {current:?} in {lines:?}"),
        }
    }
    ensure!(current.is_empty(), "{name}: unfinished life {current:?}");
    Ok(out)
}

#[test]
fn an_all_for_one_group_never_runs_two_instances_of_a_component_at_once() -> Result<()> {
    const FAILURES: usize = 5;
    let (journal, feed) = Journal::with_feed();
    let overlaps = Arc::new(AtomicU64::new(0));
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.add_supervisor(
        "group",
        SupervisorOptions::new(Strategy::AllForOne).intensity(10, Duration::from_secs(60)),
    )?;
    for name in ["a", "b", "c"] {
        let alive = Arc::new(AtomicBool::new(false));
        let (journal, overlaps) = (journal.clone(), overlaps.clone());
        rt.deploy_with(name, permanent().supervisor("group"), move || Mortal {
            name,
            alive: alive.clone(),
            overlaps: overlaps.clone(),
            journal: journal.clone(),
        })?;
    }
    let a = rt.watch("a")?;
    rt.start()?;
    expect_line(&feed, "c start");
    for round in 1..=FAILURES {
        let from = journal.lines().len();
        send_to(&rt, "b", "boom");
        expect_line(&feed, "c start");
        wait_until(&format!("round {round}: all run"), || {
            rt.components()
                .iter()
                .all(|c| c.state == ComponentState::Running)
        });
        // The failed instance is gone before its siblings are stopped (in reverse order, each
        // dropped before the next is asked), and all restart in deploy order.
        assert_eq!(
            journal.lines()[from..],
            ["b drop", "c stop", "c drop", "a stop", "a drop", "a start", "b start", "c start"],
            "round {round}"
        );
        assert_eq!(next_down(&a)?, down("a", DownReason::Shutdown, true));
    }
    rt.stop()?;
    assert_eq!(a.try_recv(), Some(down("a", DownReason::Shutdown, false)));

    let lines = journal.lines();
    let suspended_then_stopped = vec!["start stop drop".to_owned(); FAILURES + 1];
    assert_eq!(lives(&lines, "a")?, suspended_then_stopped);
    assert_eq!(lives(&lines, "c")?, suspended_then_stopped);
    let mut b = vec!["start drop".to_owned(); FAILURES];
    b.push("start stop drop".to_owned());
    assert_eq!(lives(&lines, "b")?, b);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "{lines:?}");
    Ok(())
}

/// A component whose `start` fails, for the never-ran cases.
struct Refuses;

impl Component for Refuses {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Err("nope".into())
    }

    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn watches_on_components_that_never_ran_get_their_final_notice() -> Result<()> {
    let (journal, _feed) = Journal::with_feed();
    // Stopped before the runtime was started: a final Shutdown, and the watch ends.
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("idle", temporary(), life("idle", &journal))?;
    let w = rt.watch("idle")?;
    rt.stop()?;
    assert_eq!(next_down(&w)?, down("idle", DownReason::Shutdown, false));
    assert_ended(&w, "idle's watch");
    assert_eq!(state(&rt, "idle"), ComponentState::Stopped);

    // A failed first start: the component is Failed with the reason, and the one deployed
    // after it (never launched) is Stopped; both watches get their final notice.
    let rt = runtime_with(SupervisorOptions::default())?;
    rt.deploy_with("first", temporary(), life("first", &journal))?;
    rt.deploy_with("broken", temporary(), || Refuses)?;
    rt.deploy_with("after", temporary(), life("after", &journal))?;
    let (wb, wa) = (rt.watch("broken")?, rt.watch("after")?);
    assert!(matches!(rt.start(), Err(Error::StartFailed { .. })));
    assert_eq!(
        next_down(&wb)?,
        down(
            "broken",
            DownReason::Failed("start failed: nope".into()),
            false
        )
    );
    assert_eq!(next_down(&wa)?, down("after", DownReason::Shutdown, false));
    assert_eq!(state(&rt, "broken"), ComponentState::Failed);
    assert_eq!(state(&rt, "after"), ComponentState::Stopped);
    Ok(())
}
