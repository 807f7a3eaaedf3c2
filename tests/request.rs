//! Request/reply: from plain threads and from inside components, timeouts and late replies,
//! requests that are never answered, and the bound on a component's outstanding requests.

mod support;

use std::time::Duration;

use anyhow::Result;
use crossbeam::channel::{self, TryRecvError};
use reactorium::{
    AppError, AppErrorKind, BoxError, Bus, Component, ComponentOptions, Context, DeadLetter,
    DeadLetterReason, Error, Inbox, Message, MessageId, PendingReply, ReplyHandle, Runtime,
    SendError, DEAD_LETTER_TOPIC,
};
use support::{on, run_on, runtime, thread_name, wait_until, Forwarder, Probe, Remote, SOON};

// ---- helpers ---------------------------------------------------------------------------------

/// Long enough that an outcome arriving "promptly" cannot be this timeout firing.
const LONG: Duration = Duration::from_secs(30);

/// Answers a `u64` request with twice the number.
struct Doubler;

impl Component for Doubler {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let n = *msg.get::<u64>().ok_or("expected a u64")?;
        ctx.reply(&mut msg, Message::typed(n * 2))?;
        Ok(())
    }
}

/// Lets every request go unanswered: the message (and its reply handle) is simply dropped.
struct Ignore;

impl Component for Ignore {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Panics on every message.
struct Explode;

impl Component for Explode {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        panic!("responder exploded");
    }
}

/// What a continuation saw: the thread it ran on, and the outcome of the request.
type Answer = (String, Result<Message, Error>);

/// Has the `Remote` component `asker` request `msg` on `topic`; the returned channel gets
/// the thread its continuation ran on and the outcome.
fn ask_from(
    rt: &Runtime,
    asker: &str,
    topic: &'static str,
    msg: Message,
    timeout: Duration,
) -> Result<channel::Receiver<Answer>> {
    let (tx, answers) = channel::unbounded::<Answer>();
    run_on(rt, asker, move |ctx| {
        ctx.request(topic, msg, timeout, move |_, _, r| {
            let _ = tx.send((thread_name(), r));
        })
        .expect("request accepted");
    })?;
    Ok(answers)
}

/// The request a `Probe` responder received, with its reply handle taken out.
fn next_request(held: &channel::Receiver<(Message, String)>) -> Result<(Message, ReplyHandle)> {
    let (mut req, _thread) = held.recv_timeout(SOON)?;
    let handle = req
        .take_reply_handle()
        .ok_or_else(|| anyhow::anyhow!("expected a request, got {req:?}"))?;
    Ok((req, handle))
}

/// The next dead letter on `inbox`.
fn next_dead_letter(inbox: &Inbox) -> Result<DeadLetter> {
    let letter = inbox.recv_timeout(SOON)?;
    letter
        .take::<DeadLetter>()
        .map_err(|m| anyhow::anyhow!("expected a dead letter, got {m:?}"))
}

#[test]
fn request_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Bus>();
    send_sync::<PendingReply>();
    send_sync::<ReplyHandle>();
}

// ---- plain threads ---------------------------------------------------------------------------

#[test]
fn plain_thread_request_gets_reply_correlated_to_request() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("doubler", on("math.double"), || Doubler)?;
    rt.start()?;

    let request = Message::typed(21u64);
    let request_id = request.id();
    let pending = rt.bus().request("math.double", request, SOON)?;
    assert_eq!(pending.request_id(), request_id);

    let reply = pending.wait()?;
    assert_eq!(reply.get::<u64>(), Some(&42));
    assert_eq!(reply.correlation(), Some(request_id));
    assert_eq!(reply.source(), Some("doubler"));
    rt.stop()?;
    Ok(())
}

