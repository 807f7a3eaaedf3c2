//! `SendError`: why an enqueue refused, with the refused message or job handed back.

use std::fmt;

use super::error;
use super::name::Name;

/// Why an enqueue refused its message or job, which it hands back in `rejected`.
///
/// Every enqueue answers it: [`Reactor::send`](crate::Reactor::send); `send`, `send_to`,
/// `publish` and `request` on [`Bus`](crate::Bus) and [`Context`](crate::Context), and
/// [`Bus::request_callback`](crate::Bus::request_callback);
/// [`Context::spawn_blocking`](crate::Context::spawn_blocking);
/// [`WorkerPool::execute`](crate::WorkerPool::execute); [`Agent::signal`](crate::Agent::signal).
/// Each lists which of these cases it can give. As crossbeam's `TrySendError::Full(T)`, the
/// work comes back so the caller can retry, reroute or drop it knowingly; nothing is dropped
/// behind its back. The work of a call that takes a continuation is the pair:
/// [`Context::request`](crate::Context::request) hands back an
/// [`UnsentRequest`](crate::UnsentRequest) (the message and the continuation),
/// [`Context::spawn_blocking`](crate::Context::spawn_blocking) an
/// [`UnsentJob`](crate::UnsentJob); for these, `run_then` calls the continuation with the
/// refusal.
///
/// These five cases are all there are: a `match` needs no wildcard arm. "Full" and "gone" are
/// different answers: [`Backpressure`](SendError::Backpressure) means retry later,
/// [`Stopped`](SendError::Stopped) means the target will never take it.
///
/// # Using `?`
///
/// `SendError<T>` converts into [`Error`](crate::Error) (the refused work is dropped) so `?`
/// works in a function that returns `reactorium::Error`. It implements
/// [`std::error::Error`], so with a `Send + Sync` payload (a [`Message`](crate::Message) is)
/// `?` takes it into `anyhow::Error` as it is, and `downcast` gets it back with the message.
/// A job or a continuation that is not `Send + Sync` (one that holds an `Rc`) cannot go there:
/// `.map_err(reactorium::Error::from)?` drops the work first, and
/// [`map`](SendError::map) keeps part of it (`.map_err(|e| e.map(|u| u.message))?`).
///
/// # Examples
///
/// ```
/// use reactorium::{Bus, Message, SendError};
///
/// let bus = Bus::new();
/// let _inbox = bus.subscribe_inbox("orders", 1)?;
/// bus.send("orders", Message::typed(1))?;
/// match bus.send("orders", Message::typed(2)) {
///     Err(SendError::Backpressure { capacity, rejected, .. }) => {
///         assert_eq!(capacity, 1);
///         assert_eq!(rejected.get::<i32>(), Some(&2)); // our message, handed back
///     }
///     Err(e) => panic!("unexpected {e:?}"),
///     Ok(()) => panic!("a full inbox took it"),
/// }
/// match bus.send("nobody.home", Message::empty()) {
///     Err(SendError::NoSubscriber { topic, .. }) => assert_eq!(topic, "nobody.home"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), anyhow::Error>(())
/// ```
pub enum SendError<T> {
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
    /// No subscription matches the topic.
    NoSubscriber {
        /// The topic sent to.
        topic: String,
        /// The refused message.
        rejected: T,
    },
    /// A send to a component by name ([`Bus::send_to`](crate::Bus::send_to)) found no
    /// component of that name.
    NoComponent {
        /// The name sent to.
        name: String,
        /// The refused message.
        rejected: T,
    },
    /// The topic sent to is malformed (or has a wildcard).
    InvalidTopic {
        /// The text given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
        /// The refused message.
        rejected: T,
    },
}

impl<T> SendError<T> {
    /// The refused message or job.
    pub fn into_inner(self) -> T {
        self.split().1
    }

    /// `true` for [`SendError::Backpressure`]: the target is alive but full; a retry may
    /// succeed.
    pub fn is_backpressure(&self) -> bool {
        matches!(self, SendError::Backpressure { .. })
    }

    /// `true` for [`SendError::Stopped`]: the target will never take work again.
    pub fn is_stopped(&self) -> bool {
        matches!(self, SendError::Stopped { .. })
    }

    /// The same case with `f(rejected)` in place of the refused work: to keep part of it
    /// and let the rest go, as `.map(|unsent| unsent.message)` keeps the message of a refused
    /// [`Context::request`](crate::Context::request) and drops its continuation (so `?`
    /// takes it into `anyhow::Error` whatever the continuation holds).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{Bus, Message, SendError};
    ///
    /// let bus = Bus::new();
    /// let err = bus.send("nobody.home", Message::typed(7u8)).unwrap_err();
    /// let err: SendError<u8> = err.map(|m| *m.get::<u8>().unwrap());
    /// assert!(matches!(err, SendError::NoSubscriber { rejected: 7, .. }));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendError<U> {
        let (e, rejected) = self.split();
        e.with(f(rejected))
    }

    /// The case without its payload, and the payload.
    pub(crate) fn split(self) -> (SendError<()>, T) {
        match self {
            SendError::Backpressure {
                target,
                capacity,
                rejected,
            } => (
                SendError::Backpressure {
                    target,
                    capacity,
                    rejected: (),
                },
                rejected,
            ),
            SendError::Stopped { target, rejected } => (
                SendError::Stopped {
                    target,
                    rejected: (),
                },
                rejected,
            ),
            SendError::NoSubscriber { topic, rejected } => (
                SendError::NoSubscriber {
                    topic,
                    rejected: (),
                },
                rejected,
            ),
            SendError::NoComponent { name, rejected } => {
                (SendError::NoComponent { name, rejected: () }, rejected)
            }
            SendError::InvalidTopic {
                topic,
                reason,
                rejected,
            } => (
                SendError::InvalidTopic {
                    topic,
                    reason,
                    rejected: (),
                },
                rejected,
            ),
        }
    }
}

