//! The crate's error type.

use std::fmt;
use std::time::Duration;

use super::name::Name;

/// An error from a reactorium call.
///
/// Every call that refuses work hands the work back in `rejected`, as crossbeam's
/// `TrySendError::Full(T)` does: a [`Backpressure`](Error::Backpressure) from
/// [`Bus::send`](crate::Bus::send) carries the [`Message`](crate::Message), one from
/// [`WorkerPool::execute`](crate::WorkerPool::execute) carries the job. `T` defaults to
/// `()`, the payload-free form, which is what results that refuse nothing use.
///
/// "Full" and "gone" are different answers: [`Backpressure`](Error::Backpressure) means retry
/// later, [`Stopped`](Error::Stopped) means the target will never take it.
///
/// # Using `?`
///
/// `Error<T>` implements [`std::error::Error`] for every `T`, so with a `Send + Sync` payload
/// (a [`Message`](crate::Message) is) `?` converts it into `anyhow::Error` directly. For a
/// payload that is not `Sync` (a job closure), drop the payload knowingly first with
/// [`Error::without_payload`].
///
/// ```
/// use reactorium::{Bus, Error, Message};
///
/// let bus = Bus::new();
/// match bus.send("nobody.home", Message::empty()) {
///     Err(Error::NoSubscriber { topic, rejected }) => {
///         assert_eq!(topic, "nobody.home");
///         drop(rejected); // our message, handed back
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[non_exhaustive]
pub enum Error<T = ()> {
    /// The target's mailbox or queue is full. Retry later, reroute, or drop `rejected`.
    Backpressure {
        /// The component, inbox or pool that is full.
        target: Name,
        /// Its capacity.
        capacity: usize,
        /// The refused message or job.
        rejected: T,
    },
    /// The target has stopped (or is stopping) and takes no more work.
    Stopped {
        /// The component, inbox or pool that stopped.
        target: Name,
        /// The refused message or job.
        rejected: T,
    },
    /// No component has this name: a send to it by name
    /// ([`Bus::send_to`](crate::Bus::send_to)), a subscription for it
    /// ([`Bus::subscribe`](crate::Bus::subscribe)) or a watch on it
    /// ([`Runtime::watch`](crate::Runtime::watch), [`Context::watch`](crate::Context::watch)).
    NoComponent {
        /// The name given.
        name: String,
        /// The refused message, when a send named the component (`()` otherwise).
        rejected: T,
    },
    /// No subscription matches the topic.
    NoSubscriber {
        /// The topic sent to.
        topic: String,
        /// The refused message.
        rejected: T,
    },
    /// No answer came within the time allowed (a request's timeout, a job's deadline).
    Timeout {
        /// The time that was allowed.
        after: Duration,
    },
    /// The responder dropped the request without replying (its component stopped, failed,
    /// or its code let the request go unanswered).
    NoReply {
        /// Why no reply will come.
        reason: String,
    },
    /// A job on the worker pool panicked; the worker thread survived.
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// A blocking wait was called on a reactor thread, where it would stall every message of
    /// that component (and deadlock if the reply is for this reactor). Use
    /// [`Context::request`](crate::Context::request) there instead.
    WouldDeadlock,
    /// A topic or pattern is malformed. When a send named it, the message is handed back.
    InvalidTopic {
        /// The text given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The refused message, when a send named the topic.
        rejected: T,
    },
    /// A name is malformed or a setting is out of range.
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A component with this name is deployed already.
    AlreadyDeployed {
        /// The name.
        name: Name,
    },
    /// A component's factory or `start` failed, so the runtime did not start.
    StartFailed {
        /// The component.
        component: Name,
        /// The error or panic message.
        reason: String,
    },
    /// The operating system refused to create a thread.
    Spawn {
        /// The name the thread was to have.
        thread: String,
        /// The OS error, also given by `source()`.
        source: std::io::Error,
    },
    /// An I/O operation of a front-end failed (for example binding its listening socket).
    Io {
        /// What was being done ("bind 127.0.0.1:8080").
        context: String,
        /// The OS error, also given by `source()`.
        source: std::io::Error,
    },
    /// The runtime is not in a state that allows this call (for example `start` after `stop`).
    InvalidState {
        /// What was attempted and why it cannot be done.
        reason: &'static str,
    },
}

impl<T> Error<T> {
    /// The refused message or job, if this error carries one.
    pub fn into_inner(self) -> Option<T> {
        self.split().1
    }

