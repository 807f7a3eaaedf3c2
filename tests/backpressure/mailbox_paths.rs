//! Paths through a component's mailbox: `Reactor::send`, `Bus::send`, `Bus::publish` and
//! `Bus::request` from a plain thread, all into one `Gated` component.

use std::thread;

use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    ComponentOptions, Error, Inbox, Message, PendingReply, Reactor, Runtime, SendError,
    ShutdownReport, DEAD_LETTER_TOPIC,
};

use crate::helpers::{dead_letters, publish_one, sorted, Messages};
use crate::support::{wait_until, DropCounter, Gated, Tracked, SOON};
use crate::{EnqueuePath, Gone, Tally, CAP};

const SINK_TOPIC: &str = "bp.sink";

#[derive(Debug, Clone, Copy)]
pub(crate) enum Via {
    ReactorSend,
    Send,
    Publish,
    Request,
}

/// A running runtime with one `Gated` component, "sink", whose mailbox holds `CAP`. A plug
/// message holds its handler at the shut gate, so nothing leaves the mailbox while the
/// contract fills it; each gate token lets one handler through.
pub(crate) struct GatedRuntime {
    via: Via,
    msgs: Messages,
    rt: Runtime,
    sink: Reactor,
    gate: Option<Sender<()>>,
    handled: Receiver<Message>,
    dead: Inbox,
    report: Option<ShutdownReport>,
    pending: Vec<PendingReply>,
}

/// One attempt through `via`; a request's pending reply is kept in `pending`.
fn offer(
    via: Via,
    rt: &Runtime,
    sink: &Reactor,
    pending: &mut Vec<PendingReply>,
    msg: Message,
) -> Result<(), SendError<Message>> {
    let bus = rt.bus();
    match via {
        Via::ReactorSend => sink.send(msg),
        Via::Send => bus.send(SINK_TOPIC, msg),
        Via::Publish => publish_one(bus, SINK_TOPIC, msg),
        Via::Request => {
            let id = msg.id();
            let p = bus.request(SINK_TOPIC, msg, SOON)?;
            assert_eq!(p.request_id(), id);
            pending.push(p);
            Ok(())
        }
    }
}

impl GatedRuntime {
    pub(crate) fn new(via: Via) -> GatedRuntime {
        let rt = Runtime::builder()
            .worker_threads(1)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let (gate, gate_rx) = channel::unbounded();
        let (handled_tx, handled) = channel::unbounded();
        let sink = rt
            .deploy_with(
                "sink",
                ComponentOptions::new()
                    .mailbox_capacity(CAP)
                    .subscribe(SINK_TOPIC),
                move || Gated {
                    gate: gate_rx.clone(),
                    handled: handled_tx.clone(),
                },
            )
            .unwrap();
        let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 64).unwrap();
        sink.send(Message::empty()).unwrap(); // the plug (untracked)
        rt.start().unwrap();
        wait_until("the sink takes the plug", || sink.is_empty());
        GatedRuntime {
            via,
            msgs: Messages::default(),
            rt,
            sink,
            gate: Some(gate),
            handled,
            dead,
            report: None,
            pending: Vec::new(),
        }
    }
}

impl EnqueuePath for GatedRuntime {
    type Item = Message;

    fn full_target(&self) -> &str {
        "sink"
    }

    fn gone(&self) -> Gone {
        Gone::Stopped("sink")
    }

    fn drops(&self) -> DropCounter {
        self.msgs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> Message {
        self.msgs.make(seq)
    }

    fn identify(&mut self, item: Message) -> (u64, Option<Message>) {
        self.msgs.identify(item)
    }

    fn try_one(&mut self, msg: Message) -> Result<(), SendError<Message>> {
        offer(self.via, &self.rt, &self.sink, &mut self.pending, msg)
    }

    fn make_room(&mut self) {
        // One token: the plug's handler returns, the reactor takes the mailbox into its
        // batch, and the next handler waits at the gate again.
        self.gate.as_ref().unwrap().send(()).unwrap();
        wait_until("the sink takes messages out of its mailbox", || {
            self.sink.len() < CAP
        });
    }

    fn stop_then_try(&mut self, msg: Message) -> Result<(), SendError<Message>> {
        // Stop while the handler is held, so the stopping mailbox still holds its messages
        // (full, in the stop case): the refusal must say Stopped, not Backpressure.
        let queued = self.sink.len();
        let Self {
            via,
            rt,
            sink,
            gate,
            pending,
            report,
            ..
        } = self;
        let r = thread::scope(|s| {
            let stopping = s.spawn(|| rt.stop());
            wait_until("the sink refuses new messages", || sink.is_stopped());
            assert_eq!(sink.len(), queued, "nothing left the mailbox yet");
            let r = offer(*via, rt, sink, pending, msg);
            *gate = None; // let the handlers run: the drain ends the stop
            *report = Some(stopping.join().unwrap().unwrap());
            r
        });
        assert!(self.sink.is_finished());
        r
    }

    fn finish(mut self, tally: &Tally) {
        self.gate = None;
        if self.report.is_none() {
            self.report = Some(self.rt.stop().unwrap());
        }
        let report = self.report.take().unwrap();
        let c = report.component("sink").unwrap().clone();
        let handled: Vec<Message> = self.handled.try_iter().collect();
        let plugs = handled
            .iter()
            .filter(|m| m.get::<Tracked>().is_none())
            .count();
        assert_eq!(plugs, 1);
        let handled: Vec<u64> = handled
            .into_iter()
            .filter_map(|m| m.get::<Tracked>().map(|t| t.seq))
            .collect();
        let dead = dead_letters(&self.dead, "sink");
        assert_eq!(c.handled, 1 + handled.len() as u64, "{report:?}");
        assert_eq!(c.abandoned, dead.len() as u64, "{report:?}");
        assert!(c.joined && c.failure.is_none(), "{report:?}");
        let ended = sorted(handled.into_iter().chain(dead).collect());
        assert_eq!(
            ended,
            sorted(tally.accepted.clone()),
            "each accepted message handled or dead-lettered, once"
        );
        let stats = self.sink.stats();
        assert_eq!(stats.handled, c.handled);
        assert_eq!(stats.dead_lettered, c.abandoned);
        assert_eq!(stats.rejected, tally.full, "each Backpressure counted once");
        assert_eq!(stats.queued, 0);
        // Requests: the Gated sink never replies, so each one ends in NoReply as soon as its
        // message is dropped (handled above, or dead-lettered at stop).
        let requests = match self.via {
            Via::Request => tally.accepted.len(),
            _ => 0,
        };
        assert_eq!(self.pending.len(), requests);
        for p in self.pending.drain(..) {
            match p.wait() {
                Err(Error::NoReply { .. }) => {}
                other => panic!("an unanswered request ends in NoReply, got {other:?}"),
            }
        }
    }
}
