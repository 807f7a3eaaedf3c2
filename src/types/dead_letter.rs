//! Dead letters: the messages that could not be handled, and why.

use std::fmt;

use super::message::Message;
use super::name::Name;
use super::overflow::Overflow;

/// The topic on which the bus publishes a [`DeadLetter`] for every accepted message that could
/// not be handled.
pub const DEAD_LETTER_TOPIC: &str = "$sys.dead_letters";

/// Why a message went to the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The component's handler panicked (with this message, or with this message queued).
    Panicked(String),
    /// The component's handler returned an error.
    Failed(String),
    /// The component stopped before handling it (left after the drain deadline, or queued when
    /// it failed to start).
    Stopped,
    /// A reply that arrived after its request timed out, or after its requester stopped.
    LateReply,
    /// Dropped by the component's mailbox overflow policy ([`Overflow::DropOldest`] drops the
    /// oldest queued message to make room, [`Overflow::DropNewest`] the one arriving).
    Overflow(Overflow),
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::Panicked(m) => write!(f, "handler panicked: {m}"),
            DeadLetterReason::Failed(m) => write!(f, "handler failed: {m}"),
            DeadLetterReason::Stopped => f.write_str("component stopped"),
            DeadLetterReason::LateReply => f.write_str("late reply"),
            DeadLetterReason::Overflow(p) => write!(f, "mailbox full, dropped by policy {p}"),
        }
    }
}

/// A message that could not be handled, as published on the dead-letter topic
/// ([`DEAD_LETTER_TOPIC`]) in a [`Payload::Typed`](crate::Payload::Typed).
#[derive(Debug)]
pub struct DeadLetter {
    /// The message. For the one message a handler failed on ([`DeadLetterReason::Panicked`]
    /// or [`DeadLetterReason::Failed`] with the same id as the first letter of that failure),
    /// this is its envelope (id, topic, source, headers, correlation) with
    /// [`Payload::Empty`](crate::Payload::Empty): the handler owned the payload, so that it can
    /// [`take`](Message::take) it, and it went down with the handler. Every other dead letter
    /// carries the whole message.
    pub message: Message,
    /// Why it was not handled.
    pub reason: DeadLetterReason,
    /// The component it was for, when there was one.
    pub component: Option<Name>,
}