#[test]
fn plain_thread_request_times_out_and_late_reply_is_counted_and_dead_lettered() -> Result<()> {
    let bus = Bus::new();
    let service = bus.subscribe_inbox("svc.slow", 4)?;
    let dead = bus.subscribe_inbox(DEAD_LETTER_TOPIC, 4)?;

    let timeout = Duration::from_millis(50);
    let pending = bus.request("svc.slow", Message::typed(1u64), timeout)?;
    let request_id = pending.request_id();
    // The responder holds the reply handle until the waiter has given up.
    let mut request = service.recv_timeout(SOON)?;
    let handle = request.take_reply_handle().expect("a request");
    assert_eq!(handle.request_id(), request_id, "one id on both sides");

    match pending.wait() {
        Err(Error::Timeout { after }) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(bus.stats().late_replies, 0);

    match handle.send(Message::typed(2u64)) {
        Err(Error::Timeout { after }) => assert_eq!(after, timeout),
        other => panic!("a late reply must be refused with Timeout, got {other:?}"),
    }
    assert_eq!(bus.stats().late_replies, 1);

    let letter = next_dead_letter(&dead)?;
    assert_eq!(letter.reason, DeadLetterReason::LateReply);
    assert_eq!(letter.component, None);
    assert_eq!(letter.message.get::<u64>(), Some(&2));
    assert_eq!(letter.message.correlation(), Some(request_id));
    Ok(())
}

#[test]
fn request_without_subscriber_returns_no_subscriber_with_message() -> Result<()> {
    let bus = Bus::new();
    match bus.request("nobody.home", Message::typed(7u64), SOON) {
        Err(SendError::NoSubscriber { topic, rejected }) => {
            assert_eq!(topic, "nobody.home");
            assert_eq!(rejected.get::<u64>(), Some(&7));
            // The reply slot was released: the handed-back message is no longer a request.
            assert!(!rejected.expects_reply());
        }
        other => panic!("expected NoSubscriber, got {other:?}"),
    }
    assert_eq!(bus.stats().no_subscriber, 1);
    assert_eq!(bus.stats().late_replies, 0);
    Ok(())
}

#[test]
fn request_to_full_responder_is_refused_naming_responder_with_message() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("doubler", on("math.double").mailbox_capacity(1), || Doubler)?;
    // Not started: nothing leaves the mailbox, so one message fills it.
    rt.bus().send("math.double", Message::typed(1u64))?;
    match rt.bus().request("math.double", Message::typed(2u64), SOON) {
        Err(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("doubler", 1));
            assert_eq!(rejected.get::<u64>(), Some(&2));
            assert!(!rejected.expects_reply());
        }
        other => panic!("expected backpressure, got {other:?}"),
    }
    Ok(())
}

#[test]
fn reply_handle_fail_reaches_plain_waiter_as_that_error() -> Result<()> {
    let bus = Bus::new();
    let service = bus.subscribe_inbox("stock.check", 4)?;
    let pending = bus.request("stock.check", Message::typed(42u64), LONG)?;

    let mut request = service.recv_timeout(SOON)?;
    let handle = request.take_reply_handle().expect("a request");
    // The responder fails with an error of its own: here, a component it relies on is gone.
    handle.fail(Error::NoComponent {
        name: "stock-eu".into(),
    })?;

    match pending.wait() {
        Err(Error::NoComponent { name }) => assert_eq!(name, "stock-eu"),
        other => panic!("expected the responder's NoComponent, got {other:?}"),
    }
    Ok(())
}

#[test]
fn dropping_an_inbox_answers_its_queued_requests_with_no_reply() -> Result<()> {
    let bus = Bus::new();
    let service = bus.subscribe_inbox("svc.gone", 4)?;
    let pending = bus.request("svc.gone", Message::typed(1u64), LONG)?;
    drop(service);
    match pending.wait() {
        Err(Error::NoReply { .. }) => {}
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }
    Ok(())
}

// ---- responders that never answer -----------------------------------------------------------

#[test]
fn responder_dropping_request_gives_no_reply_before_timeout() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("ignorer", on("svc.ignore"), || Ignore)?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;

    // From a plain thread.
    match rt
        .bus()
        .request("svc.ignore", Message::typed(1u64), LONG)?
        .wait()
    {
        Err(Error::NoReply { reason }) => assert!(reason.contains("unanswered"), "{reason}"),
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }

    // From a component.
    let answers = ask_from(&rt, "asker", "svc.ignore", Message::typed(2u64), LONG)?;
    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    match outcome {
        Err(Error::NoReply { .. }) => {}
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }
    rt.stop()?;
    Ok(())
}

#[test]
fn responder_panic_gives_no_reply_not_timeout() -> Result<()> {
    let rt = runtime()?;
    // Two responders: the first panic stops its component.
    rt.deploy_with("boom1", on("svc.boom1"), || Explode)?;
    rt.deploy_with("boom2", on("svc.boom2"), || Explode)?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;

    match rt
        .bus()
        .request("svc.boom1", Message::typed(1u64), LONG)?
        .wait()
    {
        Err(Error::NoReply { reason }) => assert!(reason.contains("panicked"), "{reason}"),
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }

    let answers = ask_from(&rt, "asker", "svc.boom2", Message::typed(2u64), LONG)?;
    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    match outcome {
        Err(Error::NoReply { reason }) => assert!(reason.contains("panicked"), "{reason}"),
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }
    Ok(())
}

