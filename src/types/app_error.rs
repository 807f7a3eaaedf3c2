//! `AppError`: the error an application answers a request with, as a kind, a code and a
//! message.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An application's error in answer to a request: what kind of failure it is (whose fault,
/// in words no protocol owns), a machine-readable `code` of the application's own, and a
/// message for people.
///
/// A responder fails a request with it ([`Context::reply_err`](crate::Context::reply_err)
/// from a handler, [`ReplyHandle::fail`](crate::ReplyHandle::fail) with the handle); the
/// requester gets [`Error::Application`](crate::Error::Application) wherever it waits:
/// [`PendingReply::wait`](crate::PendingReply::wait), a
/// [`request_callback`](crate::Bus::request_callback), a component's continuation.
///
/// The [`kind`](AppErrorKind) is what a front-end maps to its protocol: the HTTP front-end
/// answers [`AppErrorKind::NotFound`] with `404` (the table is on [`AppErrorKind`]) and the
/// error shape of its own errors, `{"error":{"status":404,"code":"no_such_key","message":"no
/// key `a`"}}`.
///
/// It is [`Serialize`] and [`Deserialize`] as `{"kind": .., "code": .., "message": ..}`
/// (`kind` in snake case, `"not_found"`), so it can cross a process boundary as it is.
///
/// # Examples
///
/// ```
/// use reactorium::{AppError, AppErrorKind, Bus, Error, Message};
/// use std::time::Duration;
///
/// let bus = Bus::new();
/// let store = bus.subscribe_inbox("kv.get", 8)?;
/// let pending = bus.request("kv.get", Message::json("a".into()), Duration::from_secs(1))?;
///
/// let mut req = store.recv()?;
/// let missing = AppError::new(AppErrorKind::NotFound, "no_such_key", "no key `a`");
/// req.take_reply_handle().unwrap().fail(missing)?;
///
/// match pending.wait() {
///     Err(Error::Application(e)) => {
///         assert_eq!(e.kind(), AppErrorKind::NotFound);
///         assert_eq!((e.code(), e.message()), ("no_such_key", "no key `a`"));
///         assert_eq!(e.to_string(), "no_such_key: no key `a`");
///     }
///     other => panic!("expected an application error, got {other:?}"),
/// }
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppError {
    kind: AppErrorKind,
    code: String,
    message: String,
}

