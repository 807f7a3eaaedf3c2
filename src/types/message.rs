//! The message envelope: its id, topic, payload, source, and the rarely used extension
//! (headers, timestamp, correlation, reply handle), with the reply handle a request carries
//! and the sink it answers into. (They stay together: a message carries a reply handle and a
//! reply handle delivers a message, so in two files they would import each other.)

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::Error;
use super::intern::Str;
use super::payload::{Payload, TypeMismatch, Typed};
use super::topic::Topic;

thread_local! {
    // The payload of the message a reactor thread's handler is running with, when its
    // component keeps payloads for dead letters: a second reference, which `take` gives up
    // (see `Message::keep_payload`).
    static KEPT: Cell<Option<Payload>> = const { Cell::new(None) };
}

/// A process-unique message id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MessageId(u64);

impl MessageId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// A fresh id. Threads take ids in blocks, so the shared counter is touched once every
    /// `BLOCK` messages instead of once per message.
    pub(crate) fn next() -> MessageId {
        const BLOCK: u64 = 1024;
        static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        RANGE.with(|r| {
            let (mut next, mut end) = r.get();
            if next == end {
                next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            r.set((next + 1, end));
            MessageId(next)
        })
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a reply to a request goes. Implemented by the reactor (a reserved mailbox slot) and
/// by the bus (a one-shot slot a plain thread waits on, or a callback).
pub(crate) trait ReplySink: Send + Sync {
    /// Delivers the outcome of the request. When the requester no longer waits, the sink
    /// accounts for a reply itself (counted late and dead-lettered on the requester's bus,
    /// so it is never lost silently) and says why: `Timeout` (it stopped waiting) or
    /// `Stopped` (its component is gone).
    ///
    /// # Errors
    ///
    /// `Timeout` or `Stopped`, as above.
    fn deliver(self: Box<Self>, outcome: Result<Message, Error>) -> Result<(), Error>;

    /// The request will never be answered through this sink (it is being cancelled before it
    /// was sent); releases what the sink reserved without notifying anyone.
    fn cancel(self: Box<Self>);
}

/// The right (and duty) to answer one request.
///
/// A request's message carries one; [`Message::take_reply_handle`] moves it out, and
/// [`ReplyHandle::send`] answers. Dropping it unanswered tells the requester at once with
/// [`Error::NoReply`] instead of letting it wait for its timeout.
pub struct ReplyHandle {
    sink: Option<Box<dyn ReplySink>>,
    request_id: MessageId,
}

impl ReplyHandle {
    pub(crate) fn new(sink: Box<dyn ReplySink>, request_id: MessageId) -> ReplyHandle {
        ReplyHandle {
            sink: Some(sink),
            request_id,
        }
    }

    /// The id of the request this answers (as [`PendingReply::request_id`] and
    /// [`ReplyTicket::request_id`] give it to the requester).
    ///
    /// [`PendingReply::request_id`]: crate::PendingReply::request_id
    /// [`ReplyTicket::request_id`]: crate::ReplyTicket::request_id
    pub fn request_id(&self) -> MessageId {
        self.request_id
    }

    /// Answers the request with `reply`; the reply's [`correlation`](Message::correlation) is
    /// set to the request's id.
    ///
    /// # Errors
    ///
    /// When the requester no longer waits: [`Error::Timeout`] if its timeout passed (a plain
    /// thread stopped waiting, or a component's timer fired first), [`Error::Stopped`] if the
    /// requesting component has stopped. The reply is then counted as late
    /// ([`BusStats::late_replies`](crate::BusStats), and the requesting component's
    /// [`ReactorStats::late_replies`](crate::ReactorStats)) and sent to the dead-letter topic, so
    /// it is never lost silently.
    pub fn send(mut self, mut reply: Message) -> Result<(), Error> {
        reply.set_correlation(self.request_id);
        self.finish(Ok(reply))
    }

    /// Answers the request with an error instead of a reply: an application's own
    /// ([`AppError`](crate::AppError), which the requester gets as
    /// [`Error::Application`]), or an [`Error`] passed on (a refusal or a timeout of a
    /// request this responder made in turn, which an HTTP requester answers as `503` or
    /// `504`).
    ///
    /// # Errors
    ///
    /// As [`ReplyHandle::send`]; nothing is dead-lettered since there is no reply message.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{AppError, AppErrorKind, Bus, Error, Message};
    /// use std::time::Duration;
    ///
    /// let bus = Bus::new();
    /// let service = bus.subscribe_inbox("orders.place", 8)?;
    /// let pending = bus.request("orders.place", Message::empty(), Duration::from_secs(1))?;
    /// let mut req = service.recv()?;
    /// let out = AppError::new(AppErrorKind::FailedPrecondition, "out_of_stock", "sku A-1 is out of stock");
    /// req.take_reply_handle().unwrap().fail(out)?;
    /// assert!(matches!(pending.wait(), Err(Error::Application(e)) if e.code() == "out_of_stock"));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn fail(mut self, error: impl Into<Error>) -> Result<(), Error> {
        self.finish(Err(error.into()))
    }

    /// Releases the reserved reply slot without telling the requester: used when the request
    /// could not be sent at all and its error goes back to the requester directly.
    pub(crate) fn cancel(mut self) {
        if let Some(sink) = self.sink.take() {
            sink.cancel();
        }
    }

    fn finish(&mut self, outcome: Result<Message, Error>) -> Result<(), Error> {
        let Some(sink) = self.sink.take() else {
            return Ok(());
        };
        sink.deliver(outcome)
    }
}

impl Drop for ReplyHandle {
    fn drop(&mut self) {
        if self.sink.is_some() {
            let reason = if std::thread::panicking() {
                "the responder panicked"
            } else {
                "the responder dropped the request unanswered"
            };
            let _ = self.finish(Err(Error::NoReply {
                reason: reason.to_owned(),
            }));
        }
    }
}

impl fmt::Debug for ReplyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyHandle")
            .field("request_id", &self.request_id)
            .field("answered", &self.sink.is_none())
            .finish()
    }
}

