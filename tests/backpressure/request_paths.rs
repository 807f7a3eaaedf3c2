//! `Context::request` inside a component: bounded by the requester's `max_pending`. The item
//! is the request whole, its message and its continuation (`UnsentRequest`): a refusal hands
//! both back, and each continuation is dropped exactly once, called or not.

use std::sync::{Arc, Mutex};

use crossbeam::channel::{self, Receiver, Sender};
use reactorium::{
    ComponentOptions, Context, Error, Message, Reactor, Runtime, SendError, ShutdownReport,
    UnsentRequest,
};

use crate::helpers::{on_driver, seq_of, sorted, Cmd, Driver, Messages};
use crate::support::{wait_until, DropCounter, Probe, SOON};
use crate::{EnqueuePath, Gone, Tally, CAP};

/// A continuation as the path makes it: it reports its own sequence number when called.
pub(crate) type Then =
    Box<dyn for<'c> FnOnce(&mut Driver, &mut Context<'c, Driver>, Result<Message, Error>) + Send>;

pub(crate) const ASK_TOPIC: &str = "bp.ask";

/// A "driver" component (max_pending = `CAP`) requests from a "responder" `Probe` that hands
/// each request to the test, which answers or drops it. Deployed driver first, so `stop` stops
/// the responder first and the driver's `stop` can still ask it.
pub(crate) struct ContextRequest {
    msgs: Messages,
    rt: Runtime,
    driver: Reactor,
    at_stop: Arc<Mutex<Option<Cmd>>>,
    asked: Receiver<(Message, String)>,
    /// Each continuation's token (a tracked message it owns), to count its drops.
    thens: DropCounter,
    /// `(seq, got a reply)` from each continuation called.
    outcomes_tx: Sender<(u64, bool)>,
    outcomes: Receiver<(u64, bool)>,
    commands: u64,
    /// Requests accepted and not yet taken from `asked`.
    outstanding: usize,
    /// Sequence numbers of the requests the responder got.
    received: Vec<u64>,
    report: Option<ShutdownReport>,
}

impl ContextRequest {
    pub(crate) fn new() -> ContextRequest {
        let rt = Runtime::builder()
            .worker_threads(1)
            .thread_name_prefix("bp-")
            .build()
            .unwrap();
        let at_stop: Arc<Mutex<Option<Cmd>>> = Arc::default();
        let slot = Arc::clone(&at_stop);
        let driver = rt
            .deploy_with(
                "driver",
                ComponentOptions::new().max_pending(CAP),
                move || Driver {
                    at_stop: Arc::clone(&slot),
                },
            )
            .unwrap();
        let (tx, asked) = channel::unbounded();
        rt.deploy_with(
            "responder",
            ComponentOptions::new()
                .mailbox_capacity(64)
                .subscribe(ASK_TOPIC),
            move || Probe { tx: tx.clone() },
        )
        .unwrap();
        rt.start().unwrap();
        let (outcomes_tx, outcomes) = channel::unbounded();
        ContextRequest {
            msgs: Messages::default(),
            rt,
            driver,
            at_stop,
            asked,
            thens: DropCounter::default(),
            outcomes_tx,
            outcomes,
            commands: 0,
            outstanding: 0,
            received: Vec::new(),
            report: None,
        }
    }

    /// Takes the next request the responder got.
    fn next_asked(&mut self) -> Message {
        let (req, _) = self
            .asked
            .recv_timeout(SOON)
            .expect("the responder gets every accepted request");
        self.outstanding -= 1;
        self.received.push(seq_of(&req));
        req
    }

    /// Drops every request still unanswered (each requester's continuation gets NoReply and
    /// its place is freed), then waits until the driver has no place reserved.
    fn drop_unanswered(&mut self) {
        while self.outstanding > 0 {
            drop(self.next_asked());
        }
        let driver = self.driver.clone();
        wait_until("the driver's places are all returned", || {
            driver.stats().pending == 0
        });
    }
}

impl EnqueuePath for ContextRequest {
    type Item = UnsentRequest<Then>;

    fn full_target(&self) -> &str {
        "driver"
    }

