//! `Bus::send` into a plain thread's `Inbox`.

use reactorium::{Bus, Inbox, Message, SendError};

use crate::helpers::{seq_of, sorted, Messages};
use crate::support::DropCounter;
use crate::{EnqueuePath, Gone, Tally, CAP};

const INBOX_TOPIC: &str = "bp.inbox";

/// A plain thread's inbox of capacity `CAP`. "Stopping" it is dropping it.
pub(crate) struct InboxSend {
    msgs: Messages,
    bus: Bus,
    inbox: Option<Inbox>,
    received: Vec<u64>,
    dropped_with_inbox: usize,
}

impl InboxSend {
    pub(crate) fn new() -> InboxSend {
        let bus = Bus::new();
        let inbox = Some(bus.subscribe_inbox(INBOX_TOPIC, CAP).unwrap());
        InboxSend {
            msgs: Messages::default(),
            bus,
            inbox,
            received: Vec::new(),
            dropped_with_inbox: 0,
        }
    }
}

impl EnqueuePath for InboxSend {
    type Item = Message;

    fn full_target(&self) -> &str {
        "inbox(bp.inbox)"
    }

    fn gone(&self) -> Gone {
        Gone::NoSubscriber(INBOX_TOPIC)
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
        self.bus.send(INBOX_TOPIC, msg)
    }

    fn make_room(&mut self) {
        let inbox = self.inbox.as_ref().unwrap();
        let msg = inbox.try_recv().expect("a full inbox has a message");
        assert_eq!(msg.topic().as_str(), INBOX_TOPIC);
        self.received.push(seq_of(&msg));
    }

    fn stop_then_try(&mut self, msg: Message) -> Result<(), SendError<Message>> {
        let inbox = self.inbox.take().unwrap();
        self.dropped_with_inbox = inbox.len();
        drop(inbox); // drops what it still holds
        self.try_one(msg)
    }

    fn finish(mut self, tally: &Tally) {
        if let Some(inbox) = self.inbox.take() {
            while let Some(m) = inbox.try_recv() {
                self.received.push(seq_of(&m));
            }
        }
        assert_eq!(
            self.received.len() + self.dropped_with_inbox,
            tally.accepted.len()
        );
        let mut expected = sorted(tally.accepted.clone());
        expected.truncate(self.received.len()); // FIFO: the first accepted were received
        assert_eq!(sorted(self.received.clone()), expected);
        assert_eq!(self.bus.stats().subscriptions, 0);
    }
}