    /// Drops the payload (knowingly) and keeps the error, for `?` into `anyhow` or for logs.
    pub fn without_payload(self) -> Error {
        self.split().0
    }

    /// The payload-free error and the refused payload, if any.
    pub fn split(self) -> (Error, Option<T>) {
        match self {
            Error::Backpressure {
                target,
                capacity,
                rejected,
            } => (
                Error::Backpressure {
                    target,
                    capacity,
                    rejected: (),
                },
                Some(rejected),
            ),
            Error::Stopped { target, rejected } => (
                Error::Stopped {
                    target,
                    rejected: (),
                },
                Some(rejected),
            ),
            Error::NoSubscriber { topic, rejected } => (
                Error::NoSubscriber {
                    topic,
                    rejected: (),
                },
                Some(rejected),
            ),
            Error::NoComponent { name, rejected } => {
                (Error::NoComponent { name, rejected: () }, Some(rejected))
            }
            Error::Timeout { after } => (Error::Timeout { after }, None),
            Error::NoReply { reason } => (Error::NoReply { reason }, None),
            Error::Panicked { message } => (Error::Panicked { message }, None),
            Error::WouldDeadlock => (Error::WouldDeadlock, None),
            Error::InvalidTopic {
                topic,
                reason,
                rejected,
            } => (
                Error::InvalidTopic {
                    topic,
                    reason,
                    rejected: (),
                },
                Some(rejected),
            ),
            Error::InvalidConfig { reason } => (Error::InvalidConfig { reason }, None),
            Error::AlreadyDeployed { name } => (Error::AlreadyDeployed { name }, None),
            Error::StartFailed { component, reason } => {
                (Error::StartFailed { component, reason }, None)
            }
            Error::Spawn { thread, source } => (Error::Spawn { thread, source }, None),
            Error::Io { context, source } => (Error::Io { context, source }, None),
            Error::InvalidState { reason } => (Error::InvalidState { reason }, None),
        }
    }

    /// Replaces the payload (if any) with `f(payload)`.
    pub fn map_payload<U>(self, f: impl FnOnce(T) -> U) -> Error<U> {
        match self.split() {
            (
                Error::Backpressure {
                    target, capacity, ..
                },
                Some(p),
            ) => Error::Backpressure {
                target,
                capacity,
                rejected: f(p),
            },
            (Error::Stopped { target, .. }, Some(p)) => Error::Stopped {
                target,
                rejected: f(p),
            },
            (Error::NoSubscriber { topic, .. }, Some(p)) => Error::NoSubscriber {
                topic,
                rejected: f(p),
            },
            (Error::NoComponent { name, .. }, Some(p)) => Error::NoComponent {
                name,
                rejected: f(p),
            },
            (Error::InvalidTopic { topic, reason, .. }, Some(p)) => Error::InvalidTopic {
                topic,
                reason,
                rejected: f(p),
            },
            (e, _) => e.retype(),
        }
    }

    /// `true` for [`Error::Backpressure`]: the target is alive but full; a retry may succeed.
    pub fn is_backpressure(&self) -> bool {
        matches!(self, Error::Backpressure { .. })
    }

    /// `true` for [`Error::Stopped`]: the target will never take work again.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Error::Stopped { .. })
    }

    /// `true` for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

impl Error {
    /// Gives a payload-free error a payload type. Variants that carry a payload never reach
    /// here with one: they are built with their payload.
    pub(crate) fn retype<U>(self) -> Error<U> {
        match self {
            Error::Timeout { after } => Error::Timeout { after },
            Error::NoReply { reason } => Error::NoReply { reason },
            Error::Panicked { message } => Error::Panicked { message },
            Error::WouldDeadlock => Error::WouldDeadlock,
            Error::InvalidConfig { reason } => Error::InvalidConfig { reason },
            Error::AlreadyDeployed { name } => Error::AlreadyDeployed { name },
            Error::StartFailed { component, reason } => Error::StartFailed { component, reason },
            Error::Spawn { thread, source } => Error::Spawn { thread, source },
            Error::Io { context, source } => Error::Io { context, source },
            Error::InvalidState { reason } => Error::InvalidState { reason },
            Error::Backpressure { .. }
            | Error::Stopped { .. }
            | Error::NoSubscriber { .. }
            | Error::NoComponent { .. }
            | Error::InvalidTopic { .. } => {
                unreachable!("payload-carrying errors are built with their payload")
            }
        }
    }
}