#[test]
fn requests_queued_behind_a_panic_get_no_reply() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("boom", on("svc.boom"), || Explode)?;
    // Queued before start: the request waits behind the message that will panic.
    rt.bus().send("svc.boom", Message::empty())?;
    let pending = rt.bus().request("svc.boom", Message::typed(1u64), LONG)?;
    rt.start()?;
    match pending.wait() {
        Err(Error::NoReply { reason }) => assert!(reason.contains("panicked"), "{reason}"),
        other => panic!("expected NoReply well before the 30 s timeout, got {other:?}"),
    }
    Ok(())
}

// ---- requests from inside components ---------------------------------------------------------

#[test]
fn component_request_continuation_runs_on_requesters_thread_with_reply() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("doubler", on("math.double"), || Doubler)?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;

    let (asked_tx, asked) = channel::bounded(1);
    let (tx, answers) = channel::unbounded::<Answer>();
    run_on(&rt, "asker", move |ctx| {
        let id = ctx.request(
            "math.double",
            Message::typed(21u64),
            SOON,
            move |_, _, r| {
                let _ = tx.send((thread_name(), r));
            },
        );
        let _ = asked_tx.send((thread_name(), id));
    })?;

    let (asking_thread, request_id) = asked.recv_timeout(SOON)?;
    let request_id: MessageId = request_id?;
    assert_eq!(asking_thread, "asker");
    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(
        thread, "asker",
        "the continuation runs on the requester's reactor"
    );
    let reply = outcome?;
    assert_eq!(reply.get::<u64>(), Some(&42));
    assert_eq!(reply.correlation(), Some(request_id));
    assert_eq!(
        rt.component("asker")
            .expect("deployed")
            .reactor
            .stats()
            .pending,
        0
    );
    rt.stop()?;
    Ok(())
}

#[test]
fn component_request_timeout_reaches_continuation_and_late_reply_is_counted_on_requester(
) -> Result<()> {
    let rt = runtime()?;
    let (held_tx, held) = channel::unbounded();
    rt.deploy_with("holder", on("svc.hold"), move || Probe {
        tx: held_tx.clone(),
    })?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 4)?;
    let asker = rt.component("asker").expect("deployed").reactor;

    let timeout = Duration::from_millis(50);
    let answers = ask_from(&rt, "asker", "svc.hold", Message::typed(1u64), timeout)?;
    // The responder's handle is held here until the requester has timed out.
    let (request, handle) = next_request(&held)?;

    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    match outcome {
        Err(Error::Timeout { after }) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(asker.stats().late_replies, 0);

    // The requester's timer gave up the reply place, so the responder learns at once that
    // its reply is late; the reply is counted on the requester and dead-lettered.
    match handle.send(Message::typed(2u64)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected the late reply to be refused with Timeout, got {other:?}"),
    }
    assert_eq!(asker.stats().late_replies, 1);
    let letter = next_dead_letter(&dead)?;
    assert_eq!(letter.reason, DeadLetterReason::LateReply);
    assert_eq!(letter.component.as_deref(), Some("asker"));
    assert_eq!(letter.message.get::<u64>(), Some(&2));
    assert_eq!(letter.message.correlation(), Some(request.id()));
    assert_eq!(asker.stats().pending, 0);
    assert!(
        answers.try_recv().is_err(),
        "the continuation runs only once"
    );
    rt.stop()?;
    Ok(())
}

#[test]
fn reply_handle_fail_reaches_continuation_as_that_error() -> Result<()> {
    let rt = runtime()?;
    let (held_tx, held) = channel::unbounded();
    rt.deploy_with("holder", on("svc.hold"), move || Probe {
        tx: held_tx.clone(),
    })?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;

    let answers = ask_from(&rt, "asker", "svc.hold", Message::typed(1u64), LONG)?;
    let (_request, handle) = next_request(&held)?;
    // The responder fails with an error of its own: here, a component it relies on is gone.
    handle.fail(Error::NoComponent {
        name: "stock-eu".into(),
    })?;

    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    match outcome {
        Err(Error::NoComponent { name }) => assert_eq!(name, "stock-eu"),
        other => panic!("expected the responder's NoComponent, got {other:?}"),
    }
    rt.stop()?;
    Ok(())
}

