//! The vocabulary every other module shares: messages and payloads, topics and patterns, the
//! error type, ids. Depends on nothing else in the crate.

mod clock;
mod down;
mod error;
mod intern;
mod message;
mod thread;
mod topic;

pub use clock::{Clock, ManualClock};
pub use down::{Down, DownReason};
pub use error::{Error, Name};
pub use message::{
    DeadLetter, DeadLetterReason, Message, MessageId, Overflow, Payload, PublishReport,
    ReplyHandle, SubscriptionId, Typed,
};
pub use topic::{Pattern, Topic};

pub(crate) use clock::Wake;
pub(crate) use intern::{intern, Str};
pub(crate) use message::ReplySink;
pub(crate) use thread::{mark_reactor_thread, on_reactor_thread};

/// The error a component's handler may return: any error type, boxed. `anyhow::Error`
/// converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The topic on which the bus publishes a [`DeadLetter`] for every accepted message that could
/// not be handled.
pub const DEAD_LETTER_TOPIC: &str = "$sys.dead_letters";

/// The text of a caught panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
