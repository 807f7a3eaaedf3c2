//! The reactor's mailbox bound: `capacity` waiting messages plus the batch in hand.

mod support;

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};

/// Tells the test it is inside `handle`, then blocks until the gate closes.
struct Blocked {
    entered: Sender<()>,
    gate: Receiver<()>,
}

impl Component for Blocked {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.entered.send(());
        let _ = self.gate.recv();
        Ok(())
    }
}

/// Fills an unstarted mailbox, starts the component with its handler blocked, and counts how
/// many more messages are admitted: exactly the batch the reactor took out of the mailbox.
fn extra_admitted_while_blocked(capacity: usize) -> Result<usize> {
    let (entered_tx, entered) = channel::unbounded();
    let (release, gate) = channel::unbounded::<()>();
    let rt = Runtime::builder().worker_threads(1).build()?;
    let reactor = rt.deploy_with(
        "held",
        ComponentOptions::new().mailbox_capacity(capacity),
        move || Blocked {
            entered: entered_tx.clone(),
            gate: gate.clone(),
        },
    )?;
    for _ in 0..capacity {
        reactor.send(Message::empty())?;
    }
    assert!(reactor
        .send(Message::empty())
        .is_err_and(|e| e.is_backpressure()));
    rt.start()?;
    entered.recv_timeout(support::SOON)?;
    let mut extra = 0;
    while reactor.send(Message::empty()).is_ok() {
        extra += 1;
        assert!(extra <= 64, "the mailbox bound was lost");
    }
    drop(release);
    let report = rt.stop()?;
    assert_eq!(
        report.component("held").unwrap().handled as usize,
        capacity + extra
    );
    Ok(extra)
}

#[test]
fn mailbox_holds_capacity_plus_its_batch_at_most() -> Result<()> {
    // The documented batch: max(1, min(64, capacity / 4)).
    for (capacity, batch) in [(1, 1), (4, 1), (16, 4), (1024, 64)] {
        assert_eq!(
            extra_admitted_while_blocked(capacity)?,
            batch,
            "capacity {capacity}"
        );
    }
    Ok(())
}

/// Takes its typed payload out and reports whether it could.
struct Taker(Sender<Option<String>>);

impl Component for Taker {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.0.send(msg.take::<String>().ok());
        Ok(())
    }
}

#[test]
fn handler_owns_its_message_payload() -> Result<()> {
    let (tx, took) = channel::unbounded();
    let rt = Runtime::builder().worker_threads(1).build()?;
    let reactor = rt.deploy("taker", move || Taker(tx.clone()))?;
    rt.start()?;
    reactor.send(Message::typed(String::from("mine")))?;
    assert_eq!(took.recv_timeout(support::SOON)?.as_deref(), Some("mine"));
    rt.stop()?;
    Ok(())
}