#[test]
fn blocking_waits_on_a_reactor_thread_return_would_deadlock() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;

    let bus = rt.bus().clone();
    let (tx, results) = channel::bounded(1);
    run_on(&rt, "asker", move |_ctx| {
        let inbox = bus.subscribe_inbox("svc.local", 4).expect("subscribe");
        let pending = bus
            .request("svc.local", Message::typed(1u64), SOON)
            .expect("request");
        // Make every wait below answerable at once: a wait that did not refuse would return
        // a message instead of blocking, so the test fails rather than hangs.
        let mut request = inbox.try_recv().expect("the request is queued");
        request
            .take_reply_handle()
            .expect("a request")
            .send(Message::typed(2u64))
            .expect("reply");
        bus.send("svc.local", Message::typed(3u64)).expect("send");
        bus.send("svc.local", Message::typed(4u64)).expect("send");

        let waited = pending.wait();
        let received = inbox.recv();
        let received_in_time = inbox.recv_timeout(SOON);
        let _ = tx.send([waited, received, received_in_time]);
    })?;

    let [waited, received, received_in_time] = results.recv_timeout(SOON)?;
    assert!(
        matches!(waited, Err(Error::WouldDeadlock)),
        "PendingReply::wait: {waited:?}"
    );
    assert!(
        matches!(received, Err(Error::WouldDeadlock)),
        "Inbox::recv: {received:?}"
    );
    assert!(
        matches!(received_in_time, Err(Error::WouldDeadlock)),
        "Inbox::recv_timeout: {received_in_time:?}"
    );
    rt.stop()?;
    Ok(())
}

