//! The HTTP/1.1 wire: request heads (parsed by `httparse`) and responses, and the one JSON
//! shape every error response has.

use std::io::Write as _;

use super::http_names;
use super::syntax::{is_field_value, is_token};
use crate::types::{AppErrorKind, Error, Message, Payload};

/// The most headers a request may have; more is `431`.
pub(crate) const MAX_HEADERS: usize = 64;

/// A parsed request head, owning what the rest of the request's life needs.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query without its `?`, empty when there is none.
    pub(crate) query: String,
    /// The connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// HTTP/1.0: keep-alive only when asked, and then said in the response.
    pub(crate) http10: bool,
    pub(crate) content_length: usize,
    pub(crate) expect_continue: bool,
    /// The media type names JSON (or no body type was given).
    pub(crate) json_body: bool,
    /// Headers chosen to be forwarded into the message, lower-cased names.
    pub(crate) forwarded: Vec<(String, String)>,
}

/// Why a head could not be used; each maps to one response, after which the connection
/// closes (the rest of its bytes cannot be trusted).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP: `400`.
    Malformed(&'static str),
    /// Too many headers: `431`.
    TooManyHeaders,
    /// A transfer coding other than identity: `501`.
    UnsupportedTransferEncoding,
    /// A version other than 1.0 / 1.1: `505`.
    Version,
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read more.
pub(crate) fn parse_head(
    buf: &[u8],
    forward: &[String],
) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => {
            return Err(HeadError::Malformed(
                "the request line or a header is malformed",
            ))
        }
    };
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "the request target must be an absolute path",
        ));
    }
    if target.contains('#') {
        // RFC 9112 §3.2: origin-form is a path and a query; a fragment is never sent.
        return Err(HeadError::Malformed(
            "the request target must not have a fragment ('#')",
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let http11 = match req.version {
        Some(1) => true,
        Some(0) => false,
        _ => return Err(HeadError::Version),
    };
    let mut keep_alive = http11;
    let mut content_length: Option<usize> = None;
    let mut expect_continue = false;
    let mut json_body = true;
    let mut hosts = 0;
    let mut transfer_encoding = false;
    let mut forwarded = Vec::new();
    for h in req.headers.iter() {
        let name = h.name;
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed("a header is not UTF-8"))?;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6: digits only (`+3`, `-0`, `3, 3` and spaces inside are refused:
            // two parsers that read them differently frame the body differently).
            let digits = value.trim_matches([' ', '\t']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Malformed("Content-Length is not a number"));
            }
            let n: usize = digits
                .parse()
                .map_err(|_| HeadError::Malformed("Content-Length is too large"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("Content-Length is given twice"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.trim().eq_ignore_ascii_case("identity") {
                return Err(HeadError::UnsupportedTransferEncoding);
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue = value.trim().eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value.split(';').next().unwrap_or("").trim();
            json_body = media.eq_ignore_ascii_case("application/json")
                || media.to_ascii_lowercase().ends_with("+json");
        }
        if forward.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            forwarded.push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
    if http11 && hosts != 1 {
        return Err(HeadError::Malformed(if hosts == 0 {
            "an HTTP/1.1 request must have a Host header"
        } else {
            "the Host header is given more than once"
        }));
    }
    if hosts > 1 {
        return Err(HeadError::Malformed(
            "the Host header is given more than once",
        ));
    }
    // RFC 9112 §6.1: both framings at once is how requests are smuggled.
    if transfer_encoding && content_length.is_some() {
        return Err(HeadError::Malformed(
            "Content-Length and Transfer-Encoding are both given",
        ));
    }
    Ok(Some((
        Head {
            method,
            path,
            query,
            keep_alive,
            http10: !http11,
            content_length: content_length.unwrap_or(0),
            expect_continue: expect_continue && http11,
            json_body,
            forwarded,
        },
        used,
    )))
}

/// A response about to be written.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: Some(content_type.to_owned()),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The one error shape: `{"error":{"status":404,"code":"not_found","message":"..."}}`.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({
            "error": { "status": status, "code": code, "message": message }
        });
        Response::new(status, "application/json", body.to_string())
    }

    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Appends the response to `out`, framed as `frame` says.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>, frame: Frame) {
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nServer: reactorium\r\n",
            self.status,
            reason(self.status),
        );
        // RFC 9110 §8.6: no Content-Length on a 204 or 304 (they have no body).
        let bodyless = matches!(self.status, 204 | 304);
        if !bodyless {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        if let Some(ct) = &self.content_type {
            let _ = write!(out, "Content-Type: {ct}\r\n");
        }
        for (n, v) in &self.headers {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        if frame.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if frame.keep_alive {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        // RFC 9110 §9.3.2: a response to HEAD has the headers a GET would have (its
        // Content-Length included) and never a body.
        if !bodyless && !frame.head {
            out.extend_from_slice(&self.body);
        }
    }
}

/// How a response is framed on its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The connection ends after it: `Connection: close`.
    pub(crate) close: bool,
    /// It stays open for an HTTP/1.0 client that asked: `Connection: keep-alive` (HTTP/1.0
    /// closes unless told otherwise).
    pub(crate) keep_alive: bool,
    /// The answer to a HEAD request: no body.
    pub(crate) head: bool,
}

/// The response for an unusable head.
pub(crate) fn head_error(e: &HeadError) -> Response {
    match e {
        HeadError::Malformed(why) => Response::error(400, "bad_request", why),
        HeadError::TooManyHeaders => Response::error(
            431,
            "headers_too_large",
            &format!("more than {MAX_HEADERS} headers"),
        ),
        HeadError::UnsupportedTransferEncoding => Response::error(
            501,
            "unsupported_transfer_encoding",
            "only Content-Length request bodies are supported (no chunked transfer coding)",
        ),
        HeadError::Version => Response::error(
            505,
            "http_version_not_supported",
            "HTTP/1.0 and HTTP/1.1 are supported",
        ),
    }
}

/// The response for a head over `limit` bytes.
pub(crate) fn head_too_large(limit: usize) -> Response {
    Response::error(
        431,
        "headers_too_large",
        &format!("the request head is over {limit} bytes"),
    )
}

/// The response for a request the bus refused, or whose outcome was an error. `retry_after`
/// is the `Retry-After` seconds on `503`s caused by backpressure.
pub(crate) fn bus_error(e: &Error, retry_after: u64) -> Response {
    let text = e.to_string();
    match e {
        Error::Backpressure { .. } => Response::error(503, "backpressure", &text)
            .with_header("Retry-After", retry_after.to_string()),
        Error::Stopped { .. } => Response::error(503, "stopped", &text)
            .with_header("Retry-After", retry_after.to_string()),
        Error::NoSubscriber { .. } => Response::error(502, "no_subscriber", &text),
        Error::Timeout { .. } => Response::error(504, "timeout", &text),
        Error::NoReply { .. } => Response::error(502, "no_reply", &text),
        Error::Application(app) => {
            Response::error(app_status(app.kind()), app.code(), app.message())
        }
        _ => Response::error(500, "internal", &text),
    }
}

/// The status of an application error's kind: gRPC's published mapping of its status codes
/// to HTTP (the table on `AppErrorKind`). A new kind must be placed here: the match has no
/// wildcard inside the crate.
pub(crate) fn app_status(kind: AppErrorKind) -> u16 {
    match kind {
        AppErrorKind::InvalidArgument | AppErrorKind::FailedPrecondition => 400,
        AppErrorKind::Unauthenticated => 401,
        AppErrorKind::PermissionDenied => 403,
        AppErrorKind::NotFound => 404,
        AppErrorKind::AlreadyExists | AppErrorKind::Aborted => 409,
        AppErrorKind::ResourceExhausted => 429,
        AppErrorKind::Internal => 500,
        AppErrorKind::Unimplemented => 501,
        AppErrorKind::Unavailable => 503,
    }
}

/// The response for a component's reply message.
pub(crate) fn from_reply(reply: &Message) -> Response {
    let mut status = 200;
    let mut headers = Vec::new();
    let mut content_type = None;
    for (n, v) in reply.headers() {
        if n == http_names::STATUS {
            match v.trim().parse::<u16>() {
                Ok(s) if (200..=599).contains(&s) => status = s,
                _ => {
                    return Response::error(
                        500,
                        "bad_reply",
                        &format!("the component's reply has an invalid http.status `{v}`"),
                    )
                }
            }
        } else if let Some(name) = n.strip_prefix(http_names::HEADER_PREFIX) {
            let valid_name = !name.is_empty() && name.bytes().all(is_token);
            if !valid_name || !is_field_value(v) {
                return Response::error(
                    500,
                    "bad_reply",
                    &format!("the component's reply has an invalid header `{name}`"),
                );
            }
            let lower = name.to_ascii_lowercase();
            if lower == "content-type" {
                content_type = Some(v.clone());
            } else if !matches!(
                lower.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            ) {
                headers.push((name.to_owned(), v.clone()));
            }
        }
    }
    let (default_type, body) = match reply.payload() {
        Payload::Empty => (None, Vec::new()),
        Payload::Json(v) => (
            Some("application/json"),
            serde_json::to_vec(&**v).unwrap_or_default(),
        ),
        Payload::Bytes(b) => (Some("application/octet-stream"), b.to_vec()),
        _ => {
            return Response::error(
                500,
                "bad_reply",
                "the component replied with an in-process value; reply with JSON or bytes",
            )
        }
    };
    Response {
        status,
        content_type: content_type.or(default_type.map(str::to_owned)),
        headers,
        body,
    }
}

/// The reason phrase of a status code.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_with_body_and_forwarded_headers() {
        let raw = b"POST /orders?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\nX-Tenant: acme\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{\"a\":1}";
        let (h, used) = parse_head(raw, &["x-tenant".into()]).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("POST", "/orders", "x=1")
        );
        assert!(h.keep_alive && h.json_body);
        assert_eq!(h.content_length, 7);
        assert_eq!(
            h.forwarded,
            vec![("x-tenant".to_owned(), "acme".to_owned())]
        );
        assert_eq!(&raw[used..], b"{\"a\":1}");
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost:", &[])
            .unwrap()
            .is_none());
    }

    #[test]
    fn connection_semantics_per_version() {
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", &[]).unwrap().unwrap();
        assert!(!h.keep_alive);
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &[])
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let (h, _) = parse_head(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            &[],
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn bad_heads_are_classified() {
        let e = |raw: &[u8]| parse_head(raw, &[]).unwrap_err();
        assert!(matches!(e(b"NOT HTTP\r\n\r\n"), HeadError::Malformed(_)));
        assert!(matches!(
            e(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert!(matches!(e(raw), HeadError::Malformed(_)), "{raw:?}");
        }
        assert_eq!(
            e(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::UnsupportedTransferEncoding
        );
        let many: Vec<u8> = std::iter::once(b"GET / HTTP/1.1\r\n".to_vec())
            .chain((0..MAX_HEADERS + 1).map(|i| format!("X-{i}: v\r\n").into_bytes()))
            .chain(std::iter::once(b"\r\n".to_vec()))
            .flatten()
            .collect();
        assert_eq!(e(&many), HeadError::TooManyHeaders);
    }

    /// Issue 12, item 4: what two parsers could frame differently is refused.
    #[test]
    fn smuggling_shapes_are_refused() {
        let e = |raw: &[u8]| parse_head(raw, &[]).map(|h| h.map(|(h, _)| h.content_length));
        for (raw, why) in [
            (&b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n"[..], "a sign"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -0\r\n\r\n", "a sign"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", "a list"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", "hex"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 3\r\n\r\n", "a space"),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", "empty"),
            (b"GET / HTTP/1.1\r\n\r\n", "no Host"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two Hosts"),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "two Hosts, 1.0"),
            (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", "a fragment"),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: identity\r\n\r\n",
                "both framings",
            ),
        ] {
            assert!(
                matches!(e(raw), Err(HeadError::Malformed(_))),
                "{why}: {:?}",
                e(raw)
            );
        }
        // What stays accepted: digits with surrounding spaces, a repeated equal value, no
        // Host in HTTP/1.0.
        assert_eq!(
            e(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  3 \r\nContent-Length: 3\r\n\r\n"),
            Ok(Some(3))
        );
        assert_eq!(e(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some(0)));
    }

    #[test]
    fn field_values_refuse_control_bytes() {
        assert!(is_field_value("text/plain; charset=utf-8\tx é"));
        for bad in ["a\rb", "a\nb", "a\0b", "a\x01b", "a\x7fb"] {
            assert!(!is_field_value(bad), "{bad:?}");
            let r = from_reply(&Message::empty().with_header("http.header.X", bad));
            assert_eq!(r.status, 500, "{bad:?}");
        }
    }

    #[test]
    fn head_responses_keep_the_length_and_drop_the_body() {
        let mut out = Vec::new();
        let head = Frame {
            head: true,
            ..Frame::default()
        };
        Response::new(200, "text/plain", "hello").write_to(&mut out, head);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
        let mut out = Vec::new();
        let kept = Frame {
            keep_alive: true,
            ..Frame::default()
        };
        Response::new(200, "text/plain", "hi").write_to(&mut out, kept);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Connection: keep-alive\r\n"));
    }

    #[test]
    fn replies_become_responses() {
        let r = from_reply(
            &Message::json(serde_json::json!({"id": 1}))
                .with_header("http.status", "201")
                .with_header("http.header.Location", "/orders/1"),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            r.headers,
            vec![("Location".to_owned(), "/orders/1".to_owned())]
        );
        assert_eq!(r.body, br#"{"id":1}"#);
        assert_eq!(from_reply(&Message::typed(1u8)).status, 500);
        assert_eq!(
            from_reply(&Message::empty().with_header("http.status", "99")).status,
            500
        );
        assert_eq!(
            from_reply(&Message::empty().with_header("http.header.X", "a\r\nb")).status,
            500
        );
    }

    /// Issue 12, item 13: an application's error is answered with its kind's status, its
    /// code and its message, in the one error shape; a caller's error is a 4xx, the service's
    /// a 5xx; the reason phrase is known.
    #[test]
    fn application_errors_take_their_kind_status_code_and_message() {
        use crate::types::AppError;
        let table = [
            (AppErrorKind::InvalidArgument, 400),
            (AppErrorKind::FailedPrecondition, 400),
            (AppErrorKind::Unauthenticated, 401),
            (AppErrorKind::PermissionDenied, 403),
            (AppErrorKind::NotFound, 404),
            (AppErrorKind::AlreadyExists, 409),
            (AppErrorKind::Aborted, 409),
            (AppErrorKind::ResourceExhausted, 429),
            (AppErrorKind::Internal, 500),
            (AppErrorKind::Unimplemented, 501),
            (AppErrorKind::Unavailable, 503),
        ];
        assert_eq!(
            table.len(),
            AppErrorKind::ALL.len(),
            "every kind is checked"
        );
        for (kind, status) in table {
            let e = Error::Application(AppError::new(kind, "no_such_key", "no key `a`"));
            let r = bus_error(&e, 1);
            assert_eq!(r.status, status, "{kind:?}");
            assert_eq!(kind.is_caller_error(), status < 500, "{kind:?}");
            assert_ne!(reason(status), "Other", "{status}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"error": {"status": status, "code": "no_such_key", "message": "no key `a`"}})
            );
            assert!(r.headers.is_empty(), "no Retry-After: {:?}", r.headers);
        }
    }

    #[test]
    fn responses_serialize_with_length_and_close() {
        let mut out = Vec::new();
        let close = Frame {
            close: true,
            ..Frame::default()
        };
        Response::error(404, "not_found", "no route").write_to(&mut out, close);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["status"], 404);
    }
}
