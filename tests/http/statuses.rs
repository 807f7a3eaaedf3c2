//! Every status the front-end gives, each from the cause its table (on `HttpServer::start`)
//! names, and the one error shape on each error.

use std::time::Duration;

use anyhow::Result;
use crossbeam::channel;
use reactorium::{
    http_names, AppError, AppErrorKind, BoxError, Component, ComponentOptions, Context, HttpConfig,
    HttpServer, Message, Routes, Runtime,
};
use serde_json::json;

use crate::support::http::{
    assert_error, config, exchange, get, post, serve, with_status, Blocked, Client, Echo,
};
use crate::support::{on, wait_until, Forwarder, Probe, SOON};

/// A runtime whose "echo" component answers `echo.>` with [`echo_of`] the request, on routes
/// with and without parameters.
fn echo_server(config: HttpConfig) -> Result<(Runtime, HttpServer)> {
    let routes = Routes::new()
        .route("POST", "/items", "echo.create")?
        .route("GET", "/items/{id}", "echo.get")?
        .route("DELETE", "/items/{id}", "echo.delete")?
        .route("GET", "/users/{user}/orders/{order}", "echo.orders")?;
    serve(config, routes, |rt| {
        rt.deploy_with("echo", on("echo.>"), || Echo)?;
        Ok(())
    })
}

#[test]
fn json_body_reaches_the_component_and_its_json_reply_comes_back() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let sent = json!({"name": "widget", "tags": ["a", "b"], "n": 3});
    let raw = post(
        "/items",
        Some("application/json"),
        sent.to_string().as_bytes(),
    );
    let r = exchange(server.local_addr(), &raw)?;
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v["body"],
        json!({ "json": sent }),
        "parsed into the payload"
    );
    assert_eq!(v["headers"][http_names::METHOD], "POST");
    assert_eq!(v["headers"][http_names::PATH], "/items");
    Ok(())
}

#[test]
fn a_body_that_is_not_json_reaches_the_component_as_bytes() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let raw = post("/items", Some("text/plain"), b"not { json");
    let r = exchange(server.local_addr(), &raw)?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], json!({ "bytes": "not { json" }));
    Ok(())
}

/// Replies `201` with a `Location`, a custom header and its own content type.
struct Create;

impl Component for Create {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let reply = with_status(Message::bytes(&b"made"[..]), 201)
            .with_header("http.header.Location", "/items/7")
            .with_header("http.header.X-Trace", "t-1")
            .with_header("http.header.Content-Type", "text/plain; charset=utf-8");
        ctx.reply(&mut msg, reply)?;
        Ok(())
    }
}

#[test]
fn reply_status_and_headers_shape_the_response() -> Result<()> {
    let routes = Routes::new().route("POST", "/items", "items.create")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("create", on("items.create"), || Create)?;
        Ok(())
    })?;
    let r = exchange(
        server.local_addr(),
        &post("/items", Some("application/json"), b"{}"),
    )?;
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"));
    assert_eq!(r.header("location"), Some("/items/7"));
    assert_eq!(r.header("x-trace"), Some("t-1"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, b"made");
    Ok(())
}

/// Replies `204` (with a body, which must not be sent).
struct NoContent;

impl Component for NoContent {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.reply(&mut msg, with_status(Message::json(json!("ignored")), 204))?;
        Ok(())
    }
}

#[test]
fn a_204_reply_has_no_body_and_keeps_the_connection() -> Result<()> {
    let routes = Routes::new()
        .route("DELETE", "/items/{id}", "items.delete")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("delete", on("items.delete"), || NoContent)?;
        Ok(())
    })?;
    let mut c = Client::connect(server.local_addr())?;
    let r = c.request(b"DELETE /items/1 HTTP/1.1\r\nHost: t\r\n\r\n")?;
    assert_eq!((r.status, r.reason.as_str()), (204, "No Content"));
    assert_eq!(r.header("content-length"), None);
    // Had a body been sent, it would be read as the next response's start.
    assert_eq!(c.get("/hello")?.body, b"hello");
    Ok(())
}