/// The envelope every bus message travels in.
///
/// A message is built without a topic; [`Bus::send`](crate::Bus::send),
/// [`publish`](crate::Bus::publish) and [`request`](crate::Bus::request) set it to the topic
/// it was sent on. Its id is unique in the process. No clock is read unless you ask for a
/// timestamp ([`Message::stamped`]), to keep the hot path free of clock reads.
///
/// # Examples
///
/// ```
/// use reactorium::Message;
/// use serde_json::json;
///
/// let m = Message::json(json!({"sku": "A-1", "qty": 2})).with_header("tenant", "acme");
/// assert_eq!(m.as_json().unwrap()["qty"], 2);
/// assert_eq!(m.header("tenant"), Some("acme"));
///
/// #[derive(Debug, PartialEq)]
/// struct Order { qty: u32 }
/// let m = Message::typed(Order { qty: 2 });
/// assert_eq!(m.get::<Order>(), Some(&Order { qty: 2 }));
/// assert_eq!(m.take::<Order>().ok(), Some(Order { qty: 2 }));
/// ```
pub struct Message {
    pub(crate) id: MessageId,
    pub(crate) topic: Topic,
    payload: Payload,
    pub(crate) source: Option<Str>,
    // What most messages do not carry lives behind one pointer, so the envelope stays small
    // (it is moved on every push and pop, and inside every refusal).
    ext: Option<Box<Extension>>,
}

#[derive(Default)]
struct Extension {
    // Shared, copied on write: cloning an envelope (a publish's copies, the reactor keeping
    // one in case a handler fails) is a reference count, not a copy of every string.
    // `None` until the first header, so a request's or reply's extension (reply handle,
    // correlation) allocates nothing for headers it does not have.
    headers: Option<Arc<Vec<(String, String)>>>,
    timestamp: Option<SystemTime>,
    correlation: Option<MessageId>,
    reply: Option<ReplyHandle>,
}

