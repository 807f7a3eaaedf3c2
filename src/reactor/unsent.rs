//! What a refused [`Context::request`] or [`Context::spawn_blocking`] hands back: the work
//! and its continuation, so the caller can still settle what the continuation was to settle
//! (a reply handle moved into it, above all).

use std::fmt;

use super::context::{Component, Context};
use crate::types::{Error, Message, SendError};

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

impl<F> SendError<UnsentRequest<F>> {
    /// Calls the refused request's continuation now, on this reactor, with this refusal as
    /// its outcome ([`Error::Backpressure`], [`Error::Stopped`], ... as `?` would convert
    /// it), and hands the message back.
    ///
    /// The continuation runs as it would have with a reply: with the component and its
    /// context, which a handler (or another continuation) holds; so a continuation written to
    /// answer the request this component is serving answers the busy case too, in one place.
    ///
    /// # Examples
    ///
    /// A gateway answers each request from a downstream service; when the downstream refuses
    /// (full, stopped, no subscriber), the original requester hears why at once instead of
    /// [`Error::NoReply`].
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    /// use std::time::Duration;
    ///
    /// struct Gateway;
    ///
    /// impl Component for Gateway {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let Some(caller) = msg.take_reply_handle() else { return Ok(()) };
    ///         let asked = ctx.request("backend.get", msg, Duration::from_secs(1),
    ///             move |_this: &mut Self, _ctx, outcome| {
    ///                 let _ = match outcome {
    ///                     Ok(reply) => caller.send(reply),
    ///                     Err(e) => caller.fail(e), // Backpressure reaches the caller as such
    ///                 };
    ///             });
    ///         if let Err(refused) = asked {
    ///             refused.run_then(self, ctx); // the continuation answers the caller now
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn run_then<C>(self, this: &mut C, ctx: &mut Context<'_, C>) -> Message
    where
        C: Component,
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<Message, Error>),
    {
        let (case, UnsentRequest { message, then }) = self.split();
        then(this, ctx, Err(Error::from(case)));
        message
    }
}

impl<J, F> SendError<UnsentJob<J, F>> {
    /// Calls the refused job's continuation now, on this reactor, with this refusal as its
    /// outcome ([`Error::Backpressure`] naming the pool or this component, or
    /// [`Error::Stopped`]), and hands the job back unrun. As
    /// [`run_then`](SendError#method.run_then) for a request.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, Context, Message};
    ///
    /// struct Hasher;
    ///
    /// impl Component for Hasher {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let Some(caller) = msg.take_reply_handle() else { return Ok(()) };
    ///         let data = msg.as_bytes().unwrap_or_default().to_vec();
    ///         let offloaded = ctx.spawn_blocking(
    ///             move || data.iter().map(|&b| u64::from(b)).sum::<u64>(),
    ///             move |_this: &mut Self, _ctx, sum| {
    ///                 let _ = match sum {
    ///                     Ok(sum) => caller.send(Message::typed(sum)),
    ///                     Err(e) => caller.fail(e), // a full pool reaches the caller as busy
    ///                 };
    ///             },
    ///         );
    ///         if let Err(refused) = offloaded {
    ///             refused.run_then(self, ctx);
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn run_then<C, R>(self, this: &mut C, ctx: &mut Context<'_, C>) -> J
    where
        C: Component,
        J: FnOnce() -> R,
        F: FnOnce(&mut C, &mut Context<'_, C>, Result<R, Error>),
    {
        let (case, UnsentJob { job, then }) = self.split();
        then(this, ctx, Err(Error::from(case)));
        job
    }
}
