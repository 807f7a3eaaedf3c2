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

impl Payload {
    /// What the payload is, for messages: the type's name for a typed one.
    pub(super) fn describe(&self) -> Found {
        match self {
            Payload::Empty => Found::Other("no payload"),
            Payload::Json(_) => Found::Other("a JSON payload"),
            Payload::Bytes(_) => Found::Other("a bytes payload"),
            Payload::Typed(t) => Found::Type(t.type_name()),
        }
    }
}

/// What a message held when it was asked for the wrong type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    Type(&'static str),
    Other(&'static str),
}

/// A typed payload asked for as a type it is not: the type asked for and what the message
/// holds, as [`Message::try_get`](crate::Message::try_get) reports it.
///
/// The usual cause is type inference: an integer literal without a suffix is an `i32`, so
/// `Message::typed(1)` holds an `i32`, and asking for a `u64` finds none. The message names
/// both types, and for that case says so.
///
/// # Examples
///
/// ```
/// use reactorium::Message;
///
/// let m = Message::typed(1); // an `i32`
/// let e = m.try_get::<u64>().unwrap_err();
/// assert_eq!((e.expected(), e.found()), ("u64", "i32"));
/// assert!(e.to_string().starts_with("asked for a `u64` payload, the message holds `i32`"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeMismatch {
    expected: &'static str,
    found: Found,
}

impl TypeMismatch {
    pub(super) fn new(expected: &'static str, found: Found) -> TypeMismatch {
        TypeMismatch { expected, found }
    }

    /// The type asked for, as `std::any::type_name` gives it.
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// The type of the value the message holds, as `std::any::type_name` gives it; for a
    /// payload that is not typed, what it is: `"a JSON payload"`, `"a bytes payload"`, `"no
    /// payload"`.
    pub fn found(&self) -> &'static str {
        match self.found {
            Found::Type(t) | Found::Other(t) => t,
        }
    }
}

/// The integer primitives: an unsuffixed integer literal falls back to `i32` among them.
const INTEGERS: [&str; 12] = [
    "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
];

/// Whether `found` is what an unsuffixed literal gives where `expected` was meant.
fn literal_fallback(expected: &str, found: &str) -> bool {
    (found == "i32" && (INTEGERS.contains(&expected) || expected == "f32" || expected == "f64"))
        || (found == "f64" && expected == "f32")
}

impl fmt::Display for TypeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "asked for a `{}` payload, the message holds ",
            self.expected
        )?;
        match self.found {
            Found::Type(t) => {
                write!(f, "`{t}`")?;
                if literal_fallback(self.expected, t) {
                    write!(
                        f,
                        " (an unsuffixed literal is `{t}`: write `Message::typed(1{})`)",
                        self.expected
                    )?;
                }
                Ok(())
            }
            Found::Other(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for TypeMismatch {}

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
