//! reactorium: message-driven components on dedicated reactor threads.
#![doc = "(tour to be written)"]

mod bus;
mod reactor;
mod runtime;
mod types;
mod worker;

pub use bus::{Bus, BusStats, Inbox, PendingReply};
pub use reactor::{Component, Context, Reactor, ReactorStats};
pub use runtime::{ComponentOptions, ComponentReport, Runtime, RuntimeBuilder, ShutdownReport};
pub use types::{
    BoxError, DeadLetter, DeadLetterReason, Error, Message, MessageId, Name, Pattern, Payload,
    PublishReport, ReplyHandle, SubscriptionId, Topic, Typed, DEAD_LETTER_TOPIC,
};
pub use worker::{PoolShutdown, WorkerPool, WorkerPoolBuilder, WorkerPoolStats};
