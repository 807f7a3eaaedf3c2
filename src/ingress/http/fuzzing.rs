//! Entry points for fuzzing the HTTP front-end's parsing and response writing: not part of
//! the API (hidden from the docs, no semver promise). Each takes arbitrary input, runs the
//! front-end's own code on it, and panics when an invariant does not hold, so a fuzzer (the
//! `fuzz/` package, `cargo fuzz`) or the deterministic generator in `tests/http/fuzz.rs`
//! finds the input that breaks it.
//!
//! Why a hidden public module rather than `#[cfg(fuzzing)]`: the same entry points serve
//! the coverage-guided target (built with `--cfg fuzzing`) and the bounded run in the normal
//! test suite (built without it), and code that only exists under a flag CI does not set
//! would rot unseen.

use super::route::{Matched, Routes};
use super::wire::{self, Frame, HeadError, Response};
use crate::types::Message;

/// Parses `buf` as a request head and checks what must hold of any answer: a whole head is
/// a prefix of `buf` ending in a blank line, parsing that prefix alone gives the same head,
/// its target is an absolute path without a fragment, an HTTP/1.1 head has one `Host`; a
/// head found incomplete has no complete prefix; whatever the outcome, the response the
/// front-end would write (an error's, or a route's 404/405/400) is a well-formed HTTP/1.1
/// response that `httparse` reads back, never a `500`. Returns the head's length when
/// `buf` holds a whole one.
///
/// # Panics
///
/// When an invariant does not hold (that is the point).
pub fn http_head(buf: &[u8]) -> Option<usize> {
    let forward = ["x-forwarded".to_owned()];
    match wire::parse_head(buf, &forward) {
        Ok(Some((head, used))) => {
            assert!(used <= buf.len());
            let prefix = &buf[..used];
            assert!(
                prefix.ends_with(b"\n\n") || prefix.ends_with(b"\n\r\n"),
                "a head ends with a blank line: {prefix:?}"
            );
            let again = wire::parse_head(prefix, &forward)
                .expect("the same head")
                .expect("whole");
            assert_eq!(again.1, used);
            assert_eq!(
                (&again.0.method, &again.0.path, again.0.content_length),
                (&head.method, &head.path, head.content_length)
            );
            assert!(head.path.starts_with('/') && !head.path.contains('#'));
            assert!(!head.method.is_empty());
            let routes = table();
            let r = match routes.find(&head.method, &head.path) {
                Matched::Route { .. } => Response::new(200, "text/plain", "ok"),
                Matched::WrongMethod(allowed) => {
                    assert!(!allowed.is_empty());
                    Response::error(405, "method_not_allowed", "x")
                        .with_header("Allow", allowed.join(", "))
                }
                Matched::NotFound => Response::error(404, "not_found", "x"),
                Matched::BadPath => Response::error(400, "bad_request", "x"),
            };
            check_response(&r, head.method == "HEAD");
            Some(used)
        }
        Ok(None) => {
            let half = &buf[..buf.len() / 2];
            assert!(
                !matches!(wire::parse_head(half, &forward), Ok(Some(_))),
                "a prefix of an incomplete head is complete"
            );
            None
        }
        Err(e) => {
            let r = wire::head_error(&e);
            assert!(matches!(r.status, 400 | 431 | 501 | 505), "{e:?}");
            if let HeadError::Malformed(why) = e {
                assert!(!why.is_empty());
            }
            check_response(&r, false);
            None
        }
    }
}

/// Builds a reply with the response header `name: value` and status `status`, turns it into
/// a response as the front-end does, and checks the response it would write: either the
/// reply is refused (`500 bad_reply`) or the written response reads back with that header
/// and value exactly, and nothing else was smuggled in.
///
/// # Panics
///
/// When an invariant does not hold.
pub fn http_reply_header(name: &str, value: &str, status: &str) {
    let reply = Message::empty()
        .with_header(format!("http.header.{name}"), value)
        .with_header("http.status", status);
    let r = wire::from_reply(&reply);
    if r.status == 500 {
        return; // refused: the one safe answer to a header that cannot be written
    }
    let mut out = Vec::new();
    r.write_to(&mut out, Frame::default());
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let done = parsed.parse(&out).expect("a response that reads back");
    assert!(done.is_complete(), "{out:?}");
    assert_eq!(parsed.code, Some(r.status));
    let lower = name.to_ascii_lowercase();
    if !matches!(
        lower.as_str(),
        "content-length" | "connection" | "transfer-encoding" | "content-type"
    ) {
        let found: Vec<_> = parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {out:?}");
        // httparse trims the value's surrounding whitespace, as a client would.
        assert_eq!(
            found[0].value,
            value.trim_matches([' ', '\t']).as_bytes(),
            "{out:?}"
        );
    }
    // Exactly the headers the front-end writes, and the one asked.
    assert!(parsed.headers.len() <= 5, "{out:?}");
}

fn table() -> Routes {
    Routes::new()
        .route("GET", "/items/{id}", "a.get")
        .and_then(|r| r.route("POST", "/items", "a.post"))
        .and_then(|r| r.route("DELETE", "/items/{id}", "a.delete"))
        .and_then(|r| r.fixed("GET", "/hello", 200, "text/plain", "hello"))
        .and_then(|r| r.route("GET", "/users/{user}/orders/{order}", "a.orders"))
        .expect("a valid table")
}

/// The written response reads back with `httparse`: a status line, the headers, a
/// `Content-Length` that is the body's length (none for a HEAD).
fn check_response(r: &Response, head: bool) {
    assert_ne!(r.status, 500);
    let mut out = Vec::new();
    r.write_to(
        &mut out,
        Frame {
            head,
            ..Frame::default()
        },
    );
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(used)) = parsed.parse(&out) else {
        panic!("a response that reads back: {out:?}");
    };
    let length = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
        .expect("a Content-Length");
    let body = out.len() - used;
    assert_eq!(body, if head { 0 } else { length }, "{out:?}");
}