#[test]
fn route_parameters_are_percent_decoded_and_the_query_is_passed_on() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let addr = server.local_addr();

    let v = get(addr, "/items/a%20b%2Fc%C3%A9?x=1&y=two%20words")?.json();
    assert_eq!(v["headers"]["http.param.id"], "a b/cé");
    assert_eq!(v["headers"][http_names::QUERY], "x=1&y=two%20words");
    assert_eq!(v["headers"][http_names::PATH], "/items/a%20b%2Fc%C3%A9");

    let v = get(addr, "/users/u1/orders/o%2B2")?.json();
    assert_eq!(v["headers"]["http.param.user"], "u1");
    assert_eq!(v["headers"]["http.param.order"], "o+2");
    assert!(
        v["headers"].get(http_names::QUERY).is_none(),
        "no query, no header: {v}"
    );

    let r = get(addr, "/items/%zz")?;
    assert_error(&r, 400, "bad_request");
    Ok(())
}

#[test]
fn forwarded_headers_reach_the_component_lower_cased_and_others_do_not() -> Result<()> {
    let (_rt, server) = echo_server(config().forward_header("X-Request-Id"))?;
    let r = exchange(
        server.local_addr(),
        b"GET /items/1 HTTP/1.1\r\nHost: t\r\nX-REQUEST-ID: abc-123\r\nX-Other: secret\r\n\r\n",
    )?;
    let headers = &r.json()["headers"];
    assert_eq!(headers["http.header.x-request-id"], "abc-123");
    let names: Vec<&String> = headers.as_object().unwrap().keys().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("other") || n.contains("host")),
        "only the named header is forwarded: {names:?}"
    );
    Ok(())
}

#[test]
fn unknown_path_is_404() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    assert_error(&get(server.local_addr(), "/nowhere")?, 404, "not_found");
    assert_error(
        &get(server.local_addr(), "/items/1/more")?,
        404,
        "not_found",
    );
    Ok(())
}

#[test]
fn wrong_method_is_405_with_allow() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let r = exchange(
        server.local_addr(),
        b"PUT /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )?;
    assert_error(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE"));
    Ok(())
}

#[test]
fn malformed_json_is_400() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    for content_type in [
        Some("application/json"),
        Some("application/vnd.x+json"),
        None,
    ] {
        let r = exchange(
            server.local_addr(),
            &post("/items", content_type, b"{\"a\":"),
        )?;
        assert_error(&r, 400, "malformed_json");
    }
    Ok(())
}

#[test]
fn body_over_the_limit_is_413_before_it_is_read() -> Result<()> {
    let (_rt, server) = echo_server(config().max_body_bytes(1024))?;
    let mut c = Client::connect(server.local_addr())?;
    // Only the head: the answer must not wait for the body.
    let r = c.request(
        b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1025\r\n\r\n",
    )?;
    assert_error(&r, 413, "body_too_large");
    assert!(r.closes());
    c.assert_closed_silently();

    // At the limit, it is read.
    let body = format!("\"{}\"", "x".repeat(1022));
    let r = exchange(
        server.local_addr(),
        &post("/items", Some("application/json"), body.as_bytes()),
    )?;
    assert_eq!(r.status, 200);
    Ok(())
}