impl Extension {
    fn clone_without_reply(&self) -> Extension {
        Extension {
            headers: self.headers.clone(),
            timestamp: self.timestamp,
            correlation: self.correlation,
            reply: None,
        }
    }
}

impl Message {
    /// A message carrying `payload`.
    pub fn new(payload: impl Into<Payload>) -> Message {
        Message {
            id: MessageId::next(),
            topic: Topic::unset(),
            payload: payload.into(),
            source: None,
            ext: None,
        }
    }

    fn ext(&mut self) -> &mut Extension {
        self.ext.get_or_insert_with(Box::default)
    }

    pub(crate) fn set_reply(&mut self, reply: ReplyHandle) {
        self.ext().reply = Some(reply);
    }

    pub(crate) fn set_correlation(&mut self, id: MessageId) {
        self.ext().correlation = Some(id);
    }

    /// A message with no payload.
    pub fn empty() -> Message {
        Message::new(Payload::Empty)
    }

    /// A message carrying a JSON document.
    pub fn json(value: Value) -> Message {
        Message::new(value)
    }

    /// A message carrying raw bytes.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Message {
        Message::new(bytes.into())
    }

    /// A message carrying an in-process value, not serialized. It is read back by its exact
    /// type ([`get`](Message::get), [`try_get`](Message::try_get), [`take`](Message::take)).
    ///
    /// Mind type inference: an integer literal without a suffix is an `i32` and a float one an
    /// `f64`, so `Message::typed(1)` holds an `i32`, and `get::<u64>()` on it is `None`. Write
    /// the type (`Message::typed(1u64)`), and read with [`try_get`](Message::try_get) where a
    /// wrong type is a bug: its error names both types.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Message;
    ///
    /// let m = Message::typed(1);
    /// assert_eq!(m.get::<u64>(), None); // an `i32`
    /// assert_eq!(m.get::<i32>(), Some(&1));
    /// assert_eq!(Message::typed(1u64).get::<u64>(), Some(&1));
    /// ```
    pub fn typed<T: Any + Send + Sync>(value: T) -> Message {
        Message::new(Payload::Typed(Typed {
            value: Arc::new(value),
        }))
    }

    /// A message carrying `value` serialized to JSON.
    ///
    /// # Errors
    ///
    /// The serializer's error when `value` cannot be represented as JSON.
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Message, serde_json::Error> {
        Ok(Message::json(serde_json::to_value(value)?))
    }

    /// Adds a header (a name/value pair carried beside the payload).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Message {
        let headers = self.ext().headers.get_or_insert_with(Default::default);
        Arc::make_mut(headers).push((name.into(), value.into()));
        self
    }

    /// Adds every header of `headers` at once (one allocation for the lot).
    pub(crate) fn with_headers(mut self, mut headers: Vec<(String, String)>) -> Message {
        let ext = self.ext();
        match &mut ext.headers {
            None => ext.headers = Some(Arc::new(headers)),
            Some(h) => Arc::make_mut(h).append(&mut headers),
        }
        self
    }

    /// Sets the timestamp to now.
    pub fn stamped(mut self) -> Message {
        self.ext().timestamp = Some(SystemTime::now());
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, at: SystemTime) -> Message {
        self.ext().timestamp = Some(at);
        self
    }

    /// The message's process-unique id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The topic it was sent on (empty before it is sent).
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The JSON payload, if the payload is JSON.
    pub fn as_json(&self) -> Option<&Value> {
        match &self.payload {
            Payload::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The byte payload, if the payload is bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The typed payload, if it is a `T`: `None` for any other type, however close (a `u64`
    /// asked of an `i32`, see [`Message::typed`]) and for a payload that is not typed. To
    /// learn what it holds instead, use [`try_get`](Message::try_get).
    pub fn get<T: Any>(&self) -> Option<&T> {
        match &self.payload {
            Payload::Typed(t) => (*t.value).as_any().downcast_ref(),
            _ => None,
        }
    }

    /// The typed payload as a `T`, or what it is instead. Costs what [`get`](Message::get)
    /// does when the type is right; the error, with `?`, makes a wrong type a handler error
    /// (dead-lettered with its text) rather than a value silently missing.
    ///
    /// # Errors
    ///
    /// [`TypeMismatch`] naming the type asked for and the one the message holds (or that the
    /// payload is JSON, bytes or empty) when the payload is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::Message;
    ///
    /// let m = Message::typed(7u64);
    /// assert_eq!(m.try_get::<u64>(), Ok(&7));
    /// let e = Message::typed(7).try_get::<u64>().unwrap_err();
    /// assert_eq!(e.to_string(),
    ///     "asked for a `u64` payload, the message holds `i32` \
    ///      (an unsuffixed literal is `i32`: write `Message::typed(1u64)`)");
    /// let e = Message::json("7".into()).try_get::<u64>().unwrap_err();
    /// assert_eq!(e.to_string(), "asked for a `u64` payload, the message holds a JSON payload");
    /// ```
    pub fn try_get<T: Any>(&self) -> Result<&T, TypeMismatch> {
        if let Payload::Typed(t) = &self.payload {
            if let Some(v) = (*t.value).as_any().downcast_ref() {
                return Ok(v);
            }
        }
        Err(self.mismatch::<T>())
    }

    #[cold]
    fn mismatch<T: Any>(&self) -> TypeMismatch {
        TypeMismatch::new(std::any::type_name::<T>(), self.payload.describe())
    }

    /// Takes the typed payload out.
    ///
    /// # Errors
    ///
    /// The message comes back unchanged when its payload is not a `T` (ask
    /// [`try_get`](Message::try_get) what it is), or when a clone of this message (a
    /// [`publish`](crate::Bus::publish) copy) still shares it; then read it in place with
    /// [`Message::get`].
    pub fn take<T: Any + Send + Sync>(mut self) -> Result<T, Message> {
        let Payload::Typed(t) = std::mem::take(&mut self.payload) else {
            return Err(self);
        };
        if !(*t.value).as_any().is::<T>() {
            self.payload = Payload::Typed(t);
            return Err(self);
        }
        let arc = t
            .value
            .into_any()
            .downcast::<T>()
            .expect("checked with `is`");
        let arc = match Arc::try_unwrap(arc) {
            Ok(v) => return Ok(v),
            // The other reference may be the one the reactor keeps for a dead letter.
            Err(arc) if give_up_kept(&arc) => arc,
            Err(arc) => {
                self.payload = Payload::Typed(Typed { value: arc });
                return Err(self);
            }
        };
        match Arc::try_unwrap(arc) {
            Ok(v) => Ok(v),
            Err(arc) => {
                self.payload = Payload::Typed(Typed { value: arc });
                Err(self)
            }
        }
    }

    /// Deserializes the JSON payload into a `T`.
    ///
    /// # Errors
    ///
    /// The deserializer's error when the payload is not JSON or does not fit `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match &self.payload {
            Payload::Json(v) => T::deserialize(&**v),
            Payload::Bytes(b) => serde_json::from_slice(b),
            _ => Err(serde::de::Error::custom("the payload is not JSON")),
        }
    }

    /// The headers, in the order they were added.
    pub fn headers(&self) -> &[(String, String)] {
        self.ext
            .as_ref()
            .and_then(|e| e.headers.as_deref())
            .map_or(&[], Vec::as_slice)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// When the message was stamped, if it was.
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.ext.as_ref().and_then(|e| e.timestamp)
    }

    /// The component that sent it, when it was sent from a component's
    /// [`Context`](crate::Context).
    pub fn source(&self) -> Option<&str> {
        self.source.as_ref().map(Str::as_str)
    }

    /// On a reply: the id of the request it answers.
    pub fn correlation(&self) -> Option<MessageId> {
        self.ext.as_ref().and_then(|e| e.correlation)
    }

    /// `true` when this message is a request still waiting for its answer.
    pub fn expects_reply(&self) -> bool {
        self.ext.as_ref().is_some_and(|e| e.reply.is_some())
    }

    /// A copy of the envelope without the payload and without the reply handle: what the
    /// reactor keeps to dead-letter when a handler fails with the message (with the payload
    /// added back by [`with_payload`](Message::with_payload) when it kept that too).
    pub(crate) fn envelope(&self) -> Message {
        let ext = self.ext.as_ref().and_then(|e| {
            let bare = e.headers.as_ref().map_or(true, |h| h.is_empty())
                && e.timestamp.is_none()
                && e.correlation.is_none();
            (!bare).then(|| Box::new(e.clone_without_reply()))
        });
        Message {
            id: self.id,
            topic: self.topic.clone(),
            payload: Payload::Empty,
            source: self.source.clone(),
            ext,
        }
    }

    /// Keeps a second reference to the payload on this (reactor) thread while a handler runs
    /// with the message, for its dead letter if the handler fails: a reference count, no
    /// copy. [`take`](Message::take) gives this reference up, so a handler can still take its
    /// payload; [`take_kept_payload`](Message::take_kept_payload) ends the keeping.
    pub(crate) fn keep_payload(&self) {
        KEPT.with(|k| k.set(Some(self.payload.clone())));
    }

    /// The payload kept by [`keep_payload`](Message::keep_payload), unless the handler took
    /// it.
    pub(crate) fn take_kept_payload() -> Option<Payload> {
        KEPT.with(Cell::take)
    }

    /// This message with `payload` instead of its own (an envelope made whole again).
    pub(crate) fn with_payload(mut self, payload: Payload) -> Message {
        self.payload = payload;
        self
    }

    /// Moves the reply handle out of a request, to answer it later or from another thread.
    pub fn take_reply_handle(&mut self) -> Option<ReplyHandle> {
        self.ext.as_mut().and_then(|e| e.reply.take())
    }
}

