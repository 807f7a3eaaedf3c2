//! Time: component timers (`after`, `every`, `send_after`, `cancel_timer`), idle timeouts,
//! interval agents, and the manual clock that drives them all here.
//!
//! Every test runs on a `ManualClock`, so nothing depends on the machine's speed: a test
//! advances the clock, then waits for the effect on a channel. To show that something did
//! *not* happen, it first makes the reactor reach a known point after the clock moved (see
//! [`settle`]) and only then looks at what came.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    AgentStats, BoxError, Component, ComponentOptions, ComponentState, Context, DeadLetter,
    DeadLetterReason, DownReason, Error, ManualClock, Message, Reactor, Restart, Restarted,
    Runtime, TimerId, DEAD_LETTER_TOPIC,
};
use support::{on, run_on, thread_name, wait_until, Remote, SOON};

/// The delay of the one-shot timers under test.
const DELAY: Duration = Duration::from_secs(5);
/// The period of the periodic timers under test.
const PERIOD: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn manual_runtime(clock: &ManualClock) -> Result<Runtime> {
    Ok(Runtime::builder()
        .worker_threads(1)
        .drain_timeout(Duration::from_secs(1))
        .clock(clock.clock())
        .build()?)
}

fn text(s: &str) -> Message {
    Message::json(s.into())
}

fn text_of(msg: &Message) -> String {
    msg.as_json()
        .and_then(|v| v.as_str())
        .unwrap_or("<not text>")
        .to_owned()
}

/// The next line on `feed`; panics after `SOON`.
fn next(feed: &Receiver<String>) -> String {
    feed.recv_timeout(SOON)
        .unwrap_or_else(|_| panic!("timed out waiting for the next line"))
}

/// Waits for `line` on `feed`; returns the lines that came before it.
fn until(feed: &Receiver<String>, line: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        match feed.recv_timeout(SOON) {
            Ok(l) if l == line => return before,
            Ok(l) => before.push(l),
            Err(_) => panic!("timed out waiting for {line:?}; saw {before:?}"),
        }
    }
}

/// Two round trips through a reactor, the second sent only once the first came back. A
/// reactor runs its due timers after each batch of messages, before it takes the next batch;
/// so when the second comes back, the reactor has run every timer (and idle timeout) due at
/// the clock as it stood when this was called. `poke(label)` must make the reactor put
/// `label` on `feed`. Returns the other lines seen meanwhile: what those timers did.
fn settle(feed: &Receiver<String>, mut poke: impl FnMut(&str)) -> Vec<String> {
    let mut seen = Vec::new();
    for i in 0..2 {
        let label = format!("sync{i}");
        poke(&label);
        seen.extend(until(feed, &label));
    }
    seen
}

/// Runs `f` on the `Remote` subscribed to `topic`; panics if it is refused.
fn errand(rt: &Runtime, topic: &str, f: impl FnOnce(&mut Context<'_, Remote>) + Send + 'static) {
    run_on(rt, topic, f).unwrap_or_else(|e| panic!("errand for {topic} refused: {e}"));
}

/// [`settle`] for a `Remote`: the errands put the labels on `tx`.
fn settle_remote(
    rt: &Runtime,
    topic: &str,
    tx: &Sender<String>,
    feed: &Receiver<String>,
) -> Vec<String> {
    settle(feed, |label| {
        let (tx, label) = (tx.clone(), label.to_owned());
        errand(rt, topic, move |_| {
            let _ = tx.send(label);
        });
    })
}

/// [`settle`] for a component that echoes the text of the messages it does not know.
fn settle_named(rt: &Runtime, name: &str, feed: &Receiver<String>) -> Vec<String> {
    settle(feed, |label| {
        rt.bus()
            .send_to(name, text(label))
            .unwrap_or_else(|e| panic!("send to {name}: {e}"));
    })
}

/// A started runtime on `clock` with one `Remote` named and subscribed as `name`, and a feed.
fn remote(clock: &ManualClock, name: &str) -> Result<(Runtime, Sender<String>, Receiver<String>)> {
    let rt = manual_runtime(clock)?;
    rt.deploy_with(name, on(name), || Remote)?;
    rt.start()?;
    let (tx, rx) = channel::unbounded();
    Ok((rt, tx, rx))
}

#[test]
fn after_fires_once_on_the_components_own_thread_once_the_delay_has_passed() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, tx, feed) = remote(&clock, "oneshot")?;
    let t = tx.clone();
    errand(&rt, "oneshot", move |ctx| {
        let fired = t.clone();
        ctx.after(DELAY, move |_: &mut Remote, _ctx| {
            let _ = fired.send(format!("fired on {:?}", thread_name()));
        });
        let _ = t.send("set".into());
    });
    assert_eq!(next(&feed), "set");

    clock.advance(DELAY - MS);
    assert_eq!(
        settle_remote(&rt, "oneshot", &tx, &feed),
        Vec::<String>::new(),
        "fired before its delay had passed"
    );

    clock.advance(MS);
    assert_eq!(next(&feed), "fired on \"oneshot\"");

    // Once only, however far the clock goes.
    clock.advance(DELAY * 10);
    assert_eq!(
        settle_remote(&rt, "oneshot", &tx, &feed),
        Vec::<String>::new()
    );
    Ok(())
}