#[test]
fn body_over_the_limit_sent_whole_still_gets_413() -> Result<()> {
    // A client that writes its whole body before it reads (most do, without `Expect`).
    let (_rt, server) = echo_server(config().max_body_bytes(1024))?;
    // More than the socket buffers hold: the client is still writing when the answer comes.
    let body = vec![b'x'; 16 * 1024 * 1024];
    let err = ureq::post(&format!("http://{}/items", server.local_addr()))
        .set("Content-Type", "text/plain")
        .send_bytes(&body)
        .expect_err("a 413 is an error status to ureq");
    match err {
        ureq::Error::Status(status, r) => {
            assert_eq!(status, 413);
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        ureq::Error::Transport(t) => {
            panic!("the 413 was lost: the client saw a transport error instead: {t}")
        }
    }
    Ok(())
}

#[test]
fn head_over_the_limit_is_431() -> Result<()> {
    let (_rt, server) = echo_server(config().max_header_bytes(1024))?;
    let raw = format!(
        "GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "v".repeat(2000)
    );
    let mut c = Client::connect(server.local_addr())?;
    let r = c.request(raw.as_bytes())?;
    assert_error(&r, 431, "headers_too_large");
    assert!(r.closes());
    c.assert_closed_silently();
    Ok(())
}

#[test]
fn a_head_one_byte_over_the_limit_is_431() -> Result<()> {
    let (_rt, server) = echo_server(config().max_header_bytes(1024))?;
    let prefix = "GET /items/1 HTTP/1.1\r\nHost: t\r\nX-Pad: ";
    let suffix = "\r\n\r\n";
    let pad = 1025 - prefix.len() - suffix.len();
    let raw = format!("{prefix}{}{suffix}", "v".repeat(pad));
    assert_eq!(raw.len(), 1025);
    let r = exchange(server.local_addr(), raw.as_bytes())?;
    assert_error(&r, 431, "headers_too_large");
    Ok(())
}

#[test]
fn too_many_headers_is_431() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let mut raw = String::from("GET /items/1 HTTP/1.1\r\nHost: t\r\n");
    for i in 0..100 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let r = exchange(server.local_addr(), raw.as_bytes())?;
    assert_error(&r, 431, "headers_too_large");
    assert!(r.closes());
    Ok(())
}

#[test]
fn full_mailbox_is_503_with_retry_after() -> Result<()> {
    let (entered_tx, entered) = channel::unbounded();
    let (gate_tx, gate) = channel::unbounded();
    let routes = Routes::new().route("GET", "/busy", "busy.get")?;
    let (rt, server) = serve(config().retry_after(Duration::from_secs(3)), routes, |rt| {
        rt.deploy_with(
            "busy",
            ComponentOptions::new()
                .subscribe("busy.get")
                .mailbox_capacity(1),
            move || Blocked {
                entered: entered_tx.clone(),
                gate: gate.clone(),
            },
        )?;
        Ok(())
    })?;
    let addr = server.local_addr();
    let send = |c: &mut Client| c.send(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n");

    // One request in the handler (held at the gate), one filling the mailbox.
    let mut in_handler = Client::connect(addr)?;
    send(&mut in_handler)?;
    entered.recv_timeout(SOON)?;
    let mut queued = Client::connect(addr)?;
    send(&mut queued)?;
    let busy = rt.component("busy").expect("deployed").reactor;
    wait_until("the mailbox is full", || busy.stats().queued == 1);

    let r = get(addr, "/busy")?;
    assert_error(&r, 503, "backpressure");
    assert_eq!(r.header("retry-after"), Some("3"));

    // Room again: both held requests are answered.
    gate_tx.send(())?;
    gate_tx.send(())?;
    assert_eq!(in_handler.read_response()?.status, 200);
    assert_eq!(queued.read_response()?.status, 200);
    Ok(())
}

/// Issue 12, item 12: a component that serves a route by asking another holds the HTTP
/// request's reply handle in its continuation; when its own request is refused (the
/// downstream is full), the continuation answers with the refusal, so the client gets `503`
/// with `Retry-After` ("busy"), not `502` (a dropped handle).
#[test]
fn a_forwarder_refused_downstream_is_503_not_502() -> Result<()> {
    let (returned_tx, returned) = channel::unbounded();
    let routes = Routes::new().route("GET", "/gw", "gw.get")?;
    let (rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("gateway", on("gw.get"), move || Forwarder {
            downstream: "backend",
            returned: returned_tx.clone(),
        })?;
        Ok(())
    })?;
    let backend = rt.bus().subscribe_inbox("backend", 1)?;
    rt.bus().send("backend", Message::empty())?; // full

    let r = get(server.local_addr(), "/gw")?;
    assert_error(&r, 503, "backpressure");
    assert_eq!(r.header("retry-after"), Some("1"));
    let back = returned.recv_timeout(SOON)?;
    assert_eq!(back.header(http_names::PATH), Some("/gw"));
    assert_eq!(backend.len(), 1);
    Ok(())
}