/// Gives up the reference [`Message::keep_payload`] keeps, when it is the only other one to
/// `arc`: then the caller's is the last, and it may take the value.
fn give_up_kept<T>(arc: &Arc<T>) -> bool {
    if Arc::strong_count(arc) != 2 {
        return false;
    }
    KEPT.with(|k| {
        let kept = k.take();
        let same = matches!(&kept, Some(Payload::Typed(t))
            if std::ptr::addr_eq(Arc::as_ptr(&t.value), Arc::as_ptr(arc)));
        if !same {
            k.set(kept);
        }
        same
    })
}

/// A clone shares the payload (by reference count) and copies the envelope, id included.
/// It never carries the reply handle: only one party can answer a request.
impl Clone for Message {
    fn clone(&self) -> Message {
        Message {
            id: self.id,
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            source: self.source.clone(),
            ext: self.ext.as_ref().map(|e| Box::new(e.clone_without_reply())),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("id", &self.id.0)
            .field("topic", &self.topic)
            .field("payload", &self.payload);
        if !self.headers().is_empty() {
            d.field("headers", &self.headers());
        }
        if let Some(s) = self.source() {
            d.field("source", &s);
        }
        if let Some(c) = self.correlation() {
            d.field("correlation", &c.0);
        }
        if self.expects_reply() {
            d.field("expects_reply", &true);
        }
        d.finish()
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn typed_payload_knows_its_type() {
        let m = Message::typed(7u16);
        assert_eq!(m.get::<u16>(), Some(&7));
        assert_eq!(m.get::<u32>(), None);
        assert!(format!("{:?}", m.payload()).contains("u16"));
        let shared = m.clone();
        let m = m.take::<u16>().expect_err("a clone shares the payload");
        drop(shared);
        assert_eq!(m.take::<u16>().ok(), Some(7));
    }

    #[test]
    fn envelope_stays_small() {
        // Moved on every push and pop and inside every refusal: keep it within two cache lines.
        assert!(
            std::mem::size_of::<Message>() <= 80,
            "{}",
            std::mem::size_of::<Message>()
        );
    }
}