#[test]
fn max_pending_refuses_third_request_naming_requester_then_recovers() -> Result<()> {
    let rt = runtime()?;
    let (held_tx, held) = channel::unbounded();
    rt.deploy_with("holder", on("svc.hold"), move || Probe {
        tx: held_tx.clone(),
    })?;
    rt.deploy_with("asker", on("asker").max_pending(2), || Remote)?;
    rt.start()?;
    let asker = rt.component("asker").expect("deployed").reactor;

    let (answer_tx, answers) = channel::unbounded::<Answer>();
    let (asked_tx, asked) = channel::bounded(1);
    let answer = answer_tx.clone();
    run_on(&rt, "asker", move |ctx| {
        let mut outcomes = Vec::new();
        for n in 1..=3u64 {
            let answer = answer.clone();
            outcomes.push(
                ctx.request("svc.hold", Message::typed(n), SOON, move |_, _, r| {
                    let _ = answer.send((thread_name(), r));
                }),
            );
        }
        let _ = asked_tx.send((outcomes, ctx.pending()));
    })?;

    let (outcomes, pending) = asked.recv_timeout(SOON)?;
    assert_eq!(pending, 2);
    let mut outcomes = outcomes.into_iter();
    let first = outcomes.next().expect("three outcomes")?;
    let second = outcomes.next().expect("three outcomes")?;
    assert_ne!(first, second);
    match outcomes.next().expect("three outcomes") {
        Err(SendError::Backpressure {
            target,
            capacity,
            rejected,
        }) => {
            assert_eq!((&*target, capacity), ("asker", 2));
            assert_eq!(rejected.message.get::<u64>(), Some(&3));
            assert!(!rejected.message.expects_reply());
        }
        other => panic!("expected backpressure naming the requester, got {other:?}"),
    }

    // Only the two accepted requests reached the responder; answer them.
    for _ in 0..2 {
        let (request, handle) = next_request(&held)?;
        let n = *request.get::<u64>().expect("a u64");
        handle.send(Message::typed(n * 10))?;
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let (thread, outcome) = answers.recv_timeout(SOON)?;
        assert_eq!(thread, "asker");
        got.push(*outcome?.get::<u64>().expect("a u64"));
    }
    got.sort_unstable();
    assert_eq!(got, [10, 20]);
    assert_eq!(asker.stats().pending, 0);

    // With the replies in, the component may request again.
    let (asked_tx, asked) = channel::bounded(1);
    run_on(&rt, "asker", move |ctx| {
        let id = ctx.request("svc.hold", Message::typed(4u64), SOON, move |_, _, r| {
            let _ = answer_tx.send((thread_name(), r));
        });
        let _ = asked_tx.send(id);
    })?;
    asked.recv_timeout(SOON)??;
    let (request, handle) = next_request(&held)?;
    assert_eq!(request.get::<u64>(), Some(&4));
    handle.send(Message::typed(40u64))?;
    let (_, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(outcome?.get::<u64>(), Some(&40));
    assert!(
        held.try_recv().is_err(),
        "the refused request never reached the responder"
    );
    rt.stop()?;
    Ok(())
}

// ---- the busy case: a refused request's continuation answers ---------------------------------

/// Issue 12, item 12. A component serving a request by asking another holds the caller's
/// reply handle in its continuation. When its own request is refused because the downstream
/// is full, the continuation comes back with the message and answers the caller with the
/// refusal: the caller hears "busy" at once, not "no reply" (a dropped handle) nor a timeout.
#[test]
fn a_forwarder_answers_busy_when_its_downstream_is_full() -> Result<()> {
    let rt = runtime()?;
    let (returned_tx, returned) = channel::unbounded();
    rt.deploy_with("gateway", on("gw"), move || Forwarder {
        downstream: "backend",
        returned: returned_tx.clone(),
    })?;
    rt.start()?;
    // The downstream: a plain thread's inbox with room for one, already full.
    let backend = rt.bus().subscribe_inbox("backend", 1)?;
    rt.bus().send("backend", Message::empty())?;

    let pending = rt.bus().request("gw", Message::typed(1u64), LONG)?;
    let id = pending.request_id();
    match pending.wait() {
        Err(Error::Backpressure { target, capacity }) => {
            assert_eq!((&*target, capacity), ("inbox(backend)", 1));
        }
        other => panic!("expected the downstream's Backpressure, got {other:?}"),
    }
    let back = returned.recv_timeout(SOON)?;
    assert_eq!(back.id(), id, "the refused message is handed back");
    assert!(!back.expects_reply());
    assert_eq!(backend.len(), 1, "nothing more reached the downstream");

    // With room again, the same path answers with the downstream's reply.
    let mut queued = backend.try_recv().expect("the message that filled it");
    assert!(queued.take_reply_handle().is_none());
    let pending = rt.bus().request("gw", Message::typed(2u64), LONG)?;
    let mut asked = backend.recv_timeout(SOON)?;
    asked
        .take_reply_handle()
        .expect("a request")
        .send(Message::typed(20u64))?;
    assert_eq!(pending.wait()?.get::<u64>(), Some(&20));
    rt.stop()?;
    Ok(())
}

/// As above, when the refusal is the forwarder's own `max_pending`: the caller hears
/// `Backpressure` naming the forwarder.
#[test]
fn a_forwarder_answers_busy_past_its_own_max_pending() -> Result<()> {
    let rt = runtime()?;
    let (held_tx, held) = channel::unbounded();
    rt.deploy_with("holder", on("svc.hold"), move || Probe {
        tx: held_tx.clone(),
    })?;
    let (returned_tx, returned) = channel::unbounded();
    rt.deploy_with("gateway", on("gw").max_pending(1), move || Forwarder {
        downstream: "svc.hold",
        returned: returned_tx.clone(),
    })?;
    rt.start()?;

    let first = rt.bus().request("gw", Message::typed(1u64), LONG)?;
    let (request, handle) = next_request(&held)?;
    assert_eq!(request.get::<u64>(), Some(&1));
    let second = rt.bus().request("gw", Message::typed(2u64), LONG)?;
    match second.wait() {
        Err(Error::Backpressure { target, capacity }) => {
            assert_eq!((&*target, capacity), ("gateway", 1));
        }
        other => panic!("expected Backpressure naming the gateway, got {other:?}"),
    }
    assert_eq!(returned.recv_timeout(SOON)?.get::<u64>(), Some(&2));
    handle.send(Message::typed(10u64))?;
    assert_eq!(first.wait()?.get::<u64>(), Some(&10));
    assert!(held.try_recv().is_err(), "the refused request went nowhere");
    rt.stop()?;
    Ok(())
}

/// Every refusal reaches the continuation as the `Error` `?` would make of it; here a topic
/// nobody serves: the caller hears `NoSubscriber`.
#[test]
fn a_forwarder_passes_on_no_subscriber() -> Result<()> {
    let rt = runtime()?;
    let (returned_tx, _returned) = channel::unbounded();
    rt.deploy_with("gateway", on("gw"), move || Forwarder {
        downstream: "nobody.home",
        returned: returned_tx.clone(),
    })?;
    rt.start()?;
    match rt.bus().request("gw", Message::empty(), LONG)?.wait() {
        Err(Error::NoSubscriber { topic }) => assert_eq!(topic, "nobody.home"),
        other => panic!("expected NoSubscriber, got {other:?}"),
    }
    rt.stop()?;
    Ok(())
}

#[test]
fn reply_reaches_continuation_even_when_requester_mailbox_is_full() -> Result<()> {
    let rt = runtime()?;
    let (held_tx, held) = channel::unbounded();
    rt.deploy_with("holder", on("svc.hold"), move || Probe {
        tx: held_tx.clone(),
    })?;
    rt.deploy_with("asker", on("asker").mailbox_capacity(2), || Remote)?;
    rt.start()?;
    let asker = rt.component("asker").expect("deployed").reactor;

    let answers = ask_from(&rt, "asker", "svc.hold", Message::typed(5u64), SOON)?;
    let (_request, handle) = next_request(&held)?;

    // Hold the requester inside a handler, then fill its mailbox with ordinary messages.
    let (gate_tx, gate) = channel::unbounded::<()>();
    let (blocked_tx, blocked) = channel::bounded(1);
    run_on(&rt, "asker", move |_ctx| {
        let _ = blocked_tx.send(());
        let _ = gate.recv();
    })?;
    blocked.recv_timeout(SOON)?;
    run_on(&rt, "asker", |_ctx| {})?;
    run_on(&rt, "asker", |_ctx| {})?;
    match run_on(&rt, "asker", |_ctx| {}) {
        Err(SendError::Backpressure {
            target, capacity, ..
        }) => assert_eq!((&*target, capacity), ("asker", 2)),
        other => panic!("the mailbox should be full, got {other:?}"),
    }
    assert_eq!(asker.stats().queued, 2);

    handle.send(Message::typed(50u64))?;
    assert!(
        matches!(answers.try_recv(), Err(TryRecvError::Empty)),
        "the reactor is still blocked"
    );
    drop(gate_tx);

    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    assert_eq!(outcome?.get::<u64>(), Some(&50));
    assert_eq!(asker.stats().late_replies, 0);
    rt.stop()?;
    Ok(())
}

// ---- requests that stop waiting give their reserved place back -----------------------------

#[test]
fn timed_out_requests_give_their_reply_place_back() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    // A responder that takes requests and never answers them.
    let _silent = rt.bus().subscribe_inbox("svc.silent", 64)?;
    rt.deploy_with(
        "asker",
        ComponentOptions::new().subscribe("asker").max_pending(2),
        || Remote,
    )?;
    rt.start()?;
    let asker = rt.component("asker").expect("deployed").reactor;

    // Five requests, one after another, each timing out: with max_pending 2, the third would
    // be refused if a timed-out request kept its place until its (never coming) reply.
    for i in 0..5u64 {
        let (tx, outcomes) = channel::unbounded();
        run_on(&rt, "asker", move |ctx| {
            let asked = ctx.request(
                "svc.silent",
                Message::typed(i),
                Duration::from_millis(10),
                move |_, _, r| {
                    let _ = tx.send(r.map(|_| ()));
                },
            );
            assert!(asked.is_ok(), "request {i} refused: {asked:?}");
        })?;
        match outcomes.recv_timeout(SOON)? {
            Err(Error::Timeout { .. }) => {}
            other => panic!("request {i}: expected Timeout, got {other:?}"),
        }
    }
    assert_eq!(asker.stats().pending, 0, "every place given back");
    rt.stop()?;
    Ok(())
}

