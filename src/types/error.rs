//! The crate's error type.

use std::fmt;
use std::time::Duration;

use super::app_error::AppError;
use super::name::Name;

/// An error from a reactorium call.
///
/// One enum for every call that is not an enqueue; the enqueues (every `send`, `send_to`,
/// `publish`, `request`, `spawn_blocking`, [`WorkerPool::execute`](crate::WorkerPool::execute))
/// answer a [`SendError`](crate::SendError), which hands the refused message or job back and converts into
/// this type (dropping it) with `?`. After that conversion, the enqueue cases keep their names
/// here: [`Backpressure`](Error::Backpressure), [`Stopped`](Error::Stopped),
/// [`NoComponent`](Error::NoComponent), [`NoSubscriber`](Error::NoSubscriber),
/// [`InvalidTopic`](Error::InvalidTopic).
///
/// "Full" and "gone" are different answers: [`Backpressure`](Error::Backpressure) means retry
/// later, [`Stopped`](Error::Stopped) means the target will never take it.
///
/// New cases may come with new operations, so a `match` on it needs a wildcard arm (a `match`
/// on a [`SendError`](crate::SendError) does not).
///
/// ```
/// use reactorium::{Bus, Error, Message};
/// use std::time::Duration;
///
/// let bus = Bus::new();
/// let inbox = bus.subscribe_inbox("quiet", 1)?;
/// match inbox.recv_timeout(Duration::from_millis(1)) {
///     Err(Error::Timeout { after }) => assert_eq!(after, Duration::from_millis(1)),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[non_exhaustive]
pub enum Error {
    /// The target's mailbox or queue is full: retry later, reroute, or drop the work. (From a
    /// [`SendError::Backpressure`](crate::SendError::Backpressure), or a [`ReplyHandle`](crate::ReplyHandle) failing with it.)
    Backpressure {
        /// The component, inbox or pool that is full.
        target: Name,
        /// Its capacity.
        capacity: usize,
    },
    /// The target has stopped (or is stopping) and takes no more work; or, from a blocking
    /// receive, the bus or watch it waited on has gone.
    Stopped {
        /// The component, inbox or pool that stopped (`bus`, `watch` for a receive).
        target: Name,
    },
    /// No component has this name: a send to it by name
    /// ([`Bus::send_to`](crate::Bus::send_to)), a subscription for it
    /// ([`Bus::subscribe`](crate::Bus::subscribe)) or a watch on it
    /// ([`Runtime::watch`](crate::Runtime::watch), [`Context::watch`](crate::Context::watch)).
    NoComponent {
        /// The name given.
        name: String,
    },
    /// No subscription matches the topic.
    NoSubscriber {
        /// The topic sent to.
        topic: String,
    },
    /// No answer came within the time allowed (a request's timeout, a job's deadline, a
    /// receive's timeout).
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
    /// The responder failed the request with an application error of its own
    /// ([`Context::reply_err`](crate::Context::reply_err),
    /// [`ReplyHandle::fail`](crate::ReplyHandle::fail)): its kind, code and message. The
    /// HTTP front-end answers it with its kind's status
    /// ([`AppErrorKind`](crate::AppErrorKind) has the table).
    Application(AppError),
    /// A job on the worker pool panicked; the worker thread survived.
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// A blocking wait was called on a reactor thread, where it would stall every message of
    /// that component (and deadlock if the reply is for this reactor). Use
    /// [`Context::request`](crate::Context::request) there instead.
    WouldDeadlock,
    /// A topic or pattern is malformed.
    InvalidTopic {
        /// The text given.
        topic: String,
        /// What is wrong with it.
        reason: &'static str,
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

impl Error {
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

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backpressure { target, capacity } => f
                .debug_struct("Backpressure")
                .field("target", target)
                .field("capacity", capacity)
                .finish(),
            Error::Stopped { target } => f.debug_struct("Stopped").field("target", target).finish(),
            Error::NoSubscriber { topic } => f
                .debug_struct("NoSubscriber")
                .field("topic", topic)
                .finish(),
            Error::NoComponent { name } => {
                f.debug_struct("NoComponent").field("name", name).finish()
            }
            Error::Timeout { after } => f.debug_struct("Timeout").field("after", after).finish(),
            Error::NoReply { reason } => f.debug_struct("NoReply").field("reason", reason).finish(),
            Error::Application(e) => f.debug_tuple("Application").field(e).finish(),
            Error::Panicked { message } => f
                .debug_struct("Panicked")
                .field("message", message)
                .finish(),
            Error::WouldDeadlock => f.write_str("WouldDeadlock"),
            Error::InvalidTopic { topic, reason } => f
                .debug_struct("InvalidTopic")
                .field("topic", topic)
                .field("reason", reason)
                .finish(),
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backpressure { target, capacity } => full(f, target, *capacity),
            Error::Stopped { target } => stopped(f, target),
            Error::NoSubscriber { topic } => no_subscriber(f, topic),
            Error::NoComponent { name } => no_component(f, name),
            Error::Timeout { after } => write!(f, "timed out after {after:?}"),
            Error::NoReply { reason } => write!(f, "no reply will come: {reason}"),
            Error::Application(e) => e.fmt(f),
            Error::Panicked { message } => write!(f, "job panicked: {message}"),
            Error::WouldDeadlock => f.write_str("blocking wait on a reactor thread"),
            Error::InvalidTopic { topic, reason } => invalid_topic(f, topic, reason),
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

/// An application error is answered as [`Error::Application`], so
/// [`ReplyHandle::fail`](crate::ReplyHandle::fail) takes it as it is.
impl From<AppError> for Error {
    fn from(e: AppError) -> Error {
        Error::Application(e)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// The texts of the enqueue cases, shared with `SendError`'s `Display`: one case, one text.

pub(super) fn full(f: &mut fmt::Formatter<'_>, target: &Name, capacity: usize) -> fmt::Result {
    write!(f, "`{target}` is full (capacity {capacity})")
}

pub(super) fn stopped(f: &mut fmt::Formatter<'_>, target: &Name) -> fmt::Result {
    write!(f, "`{target}` has stopped")
}

pub(super) fn no_subscriber(f: &mut fmt::Formatter<'_>, topic: &str) -> fmt::Result {
    write!(f, "no subscriber for `{topic}`")
}

pub(super) fn no_component(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    write!(f, "no component named `{name}`")
}

pub(super) fn invalid_topic(f: &mut fmt::Formatter<'_>, topic: &str, reason: &str) -> fmt::Result {
    write!(f, "invalid topic `{topic}`: {reason}")
}
