//! Connections that carry more than one request: keep-alive, `Connection: close`, HTTP/1.0,
//! pipelining, half-closed clients, and the idle timeout.

use std::net::Shutdown;
use std::time::{Duration, Instant};

use anyhow::Result;
use reactorium::{HttpConfig, HttpServer, Routes, Runtime};

use crate::support::http::{assert_error, config, post, serve, Client, Echo};
use crate::support::{on, SOON};

/// Larger than loopback socket buffers take at once: writing it waits for the client.
const BIG: usize = 16 * 1024 * 1024;

/// "echo" behind `GET /items/{id}` and `POST /items`, and a fixed `GET /hello`.
fn server(config: HttpConfig) -> Result<(Runtime, HttpServer)> {
    let routes = Routes::new()
        .route("GET", "/items/{id}", "echo.get")?
        .route("POST", "/items", "echo.create")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?
        .fixed(
            "GET",
            "/big",
            200,
            "application/octet-stream",
            vec![b'x'; BIG],
        )?;
    serve(config, routes, |rt| {
        rt.deploy_with("echo", on("echo.>"), || Echo)?;
        Ok(())
    })
}

fn id_of(r: &crate::support::http::Response) -> String {
    r.json()["headers"]["http.param.id"]
        .as_str()
        .unwrap_or_else(|| panic!("an echo: {}", r.text()))
        .to_owned()
}

#[test]
fn many_requests_share_one_connection() -> Result<()> {
    let (_rt, server) = server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    for i in 0..100 {
        let r = c.get(&format!("/items/{i}"))?;
        assert_eq!(r.status, 200);
        assert!(!r.closes(), "keep-alive by default in HTTP/1.1: {r:?}");
        assert_eq!(id_of(&r), i.to_string());
        // An error answered at once keeps the connection too.
        assert_error(&c.get("/nowhere")?, 404, "not_found");
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.requests, 200);
    Ok(())
}