#[test]
fn reply_queued_at_stop_reaches_its_continuation() -> Result<()> {
    let rt = std::sync::Arc::new(Runtime::builder().worker_threads(1).build()?);
    let service = rt.bus().subscribe_inbox("svc.held", 4)?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    rt.start()?;
    let asker = rt.component("asker").expect("deployed").reactor;

    let (tx, outcomes) = channel::unbounded();
    run_on(&rt, "asker", move |ctx| {
        ctx.request(
            "svc.held",
            Message::empty(),
            Duration::from_secs(30),
            move |_, _, r| {
                let _ = tx.send(r);
            },
        )
        .expect("request accepted");
    })?;
    let mut request = service.recv_timeout(SOON)?;

    // Hold the asker inside a handler, then let the reply land in its mailbox and ask the
    // runtime to stop: the reply was accepted before the stop, so it must reach the
    // continuation, not be answered `Stopped` and dead-lettered as late.
    let (entered_tx, entered) = channel::bounded(1);
    let (release, hold) = channel::bounded::<()>(0);
    run_on(&rt, "asker", move |_ctx| {
        let _ = entered_tx.send(());
        let _ = hold.recv();
    })?;
    entered.recv_timeout(SOON)?;
    request
        .take_reply_handle()
        .expect("a request")
        .send(Message::typed(42u32))?;
    let stopper = {
        let rt = std::sync::Arc::clone(&rt);
        std::thread::spawn(move || rt.stop())
    };
    support::wait_until("the stop request reaches the asker", || asker.is_stopped());
    drop(release);

    let outcome = outcomes.recv_timeout(SOON)?;
    assert_eq!(outcome?.get::<u32>(), Some(&42));
    let report = stopper.join().expect("stopper")?;
    assert_eq!(asker.stats().late_replies, 0);
    assert_eq!(report.bus.late_replies, 0);
    Ok(())
}

// ---- replies to messages that expect none ----------------------------------------------------