/// Stops itself on its first request (and answers it); the rest find it stopped.
struct Quitter;

impl Component for Quitter {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.stop();
        ctx.reply(&mut msg, Message::json(json!("bye")))?;
        Ok(())
    }
}

#[test]
fn stopped_component_is_503_with_retry_after() -> Result<()> {
    let routes = Routes::new().route("GET", "/svc", "svc.get")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("quitter", on("svc.get"), || Quitter)?;
        Ok(())
    })?;
    let addr = server.local_addr();
    assert_eq!(get(addr, "/svc")?.status, 200);
    // It stays subscribed while stopped: the bus says `Stopped`, not "no subscriber".
    let r = get(addr, "/svc")?;
    assert_error(&r, 503, "stopped");
    assert_eq!(r.header("retry-after"), Some("1"));
    Ok(())
}

#[test]
fn no_subscriber_is_502() -> Result<()> {
    let routes = Routes::new().route("GET", "/orphan", "nobody.home")?;
    let (_rt, server) = serve(config(), routes, |_| Ok(()))?;
    assert_error(&get(server.local_addr(), "/orphan")?, 502, "no_subscriber");
    Ok(())
}

/// Handles every request without answering it: the message (and its reply handle) is
/// dropped.
struct Silent;

impl Component for Silent {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Panics on every request.
struct Boom;

impl Component for Boom {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        panic!("boom (a test panic)");
    }
}

#[test]
fn request_dropped_unanswered_is_502() -> Result<()> {
    let routes = Routes::new().route("GET", "/silent", "silent.get")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("silent", on("silent.get"), || Silent)?;
        Ok(())
    })?;
    assert_error(&get(server.local_addr(), "/silent")?, 502, "no_reply");
    Ok(())
}

#[test]
fn panicking_component_is_502() -> Result<()> {
    let routes = Routes::new().route("GET", "/boom", "boom.get")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("boom", on("boom.get"), || Boom)?;
        Ok(())
    })?;
    assert_error(&get(server.local_addr(), "/boom")?, 502, "no_reply");
    Ok(())
}

#[test]
fn reply_timeout_is_504_and_the_late_reply_is_counted() -> Result<()> {
    let (tx, held) = channel::unbounded();
    let routes =
        Routes::new().route_timeout("GET", "/slow", "slow.get", Duration::from_millis(200))?;
    let (rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("slow", on("slow.get"), move || Probe { tx: tx.clone() })?;
        Ok(())
    })?;
    let r = get(server.local_addr(), "/slow")?;
    assert_error(&r, 504, "timeout");
    assert_eq!(server.stats().reply_timeouts, 1);

    let (mut request, _thread) = held.recv_timeout(SOON)?;
    let handle = request.take_reply_handle().expect("a request");
    assert_eq!(rt.bus().stats().late_replies, 0);
    let _ = handle.send(Message::json(json!("too late")));
    wait_until("the late reply is counted", || {
        rt.bus().stats().late_replies == 1
    });
    Ok(())
}

/// Answers the way `examples/kv.rs` and the `HttpServer::start` doc example do, with
/// `ctx.reply(..)?`, once the test opens the gate.
struct ReplyOrFail {
    gate: channel::Receiver<()>,
}

impl Component for ReplyOrFail {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if msg.header(http_names::QUERY) == Some("wait") {
            let _ = self.gate.recv();
        }
        ctx.reply(&mut msg, Message::json(json!("done")))?;
        Ok(())
    }
}

