//! `run_then` on a refused [`Context::request`] or [`Context::spawn_blocking`]: the
//! continuation handed back ([`UnsentRequest`], [`UnsentJob`]) is called now with the
//! refusal. Apart from `unsent.rs` so that neither it nor `context.rs` imports the other.

use super::context::{Component, Context};
use super::unsent::{UnsentJob, UnsentRequest};
use crate::types::{Error, Message, SendError};

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
