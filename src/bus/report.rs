//! What a publish reports.

use crate::types::{Message, SendError};

/// What a [`publish`](crate::Bus::publish) did: how many subscribers took the message, and
/// each refusal with its copy of the message handed back. A partial fan-out is visible here,
/// never hidden.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Subscribers that accepted a copy.
    pub delivered: usize,
    /// Subscribers that refused (full or stopped), with the refused copy inside each error.
    pub refused: Vec<SendError<Message>>,
}

impl PublishReport {
    /// `true` when every matching subscriber accepted.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty()
    }
}