    fn gone(&self) -> Gone {
        // A component that is stopping makes no new request: the refusal names the driver.
        Gone::Stopped("driver")
    }

    fn drops(&self) -> DropCounter {
        self.msgs.drops.clone()
    }

    fn make(&mut self, seq: u64) -> UnsentRequest<Then> {
        let token = self.thens.message(seq);
        let out = self.outcomes_tx.clone();
        UnsentRequest {
            message: self.msgs.make(seq),
            then: Box::new(move |_, _, reply| {
                let _ = out.send((seq_of(&token), reply.is_ok()));
            }),
        }
    }

    /// The message tells the sequence number; the continuation, which cannot be called off
    /// the driver, proves itself when it runs (`finish` matches the numbers it reports).
    fn identify(&mut self, item: UnsentRequest<Then>) -> (u64, Option<UnsentRequest<Then>>) {
        let UnsentRequest { message, then } = item;
        let (seq, message) = self.msgs.identify(message);
        let message = message.expect("a message comes back for reuse");
        (seq, Some(UnsentRequest { message, then }))
    }

    // The refusal carries the message and the continuation: the point of this path.
    #[allow(clippy::result_large_err)]
    fn try_one(&mut self, item: UnsentRequest<Then>) -> Result<(), SendError<UnsentRequest<Then>>> {
        self.commands += 1;
        let r = on_driver(&self.driver, move |ctx| {
            let (before, places) = (ctx.pending(), ctx.reactor().stats().pending);
            let r = ctx.request(ASK_TOPIC, item.message, SOON, item.then);
            // A refused request leaves no continuation and no reserved place behind.
            let more = usize::from(r.is_ok());
            assert_eq!(ctx.pending(), before + more);
            assert_eq!(ctx.reactor().stats().pending, places + more);
            r.map(drop)
        });
        if r.is_ok() {
            self.outstanding += 1;
        }
        r
    }

    fn make_room(&mut self) {
        let mut req = self.next_asked();
        let handle = req.take_reply_handle().expect("a request");
        handle.send(Message::empty()).expect("the driver waits");
        drop(req);
        let driver = self.driver.clone();
        wait_until("the answered request frees its place", || {
            driver.stats().pending < CAP
        });
    }

    fn stop_then_try(
        &mut self,
        item: UnsentRequest<Then>,
    ) -> Result<(), SendError<UnsentRequest<Then>>> {
        // Asked from the driver's own `stop`: a stopping component makes no new request,
        // whatever its free places or the responder's state.
        self.drop_unanswered();
        let (tx, rx) = channel::bounded(1);
        *self.at_stop.lock().unwrap() = Some(Box::new(move |ctx| {
            let r = ctx.request(ASK_TOPIC, item.message, SOON, item.then);
            let _ = tx.send(r.map(drop));
        }));
        self.report = Some(self.rt.stop().unwrap());
        rx.recv_timeout(SOON).expect("the driver's stop ran")
    }

    fn finish(mut self, tally: &Tally) {
        if self.report.is_none() {
            self.drop_unanswered();
            self.report = Some(self.rt.stop().unwrap());
        }
        let report = self.report.take().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            sorted(self.received.clone()),
            sorted(tally.accepted.clone()),
            "the responder got each accepted request once"
        );
        assert_eq!(
            report.component("responder").unwrap().handled as usize,
            tally.accepted.len()
        );
        assert_eq!(report.component("driver").unwrap().handled, self.commands);
        // Each accepted request's continuation ran once, the one made with it (replied,
        // NoReply or Stopped); no refused one ran.
        let ran: Vec<u64> = self.outcomes.try_iter().map(|(seq, _)| seq).collect();
        assert_eq!(
            sorted(ran),
            sorted(tally.accepted.clone()),
            "the continuations that ran are the accepted requests' own"
        );
        assert_eq!(self.driver.stats().late_replies, 0);
        // Every continuation made was dropped exactly once: run, or handed back and dropped.
        assert_eq!(
            self.thens.dropped() as u64,
            self.msgs.made(),
            "continuations made vs dropped"
        );
    }
}