#[test]
fn every_fires_once_per_period_until_cancelled() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, tx, feed) = remote(&clock, "periodic")?;
    let (ids_tx, ids) = channel::bounded::<TimerId>(1);
    let t = tx.clone();
    errand(&rt, "periodic", move |ctx| {
        let ticks = t.clone();
        let mut n = 0;
        let id = ctx.every(PERIOD, move |_: &mut Remote, _ctx| {
            n += 1;
            let _ = ticks.send(format!("tick{n}"));
        });
        let _ = ids_tx.send(id);
    });
    let id = ids.recv_timeout(SOON)?;

    for n in 1..=3 {
        clock.advance(PERIOD);
        assert_eq!(next(&feed), format!("tick{n}"));
        assert_eq!(
            settle_remote(&rt, "periodic", &tx, &feed),
            Vec::<String>::new(),
            "more than one tick in period {n}"
        );
    }

    let t = tx.clone();
    errand(&rt, "periodic", move |ctx| {
        let cancelled = ctx.cancel_timer(id);
        let _ = t.send(format!("cancelled: {cancelled}"));
    });
    assert_eq!(next(&feed), "cancelled: true");

    clock.advance(PERIOD);
    clock.advance(PERIOD * 5);
    assert_eq!(
        settle_remote(&rt, "periodic", &tx, &feed),
        Vec::<String>::new(),
        "a cancelled periodic timer ticked"
    );
    Ok(())
}

#[test]
fn a_periodic_timer_can_cancel_itself_from_its_own_callback() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, tx, feed) = remote(&clock, "selfstop")?;
    let (ids_tx, ids) = channel::bounded::<TimerId>(1);
    let t = tx.clone();
    errand(&rt, "selfstop", move |ctx| {
        let me: Rc<Cell<Option<TimerId>>> = Rc::default();
        let my_id = Rc::clone(&me);
        let ticks = t.clone();
        let mut n = 0;
        let id = ctx.every(PERIOD, move |_: &mut Remote, ctx| {
            n += 1;
            if n == 2 {
                let cancelled = ctx.cancel_timer(my_id.get().expect("id set"));
                let _ = ticks.send(format!("tick{n}, cancelled itself: {cancelled}"));
            } else {
                let _ = ticks.send(format!("tick{n}"));
            }
        });
        me.set(Some(id));
        let _ = ids_tx.send(id);
    });
    let id = ids.recv_timeout(SOON)?;

    clock.advance(PERIOD);
    assert_eq!(next(&feed), "tick1");
    clock.advance(PERIOD);
    assert_eq!(next(&feed), "tick2, cancelled itself: true");

    clock.advance(PERIOD);
    clock.advance(PERIOD * 5);
    assert_eq!(
        settle_remote(&rt, "selfstop", &tx, &feed),
        Vec::<String>::new(),
        "ticked after cancelling itself"
    );
    // It is gone: cancelling it again finds nothing.
    let t = tx.clone();
    errand(&rt, "selfstop", move |ctx| {
        let again = ctx.cancel_timer(id);
        let _ = t.send(format!("cancelled again: {again}"));
    });
    assert_eq!(next(&feed), "cancelled again: false");
    Ok(())
}