/// Greets every message it gets, with `ctx.reply(..)?`, numbering the greetings.
struct Greeter {
    greeted: u32,
}

impl Component for Greeter {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.greeted += 1;
        ctx.reply(&mut msg, Message::typed(self.greeted))?;
        Ok(())
    }
}

#[test]
fn replying_to_a_plain_send_dead_letters_the_reply_and_fails_nothing() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
    let greeter = rt.deploy_with("greeter", on("greet"), || Greeter { greeted: 0 })?;
    rt.start()?;

    let plain = Message::empty();
    let plain_id = plain.id();
    rt.bus().send("greet", plain)?;
    let letter = next_dead_letter(&dead)?;
    assert_eq!(letter.reason, DeadLetterReason::UnrequestedReply);
    assert_eq!(letter.component.as_deref(), Some("greeter"));
    assert_eq!(letter.message.get::<u32>(), Some(&1), "the reply itself");
    assert_eq!(letter.message.correlation(), Some(plain_id));
    assert_eq!(letter.message.source(), Some("greeter"));

    // The same instance answers the next request: the plain send did not fail it.
    let reply = rt.bus().request("greet", Message::empty(), SOON)?.wait()?;
    assert_eq!(reply.get::<u32>(), Some(&2));
    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    // Read once its thread has ended: `handled` is counted after the handler returns, which
    // may be after the requester has read the reply.
    let stats = greeter.stats();
    assert_eq!(
        (stats.failures, stats.handled, stats.dead_lettered),
        (0, 2, 1)
    );
    Ok(())
}

/// Answers each request twice, and says whether each `reply` returned `Ok`.
struct Twice {
    outcomes: channel::Sender<(bool, bool)>,
}

impl Component for Twice {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let first = ctx.reply(&mut msg, Message::typed(1u8)).is_ok();
        let second = ctx.reply(&mut msg, Message::typed(2u8)).is_ok();
        let _ = self.outcomes.send((first, second));
        Ok(())
    }
}

#[test]
fn a_second_reply_to_one_request_is_dead_lettered_too() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
    let (tx, outcomes) = channel::unbounded();
    rt.deploy_with("twice", on("twice"), move || Twice {
        outcomes: tx.clone(),
    })?;
    rt.start()?;
    let request = Message::empty();
    let request_id = request.id();
    let reply = rt.bus().request("twice", request, SOON)?.wait()?;
    assert_eq!(reply.get::<u8>(), Some(&1));
    assert_eq!(outcomes.recv_timeout(SOON)?, (true, true));
    let letter = next_dead_letter(&dead)?;
    assert_eq!(letter.reason, DeadLetterReason::UnrequestedReply);
    assert_eq!(letter.message.get::<u8>(), Some(&2));
    assert_eq!(letter.message.correlation(), Some(request_id));
    Ok(())
}

// ---- application errors (issue 12, item 13) --------------------------------------------------

/// The application error for a missing `key`.
fn no_such_key(key: &str) -> AppError {
    AppError::new(
        AppErrorKind::NotFound,
        "no_such_key",
        format!("no key `{key}`"),
    )
}

/// A store holding one key, `a`: a request for it is answered with `1`, a request for any
/// other with the application error [`no_such_key`].
struct OneKey;

impl Component for OneKey {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let key = msg
            .as_json()
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        if key == "a" {
            ctx.reply(&mut msg, Message::typed(1u64))?;
        } else {
            ctx.reply_err(&mut msg, no_such_key(&key))?;
        }
        Ok(())
    }
}

fn key(k: &str) -> Message {
    Message::json(k.into())
}