#[test]
fn a_late_reply_does_not_take_down_a_component_written_like_the_examples() -> Result<()> {
    // A client timing out (or hanging up) is routine for an HTTP service; the reply that comes
    // after is counted late by the bus. Were `ctx.reply` to return that as an `Err`, the
    // documented `?` would fail the handler: with the default `OnError::Fail` and
    // `Restart::Temporary` the component would be down for good, every later request `503`.
    let (gate_tx, gate) = channel::unbounded();
    let routes =
        Routes::new().route_timeout("GET", "/svc", "svc.get", Duration::from_millis(200))?;
    let (rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("svc", on("svc.get"), move || ReplyOrFail {
            gate: gate.clone(),
        })?;
        Ok(())
    })?;
    let addr = server.local_addr();
    assert_error(&get(addr, "/svc?wait")?, 504, "timeout");
    gate_tx.send(())?;
    wait_until("the late reply is counted", || {
        rt.bus().stats().late_replies == 1
    });
    let r = get(addr, "/svc")?;
    assert_eq!(r.status, 200, "the service is still up: {}", r.text());
    Ok(())
}

#[test]
fn chunked_request_body_is_501() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    let r = c.request(
        b"POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )?;
    assert_error(&r, 501, "unsupported_transfer_encoding");
    assert!(r.closes());
    Ok(())
}

#[test]
fn garbage_request_line_is_400_and_closes() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    for raw in [
        &b"HELLO\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // a TLS hello
        b"GET http://elsewhere/ HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut c = Client::connect(server.local_addr())?;
        let r = c.request(raw)?;
        assert_error(&r, 400, "bad_request");
        assert!(r.closes());
        c.assert_closed_silently();
    }
    Ok(())
}

#[test]
fn unsupported_http_version_is_505() -> Result<()> {
    let (_rt, server) = echo_server(config())?;
    for line in [
        "GET /items/1 HTTP/1.2",
        "GET /items/1 HTTP/2.0",
        "GET /items/1 FTP/9",
    ] {
        let mut c = Client::connect(server.local_addr())?;
        let r = c.request(format!("{line}\r\nHost: t\r\n\r\n").as_bytes())?;
        assert_error(&r, 505, "http_version_not_supported");
        assert!(r.closes());
    }
    Ok(())
}

#[test]
fn slow_head_is_408_and_closes() -> Result<()> {
    let (_rt, server) = echo_server(config().header_timeout(Duration::from_millis(300)))?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"GET /items/1 HTTP/1.1\r\nHost: t\r\n")?; // and never the blank line
    let r = c.read_response()?;
    assert_error(&r, 408, "header_timeout");
    assert!(r.closes());
    c.assert_closed_silently();
    assert_eq!(server.stats().header_timeouts, 1);
    Ok(())
}

#[test]
fn slow_body_is_408_and_closes() -> Result<()> {
    let (_rt, server) = echo_server(config().body_timeout(Duration::from_millis(300)))?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345")?;
    let r = c.read_response()?;
    assert_error(&r, 408, "body_timeout");
    assert!(r.closes());
    c.assert_closed_silently();
    assert_eq!(server.stats().body_timeouts, 1);
    Ok(())
}

#[test]
fn expect_100_continue_from_curl_gets_the_body_through() -> Result<()> {
    // curl sends `Expect: 100-continue` for bodies over 1 KiB and waits (up to a second)
    // for the interim response before it sends the body.
    let (_rt, server) = echo_server(config().max_body_bytes(64 * 1024))?;
    let value = "y".repeat(4000);
    let body = json!({ "big": value }).to_string();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", "Expect: 100-continue", "--expect100-timeout", "5"])
        .args(["--data-binary", &body])
        .arg(format!("http://{}/items", server.local_addr()))
        .output()?;
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8(out.stdout)?;
    let (body, code) = text.rsplit_once('\n').expect("the status line curl wrote");
    assert_eq!(code, "200", "{text}");
    let v: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(v["body"]["json"]["big"].as_str().map(str::len), Some(4000));

    // Over the limit, curl is answered 413 without sending the body.
    let big = "z".repeat(100 * 1024);
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "Content-Type: text/plain", "--expect100-timeout", "5"])
        .args(["--data-binary", &big])
        .arg(format!("http://{}/items", server.local_addr()))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413", "{out:?}");
    Ok(())
}