#[test]
fn cancel_timer_is_false_for_a_fired_one_shot_and_for_a_second_cancel() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, tx, feed) = remote(&clock, "cancels")?;
    let (ids_tx, ids) = channel::bounded::<TimerId>(1);
    let t = tx.clone();
    errand(&rt, "cancels", move |ctx| {
        let fired = t.clone();
        let id = ctx.after(DELAY, move |_: &mut Remote, _ctx| {
            let _ = fired.send("fired".into());
        });
        let _ = ids_tx.send(id);
    });
    let fired_id = ids.recv_timeout(SOON)?;
    clock.advance(DELAY);
    assert_eq!(next(&feed), "fired");

    let t = tx.clone();
    errand(&rt, "cancels", move |ctx| {
        let after_firing = ctx.cancel_timer(fired_id);
        // A pending one: the first cancel finds it, the second does not.
        let dropped = t.clone();
        let id = ctx.after(DELAY, move |_: &mut Remote, _ctx| {
            let _ = dropped.send("cancelled timer fired".into());
        });
        let first = ctx.cancel_timer(id);
        let second = ctx.cancel_timer(id);
        let _ = t.send(format!(
            "fired: {after_firing}, pending: {first}, twice: {second}"
        ));
    });
    assert_eq!(next(&feed), "fired: false, pending: true, twice: false");

    clock.advance(DELAY * 2);
    assert_eq!(
        settle_remote(&rt, "cancels", &tx, &feed),
        Vec::<String>::new()
    );
    Ok(())
}

/// Echoes the text of each message it handles. `"arm"` sets a `send_after` of `"later"` for
/// `DELAY` (reported with its source); `"block"` waits for the gate.
struct Scripted {
    feed: Sender<String>,
    gate: Receiver<()>,
}

impl Component for Scripted {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let text = text_of(&msg);
        match text.as_str() {
            "arm" => {
                ctx.send_after(DELAY, self::text("later"));
            }
            "block" => {
                let _ = self.feed.send("blocked".into());
                let _ = self.gate.recv_timeout(SOON);
            }
            "later" => {
                let from = msg.source().unwrap_or("nobody").to_owned();
                let _ = self.feed.send(format!("later, from {from}"));
                return Ok(());
            }
            _ => {}
        }
        let _ = self.feed.send(text);
        Ok(())
    }
}

#[test]
fn send_after_reaches_the_components_own_handle_even_when_its_mailbox_is_full() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let (tx, feed) = channel::unbounded();
    let (gate_tx, gate) = channel::unbounded();
    let reactor = rt.deploy_with(
        "scripted",
        ComponentOptions::new().mailbox_capacity(1),
        move || Scripted {
            feed: tx.clone(),
            gate: gate.clone(),
        },
    )?;
    rt.start()?;
    let send = |s: &str| rt.bus().send_to("scripted", text(s));

    send("arm")?;
    assert_eq!(next(&feed), "arm");
    // Hold the reactor in a handler, and fill its mailbox of one behind it.
    send("block")?;
    assert_eq!(next(&feed), "blocked");
    send("filler")?;
    assert!(send("extra").unwrap_err().is_backpressure());
    clock.advance(DELAY);
    gate_tx.send(())?;

    // The delayed message does not queue behind `filler`: it goes straight to `handle` at the
    // timer pass after the blocked handler returns, stamped with the component's own name.
    assert_eq!(next(&feed), "block");
    assert_eq!(next(&feed), "later, from scripted");
    assert_eq!(next(&feed), "filler");
    wait_until("4 messages counted as handled", || {
        reactor.stats().handled == 4
    });
    let stats = rt.component("scripted").expect("deployed").reactor.stats();
    assert_eq!((stats.handled, stats.rejected, stats.failures), (4, 1, 0));
    Ok(())
}

/// Sets a periodic beat in `start`; panics on `"boom"`, echoes other texts.
struct Beater {
    instance: u64,
    feed: Sender<String>,
}

impl Component for Beater {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        // The line names the instance that set the timer, whichever instance it runs on.
        let setter = self.instance;
        ctx.every(PERIOD, move |this: &mut Self, _ctx| {
            let _ = this.feed.send(format!("beat#{setter}"));
        });
        let _ = self.feed.send(format!("start#{}", self.instance));
        Ok(())
    }

    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let text = text_of(&msg);
        if text == "boom" {
            panic!("boom in beater#{}", self.instance);
        }
        let _ = self.feed.send(text);
        Ok(())
    }
}

