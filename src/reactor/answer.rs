//! [`Context::reply_err`]: a component answers a request with an application error. The
//! error-side twin of [`Context::reply`] (beside `request` in `context.rs`); like it, it
//! never fails the handler: a requester gone, or a message that asked for no answer, is
//! accounted for here instead.

use super::context::{Component, Context};
use crate::types::{AppError, DeadLetterReason, Error, Message};

impl<C: Component> Context<'_, C> {
    /// Answers the request `request` with the application error `error`, taking its reply
    /// handle: the requester gets [`Error::Application`] (the HTTP front-end answers with
    /// the status of the error's [kind](crate::AppErrorKind) and its one error shape). The
    /// error-side twin of [`reply`](Context::reply), with the same forgiveness:
    ///
    /// - A requester that no longer waits is not this component's failure: `Ok`, and
    ///   nothing is dead-lettered (there is no reply message).
    /// - A message that expects no reply is not one either: the error is dead-lettered as a
    ///   JSON message (`{"kind":..,"code":..,"message":..}`) with
    ///   [`DeadLetterReason::UnrequestedReply`](crate::DeadLetterReason::UnrequestedReply),
    ///   its correlation set to `request`'s id, and counted in
    ///   [`ReactorStats::dead_lettered`](crate::ReactorStats::dead_lettered).
    ///
    /// To pass on a library [`Error`] (a refusal or timeout of a request of this component's
    /// own), use [`ReplyHandle::fail`](crate::ReplyHandle::fail), which takes either.
    ///
    /// # Errors
    ///
    /// None today, as for [`reply`](Context::reply).
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{AppError, AppErrorKind, BoxError, Component, ComponentOptions, Context, Error, Message, Runtime};
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    ///
    /// struct Prices(HashMap<String, u64>);
    ///
    /// impl Component for Prices {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let sku = msg.as_json().and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    ///         match self.0.get(&sku) {
    ///             Some(&price) => ctx.reply(&mut msg, Message::typed(price))?,
    ///             None => ctx.reply_err(&mut msg,
    ///                 AppError::new(AppErrorKind::NotFound, "unknown_sku", format!("no price for `{sku}`")))?,
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy_with("prices", ComponentOptions::new().subscribe("price"),
    ///     || Prices(HashMap::from([("A-1".to_owned(), 250)])))?;
    /// rt.start()?;
    /// let ask = |sku: &str| rt.bus().request("price", Message::json(sku.into()), Duration::from_secs(5))?.wait();
    /// assert_eq!(ask("A-1")?.get::<u64>(), Some(&250));
    /// match ask("B-2") {
    ///     Err(Error::Application(e)) => assert_eq!((e.kind(), e.code()), (AppErrorKind::NotFound, "unknown_sku")),
    ///     other => panic!("expected an application error, got {other:?}"),
    /// }
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn reply_err(&self, request: &mut Message, error: AppError) -> Result<(), Error> {
        match request.take_reply_handle() {
            Some(h) => match h.fail(error) {
                // Late: the requester stopped waiting; there is no message to dead-letter.
                Err(Error::Timeout { .. } | Error::Stopped { .. }) => Ok(()),
                other => other,
            },
            None => {
                let json = serde_json::to_value(&error).unwrap_or_default();
                let mut letter = self.stamp(Message::json(json));
                letter.set_correlation(request.id());
                self.core
                    .reactor
                    .mailbox
                    .dead_letter(letter, DeadLetterReason::UnrequestedReply);
                Ok(())
            }
        }
    }
}
