//! Bus semantics: pattern routing, round-robin `send`, fan-out `publish` with visible refusals,
//! per-sender ordering, run-time (un)subscription, refusals that hand the message back, the
//! message envelope.

mod support;

use std::collections::HashMap;
use std::thread;

use anyhow::Result;
use crossbeam::channel::{self, Sender};
use reactorium::{
    BoxError, Bus, Component, ComponentOptions, Context, DeadLetter, DeadLetterReason, Error,
    Message, OnError, Runtime, SendError, SubscriptionId, DEAD_LETTER_TOPIC,
};
use serde_json::{json, Value};
use support::{Probe, SOON};

fn send(bus: &Bus, topic: &str, msg: Message) -> Result<()> {
    bus.send(topic, msg)?;
    Ok(())
}

/// The topics of the messages waiting in `inbox`, taking them out.
fn topics(inbox: &reactorium::Inbox) -> Vec<String> {
    std::iter::from_fn(|| inbox.try_recv())
        .map(|m| m.topic().as_str().to_owned())
        .collect()
}

#[test]
fn patterns_route_exact_single_and_multi_segment() -> Result<()> {
    let bus = Bus::new();
    let exact = bus.subscribe_inbox("a.b", 8)?;
    let one = bus.subscribe_inbox("a.*", 8)?;
    let many = bus.subscribe_inbox("a.>", 8)?;
    let middle = bus.subscribe_inbox("*.b.*", 8)?;

    let publish = |topic: &str| -> Result<usize> {
        let report = bus.publish(topic, Message::empty())?;
        assert!(report.is_complete());
        Ok(report.delivered)
    };
    assert_eq!(publish("a.b")?, 3);
    assert_eq!(publish("a.c")?, 2);
    assert_eq!(publish("a.b.c")?, 2);
    assert_eq!(publish("x.b.y")?, 1);
    assert_eq!(topics(&exact), ["a.b"]);
    assert_eq!(topics(&one), ["a.b", "a.c"]);
    assert_eq!(topics(&many), ["a.b", "a.c", "a.b.c"]);
    assert_eq!(topics(&middle), ["a.b.c", "x.b.y"]);

    // `send` picks among the same matches: `a.b.c` can only go to `a.>` or `*.b.*`, never to
    // `a.*`.
    for _ in 0..4 {
        send(&bus, "a.b.c", Message::empty())?;
    }
    assert!(one.is_empty() && exact.is_empty());
    assert_eq!(many.len() + middle.len(), 4);

    // `a.>` needs at least one segment after `a`.
    assert!(matches!(
        bus.publish("a", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    Ok(())
}

#[test]
fn send_round_robins_among_subscribers() -> Result<()> {
    const PER: usize = 100;
    let (tx, rx) = channel::unbounded();
    let rt = Runtime::builder().worker_threads(1).build()?;
    for name in ["w0", "w1", "w2"] {
        let tx = tx.clone();
        rt.deploy_with(name, ComponentOptions::new().subscribe("work"), move || {
            Probe { tx: tx.clone() }
        })?;
    }
    rt.start()?;
    for i in 0..3 * PER {
        send(rt.bus(), "work", Message::typed(i))?;
    }
    let mut per_thread: HashMap<String, usize> = HashMap::new();
    for _ in 0..3 * PER {
        let (_, thread) = rx.recv_timeout(SOON)?;
        *per_thread.entry(thread).or_default() += 1;
    }
    let want: HashMap<String, usize> = ["w0", "w1", "w2"]
        .into_iter()
        .map(|n| (n.to_owned(), PER))
        .collect();
    assert_eq!(per_thread, want);
    Ok(())
}

#[test]
fn publish_reaches_every_subscriber_and_reports_a_partial_fan_out() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    // Not started: its one-message mailbox stays full.
    let full = rt.deploy_with(
        "full",
        ComponentOptions::new()
            .mailbox_capacity(1)
            .subscribe("news"),
        || Sink,
    )?;
    full.send(Message::empty())?;
    let first = rt.bus().subscribe_inbox("news", 4)?;
    let second = rt.bus().subscribe_inbox("news", 4)?;

    let report = rt.bus().publish("news", Message::typed(7u32))?;
    assert_eq!(report.delivered, 2);
    assert!(!report.is_complete());
    match &report.refused[..] {
        [SendError::Backpressure {
            target,
            capacity,
            rejected,
        }] => {
            assert_eq!((&**target, *capacity), ("full", 1));
            assert_eq!(rejected.get::<u32>(), Some(&7));
            assert_eq!(rejected.topic().as_str(), "news");
        }
        other => panic!("expected one Backpressure refusal, got {other:?}"),
    }
    for inbox in [&first, &second] {
        assert_eq!(
            inbox.try_recv().and_then(|m| m.get::<u32>().copied()),
            Some(7)
        );
    }
    Ok(())
}

#[test]
fn one_sender_to_one_component_keeps_order() -> Result<()> {
    let n: u64 = if cfg!(miri) { 200 } else { 10_000 };
    let (tx, rx) = channel::unbounded();
    let rt = Runtime::builder().worker_threads(1).build()?;
    // A small mailbox, so the sender meets backpressure and must retry with the message it
    // got back.
    rt.deploy_with(
        "ordered",
        ComponentOptions::new()
            .mailbox_capacity(16)
            .subscribe("seq"),
        move || Probe { tx: tx.clone() },
    )?;
    rt.start()?;
    for seq in 0..n {
        let mut msg = Message::typed(seq);
        loop {
            match rt.bus().send("seq", msg) {
                Ok(()) => break,
                Err(SendError::Backpressure { rejected, .. }) => {
                    msg = rejected;
                    thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    for want in 0..n {
        let (msg, _) = rx.recv_timeout(SOON)?;
        assert_eq!(msg.get::<u64>(), Some(&want));
    }
    let report = rt.stop()?;
    assert_eq!(report.component("ordered").unwrap().handled, n);
    Ok(())
}

#[test]
fn subscriptions_from_outside_take_effect_at_once() -> Result<()> {
    let (tx, rx) = channel::unbounded();
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy("late", move || Probe { tx: tx.clone() })?;
    rt.start()?;
    let bus = rt.bus();
    assert!(matches!(
        bus.send("late.in", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));

    let id = bus.subscribe("late.*", "late")?;
    assert_eq!(bus.stats().subscriptions, 1);
    send(bus, "late.in", Message::typed(1u32))?;
    let (msg, _) = rx.recv_timeout(SOON)?;
    assert_eq!(msg.topic().as_str(), "late.in");
    assert_eq!(msg.get::<u32>(), Some(&1));

    assert!(bus.unsubscribe(id));
    assert!(!bus.unsubscribe(id), "a second unsubscribe finds nothing");
    match bus.send("late.in", Message::typed(2u32)) {
        Err(SendError::NoSubscriber { rejected, .. }) => {
            assert_eq!(rejected.get::<u32>(), Some(&2))
        }
        other => panic!("expected NoSubscriber, got {other:?}"),
    }
    Ok(())
}

#[test]
fn subscribe_names_a_deployed_component_and_a_valid_pattern() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy("real", || Sink)?;
    match rt.bus().subscribe("x", "ghost") {
        Err(Error::NoComponent { name, .. }) => assert_eq!(name, "ghost"),
        other => panic!("expected NoComponent, got {other:?}"),
    }
    assert!(matches!(
        rt.bus().subscribe("a..b", "real"),
        Err(Error::InvalidTopic { .. })
    ));
    // A bus outside any runtime knows no components.
    assert!(matches!(
        Bus::new().subscribe("x", "real"),
        Err(Error::NoComponent { .. })
    ));
    assert_eq!(rt.bus().stats().subscriptions, 0);
    Ok(())
}

/// Subscribes to `joiner.at.start` in `start`; on `joiner.join` subscribes to
/// `joiner.in.handle`, on `joiner.leave` unsubscribes again (answering each request); forwards
/// anything else.
struct Joiner {
    tx: Sender<Message>,
    joined: Option<SubscriptionId>,
}

impl Component for Joiner {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.subscribe("joiner.at.start")?;
        Ok(())
    }

    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        match msg.topic().as_str() {
            "joiner.join" => {
                self.joined = Some(ctx.subscribe("joiner.in.handle")?);
                ctx.reply(&mut msg, Message::empty())?;
            }
            "joiner.leave" => {
                let id = self.joined.take().ok_or("not joined")?;
                let removed = ctx.unsubscribe(id);
                ctx.reply(&mut msg, Message::typed(removed))?;
            }
            _ => {
                let _ = self.tx.send(msg);
            }
        }
        Ok(())
    }
}

#[test]
fn components_subscribe_from_start_and_handle() -> Result<()> {
    let (tx, rx) = channel::unbounded();
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy_with(
        "joiner",
        ComponentOptions::new()
            .subscribe("joiner.join")
            .subscribe("joiner.leave"),
        move || Joiner {
            tx: tx.clone(),
            joined: None,
        },
    )?;
    let bus = rt.bus();
    let ask = |topic: &str| -> Result<Message> {
        let reply = bus.request(topic, Message::empty(), SOON)?.wait()?;
        Ok(reply)
    };
    assert!(matches!(
        bus.send("joiner.at.start", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    rt.start()?;
    send(bus, "joiner.at.start", Message::empty())?;
    assert_eq!(rx.recv_timeout(SOON)?.topic().as_str(), "joiner.at.start");

    assert!(matches!(
        bus.send("joiner.in.handle", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    ask("joiner.join")?;
    send(bus, "joiner.in.handle", Message::empty())?;
    assert_eq!(rx.recv_timeout(SOON)?.topic().as_str(), "joiner.in.handle");

    assert_eq!(ask("joiner.leave")?.get::<bool>(), Some(&true));
    assert!(matches!(
        bus.send("joiner.in.handle", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    Ok(())
}

#[test]
fn no_subscriber_hands_the_message_back() -> Result<()> {
    let bus = Bus::new();
    match bus.send("nobody.home", Message::typed(1u32)) {
        Err(SendError::NoSubscriber { topic, rejected }) => {
            assert_eq!(topic, "nobody.home");
            assert_eq!(rejected.get::<u32>(), Some(&1));
        }
        other => panic!("send: expected NoSubscriber, got {other:?}"),
    }
    match bus.publish("nobody.home", Message::typed(2u32)) {
        Err(SendError::NoSubscriber { rejected, .. }) => {
            assert_eq!(rejected.get::<u32>(), Some(&2))
        }
        other => panic!("publish: expected NoSubscriber, got {other:?}"),
    }
    match bus.request("nobody.home", Message::typed(3u32), SOON) {
        Err(SendError::NoSubscriber { rejected, .. }) => {
            assert_eq!(rejected.get::<u32>(), Some(&3));
            assert!(!rejected.expects_reply(), "the reply handle was withdrawn");
        }
        other => panic!("request: expected NoSubscriber, got {other:?}"),
    }
    assert_eq!(bus.stats().no_subscriber, 3);
    Ok(())
}

#[test]
fn invalid_topic_hands_the_message_back() -> Result<()> {
    let bus = Bus::new();
    // Both on an empty bus and with a wildcard subscriber that would match a lax reading.
    for with_subscriber in [false, true] {
        let everything = with_subscriber
            .then(|| bus.subscribe_inbox(">", 8))
            .transpose()?;
        for bad in ["a..b", "a.*", "a.>", "", "a b"] {
            match bus.send(bad, Message::typed(1u32)) {
                Err(SendError::InvalidTopic {
                    topic, rejected, ..
                }) => {
                    assert_eq!(topic, bad);
                    assert_eq!(rejected.get::<u32>(), Some(&1));
                }
                other => panic!("send {bad:?}: expected InvalidTopic, got {other:?}"),
            }
            match bus.publish(bad, Message::typed(2u32)) {
                Err(SendError::InvalidTopic { rejected, .. }) => {
                    assert_eq!(rejected.get::<u32>(), Some(&2));
                }
                other => panic!("publish {bad:?}: expected InvalidTopic, got {other:?}"),
            }
            match bus.request(bad, Message::typed(3u32), SOON) {
                Err(SendError::InvalidTopic { rejected, .. }) => {
                    assert_eq!(rejected.get::<u32>(), Some(&3));
                }
                other => panic!("request {bad:?}: expected InvalidTopic, got {other:?}"),
            }
        }
        if let Some(inbox) = everything {
            assert!(inbox.is_empty(), "nothing was delivered");
        }
    }
    Ok(())
}

/// Forwards what it gets on `relay.in` to `relay.out`.
struct Relay;

impl Component for Relay {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.send("relay.out", msg)?;
        Ok(())
    }
}

#[test]
fn envelope_carries_topic_source_headers_and_payload() -> Result<()> {
    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy_with(
        "relay",
        ComponentOptions::new().subscribe("relay.in"),
        || Relay,
    )?;
    let out = rt.bus().subscribe_inbox("relay.out", 4)?;
    rt.start()?;

    let msg = Message::json(json!({"id": 7, "tags": ["a", "b"]}))
        .with_header("tenant", "acme")
        .with_header("trace", "t-1");
    let id = msg.id();
    assert_eq!(msg.topic().as_str(), "", "no topic before it is sent");
    send(rt.bus(), "relay.in", msg)?;

    let got = out.recv_timeout(SOON)?;
    assert_eq!(got.topic().as_str(), "relay.out", "the bus sets the topic");
    assert_eq!(
        got.source(),
        Some("relay"),
        "a context stamps its component"
    );
    assert_eq!(got.id(), id);
    assert_eq!(
        got.headers(),
        [
            ("tenant".to_owned(), "acme".to_owned()),
            ("trace".to_owned(), "t-1".to_owned())
        ]
    );
    assert_eq!(got.header("trace"), Some("t-1"));
    assert_eq!(got.as_json(), Some(&json!({"id": 7, "tags": ["a", "b"]})));

    // Sent from outside any component, a message has no source.
    send(rt.bus(), "relay.out", Message::empty())?;
    assert_eq!(out.recv_timeout(SOON)?.source(), None);
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Order {
    qty: u32,
}

#[test]
fn typed_payload_is_taken_out_by_type() -> Result<()> {
    let bus = Bus::new();
    let inbox = bus.subscribe_inbox("orders", 4)?;
    send(&bus, "orders", Message::typed(Order { qty: 2 }))?;
    let got = inbox.recv_timeout(SOON)?;

    // The wrong type gives the message back untouched.
    let got = got.take::<String>().expect_err("not a String");
    assert_eq!(got.get::<Order>(), Some(&Order { qty: 2 }));
    // A clone shares the payload, so it cannot be taken while the clone lives.
    let clone = got.clone();
    let got = got.take::<Order>().expect_err("shared with a clone");
    drop(clone);
    assert_eq!(got.take::<Order>().ok(), Some(Order { qty: 2 }));
    Ok(())
}

#[test]
fn serialized_payload_round_trips_through_the_bus() -> Result<()> {
    let bus = Bus::new();
    let inbox = bus.subscribe_inbox("docs", 4)?;
    let value = json!({"sku": "A-1", "qty": 2, "tags": ["x", "y"], "price": 9.5});
    send(&bus, "docs", Message::serialize(&value)?)?;
    send(&bus, "docs", Message::serialize(&(3u32, "three"))?)?;
    send(&bus, "docs", Message::typed(5u32))?;

    assert_eq!(inbox.recv_timeout(SOON)?.deserialize::<Value>()?, value);
    let pair: (u32, String) = inbox.recv_timeout(SOON)?.deserialize()?;
    assert_eq!(pair, (3, "three".to_owned()));
    assert!(
        inbox.recv_timeout(SOON)?.deserialize::<Value>().is_err(),
        "a typed payload is not JSON"
    );
    Ok(())
}

#[test]
fn dropping_an_inbox_unsubscribes_it() -> Result<()> {
    let bus = Bus::new();
    let inbox = bus.subscribe_inbox("x", 4)?;
    assert_eq!(bus.stats().subscriptions, 1);
    send(&bus, "x", Message::empty())?;
    let pending = bus.request("x", Message::empty(), SOON)?;
    drop(inbox);

    assert_eq!(bus.stats().subscriptions, 0);
    assert!(matches!(
        bus.send("x", Message::empty()),
        Err(SendError::NoSubscriber { .. })
    ));
    // The request queued in the dropped inbox is answered at once.
    assert!(matches!(pending.wait(), Err(Error::NoReply { .. })));
    Ok(())
}

struct Sink;

impl Component for Sink {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn dropping_an_inbox_dead_letters_what_it_never_read() -> Result<()> {
    let bus = Bus::new();
    let dead = bus.subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
    let inbox = bus.subscribe_inbox("jobs.*", 8)?;
    for n in 0..3u32 {
        bus.send("jobs.new", Message::typed(n))?;
    }
    drop(inbox);
    let mut got = Vec::new();
    for _ in 0..3 {
        let letter = dead.recv_timeout(SOON)?;
        let dl = letter.get::<DeadLetter>().expect("a dead letter");
        assert_eq!(dl.reason, DeadLetterReason::Stopped);
        assert_eq!(dl.component.as_deref(), Some("inbox(jobs.*)"));
        got.extend(dl.message.get::<u32>().copied());
    }
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(bus.stats().dead_letters, 3);
    Ok(())
}

/// Sums the `u64`s it gets, reading them with `try_get` and `?`.
struct Summer {
    sum: u64,
    sums: Sender<u64>,
}

impl Component for Summer {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.sum += *msg.try_get::<u64>()?;
        let _ = self.sums.send(self.sum);
        Ok(())
    }
}

#[test]
fn a_payload_of_the_wrong_type_is_named_with_both_types() -> Result<()> {
    // An unsuffixed literal is an `i32`: `get` sees no `u64`, `try_get` says why.
    let m = Message::typed(1);
    assert_eq!(m.get::<u64>(), None);
    let e = m.try_get::<u64>().expect_err("an i32 is not a u64");
    assert_eq!((e.expected(), e.found()), ("u64", "i32"));
    assert!(e.to_string().contains("unsuffixed literal"), "{e}");
    assert_eq!(Message::typed(1u64).try_get::<u64>(), Ok(&1));
    assert_eq!(
        Message::typed(Order { qty: 1 })
            .try_get::<u64>()
            .unwrap_err()
            .found(),
        std::any::type_name::<Order>()
    );
    for (m, found) in [
        (Message::json(json!(1)), "a JSON payload"),
        (Message::bytes(vec![1]), "a bytes payload"),
        (Message::empty(), "no payload"),
    ] {
        assert_eq!(m.try_get::<u64>().unwrap_err().found(), found);
    }

    // In a handler, `?` turns the mismatch into a visible failure: the dead letter says
    // which types, and the sum does not silently stay 0.
    let rt = Runtime::builder().worker_threads(1).build()?;
    let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 4)?;
    let (tx, sums) = channel::unbounded();
    rt.deploy_with(
        "summer",
        ComponentOptions::new()
            .subscribe("add")
            .on_error(OnError::Continue),
        move || Summer {
            sum: 0,
            sums: tx.clone(),
        },
    )?;
    rt.start()?;
    rt.bus().send("add", Message::typed(1))?;
    rt.bus().send("add", Message::typed(2u64))?;
    assert_eq!(sums.recv_timeout(SOON)?, 2);
    let letter = dead.recv_timeout(SOON)?;
    let letter = letter.get::<DeadLetter>().expect("a dead letter");
    assert_eq!(
        letter.reason,
        DeadLetterReason::Failed(e.to_string()),
        "the reason names both types"
    );
    Ok(())
}