#[test]
fn timers_belong_to_the_instance_a_restarted_one_runs_only_its_own() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let (tx, feed) = channel::unbounded();
    let instances = Arc::new(AtomicU64::new(0));
    rt.deploy_with(
        "beater",
        ComponentOptions::new().restart(Restart::Permanent),
        move || Beater {
            instance: instances.fetch_add(1, Ordering::SeqCst) + 1,
            feed: tx.clone(),
        },
    )?;
    let downs = rt.watch("beater")?;
    rt.start()?;
    assert_eq!(next(&feed), "start#1");
    clock.advance(PERIOD);
    assert_eq!(settle_named(&rt, "beater", &feed), ["beat#1"]);

    rt.bus().send_to("beater", text("boom"))?;
    let down = downs.recv_timeout(SOON)?;
    assert!(down.restarting, "{down}");
    assert!(matches!(down.reason, DownReason::Panicked(_)), "{down}");
    assert_eq!(next(&feed), "start#2");

    // One beat per period, from the timer the new instance set; none from the old one's.
    for period in 1..=3 {
        clock.advance(PERIOD);
        assert_eq!(
            settle_named(&rt, "beater", &feed),
            ["beat#2"],
            "beats in period {period} after the restart"
        );
    }
    assert_eq!(rt.component("beater").expect("deployed").restarts, 1);
    Ok(())
}

/// Arms a periodic beat (and a `send_after` of `"later"`) only when told to, with `"arm"`;
/// remembers that in state shared through its factory, which outlives instances. With
/// `rearm`, a restarted instance arms its beat again in `restarted`. Panics on `"boom"`;
/// echoes other texts.
struct Rearming {
    instance: u64,
    feed: Sender<String>,
    armed: Arc<AtomicBool>,
    rearm: bool,
}

impl Rearming {
    fn arm(&self, ctx: &mut Context<'_, Self>) {
        let setter = self.instance;
        ctx.every(PERIOD, move |this: &mut Self, _ctx| {
            let _ = this.feed.send(format!("beat#{setter}"));
        });
    }
}

impl Component for Rearming {
    fn start(&mut self, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.feed.send(format!("start#{}", self.instance));
        Ok(())
    }

    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        match text_of(&msg).as_str() {
            "arm" => {
                self.armed.store(true, Ordering::SeqCst);
                self.arm(ctx);
                ctx.send_after(DELAY, text("later"));
                let _ = self.feed.send("armed".into());
            }
            "boom" => panic!("boom in rearming#{}", self.instance),
            other => {
                let _ = self.feed.send(other.to_owned());
            }
        }
        Ok(())
    }

    fn restarted(&mut self, r: &Restarted, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if self.rearm && self.armed.load(Ordering::SeqCst) {
            self.arm(ctx);
        }
        let _ = self.feed.send(format!(
            "restarted#{} ({}; restart {}, {} timers dropped)",
            self.instance, r.reason, r.restarts, r.timers_dropped
        ));
        Ok(())
    }
}