#[test]
fn connection_close_is_honoured() -> Result<()> {
    let (_rt, server) = server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    let r = c.request(b"GET /items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    assert_eq!(r.status, 200);
    assert!(r.closes(), "{r:?}");
    c.assert_closed_silently();
    Ok(())
}

#[test]
fn http_1_0_closes_after_the_response_unless_asked_to_keep_alive() -> Result<()> {
    let (_rt, server) = server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    let r = c.request(b"GET /items/1 HTTP/1.0\r\n\r\n")?;
    assert_eq!(r.status, 200);
    assert!(r.closes());
    c.assert_closed_silently();

    let mut c = Client::connect(server.local_addr())?;
    for i in 0..3 {
        let raw = format!("GET /items/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.request(raw.as_bytes())?;
        assert_eq!((r.status, r.closes()), (200, false));
        assert_eq!(id_of(&r), i.to_string());
    }
    Ok(())
}

#[test]
fn pipelined_requests_are_answered_in_order() -> Result<()> {
    let (_rt, server) = server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    let mut raw = Vec::new();
    for i in 0..20 {
        raw.extend_from_slice(format!("GET /items/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        raw.extend_from_slice(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        raw.extend_from_slice(&post(
            "/items",
            Some("application/json"),
            format!("{{\"n\":{i}}}").as_bytes(),
        ));
    }
    c.send(&raw)?; // one write: the server finds them all in one read
    for i in 0..20 {
        let r = c.read_response()?;
        assert_eq!(id_of(&r), i.to_string());
        assert_eq!(c.read_response()?.body, b"hello");
        let r = c.read_response()?;
        assert_eq!(r.json()["body"]["json"]["n"], i);
    }
    Ok(())
}

#[test]
fn a_pipelined_request_after_an_error_answered_at_once_is_answered() -> Result<()> {
    // A 404, 405 or bad parameter is answered from the head alone; the next request is
    // already in the server's buffer, and no more bytes will come to wake it up.
    let (_rt, server) = server(config().idle_timeout(Duration::from_secs(2)))?;
    for first in [
        "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        "PUT /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /items/%zz HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let mut c = Client::connect(server.local_addr())?;
        c.send(format!("{first}GET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        let r = c.read_response()?;
        assert!(matches!(r.status, 400 | 404 | 405), "{r:?}");
        let second = c
            .read_response()
            .map_err(|e| anyhow::anyhow!("after {first:?}, the second request: {e}"))?;
        assert_eq!(id_of(&second), "2");
    }
    Ok(())
}

#[test]
fn a_pipelined_request_after_a_response_too_big_to_write_at_once_is_answered() -> Result<()> {
    // The first response waits for the socket; once it is out, the second request is already
    // in the server's buffer, and no more bytes will come to wake it up.
    let (_rt, server) = server(config().idle_timeout(Duration::from_secs(2)))?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n")?;
    let r = c.read_response()?;
    assert_eq!((r.status, r.body.len()), (200, BIG));
    let second = c
        .read_response()
        .map_err(|e| anyhow::anyhow!("the second request: {e}"))?;
    assert_eq!(id_of(&second), "2");
    Ok(())
}

#[test]
fn a_request_then_a_half_close_is_still_answered() -> Result<()> {
    let (_rt, server) = server(config())?;
    for path in ["/items/5", "/hello"] {
        let mut c = Client::connect(server.local_addr())?;
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        c.stream().shutdown(Shutdown::Write)?;
        let r = c.read_response()?;
        assert_eq!(r.status, 200, "{path}");
        c.assert_closed_silently();
    }
    Ok(())
}

#[test]
fn a_half_close_with_the_body_incomplete_closes_the_connection_at_once() -> Result<()> {
    // Issue 12, item 5: no more of the body can come after the client's end of stream; the
    // connection was held until the body timeout (30 s by default).
    let (_rt, server) = server(config().body_timeout(SOON * 3))?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"a\"")?;
    c.stream().shutdown(Shutdown::Write)?;
    match c.wait_closed(SOON) {
        Ok(bytes) => assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes)),
        Err(_) => panic!("held after the client's end of stream, its body incomplete"),
    }
    crate::support::wait_until("counted closed", || server.stats().open_connections == 0);
    assert_eq!(server.stats().body_timeouts, 0);
    Ok(())
}

#[test]
fn pipelined_requests_then_a_half_close_are_all_answered() -> Result<()> {
    // `printf 'GET /a ...GET /b ...' | nc -N host port`: every request arrived before the
    // end of the stream.
    let (_rt, server) = server(config())?;
    let mut c = Client::connect(server.local_addr())?;
    let mut raw = Vec::new();
    for i in 0..3 {
        raw.extend_from_slice(format!("GET /items/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&raw)?;
    c.stream().shutdown(Shutdown::Write)?;
    for i in 0..3 {
        let r = c
            .read_response()
            .map_err(|e| anyhow::anyhow!("response {i}: {e}"))?;
        assert_eq!(id_of(&r), i.to_string());
    }
    c.assert_closed_silently();
    Ok(())
}

#[test]
fn a_client_that_does_not_read_is_cut_off_after_write_timeout() -> Result<()> {
    let (_rt, server) = server(config().write_timeout(Duration::from_millis(300)))?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")?; // and never reads
    crate::support::wait_until("the write times out", || server.stats().write_timeouts == 1);
    crate::support::wait_until("the connection is closed", || {
        server.stats().open_connections == 0
    });
    Ok(())
}

#[test]
fn idle_keep_alive_connection_closes_after_idle_timeout() -> Result<()> {
    let idle = Duration::from_millis(300);
    let (_rt, server) = server(config().idle_timeout(idle))?;
    let mut c = Client::connect(server.local_addr())?;
    assert_eq!(c.get("/items/1")?.status, 200);
    let answered = Instant::now();
    c.assert_closed_silently();
    let waited = answered.elapsed();
    println!("idle connection closed after {waited:?} (idle_timeout {idle:?})");
    assert!(waited < SOON);
    assert_eq!(server.stats().idle_timeouts, 1);
    assert_eq!(server.stats().open_connections, 0);
    Ok(())
}
