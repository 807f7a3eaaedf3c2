//! What RFC 9110 and 9112 ask of a server, as a client sees it (issue 12, items 3 to 5):
//! HEAD answered without a body, request framing that two parsers could read differently
//! refused, control bytes kept out of response headers, HTTP/1.0 keep-alive said in the
//! response, fragments refused, literal path segments matched once percent-decoded.

use anyhow::Result;
use reactorium::{BoxError, Component, Context, HttpServer, Message, Routes, Runtime};

use crate::support::http::{assert_error, config, exchange, serve, Client, Echo};
use crate::support::on;

fn server() -> Result<(Runtime, HttpServer)> {
    let routes = Routes::new()
        .route("GET", "/items/{id}", "echo.get")?
        .route("POST", "/items", "echo.create")?
        .route("GET", "/reply/{value}", "reply.get")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?
        .health("/health")?;
    serve(config(), routes, |rt| {
        rt.deploy_with("echo", on("echo.>"), || Echo)?;
        rt.deploy_with("reply", on("reply.get"), || HeaderReply)?;
        Ok(())
    })
}

/// Replies with the response header `X-Value` set to the percent-decoded `value` parameter.
struct HeaderReply;

impl Component for HeaderReply {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let v = msg.header("http.param.value").unwrap_or("").to_owned();
        ctx.reply(
            &mut msg,
            Message::empty().with_header("http.header.X-Value", v),
        )?;
        Ok(())
    }
}

#[test]
fn head_is_answered_by_get_routes_without_a_body_and_keep_alive_goes_on() -> Result<()> {
    // Issue 12, item 3: the body of a HEAD response landed where the client expected the
    // next response.
    let (_rt, server) = server()?;
    let mut c = Client::connect(server.local_addr())?;
    for path in ["/hello", "/items/7", "/health", "/nowhere"] {
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        // The raw client reads a body by Content-Length, so read the head alone here: the
        // next response must begin right after it.
        let head = read_head(&mut c)?;
        assert!(head.contains("Content-Length: "), "{path}: {head}");
        let got = c.get("/hello")?;
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, &b"hello"[..]),
            "{path}"
        );
    }
    // A GET route's method is what the component sees.
    c.send(b"HEAD /items/7 HTTP/1.1\r\nHost: t\r\n\r\n")?;
    let head = read_head(&mut c)?;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let r = exchange(
        server.local_addr(),
        b"POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )?;
    assert_eq!(r.header("allow"), Some("GET, HEAD"), "{r:?}");
    Ok(())
}

/// Reads a response head (up to the blank line) and nothing more.
fn read_head(c: &mut Client) -> Result<String> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let mut s = c.stream();
        anyhow::ensure!(s.read(&mut byte)? == 1, "closed in a head: {head:?}");
        head.push(byte[0]);
    }
    Ok(String::from_utf8(head)?)
}

#[test]
fn framing_two_parsers_could_read_differently_is_400() -> Result<()> {
    // Issue 12, item 4: `Content-Length: +3` was accepted, and so were a missing or a
    // repeated Host on HTTP/1.1.
    let (_rt, server) = server()?;
    let addr = server.local_addr();
    for (what, raw) in [
        ("+3", &b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\n{}x"[..]),
        ("a list", b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 2\r\n\r\n{}"),
        ("no Host", b"GET /hello HTTP/1.1\r\n\r\n"),
        ("two Hosts", b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("a fragment", b"GET /hello#x HTTP/1.1\r\nHost: t\r\n\r\n"),
        (
            "both framings",
            b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nTransfer-Encoding: identity\r\n\r\n{}",
        ),
    ] {
        let mut c = Client::connect(addr)?;
        let r = c.request(raw).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        assert_error(&r, 400, "bad_request");
        assert!(r.closes(), "{what}: the rest of its bytes cannot be trusted");
    }
    // HTTP/1.0 needs no Host.
    let r = exchange(addr, b"GET /hello HTTP/1.0\r\n\r\n")?;
    assert_eq!(r.status, 200);
    Ok(())
}

#[test]
fn a_reply_header_with_a_control_byte_is_refused() -> Result<()> {
    // Issue 12, item 4: a NUL (or any control byte but tab) in a reply header was written.
    let (_rt, server) = server()?;
    let addr = server.local_addr();
    for bad in ["%00", "a%01b", "%7F", "a%0Db", "a%0Ab"] {
        let r = crate::support::http::get(addr, &format!("/reply/{bad}"))?;
        assert_error(&r, 500, "bad_reply");
    }
    let r = crate::support::http::get(addr, "/reply/fine%09too")?;
    assert_eq!(
        (r.status, r.header("x-value")),
        (200, Some("fine\ttoo")),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn http_1_0_keep_alive_is_said_in_the_response() -> Result<()> {
    // Issue 12, item 5: HTTP/1.0 closes unless the response says keep-alive.
    let (_rt, server) = server()?;
    let mut c = Client::connect(server.local_addr())?;
    for _ in 0..3 {
        let r = c.request(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?;
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
    }
    // HTTP/1.1 needs none.
    let r = c.request(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")?;
    assert_eq!((r.status, r.header("connection")), (200, None), "{r:?}");
    Ok(())
}

#[test]
fn literal_segments_match_once_percent_decoded() -> Result<()> {
    // Issue 12, item 5: `/he%6Clo` was 404 for the route `/hello`. RFC 3986 makes a
    // percent-encoded unreserved character equivalent to the character.
    let (_rt, server) = server()?;
    let addr = server.local_addr();
    let r = crate::support::http::get(addr, "/he%6Clo")?;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    let r = crate::support::http::get(addr, "/it%65ms/7")?;
    assert_eq!(r.json()["headers"]["http.param.id"], "7");
    // An escaped `/` stays inside its segment.
    assert_error(
        &crate::support::http::get(addr, "/items%2F7")?,
        404,
        "not_found",
    );
    Ok(())
}