/// Deploys a permanent [`Rearming`] as "rearming", starts it, arms it, and makes it panic:
/// returns once its second instance has started, with the dead-letter inbox.
fn rearming(
    clock: &ManualClock,
    rearm: bool,
) -> Result<(Runtime, Reactor, Receiver<String>, reactorium::Inbox)> {
    let rt = manual_runtime(clock)?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
    let (tx, feed) = channel::unbounded();
    let instances = Arc::new(AtomicU64::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    let reactor = rt.deploy_with(
        "rearming",
        ComponentOptions::new().restart(Restart::Permanent),
        move || Rearming {
            instance: instances.fetch_add(1, Ordering::SeqCst) + 1,
            feed: tx.clone(),
            armed: Arc::clone(&armed),
            rearm,
        },
    )?;
    rt.start()?;
    assert_eq!(
        next(&feed),
        "start#1",
        "the first instance is not `restarted`"
    );
    let send = |s: &str| rt.bus().send_to("rearming", text(s));
    send("arm")?;
    assert_eq!(next(&feed), "armed");
    clock.advance(PERIOD);
    assert_eq!(settle_named(&rt, "rearming", &feed), ["beat#1"]);
    send("boom")?;
    assert_eq!(next(&feed), "start#2");
    assert_eq!(
        next(&feed),
        "restarted#2 (panicked: boom in rearming#1; restart 1, 2 timers dropped)"
    );
    Ok((rt, reactor, feed, dead))
}

#[test]
fn a_restart_drops_the_timers_set_after_start_and_dead_letters_a_pending_send_after() -> Result<()>
{
    let clock = ManualClock::new();
    let (rt, reactor, feed, dead) = rearming(&clock, false)?;
    // The beat armed by a message went down with the first instance: no beat any more.
    for period in 1..=2 {
        clock.advance(PERIOD);
        assert_eq!(
            settle_named(&rt, "rearming", &feed),
            Vec::<String>::new(),
            "beats in period {period} after the restart"
        );
    }
    // Its pending `send_after` was not lost silently: dead-lettered with the failure, beside
    // the message the handler failed on.
    let letters: Vec<Message> = (0..2)
        .map(|_| dead.recv_timeout(SOON))
        .collect::<Result<_, _>>()?;
    let mut letters: Vec<(String, DeadLetterReason)> = letters
        .iter()
        .map(|m| {
            let dl = m.get::<DeadLetter>().expect("a dead letter");
            (text_of(&dl.message), dl.reason.clone())
        })
        .collect();
    letters.sort_by(|a, b| a.0.cmp(&b.0));
    let panicked = DeadLetterReason::Panicked("boom in rearming#1".into());
    assert_eq!(
        letters,
        [
            ("<not text>".to_owned(), panicked.clone()), // the failed message's envelope
            ("later".to_owned(), panicked),
        ]
    );
    clock.advance(DELAY);
    assert_eq!(settle_named(&rt, "rearming", &feed), Vec::<String>::new());
    let stats = reactor.stats();
    assert_eq!(
        (stats.restarts, stats.dead_lettered),
        (1, 2),
        "boom and later"
    );
    Ok(())
}

#[test]
fn restarted_arms_again_what_the_previous_instance_set_after_start() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, _reactor, feed, _dead) = rearming(&clock, true)?;
    for period in 1..=3 {
        clock.advance(PERIOD);
        assert_eq!(
            settle_named(&rt, "rearming", &feed),
            ["beat#2"],
            "beats in period {period} after the restart"
        );
    }
    Ok(())
}

/// Reports, as `"<what>@<ms since start>"`: a probe every `PROBE` (a timer pass the test can
/// wait for), each `idle` call, and each message (from a zero-delay timer set by the handler,
/// so the line comes after the reactor has counted the message for the idle timeout).
struct Idler {
    feed: Sender<String>,
    origin: Option<Instant>,
    fail: bool,
}

const PROBE: Duration = Duration::from_millis(10);
const QUIET: Duration = Duration::from_millis(30);

impl Idler {
    fn note(&self, what: &str, ctx: &Context<'_, Self>) {
        let at = ctx.now() - self.origin.expect("started");
        let _ = self.feed.send(format!("{what}@{}", at.as_millis()));
    }
}

impl Component for Idler {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.origin = Some(ctx.now());
        ctx.every(PROBE, |this: &mut Self, ctx| this.note("probe", ctx));
        Ok(())
    }

    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let text = text_of(&msg);
        ctx.after(Duration::ZERO, move |this: &mut Self, ctx| {
            this.note(&text, ctx)
        });
        Ok(())
    }

    fn idle(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.note("idle", ctx);
        if self.fail {
            return Err("bored to death".into());
        }
        Ok(())
    }
}

fn deploy_idler(
    rt: &Runtime,
    name: &str,
    options: ComponentOptions,
    fail: bool,
) -> Result<Timeline> {
    let (tx, feed) = channel::unbounded();
    rt.deploy_with(name, options.idle_timeout(QUIET), move || Idler {
        feed: tx.clone(),
        origin: None,
        fail,
    })?;
    Ok(Timeline {
        name: name.to_owned(),
        feed,
        now: 0,
        log: Vec::new(),
    })
}

/// What an `Idler` reported, in order, as the test moves its clock `PROBE` at a time.
struct Timeline {
    name: String,
    feed: Receiver<String>,
    /// Milliseconds the clock has been moved since the component started.
    now: u128,
    log: Vec<String>,
}

impl Timeline {
    /// Logs lines until `line`, inclusive.
    fn log_until(&mut self, line: &str) {
        let before = until(&self.feed, line);
        self.log.extend(before);
        self.log.push(line.to_owned());
    }

    /// Moves the clock one probe period and waits for that probe.
    fn step(&mut self, clock: &ManualClock) {
        clock.advance(PROBE);
        self.now += PROBE.as_millis();
        self.log_until(&format!("probe@{}", self.now));
    }

