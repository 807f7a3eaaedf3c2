//! Helpers for the HTTP front-end's tests: a runtime serving routes on 127.0.0.1, a tiny raw
//! HTTP/1.1 client that reads one response by its `Content-Length`, the one error shape, and
//! components that answer, hold or block requests.
//!
//! Every read has a deadline (`SOON` unless a test says otherwise), so a server that never
//! answers fails a test instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use reactorium::{
    http_names, BoxError, Component, Context, HttpConfig, HttpServer, Message, Payload, Routes,
    Runtime,
};
use serde_json::{json, Map, Value};

use super::SOON;

/// A config for tests: an OS-chosen port on 127.0.0.1 and short deadlines, so a test that
/// waits for one of them stays fast; a test that needs another value sets it.
pub fn config() -> HttpConfig {
    HttpConfig::new()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .io_threads(2)
        .header_timeout(Duration::from_millis(500))
        .body_timeout(Duration::from_millis(500))
        .idle_timeout(SOON)
        .write_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(2))
}

/// A runtime built by [`super::runtime`], with `deploy` run on it, started, and serving
/// `routes` on `config`.
pub fn serve(
    config: HttpConfig,
    routes: Routes,
    deploy: impl FnOnce(&Runtime) -> anyhow::Result<()>,
) -> anyhow::Result<(Runtime, HttpServer)> {
    let rt = super::runtime()?;
    deploy(&rt)?;
    rt.start()?;
    let server = HttpServer::start(&rt, config, routes)?;
    Ok((rt, server))
}

// ---- the raw client ----------------------------------------------------------------------------

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names as sent (compare with [`Response::header`], which ignores case).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (naming the body) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// The response says the connection ends after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Asserts `r` is the one error shape: status `status`, `Content-Type: application/json`,
/// and a body that is exactly `{"error":{"status":N,"code":"...","message":"..."}}` with
/// `code` and a non-empty message.
pub fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "status of {r:?} ({})", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "content type of {r:?}"
    );
    let v = r.json();
    let top = v.as_object().expect("an object");
    assert_eq!(top.len(), 1, "one key, `error`: {v}");
    let e = v["error"].as_object().expect("`error` is an object");
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "status"], "keys of {v}");
    assert_eq!(e["status"], json!(status), "{v}");
    assert_eq!(e["code"], json!(code), "{v}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {v}"
    );
}

/// A client connection: writes raw bytes, reads responses one at a time.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects, with reads bounded by `SOON`.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client::from_stream(TcpStream::connect(addr)?))
    }

    /// Wraps a connected stream, with reads bounded by `SOON`.
    pub fn from_stream(stream: TcpStream) -> Client {
        let _ = stream.set_read_timeout(Some(SOON));
        let _ = stream.set_nodelay(true);
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Writes `raw` and reads one response.
    pub fn request(&mut self, raw: &[u8]) -> io::Result<Response> {
        self.send(raw)?;
        self.read_response()
    }

    /// `GET path` on this (keep-alive) connection.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
    }

    /// Reads one response: the head, then `Content-Length` bytes of body (none for a 204 or
    /// 304, or without the header). `UnexpectedEof` when the server closed first.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut parts = line.trim_end().splitn(3, ' ');
        let (version, status, reason) = (parts.next(), parts.next(), parts.next());
        if version != Some("HTTP/1.1") {
            return Err(bad(format!("status line {line:?}")));
        }
        let status: u16 = status
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if self.reader.read_line(&mut h)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (n, v) = h
                .split_once(':')
                .ok_or_else(|| bad(format!("header {h:?}")))?;
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        let mut r = Response {
            status,
            reason: reason.unwrap_or("").to_owned(),
            headers,
            body: Vec::new(),
        };
        let len = match r.header("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| bad(format!("Content-Length {v:?}")))?,
            None => 0,
        };
        r.body = vec![0; len];
        self.reader.read_exact(&mut r.body)?;
        Ok(r)
    }

    /// Reads until the server closes the connection or `within` passes. `Ok(bytes)`: closed
    /// (an orderly EOF or a reset), with what came before; `Err(bytes)`: still open.
    pub fn wait_closed(&mut self, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = self.reader.buffer().to_vec();
        self.reader.consume(got.len());
        let s = self.reader.get_mut();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(got);
            }
            let _ = s.set_read_timeout(Some(left));
            match s.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(got)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(got), // timed out
            }
        }
    }

    /// Asserts the server closes the connection (within `SOON`) without sending anything.
    pub fn assert_closed_silently(&mut self) {
        match self.wait_closed(SOON) {
            Ok(bytes) => assert!(
                bytes.is_empty(),
                "expected a silent close, got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            Err(bytes) => panic!(
                "the connection stayed open (got {:?})",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

/// Opens a connection to `addr`, writes `raw`, and reads one response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    Client::connect(addr)?.request(raw)
}

/// `GET path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    Client::connect(addr)?.get(path)
}

/// A `POST` head and body with `content_type` (none when `None`).
pub fn post(path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: t\r\n");
    if let Some(ct) = content_type {
        raw.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Live threads of this process (`/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

// ---- components --------------------------------------------------------------------------------

/// What [`Echo`] answers: every header of the request message, and its payload.
pub fn echo_of(msg: &Message) -> Value {
    let headers: Map<String, Value> = msg
        .headers()
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let body = match msg.payload() {
        Payload::Json(v) => json!({ "json": (**v).clone() }),
        Payload::Bytes(b) => json!({ "bytes": String::from_utf8_lossy(b) }),
        Payload::Empty => Value::Null,
        _ => json!("other"),
    };
    json!({ "headers": headers, "body": body })
}

/// Answers every request at once with [`echo_of`] the request.
pub struct Echo;

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let reply = Message::json(echo_of(&msg));
        // A reply nobody waits for any more (the client hung up, or it timed out) is counted
        // late by the bus; it is no failure of this component.
        let _ = ctx.reply(&mut msg, reply);
        Ok(())
    }
}

/// Answers every request with [`echo_of`] it after `delay` (a reactor timer: the component
/// stays free meanwhile). Each request is reported on `received` as it arrives.
pub struct Slow {
    pub delay: Duration,
    pub received: Sender<()>,
}

impl Component for Slow {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.received.send(());
        let reply = Message::json(echo_of(&msg));
        ctx.after(self.delay, move |_this: &mut Self, ctx| {
            let _ = ctx.reply(&mut msg, reply);
        });
        Ok(())
    }
}

/// Blocks in its handler: reports each request on `entered`, waits for the gate, then
/// answers `200` with [`echo_of`] it. A way to hold a component busy and fill its mailbox.
pub struct Blocked {
    pub entered: Sender<()>,
    pub gate: Receiver<()>,
}

impl Component for Blocked {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let _ = self.entered.send(());
        let _ = self.gate.recv();
        let reply = Message::json(echo_of(&msg));
        let _ = ctx.reply(&mut msg, reply); // late: counted by the bus
        Ok(())
    }
}

/// A reply with status `status` (as a component sets it).
pub fn with_status(reply: Message, status: u16) -> Message {
    reply.with_header(http_names::STATUS, status.to_string())
}