impl AppError {
    /// An error of kind `kind`, with `code` (machine-readable, such as `no_such_key`; by
    /// convention lowercase with underscores, as the front-ends' own codes) and `message`.
    pub fn new(kind: AppErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        AppError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> AppErrorKind {
        self.kind
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `code: message`, or the code alone when the message is empty.
impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for AppError {}

/// What kind of failure an [`AppError`] is: whose fault, and whether trying again may help.
///
/// The names and their meaning are gRPC's status codes (a vocabulary with no protocol in
/// it, which users of RPC systems already know), the ones an application answers with; a
/// front-end maps each to its protocol. The HTTP front-end uses gRPC's published mapping:
///
/// | kind | meaning | HTTP |
/// |---|---|---|
/// | [`InvalidArgument`](AppErrorKind::InvalidArgument) | the request is wrong, whatever the state | `400` |
/// | [`FailedPrecondition`](AppErrorKind::FailedPrecondition) | the request is refused in the present state (not before a change) | `400` |
/// | [`Unauthenticated`](AppErrorKind::Unauthenticated) | the caller is not known | `401` |
/// | [`PermissionDenied`](AppErrorKind::PermissionDenied) | the caller may not do it | `403` |
/// | [`NotFound`](AppErrorKind::NotFound) | what it names does not exist | `404` |
/// | [`AlreadyExists`](AppErrorKind::AlreadyExists) | what it would create exists | `409` |
/// | [`Aborted`](AppErrorKind::Aborted) | a conflict with a concurrent change: retry the whole operation | `409` |
/// | [`ResourceExhausted`](AppErrorKind::ResourceExhausted) | a quota or limit is reached | `429` |
/// | [`Internal`](AppErrorKind::Internal) | the service failed | `500` |
/// | [`Unimplemented`](AppErrorKind::Unimplemented) | the service does not do this | `501` |
/// | [`Unavailable`](AppErrorKind::Unavailable) | the service cannot now: retry later | `503` |
///
/// A refused enqueue, a timeout or a dropped request are not application errors: they are
/// the library's own [`Error`](crate::Error) cases (HTTP `503`, `504`, `502`).
///
/// New kinds may come, so a `match` on it needs a wildcard arm.
///
/// # Examples
///
/// ```
/// use reactorium::AppErrorKind;
///
/// assert_eq!(AppErrorKind::NotFound.as_str(), "not_found");
/// assert_eq!(AppErrorKind::NotFound.to_string(), "not_found");
/// assert!(AppErrorKind::NotFound.is_caller_error());
/// assert!(!AppErrorKind::Unavailable.is_caller_error());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppErrorKind {
    /// The request is wrong whatever the service's state: a malformed or out-of-range field.
    InvalidArgument,
    /// The request is refused in the service's present state: it may succeed after that
    /// state changes (an order for a sku out of stock, a directory not empty).
    FailedPrecondition,
    /// The caller is not known: no credentials, or invalid ones.
    Unauthenticated,
    /// The caller is known and may not do this.
    PermissionDenied,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// A conflict with a concurrent change (a version check failed): the whole operation
    /// may be retried.
    Aborted,
    /// A quota or rate limit is reached.
    ResourceExhausted,
    /// The service failed: a bug or a broken invariant, not the request's fault.
    Internal,
    /// The service does not implement this operation.
    Unimplemented,
    /// The service cannot answer now (a dependency is down): retry later.
    Unavailable,
}

impl AppErrorKind {
    /// Every kind, in the order of the table above.
    pub(crate) const ALL: [AppErrorKind; 11] = [
        AppErrorKind::InvalidArgument,
        AppErrorKind::FailedPrecondition,
        AppErrorKind::Unauthenticated,
        AppErrorKind::PermissionDenied,
        AppErrorKind::NotFound,
        AppErrorKind::AlreadyExists,
        AppErrorKind::Aborted,
        AppErrorKind::ResourceExhausted,
        AppErrorKind::Internal,
        AppErrorKind::Unimplemented,
        AppErrorKind::Unavailable,
    ];

    /// Its name in snake case, as serialized: `"not_found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppErrorKind::InvalidArgument => "invalid_argument",
            AppErrorKind::FailedPrecondition => "failed_precondition",
            AppErrorKind::Unauthenticated => "unauthenticated",
            AppErrorKind::PermissionDenied => "permission_denied",
            AppErrorKind::NotFound => "not_found",
            AppErrorKind::AlreadyExists => "already_exists",
            AppErrorKind::Aborted => "aborted",
            AppErrorKind::ResourceExhausted => "resource_exhausted",
            AppErrorKind::Internal => "internal",
            AppErrorKind::Unimplemented => "unimplemented",
            AppErrorKind::Unavailable => "unavailable",
        }
    }

    /// The kind named `name` ([`as_str`](AppErrorKind::as_str)'s form).
    fn from_name(name: &str) -> Option<AppErrorKind> {
        AppErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the caller must change its request (or its credentials) for it to succeed:
    /// the kinds HTTP answers with a `4xx`. The others are the service's failures.
    pub fn is_caller_error(self) -> bool {
        !matches!(
            self,
            AppErrorKind::Internal | AppErrorKind::Unimplemented | AppErrorKind::Unavailable
        )
    }
}

impl fmt::Display for AppErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Serde by hand: the library does not take on `serde_derive` (and its `syn`) for two types.

const FIELDS: &[&str] = &["kind", "code", "message"];

impl Serialize for AppErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AppErrorKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AppErrorKind, D::Error> {
        let name = String::deserialize(d)?;
        AppErrorKind::from_name(&name).ok_or_else(|| {
            de::Error::custom(format_args!("unknown application error kind `{name}`"))
        })
    }
}