    /// Sends a message and waits until the reactor has counted it.
    fn say(&mut self, rt: &Runtime, s: &str) {
        rt.bus()
            .send_to(&self.name, text(s))
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.name));
        self.log_until(&format!("{s}@{}", self.now));
    }
}

#[test]
fn idle_is_called_once_per_quiet_spell_and_a_message_pushes_it_back() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let mut t = deploy_idler(&rt, "idler", ComponentOptions::new(), false)?;
    rt.start()?;
    // A first message at 0: from here on the quiet spell is known to count from 0.
    t.say(&rt, "hello");
    for _ in 0..7 {
        t.step(&clock); // to 70: one idle at 30, none after it with no message
    }
    t.say(&rt, "ping"); // at 70: idle due at 100
    t.step(&clock);
    t.step(&clock);
    t.say(&rt, "push"); // at 90, before the deadline: idle now due at 120
    for _ in 0..4 {
        t.step(&clock); // to 130
    }
    let expected = [
        "hello@0",
        "probe@10",
        "probe@20",
        "probe@30",
        "idle@30",
        "probe@40",
        "probe@50",
        "probe@60",
        "probe@70",
        "ping@70",
        "probe@80",
        "probe@90",
        "push@90",
        "probe@100",
        "probe@110",
        "probe@120",
        "idle@120",
        "probe@130",
    ];
    assert_eq!(t.log, expected);
    Ok(())
}

#[test]
fn an_idle_callback_error_fails_the_instance() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let mut t = deploy_idler(&rt, "sulky", ComponentOptions::new(), true)?;
    let downs = rt.watch("sulky")?;
    rt.start()?;
    t.say(&rt, "hello");
    clock.advance(QUIET);
    let down = downs.recv_timeout(SOON)?;
    assert!(!down.restarting, "{down}");
    assert!(
        matches!(&down.reason, DownReason::Failed(m) if m.contains("bored to death")),
        "{down}"
    );
    t.log_until("idle@30");
    assert_eq!(t.log, ["hello@0", "probe@30", "idle@30"]);
    let stats = rt.component("sulky").expect("deployed").reactor.stats();
    assert_eq!((stats.failures, stats.restarts), (1, 0));
    wait_until("sulky is failed", || {
        rt.component("sulky").unwrap().state == ComponentState::Failed
    });
    assert!(rt
        .bus()
        .send_to("sulky", text("anyone?"))
        .unwrap_err()
        .is_stopped());
    Ok(())
}

#[test]
fn a_panicking_timer_callback_fails_the_instance() -> Result<()> {
    let clock = ManualClock::new();
    let (rt, tx, feed) = remote(&clock, "fragile")?;
    let downs = rt.watch("fragile")?;
    errand(&rt, "fragile", move |ctx| {
        ctx.after(DELAY, |_: &mut Remote, _ctx| panic!("timer boom"));
        let _ = tx.send("set".into());
    });
    assert_eq!(next(&feed), "set");
    clock.advance(DELAY);
    let down = downs.recv_timeout(SOON)?;
    assert!(!down.restarting, "{down}");
    assert!(
        matches!(&down.reason, DownReason::Panicked(m) if m.contains("timer boom")),
        "{down}"
    );
    assert_eq!(
        rt.component("fragile")
            .expect("deployed")
            .reactor
            .stats()
            .failures,
        1
    );
    wait_until("fragile is failed", || {
        rt.component("fragile").unwrap().state == ComponentState::Failed
    });
    Ok(())
}

/// The tick number an agent published.
fn tick(msg: &Message) -> u64 {
    *msg.get::<u64>().expect("a u64 tick")
}

#[test]
fn an_interval_agent_publishes_one_event_per_period_numbered_in_order() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let inbox = rt.bus().subscribe_inbox("ticks", 8)?;
    let agent = rt.deploy_interval("ticker", PERIOD, "ticks", |n| Some(Message::typed(n)))?;
    rt.start()?;
    for n in 1..=3 {
        clock.advance(PERIOD);
        assert_eq!(tick(&inbox.recv_timeout(SOON)?), n);
        assert_eq!(agent.stats().produced, n, "one event per period");
    }
    wait_until("3 published", || agent.stats().published == 3);
    assert_eq!(
        agent.stats(),
        AgentStats {
            produced: 3,
            published: 3,
            ..AgentStats::default()
        }
    );
    assert!(inbox.is_empty());
    Ok(())
}