impl SendError<()> {
    /// This case, carrying `rejected`.
    pub(crate) fn with<T>(self, rejected: T) -> SendError<T> {
        match self {
            SendError::Backpressure {
                target, capacity, ..
            } => SendError::Backpressure {
                target,
                capacity,
                rejected,
            },
            SendError::Stopped { target, .. } => SendError::Stopped { target, rejected },
            SendError::NoSubscriber { topic, .. } => SendError::NoSubscriber { topic, rejected },
            SendError::NoComponent { name, .. } => SendError::NoComponent { name, rejected },
            SendError::InvalidTopic { topic, reason, .. } => SendError::InvalidTopic {
                topic,
                reason,
                rejected,
            },
        }
    }
}

// Written by hand so that `SendError<T>` is `Debug` without `T: Debug` (crossbeam prints
// `Full(..)`): the refused work shows as `..`.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Backpressure {
                target, capacity, ..
            } => f
                .debug_struct("Backpressure")
                .field("target", target)
                .field("capacity", capacity)
                .finish_non_exhaustive(),
            SendError::Stopped { target, .. } => f
                .debug_struct("Stopped")
                .field("target", target)
                .finish_non_exhaustive(),
            SendError::NoSubscriber { topic, .. } => f
                .debug_struct("NoSubscriber")
                .field("topic", topic)
                .finish_non_exhaustive(),
            SendError::NoComponent { name, .. } => f
                .debug_struct("NoComponent")
                .field("name", name)
                .finish_non_exhaustive(),
            SendError::InvalidTopic { topic, reason, .. } => f
                .debug_struct("InvalidTopic")
                .field("topic", topic)
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
    }
}

/// The same text as the [`Error`](crate::Error) it converts into.
impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Backpressure {
                target, capacity, ..
            } => error::full(f, target, *capacity),
            SendError::Stopped { target, .. } => error::stopped(f, target),
            SendError::NoSubscriber { topic, .. } => error::no_subscriber(f, topic),
            SendError::NoComponent { name, .. } => error::no_component(f, name),
            SendError::InvalidTopic { topic, reason, .. } => error::invalid_topic(f, topic, reason),
        }
    }
}

/// Drops the refused message or job (knowingly) and keeps the case, so `?` carries a
/// [`SendError`] into a function that returns [`Error`](error::Error).
impl<T> From<SendError<T>> for error::Error {
    fn from(e: SendError<T>) -> error::Error {
        match e {
            SendError::Backpressure {
                target, capacity, ..
            } => error::Error::Backpressure { target, capacity },
            SendError::Stopped { target, .. } => error::Error::Stopped { target },
            SendError::NoSubscriber { topic, .. } => error::Error::NoSubscriber { topic },
            SendError::NoComponent { name, .. } => error::Error::NoComponent { name },
            SendError::InvalidTopic { topic, reason, .. } => {
                error::Error::InvalidTopic { topic, reason }
            }
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

#[cfg(test)]
mod tests {
    use super::SendError;
    use crate::types::Error;

    #[test]
    fn the_payload_comes_back_and_converts_away() {
        let e: SendError<u32> = SendError::Backpressure {
            target: "c".into(),
            capacity: 4,
            rejected: 7,
        };
        assert!(e.is_backpressure() && !e.is_stopped());
        assert_eq!(e.to_string(), "`c` is full (capacity 4)");
        assert_eq!(
            format!("{e:?}"),
            r#"Backpressure { target: "c", capacity: 4, .. }"#
        );
        let plain = Error::from(e);
        assert!(plain.is_backpressure());
        assert_eq!(plain.to_string(), "`c` is full (capacity 4)");
        assert_eq!(
            format!("{plain:?}"),
            r#"Backpressure { target: "c", capacity: 4 }"#
        );

        let stopped = SendError::Stopped {
            target: "c".into(),
            rejected: 1u8,
        }
        .map(u32::from);
        assert!(stopped.is_stopped());
        assert_eq!(stopped.into_inner(), 1u32);

        // Debug never needs `T: Debug`.
        struct Opaque;
        let opaque = SendError::NoSubscriber {
            topic: "t".into(),
            rejected: Opaque,
        };
        assert_eq!(format!("{opaque:?}"), r#"NoSubscriber { topic: "t", .. }"#);
        assert_eq!(opaque.to_string(), "no subscriber for `t`");
    }
}
