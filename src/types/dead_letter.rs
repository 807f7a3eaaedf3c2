//! Dead letters: the messages that could not be handled, and why.

use std::fmt;

use super::message::Message;
use super::name::Name;
use super::overflow::Overflow;
use super::BoxError;

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
    /// A reply to a message that expected none: [`Context::reply`](crate::Context::reply) to a
    /// plain [`send`](crate::Bus::send) or [`publish`](crate::Bus::publish), or to a request
    /// that was answered already. The letter's message is the reply, its
    /// [`correlation`](Message::correlation) the id of the message it answered.
    UnrequestedReply,
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
            DeadLetterReason::UnrequestedReply => {
                f.write_str("reply to a message that expected none")
            }
            DeadLetterReason::Overflow(p) => write!(f, "mailbox full, dropped by policy {p}"),
        }
    }
}

/// A message that could not be handled, as published on the dead-letter topic
/// ([`DEAD_LETTER_TOPIC`]) in a [`Payload::Typed`](crate::Payload::Typed).
#[derive(Debug)]
pub struct DeadLetter {
    /// The message, whole, with one exception: the message a handler failed on
    /// ([`DeadLetterReason::Panicked`] or [`DeadLetterReason::Failed`] with the same id as the
    /// first letter of that failure) was the handler's, so that it could
    /// [`take`](Message::take) its payload, and went down with it. Its letter carries the
    /// whole message when the handler handed it back ([`Unhandled`]) or when its component
    /// keeps payloads for this
    /// ([`ComponentOptions::keep_failed_payloads`](crate::ComponentOptions::keep_failed_payloads))
    /// and the handler had not taken it; otherwise its envelope (id, topic, source,
    /// headers, correlation) with [`Payload::Empty`](crate::Payload::Empty).
    pub message: Message,
    /// Why it was not handled.
    pub reason: DeadLetterReason,
    /// The component it was for, when there was one.
    pub component: Option<Name>,
}

/// A handler's error that hands its message back, so that the message's dead letter carries
/// it whole, payload included, and a dead-letter queue can store or replay it.
///
/// A handler owns the message it is given; when it returns a plain error the message has gone
/// with it, and its dead letter has only the envelope. Returned as the handler's error (it
/// converts into [`BoxError`] with `?` or `.into()`), it is a handler error like any other
/// (the instance fails, or under [`OnError::Continue`](crate::OnError::Continue) runs on),
/// with `error`'s text as the reason ([`DeadLetterReason::Failed`]); the message is the one
/// dead-lettered. A request among them is answered at once with
/// [`Error::NoReply`](crate::Error::NoReply) giving that reason. Costs nothing on the path
/// where the handler succeeds.
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, Context, Message, Unhandled};
///
/// struct Orders { total: u64 }
///
/// impl Component for Orders {
///     fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
///         let qty = match msg.as_json().and_then(|v| v["qty"].as_u64()) {
///             Some(qty) => qty,
///             // The dead letter carries the order, for a person or a replay to look at.
///             None => return Err(Unhandled::new(msg, "an order without a quantity").into()),
///         };
///         self.total += qty;
///         Ok(())
///     }
/// }
/// ```
pub struct Unhandled {
    message: Message,
    error: BoxError,
}

impl Unhandled {
    /// `message`, handed back with the `error` that kept the handler from handling it.
    pub fn new(message: Message, error: impl Into<BoxError>) -> Unhandled {
        Unhandled {
            message,
            error: error.into(),
        }
    }

    /// The message handed back.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The error that kept the handler from handling it.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// The message and the error.
    pub fn into_parts(self) -> (Message, BoxError) {
        (self.message, self.error)
    }
}

/// Shows the message's id and the error, not the payload (which need not be `Debug`).
impl fmt::Debug for Unhandled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unhandled")
            .field("message", &self.message.id())
            .field("error", &self.error)
            .finish()
    }
}

/// The error's text alone: a dead letter's reason reads the same with or without the message
/// handed back.
impl fmt::Display for Unhandled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Unhandled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}