// Written by hand so that `Error<T>` is `Debug` without `T: Debug` (crossbeam prints `Full(..)`).
impl<T> fmt::Debug for Error<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backpressure {
                target, capacity, ..
            } => f
                .debug_struct("Backpressure")
                .field("target", target)
                .field("capacity", capacity)
                .finish_non_exhaustive(),
            Error::Stopped { target, .. } => f
                .debug_struct("Stopped")
                .field("target", target)
                .finish_non_exhaustive(),
            Error::NoSubscriber { topic, .. } => f
                .debug_struct("NoSubscriber")
                .field("topic", topic)
                .finish_non_exhaustive(),
            Error::NoComponent { name, .. } => f
                .debug_struct("NoComponent")
                .field("name", name)
                .finish_non_exhaustive(),
            Error::Timeout { after } => f.debug_struct("Timeout").field("after", after).finish(),
            Error::NoReply { reason } => f.debug_struct("NoReply").field("reason", reason).finish(),
            Error::Panicked { message } => f
                .debug_struct("Panicked")
                .field("message", message)
                .finish(),
            Error::WouldDeadlock => f.write_str("WouldDeadlock"),
            Error::InvalidTopic { topic, reason, .. } => f
                .debug_struct("InvalidTopic")
                .field("topic", topic)
                .field("reason", reason)
                .finish_non_exhaustive(),
            Error::InvalidConfig { reason } => f
                .debug_struct("InvalidConfig")
                .field("reason", reason)
                .finish(),
            Error::AlreadyDeployed { name } => f
                .debug_struct("AlreadyDeployed")
                .field("name", name)
                .finish(),
            Error::StartFailed { component, reason } => f
                .debug_struct("StartFailed")
                .field("component", component)
                .field("reason", reason)
                .finish(),
            Error::Io { context, source } => f
                .debug_struct("Io")
                .field("context", context)
                .field("source", source)
                .finish(),
            Error::Spawn { thread, source } => f
                .debug_struct("Spawn")
                .field("thread", thread)
                .field("source", source)
                .finish(),
            Error::InvalidState { reason } => f
                .debug_struct("InvalidState")
                .field("reason", reason)
                .finish(),
        }
    }
}

impl<T> fmt::Display for Error<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backpressure {
                target, capacity, ..
            } => {
                write!(f, "`{target}` is full (capacity {capacity})")
            }
            Error::Stopped { target, .. } => write!(f, "`{target}` has stopped"),
            Error::NoSubscriber { topic, .. } => write!(f, "no subscriber for `{topic}`"),
            Error::NoComponent { name, .. } => write!(f, "no component named `{name}`"),
            Error::Timeout { after } => write!(f, "timed out after {after:?}"),
            Error::NoReply { reason } => write!(f, "no reply will come: {reason}"),
            Error::Panicked { message } => write!(f, "job panicked: {message}"),
            Error::WouldDeadlock => f.write_str("blocking wait on a reactor thread"),
            Error::InvalidTopic { topic, reason, .. } => {
                write!(f, "invalid topic `{topic}`: {reason}")
            }
            Error::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            Error::AlreadyDeployed { name } => write!(f, "component `{name}` is deployed already"),
            Error::StartFailed { component, reason } => {
                write!(f, "component `{component}` failed to start: {reason}")
            }
            Error::Spawn { thread, .. } => write!(f, "could not spawn thread `{thread}`"),
            Error::Io { context, .. } => write!(f, "could not {context}"),
            Error::InvalidState { reason } => f.write_str(reason),
        }
    }
}

impl<T> std::error::Error for Error<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_hands_the_payload_back() {
        let e: Error<u32> = Error::Backpressure {
            target: "c".into(),
            capacity: 4,
            rejected: 7,
        };
        assert!(e.is_backpressure());
        assert_eq!(e.to_string(), "`c` is full (capacity 4)");
        assert_eq!(
            format!("{e:?}"),
            r#"Backpressure { target: "c", capacity: 4, .. }"#
        );
        let (plain, payload) = e.split();
        assert_eq!(payload, Some(7));
        assert!(plain.is_backpressure());
        let mapped = Error::Stopped {
            target: "c".into(),
            rejected: 1u8,
        }
        .map_payload(u32::from);
        assert_eq!(mapped.into_inner(), Some(1u32));
        assert_eq!(Error::<u8>::WouldDeadlock.into_inner(), None);
    }
}
