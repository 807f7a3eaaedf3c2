//! What a full mailbox does with one more message.

use std::fmt;

/// What a component's mailbox does with a message that arrives when it is full.
///
/// Whatever the policy, a message is never lost silently: refused ones come back to the sender
/// inside [`SendError::Backpressure`](crate::SendError::Backpressure), dropped ones are counted
/// ([`ReactorStats::dropped`](crate::ReactorStats::dropped)) and published on the dead-letter
/// topic with [`DeadLetterReason::Overflow`](crate::DeadLetterReason::Overflow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Overflow {
    /// Refuse the new message: the sender gets it back in `SendError::Backpressure`. The
    /// default.
    #[default]
    Reject,
    /// Accept the new message and drop the oldest one queued (freshest data wins: telemetry,
    /// prices). The sender gets `Ok`.
    DropOldest,
    /// Accept and drop the new message: the sender gets `Ok`, the message is dead-lettered.
    DropNewest,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overflow::Reject => "reject",
            Overflow::DropOldest => "drop-oldest",
            Overflow::DropNewest => "drop-newest",
        })
    }
}