#[test]
fn every_error_body_has_the_one_json_shape() -> Result<()> {
    let (_rt, server) = echo_server(config().max_body_bytes(16).max_header_bytes(512))?;
    let addr = server.local_addr();
    let long = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "v".repeat(600)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "404",
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            404,
            "not_found",
        ),
        (
            "405",
            b"DELETE /items HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            "400 json",
            post("/items", None, b"{"),
            400,
            "malformed_json",
        ),
        ("400 line", b"NOPE\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            "413",
            post("/items", Some("application/json"), &[b'1'; 17]),
            413,
            "body_too_large",
        ),
        ("431", long.into_bytes(), 431, "headers_too_large"),
        (
            "501",
            b"POST /items HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
            "unsupported_transfer_encoding",
        ),
    ];
    for (what, raw, status, code) in cases {
        let r = exchange(addr, &raw).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        assert_error(&r, status, code);
    }
    Ok(())
}

#[test]
fn reply_with_an_in_process_value_is_500() -> Result<()> {
    struct Typed;
    impl Component for Typed {
        fn handle(
            &mut self,
            mut msg: Message,
            ctx: &mut Context<'_, Self>,
        ) -> Result<(), BoxError> {
            ctx.reply(&mut msg, Message::typed(7u32))?;
            Ok(())
        }
    }
    let routes = Routes::new().route("GET", "/typed", "typed.get")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("typed", on("typed.get"), || Typed)?;
        Ok(())
    })?;
    assert_error(&get(server.local_addr(), "/typed")?, 500, "bad_reply");
    Ok(())
}

/// Answers `GET /kv/{key}`: `a` exists; other keys fail with an application error whose kind
/// the key names (`missing` and the rest: not found).
struct Kv;

impl Component for Kv {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let key = msg.header("http.param.key").unwrap_or("").to_owned();
        let kind = match key.as_str() {
            "a" => return Ok(ctx.reply(&mut msg, Message::json(json!({"a": 1})))?),
            "bad" => AppErrorKind::InvalidArgument,
            "mine" => AppErrorKind::PermissionDenied,
            "taken" => AppErrorKind::AlreadyExists,
            "quota" => AppErrorKind::ResourceExhausted,
            "bug" => AppErrorKind::Internal,
            "down" => AppErrorKind::Unavailable,
            _ => AppErrorKind::NotFound,
        };
        ctx.reply_err(
            &mut msg,
            AppError::new(kind, format!("kv_{kind}"), format!("key `{key}`: {kind}")),
        )?;
        Ok(())
    }
}

/// Issue 12, item 13: a component's application error is answered with its kind's status
/// and the one error shape, carrying the component's code and message; the connection stays
/// open, as after any response the component chose.
#[test]
fn an_application_error_is_its_kinds_status_with_the_components_code_and_message() -> Result<()> {
    let routes = Routes::new().route("GET", "/kv/{key}", "kv.get")?;
    let (_rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with("kv", on("kv.get"), || Kv)?;
        Ok(())
    })?;
    let mut c = Client::connect(server.local_addr())?;
    for (key, status, reason, code) in [
        ("missing", 404, "Not Found", "kv_not_found"),
        ("bad", 400, "Bad Request", "kv_invalid_argument"),
        ("mine", 403, "Forbidden", "kv_permission_denied"),
        ("taken", 409, "Conflict", "kv_already_exists"),
        ("quota", 429, "Too Many Requests", "kv_resource_exhausted"),
        ("bug", 500, "Internal Server Error", "kv_internal"),
        ("down", 503, "Service Unavailable", "kv_unavailable"),
    ] {
        let r = c.get(&format!("/kv/{key}"))?;
        assert_error(&r, status, code);
        assert_eq!(r.reason, reason);
        let kind = code.strip_prefix("kv_").unwrap();
        assert_eq!(r.json()["error"]["message"], format!("key `{key}`: {kind}"));
        assert_eq!(
            r.header("retry-after"),
            None,
            "{key}: the component gave no time"
        );
        assert!(!r.closes(), "{key}: the connection stays open");
    }
    let r = c.get("/kv/a")?;
    assert_eq!((r.status, r.json()), (200, json!({"a": 1})));
    Ok(())
}
