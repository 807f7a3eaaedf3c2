//! The vocabulary every other module shares: messages and payloads, topics and patterns, the
//! error type, ids, the clock, and which threads may block. Depends on nothing else in the
//! crate: the bottom of the module order (`types` → `metrics` → `worker` → `bus` → `reactor`
//! → `runtime` → `ingress`).

mod app_error;
mod clock;
mod dead_letter;
mod down;
mod error;
mod intern;
mod message;
mod name;
mod overflow;
mod payload;
mod send_error;
mod thread;
mod topic;

pub use app_error::{AppError, AppErrorKind};
pub use clock::{Clock, ManualClock};
pub use dead_letter::{DeadLetter, DeadLetterReason, Unhandled, DEAD_LETTER_TOPIC};
pub use down::{Down, DownReason};
pub use error::Error;
pub use message::{Message, MessageId, ReplyHandle};
pub use name::Name;
pub use overflow::Overflow;
pub use payload::{Payload, TypeMismatch, Typed};
pub use send_error::SendError;
pub use topic::{Pattern, Topic};

pub(crate) use clock::Wake;
pub(crate) use intern::{intern, Str};
pub(crate) use message::ReplySink;
pub(crate) use thread::{mark_reactor_thread, on_reactor_thread};

/// The error a component's handler may return: any error type, boxed. `anyhow::Error`
/// converts into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
