//! What a refused [`Context::request`] or [`Context::spawn_blocking`] hands back: the work
//! and its continuation, so the caller can still settle what the continuation was to settle
//! (a reply handle moved into it, above all). `run_then`, which settles it, is in
//! `run_then.rs`: it needs the `Context`, whose methods name these types.
//!
//! [`Context::request`]: crate::Context::request
//! [`Context::spawn_blocking`]: crate::Context::spawn_blocking

use std::fmt;

use crate::types::Message;
#[cfg(doc)]
use crate::{Context, SendError};

/// A request [`Context::request`] refused, handed back whole in the [`SendError`]: the message
/// and the continuation that was to get its reply.
///
/// The continuation is the caller's to settle: call it now with the refusal
/// ([`SendError::run_then`](SendError#method.run_then), one call), retry later with both, or
/// drop it knowingly. What it holds (a [`ReplyHandle`](crate::ReplyHandle) of a request this
/// component was answering) is then answered or dropped by that choice, not lost behind the
/// caller's back.
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, Context, Message, SendError, UnsentRequest};
/// use std::time::Duration;
///
/// struct Retrier { parked: Vec<Message> }
///
/// impl Component for Retrier {
///     fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
///         let asked = ctx.request("stock.check", msg, Duration::from_secs(1), |_this: &mut Self, _ctx, _r| {});
///         match asked {
///             Ok(_) => {}
///             // Full: keep the message to ask again later; this continuation holds nothing.
///             Err(SendError::Backpressure { rejected: UnsentRequest { message, then: _ }, .. }) => {
///                 self.parked.push(message)
///             }
///             Err(other) => return Err(reactorium::Error::from(other).into()),
///         }
///         Ok(())
///     }
/// }
/// ```
pub struct UnsentRequest<F> {
    /// The request's message, without its reply handle (the reply slot it reserved is
    /// released).
    pub message: Message,
    /// The continuation given to [`Context::request`], never called.
    pub then: F,
}

/// A job [`Context::spawn_blocking`] (or
/// [`spawn_blocking_timeout`](Context::spawn_blocking_timeout)) refused, handed back whole in
/// the [`SendError`]: the job and the continuation that was to get its result.
///
/// As for [`UnsentRequest`], the continuation is the caller's to settle: `run_then` on the
/// [`SendError`] calls it now with the refusal.
pub struct UnsentJob<J, F> {
    /// The job, never run.
    pub job: J,
    /// The continuation given to `spawn_blocking`, never called.
    pub then: F,
}

// By hand, so that neither needs `Debug` of a closure.
impl<F> fmt::Debug for UnsentRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsentRequest")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl<J, F> fmt::Debug for UnsentJob<J, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsentJob").finish_non_exhaustive()
    }
}
