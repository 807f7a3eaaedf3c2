//! What a message carries: JSON, bytes, or an in-process value of any type.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// What a message carries.
///
/// JSON is for anything that crosses a boundary (HTTP, NATS, history); `Typed` carries any
/// in-process value without serialization. All variants clone by reference count, so a
/// [`publish`](crate::Bus::publish) to many subscribers never copies the payload.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Payload {
    /// No payload.
    #[default]
    Empty,
    /// A JSON document.
    Json(Arc<Value>),
    /// Raw bytes.
    Bytes(Arc<[u8]>),
    /// An in-process value of any `Send + Sync` type.
    Typed(Typed),
}

/// An in-process value inside a [`Payload::Typed`], which knows the name of its type for
/// diagnostics. One reference-counted pointer.
#[derive(Clone)]
pub struct Typed {
    pub(super) value: Arc<dyn AnyValue>,
}

/// `Any` plus the type's name; implemented for every `Send + Sync + 'static` type.
///
/// Note: `Arc<dyn AnyValue>` is itself such a type, so call these methods on `*arc`, never on
/// the `Arc`, or method resolution picks the `Arc`'s own impl.
pub(super) trait AnyValue: Any + Send + Sync {
    fn type_name(&self) -> &'static str;
    fn as_any(&self) -> &(dyn Any + Send + Sync);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Any + Send + Sync> AnyValue for T {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl fmt::Debug for Typed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Typed({})", self.type_name())
    }
}

impl Typed {
    /// The name of the value's type, as `std::any::type_name` gives it.
    pub fn type_name(&self) -> &'static str {
        (*self.value).type_name()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Empty => f.write_str("Empty"),
            Payload::Json(v) => write!(f, "Json({v})"),
            Payload::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Payload::Typed(t) => write!(f, "Typed({})", t.type_name()),
        }
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Payload::Json(Arc::new(v))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Bytes(v.into())
    }
}