#[test]
fn agent_stats_account_for_every_tick_empty_unheard_published_or_refused() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    // Tick 2 has nothing to say.
    let agent = rt.deploy_interval("counter", PERIOD, "counts", |n| {
        (n != 2).then(|| Message::typed(n))
    })?;
    rt.start()?;
    let outcomes = |s: AgentStats| s.published + s.empty + s.no_subscriber + s.refused;
    let mut inbox = None;
    for n in 1..=5u64 {
        if n == 3 {
            // From tick 3 on, one subscriber that never reads and has room for one.
            inbox = Some(rt.bus().subscribe_inbox("counts", 1)?);
        }
        clock.advance(PERIOD);
        wait_until(&format!("tick {n} accounted for"), || {
            outcomes(agent.stats()) == n
        });
    }
    let stats = agent.stats();
    assert_eq!(
        stats,
        AgentStats {
            produced: 5,
            published: 1,
            empty: 1,
            refused: 2,
            no_subscriber: 1,
        }
    );
    assert_eq!(
        stats.produced,
        stats.published + stats.empty + stats.no_subscriber + stats.refused
    );
    // The refused events were skipped, not kept for later: only tick 3 is in the inbox.
    let inbox = inbox.expect("subscribed");
    assert_eq!(inbox.len(), 1);
    assert_eq!(tick(&inbox.recv_timeout(SOON)?), 3);
    Ok(())
}

#[test]
fn agent_signal_produces_once_without_the_clock_moving() -> Result<()> {
    let clock = ManualClock::new();
    let rt = manual_runtime(&clock)?;
    let inbox = rt.bus().subscribe_inbox("news", 8)?;
    let agent = rt.deploy_interval("reporter", Duration::from_secs(3600), "news", |n| {
        Some(Message::typed(n))
    })?;
    rt.start()?;
    agent.signal()?;
    assert_eq!(tick(&inbox.recv_timeout(SOON)?), 1);
    wait_until("1 published", || agent.stats().published == 1);
    assert_eq!(agent.stats().produced, 1);
    // The schedule goes on, and the numbering with it.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(tick(&inbox.recv_timeout(SOON)?), 2);
    assert_eq!(agent.stats().produced, 2);
    Ok(())
}

#[test]
fn deploy_interval_refuses_a_zero_period_and_a_wildcard_topic() -> Result<()> {
    let rt = manual_runtime(&ManualClock::new())?;
    let zero = rt.deploy_interval("zero", Duration::ZERO, "ticks", |n| Some(Message::typed(n)));
    assert!(matches!(zero, Err(Error::InvalidConfig { .. })), "{zero:?}");
    let wild = rt.deploy_interval("wild", PERIOD, "a.*", |n| Some(Message::typed(n)));
    assert!(matches!(wild, Err(Error::InvalidTopic { .. })), "{wild:?}");
    assert!(rt.component("zero").is_none() && rt.component("wild").is_none());
    assert!(rt.components().is_empty());
    Ok(())
}

#[test]
fn a_manual_clock_moves_exactly_by_each_advance_and_components_see_it() -> Result<()> {
    let manual = ManualClock::new();
    let clock = manual.clock();
    assert!(clock.is_manual());
    let t0 = clock.now();
    assert_eq!(clock.now(), t0, "a manual clock stands still");
    manual.advance(Duration::from_millis(1500));
    assert_eq!(clock.now() - t0, Duration::from_millis(1500));
    manual.advance(Duration::ZERO);
    assert_eq!(clock.now() - t0, Duration::from_millis(1500));
    // Every handle reads the same clock.
    assert_eq!(manual.clone().clock().now(), clock.now());

    let (rt, _tx, _feed) = remote(&manual, "watcher")?;
    let (now_tx, nows) = channel::unbounded::<Instant>();
    let ask = |now_tx: Sender<Instant>| {
        errand(&rt, "watcher", move |ctx| {
            let _ = now_tx.send(ctx.now());
        });
    };
    ask(now_tx.clone());
    assert_eq!(nows.recv_timeout(SOON)?, clock.now());
    manual.advance(Duration::from_secs(7));
    ask(now_tx);
    let seen = nows.recv_timeout(SOON)?;
    assert_eq!(seen, clock.now());
    assert_eq!(seen - t0, Duration::from_millis(8500));
    Ok(())
}
