//! An orderly stop with requests outstanding: outcomes already on their way reach their
//! continuations, the rest are told `Stopped` once, no new request is made, and the stop ends.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, Receiver};
use reactorium::{
    BoxError, Component, ComponentOptions, Context, Error, Message, Runtime, SendError,
};
use support::{run_on, wait_until, Remote, SOON};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn reply_popped_with_a_message_past_the_deadline_still_reaches_its_continuation() -> Result<()> {
    let rt = Arc::new(Runtime::builder().worker_threads(1).build()?);
    let service = rt.bus().subscribe_inbox("svc.held", 4)?;
    let drain = Duration::from_millis(200);
    let options = ComponentOptions::new()
        .subscribe("asker")
        .drain_timeout(drain);
    rt.deploy_with("asker", options, || Remote)?;
    rt.start()?;
    let asker = rt.component("asker").expect("deployed").reactor;

    let (tx, outcomes) = channel::unbounded();
    run_on(&rt, "asker", move |ctx| {
        let asked = ctx.request("svc.held", Message::empty(), LONG, move |_, _, r| {
            let _ = tx.send(r);
        });
        asked.expect("accepted");
    })?;
    let mut request = service.recv_timeout(SOON)?;

    // Hold the asker; queue a message whose handling outlives the drain deadline, then the
    // reply: both are popped in one batch after the stop request.
    let (entered_tx, entered) = channel::bounded(1);
    let (release, hold) = channel::bounded::<()>(0);
    run_on(&rt, "asker", move |_| {
        let _ = entered_tx.send(());
        let _ = hold.recv();
    })?;
    entered.recv_timeout(SOON)?;
    run_on(&rt, "asker", move |_| std::thread::sleep(2 * drain))?; // simulated slow work
    request
        .take_reply_handle()
        .expect("a request")
        .send(Message::typed(42u32))?;
    let stopper = {
        let rt = Arc::clone(&rt);
        std::thread::spawn(move || rt.stop())
    };
    wait_until("the stop request reaches the asker", || asker.is_stopped());
    drop(release);

    let outcome = outcomes.recv_timeout(SOON)?;
    assert_eq!(outcome?.get::<u32>(), Some(&42));
    stopper.join().expect("stopper")?;
    assert_eq!(asker.stats().late_replies, 0);
    assert_eq!(asker.stats().pending, 0);
    Ok(())
}

/// Each continuation asks again, and returns only once the new reply has landed in the
/// mailbox, so there is always something queued while the component stops.
fn chain(ctx: &mut Context<'_, Remote>, asked: Arc<AtomicU64>, replied: Receiver<()>) {
    let (again, r) = (Arc::clone(&asked), replied.clone());
    let sent = ctx.request(
        "svc.echo",
        Message::empty(),
        LONG,
        move |_, ctx, outcome| {
            if outcome.is_ok() {
                chain(ctx, again, r);
            }
        },
    );
    if sent.is_ok() {
        asked.fetch_add(1, Ordering::Relaxed);
        let _ = replied.recv_timeout(Duration::from_secs(1));
    }
}

#[test]
fn stop_ends_while_continuations_keep_asking() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let inbox = rt.bus().subscribe_inbox("svc.echo", 16)?;
    let (replied_tx, replied) = channel::unbounded::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let responder = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(mut m) = inbox.recv_timeout(Duration::from_millis(10)) {
                    if let Some(h) = m.take_reply_handle() {
                        let _ = h.send(Message::empty());
                        let _ = replied_tx.send(());
                    }
                }
            }
        })
    };
    let options = ComponentOptions::new()
        .subscribe("pinger")
        .drain_timeout(Duration::from_millis(100));
    rt.deploy_with("pinger", options, || Remote)?;
    rt.start()?;
    let asked = Arc::new(AtomicU64::new(0));
    let a = Arc::clone(&asked);
    run_on(&rt, "pinger", move |ctx| chain(ctx, a, replied))?;
    wait_until("the chain runs", || asked.load(Ordering::Relaxed) > 100);

    let report = rt.stop()?;
    done.store(true, Ordering::Relaxed);
    responder.join().expect("responder");
    // Joined: the reactor left its stop and ended, so no continuation runs after `stop`.
    let pinger = report.component("pinger").expect("reported");
    assert!(pinger.joined, "{pinger:?}");
    assert!(report.pool.unjoined == 0);
    Ok(())
}

#[test]
fn a_continuation_told_stopped_cannot_ask_again() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let inbox = rt.bus().subscribe_inbox("svc.retry", 1024)?;
    rt.deploy_with("retrier", support::on("retrier"), || Remote)?;
    rt.start()?;
    let (told_tx, told) = channel::unbounded::<Result<(), SendError<Message>>>();
    run_on(&rt, "retrier", move |ctx| {
        let asked = ctx.request("svc.retry", Message::empty(), LONG, move |_, ctx, r| {
            assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
            // Retry at once: refused, since the component is stopping.
            let again = ctx.request("svc.retry", Message::empty(), LONG, |_, _, _| {});
            let _ = told_tx.send(again.map(drop).map_err(|e| e.map(|unsent| unsent.message)));
        });
        asked.expect("accepted");
    })?;
    wait_until("the service holds the request", || inbox.len() == 1);

    rt.stop()?;
    match told.recv_timeout(SOON)? {
        Err(SendError::Stopped { target, rejected }) => {
            assert_eq!(&*target, "retrier");
            assert!(
                !rejected.expects_reply(),
                "the handed-back request is disarmed"
            );
        }
        other => panic!("expected Stopped naming the retrier, got {other:?}"),
    }
    assert!(told.try_recv().is_err(), "told Stopped exactly once");
    assert_eq!(inbox.len(), 1, "no new request reached the service");
    Ok(())
}

/// Makes a request in `start`, then fails to start.
struct AskThenFail;

impl Component for AskThenFail {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.request("svc.held", Message::empty(), LONG, |_, _, _| {})?;
        Err("cannot start".into())
    }

    fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_failed_start_gives_back_its_reply_places() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    let service = rt.bus().subscribe_inbox("svc.held", 4)?;
    rt.deploy("starter", || AskThenFail)?;
    assert!(matches!(rt.start(), Err(Error::StartFailed { .. })));
    let held = service.recv_timeout(SOON)?;
    let starter = rt.component("starter").expect("deployed").reactor;
    assert_eq!(
        starter.stats().pending,
        0,
        "no place kept by a component that never ran"
    );
    drop(held);
    Ok(())
}