#[test]
fn reply_err_reaches_a_plain_requester_as_that_application_error() -> Result<()> {
    let rt = runtime()?;
    let store = rt.deploy_with("store", on("kv.get"), || OneKey)?;
    rt.start()?;

    match rt.bus().request("kv.get", key("b"), LONG)?.wait() {
        Err(Error::Application(e)) => {
            assert_eq!(e, no_such_key("b"));
            assert_eq!(e.kind(), AppErrorKind::NotFound);
            assert_eq!((e.code(), e.message()), ("no_such_key", "no key `b`"));
        }
        other => panic!("expected the store's application error, got {other:?}"),
    }
    // The same through a callback.
    let (tx, outcomes) = channel::unbounded();
    let _ticket = rt
        .bus()
        .request_callback("kv.get", key("c"), LONG, move |r| {
            let _ = tx.send(r);
        })?;
    match outcomes.recv_timeout(SOON)? {
        Err(Error::Application(e)) => assert_eq!(e, no_such_key("c")),
        other => panic!("expected the store's application error, got {other:?}"),
    }
    // Answering with an error is not a failure of the component.
    assert_eq!(
        rt.bus()
            .request("kv.get", key("a"), LONG)?
            .wait()?
            .get::<u64>(),
        Some(&1)
    );
    // `handled` counts once the handler has returned, which may be after the reply is read.
    wait_until("the third message is counted", || {
        store.stats().handled == 3
    });
    let stats = store.stats();
    assert_eq!((stats.failures, stats.dead_lettered), (0, 0));
    let report = rt.stop()?;
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[test]
fn an_application_error_reaches_a_components_continuation_and_passes_through_a_forwarder(
) -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("store", on("kv.get"), || OneKey)?;
    rt.deploy_with("asker", on("asker"), || Remote)?;
    let (returned_tx, returned) = channel::unbounded();
    rt.deploy_with("gateway", on("gw"), move || Forwarder {
        downstream: "kv.get",
        returned: returned_tx.clone(),
    })?;
    rt.start()?;

    let answers = ask_from(&rt, "asker", "kv.get", key("b"), LONG)?;
    let (thread, outcome) = answers.recv_timeout(SOON)?;
    assert_eq!(thread, "asker");
    match outcome {
        Err(Error::Application(e)) => assert_eq!(e, no_such_key("b")),
        other => panic!("expected the store's application error, got {other:?}"),
    }
    // A gateway passing the outcome on with `ReplyHandle::fail` keeps it whole.
    match rt.bus().request("gw", key("z"), LONG)?.wait() {
        Err(Error::Application(e)) => assert_eq!(e, no_such_key("z")),
        other => panic!("expected the store's application error, got {other:?}"),
    }
    assert!(returned.try_recv().is_err(), "nothing was refused");
    rt.stop()?;
    Ok(())
}

#[test]
fn reply_err_to_a_plain_send_dead_letters_the_error_and_fails_nothing() -> Result<()> {
    let rt = runtime()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
    let store = rt.deploy_with("store", on("kv.get"), || OneKey)?;
    rt.start()?;

    let plain = key("b");
    let plain_id = plain.id();
    rt.bus().send("kv.get", plain)?;
    let letter = next_dead_letter(&dead)?;
    assert_eq!(letter.reason, DeadLetterReason::UnrequestedReply);
    assert_eq!(letter.component.as_deref(), Some("store"));
    let json = letter
        .message
        .as_json()
        .expect("the error, as JSON")
        .clone();
    assert_eq!(serde_json::from_value::<AppError>(json)?, no_such_key("b"));
    assert_eq!(letter.message.correlation(), Some(plain_id));
    assert_eq!(letter.message.source(), Some("store"));

    assert_eq!(
        rt.bus()
            .request("kv.get", key("a"), LONG)?
            .wait()?
            .get::<u64>(),
        Some(&1)
    );
    wait_until("the second message is counted", || {
        store.stats().handled == 2
    });
    let stats = store.stats();
    assert_eq!((stats.failures, stats.dead_lettered), (0, 1));
    Ok(())
}

/// Holds each request until the test opens the gate, then answers it with an application
/// error and says whether `reply_err` returned `Ok`.
struct LateRefuser {
    gate: channel::Receiver<()>,
    outcomes: channel::Sender<bool>,
}

impl Component for LateRefuser {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.gate.recv();
        let ok = ctx.reply_err(&mut msg, no_such_key("late")).is_ok();
        let _ = self.outcomes.send(ok);
        Ok(())
    }
}

#[test]
fn reply_err_after_the_requester_gave_up_fails_nothing() -> Result<()> {
    let rt = runtime()?;
    let (gate_tx, gate) = channel::unbounded();
    let (tx, outcomes) = channel::unbounded();
    let refuser = rt.deploy_with("refuser", on("slow"), move || LateRefuser {
        gate: gate.clone(),
        outcomes: tx.clone(),
    })?;
    rt.start()?;

    let pending = rt
        .bus()
        .request("slow", key("x"), Duration::from_millis(20))?;
    assert!(matches!(pending.wait(), Err(Error::Timeout { .. })));
    gate_tx.send(())?;
    assert!(outcomes.recv_timeout(SOON)?, "reply_err returned Ok");
    // The instance is the same one, and still answers.
    let pending = rt.bus().request("slow", key("y"), LONG)?;
    gate_tx.send(())?;
    assert!(matches!(pending.wait(), Err(Error::Application(_))));
    assert!(outcomes.recv_timeout(SOON)?);
    assert_eq!(refuser.stats().failures, 0);
    rt.stop()?;
    Ok(())
}