impl Serialize for AppError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("AppError", 3)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("code", &self.code)?;
        st.serialize_field("message", &self.message)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for AppError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AppError, D::Error> {
        d.deserialize_struct("AppError", FIELDS, AppErrorVisitor)
    }
}

struct AppErrorVisitor;

impl<'de> Visitor<'de> for AppErrorVisitor {
    type Value = AppError;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an application error: kind, code and message")
    }

    /// A map (JSON): every field required, other keys ignored (so a newer sender may add
    /// fields).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AppError, A::Error> {
        let (mut kind, mut code, mut message) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<AppErrorKind>()?),
                "code" => code = Some(map.next_value::<String>()?),
                "message" => message = Some(map.next_value::<String>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(AppError {
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            code: code.ok_or_else(|| de::Error::missing_field("code"))?,
            message: message.ok_or_else(|| de::Error::missing_field("message"))?,
        })
    }

    /// A sequence (formats without field names): the three fields in order.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AppError, A::Error> {
        let kind = seq
            .next_element::<AppErrorKind>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let code = seq
            .next_element::<String>()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let message = seq
            .next_element::<String>()?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        Ok(AppError {
            kind,
            code,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{AppError, AppErrorKind};

    #[test]
    fn round_trips_through_json() {
        let e = AppError::new(AppErrorKind::NotFound, "no_such_key", "no key `a`");
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"not_found","code":"no_such_key","message":"no key `a`"}"#
        );
        assert_eq!(serde_json::from_str::<AppError>(&text).unwrap(), e);

        let plain = AppError::new(AppErrorKind::ResourceExhausted, "quota", "");
        let back: AppError = serde_json::from_value(serde_json::to_value(&plain).unwrap()).unwrap();
        assert_eq!(back, plain);
        assert_eq!(back.to_string(), "quota");
        // A sequence, as a format without field names gives it.
        let seq: AppError = serde_json::from_str(r#"["aborted","a","b"]"#).unwrap();
        assert_eq!(seq, AppError::new(AppErrorKind::Aborted, "a", "b"));
    }

    #[test]
    fn every_kind_has_one_name_that_parses_back() {
        let mut names = std::collections::HashSet::new();
        for k in AppErrorKind::ALL {
            assert!(names.insert(k.as_str()), "{k:?} shares its name");
            assert_eq!(AppErrorKind::from_name(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
            let json = serde_json::to_value(k).unwrap();
            assert_eq!(json, serde_json::json!(k.as_str()));
            assert_eq!(serde_json::from_value::<AppErrorKind>(json).unwrap(), k);
        }
        assert_eq!(AppErrorKind::from_name("NotFound"), None);
    }

    #[test]
    fn reading_ignores_unknown_fields_and_refuses_missing_or_unknown_ones() {
        // A field from a newer sender: fine.
        let e: AppError =
            serde_json::from_str(r#"{"message":"m","code":"c","kind":"internal","retry_in":3}"#)
                .unwrap();
        assert_eq!(e, AppError::new(AppErrorKind::Internal, "c", "m"));
        // No code, no kind, or a kind this version does not know: refused.
        let no_code =
            serde_json::from_str::<AppError>(r#"{"kind":"internal","message":"m"}"#).unwrap_err();
        assert!(
            no_code.to_string().contains("missing field `code`"),
            "{no_code}"
        );
        let no_kind =
            serde_json::from_str::<AppError>(r#"{"code":"c","message":"m"}"#).unwrap_err();
        assert!(
            no_kind.to_string().contains("missing field `kind`"),
            "{no_kind}"
        );
        let unknown =
            serde_json::from_str::<AppError>(r#"{"kind":"teapot","code":"c","message":"m"}"#)
                .unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("unknown application error kind `teapot`"),
            "{unknown}"
        );
    }
}
