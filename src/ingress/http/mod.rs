//! The HTTP front-end: a route table maps `METHOD /path/{param}` to a bus topic; each request
//! becomes a bus request and the component's reply becomes the response, while the
//! connection waits without holding a thread. A protocol (`protocol.rs`) on the connection
//! engine, which owns the sockets, threads and drain; `httparse` reads the heads.
//!
//! Owns: what a connection's bytes mean and the deadline of each phase (header, body, idle
//! keep-alive, reply), the answer past the connection cap, the status mapping and error
//! shape, and its metric families. Does not own: the socket work (the engine), what a route
//! means (components do) or the runtime's metrics and readiness it serves (read through an
//! `AdminHandle`). Design notes: `README.md` beside this file, on top of `../README.md`.

pub mod fuzzing;
mod protocol;
mod route;
mod stats;
mod syntax;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use route::Routes;

use crate::ingress::engine::{EngineConfig, StreamEngine};
use crate::metrics::TextWriter;
use crate::runtime::{FrontEnd, FrontEndReport, Runtime};
use crate::types::Error;
use protocol::Http;

/// Header names of the messages a route sends, and of the replies that shape a response.
///
/// A request message carries `http.method`, `http.path`, `http.query` (when there is one),
/// `http.param.NAME` for each path parameter, and `http.header.NAME` (lower-cased) for each
/// header named in [`HttpConfig::forward_header`]. A reply may set `http.status` (default
/// `200`) and `http.header.NAME` for each response header.
pub mod http_names {
    /// The request's method (`GET`).
    pub const METHOD: &str = "http.method";
    /// The request's path, without its query.
    pub const PATH: &str = "http.path";
    /// The request's query string, without the `?`.
    pub const QUERY: &str = "http.query";
    /// Prefix of a path parameter's header: `http.param.id`.
    pub const PARAM_PREFIX: &str = "http.param.";
    /// Prefix of a forwarded request header, and of a response header a reply sets.
    pub const HEADER_PREFIX: &str = "http.header.";
    /// The response status a reply asks for (`"201"`).
    pub const STATUS: &str = "http.status";
}

/// Settings of an HTTP front-end. Every setter documents its default.
///
/// # Examples
///
/// ```
/// use reactorium::HttpConfig;
/// use std::time::Duration;
///
/// let config = HttpConfig::new()
///     .bind("127.0.0.1:0".parse()?)
///     .io_threads(2)
///     .max_connections(5_000)
///     .request_timeout(Duration::from_secs(2))
///     .forward_header("x-request-id");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) io_threads: usize,
    pub(crate) max_connections: usize,
    pub(crate) backlog: u32,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) drain_grace: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) forward_headers: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            io_threads: 2,
            max_connections: 10_000,
            backlog: 1024,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            drain_grace: Duration::from_millis(100),
            retry_after: Duration::from_secs(1),
            forward_headers: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The defaults documented on each setter.
    pub fn new() -> HttpConfig {
        HttpConfig::default()
    }

    /// The address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port (see
    /// [`HttpServer::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// I/O threads, fixed for the server's life whatever the number of connections.
    /// Default 2; 1..=64.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n;
        self
    }

    /// Connections held at once. Past it, a new connection's first request gets `503` with
    /// `Retry-After` and the connection closes (and past it by 256 more, new connections are
    /// closed at once). Default 10,000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The listen backlog: connections the kernel queues before they are accepted. The
    /// kernel caps it at `net.core.somaxconn`. Default 1024 (the standard library's listener
    /// has 128, which a burst of a few hundred clients overflows: the kernel drops their
    /// SYNs and each client waits a second to retry).
    pub fn backlog(mut self, n: u32) -> Self {
        self.backlog = n;
        self
    }

    /// The largest request head (request line and headers). Past it: `431`. Default 16 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Self {
        self.max_header_bytes = n;
        self
    }

    /// The largest request body. Past it: `413`, before the body is read. Default 1 MiB.
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Time from a request's first byte to the end of its head. Past it: `408` and the
    /// connection closes (this is what ends a slowloris client). A new connection that sends
    /// nothing at all is closed after this long too. Default 10 s.
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }

    /// Time from the end of the head to the end of the body. Past it: `408` and the
    /// connection closes. A client that ends its stream (half-closes) before its body is
    /// whole is closed then, without an answer: no more of the body can come. Default 30 s.
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }

    /// How long a keep-alive connection may sit idle between requests before it is closed.
    /// Default 60 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// How long a response being written may wait for the client to take more of it (a
    /// client that does not read): measured between two writes that make progress, as
    /// nginx's `send_timeout`. Past it the connection closes. Default 30 s.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// How long a component may take to reply, for routes without a timeout of their own.
    /// Past it: `504`. Default 10 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// How long a graceful stop waits for requests in flight before it closes their
    /// connections. Default 5 s.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// At a graceful stop, how long a connection with no request in flight (an idle
    /// keep-alive connection, or a new one that has sent nothing yet) stays open before it
    /// is closed: a request that arrives within it was on its way as the stop began, and is
    /// answered (with `Connection: close`) instead of being met with a reset. Idle
    /// connections make a stop take at least this long (never past `shutdown_timeout`);
    /// zero closes them at once. Default 100 ms.
    pub fn drain_grace(mut self, d: Duration) -> Self {
        self.drain_grace = d;
        self
    }

    /// The `Retry-After` of a `503` (backpressure, stopped component, too many connections),
    /// in whole seconds, at least 1. Default 1 s.
    pub fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }

    /// Copies the request header `name` (case-insensitive) into the message as
    /// `http.header.NAME`. Default: none.
    pub fn forward_header(mut self, name: impl Into<String>) -> Self {
        self.forward_headers.push(name.into().to_ascii_lowercase());
        self
    }

    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }

    fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| {
            Err(Error::InvalidConfig {
                reason: format!("http: {reason}"),
            })
        };
        if !(1..=64).contains(&self.io_threads) {
            return bad("io_threads must be in 1..=64");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_header_bytes < 256 {
            return bad("max_header_bytes must be at least 256");
        }
        for (name, d) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return bad(&format!("{name} must be above zero"));
            }
        }
        Ok(())
    }
}

/// A snapshot of an HTTP front-end's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HttpStats {
    /// Connections open now.
    pub open_connections: usize,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections closed at once because the server held `max_connections` + 256.
    pub refused_connections: u64,
    /// `accept` calls that failed (for example out of file descriptors); the server paused
    /// accepting for 100 ms after each and went on.
    pub accept_errors: u64,
    /// Responses written, every status.
    pub requests: u64,
    /// Failed waits on an I/O thread's poller (not expected; each costs that thread a 10 ms
    /// pause so it cannot spin on the error).
    pub poll_errors: u64,
    /// Requests whose head did not arrive within `header_timeout` (`408`).
    pub header_timeouts: u64,
    /// Requests whose body did not arrive within `body_timeout` (`408`).
    pub body_timeouts: u64,
    /// Keep-alive connections closed after `idle_timeout`.
    pub idle_timeouts: u64,
    /// Connections closed because a response was not taken within `write_timeout`.
    pub write_timeouts: u64,
    /// Requests whose component did not reply in time (`504`).
    pub reply_timeouts: u64,
}

/// A running HTTP front-end. Cheap to clone (a handle).
///
/// Started by [`HttpServer::start`], which attaches it to its runtime
/// ([`Runtime::attach`]): the runtime stops it first, before any component, and its metric
/// families are part of the runtime's. It is the HTTP protocol on the connection engine
/// ([`StreamEngine`](crate::engine::StreamEngine)).
///
/// # Shutdown
///
/// [`stop`](HttpServer::stop) stops accepting at once (connections the kernel already
/// accepted are served like the others), reads the requests that have arrived, lets every
/// request in flight finish (answered with `Connection: close`) until the shutdown deadline
/// ([`HttpConfig::shutdown_timeout`]), closes connections with no request after
/// [`HttpConfig::drain_grace`] (a request that arrives within it is answered too), then
/// closes what is left and joins the I/O threads. A client that sent a request is answered
/// or, past the deadline, counted abandoned; it is not met with a reset. A reply that comes
/// after its connection closed is counted as a late reply on the bus and dead-lettered.
#[derive(Clone)]
pub struct HttpServer {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    engine: StreamEngine<Http>,
    name: String,
    report: Mutex<Option<FrontEndReport>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("local_addr", &self.local_addr())
            .field("routes", &self.http().routes)
            .field("stats", &self.stats())
            .finish()
    }
}

impl HttpServer {
    /// Binds `config`'s address and starts serving `routes` on behalf of `rt`, attached to
    /// it ([`Runtime::attach`]): its admin routes ([`Routes::metrics`], [`Routes::ready`])
    /// read `rt` through an [`AdminHandle`](crate::AdminHandle), and [`Runtime::stop`] stops it before any
    /// component.
    ///
    /// Each routed request becomes a bus request to the route's topic (see
    /// [`http_names`](crate::http_names) for the headers it carries and those a reply may
    /// set); the connection waits for the reply without holding a thread.
    ///
    /// | outcome | status |
    /// |---|---|
    /// | the component's reply | its `http.status`, default `200` |
    /// | the component's application error ([`AppError`](crate::AppError)) | its kind's status, `400` to `503` (the table on [`AppErrorKind`](crate::AppErrorKind)), with the component's code and message |
    /// | mailbox full (`Backpressure`) | `503` with `Retry-After` |
    /// | component stopped | `503` with `Retry-After` |
    /// | no subscriber for the topic | `502` |
    /// | the component dropped the request (failed) | `502` |
    /// | no reply within the timeout | `504` |
    /// | no route for the path / wrong method | `404` / `405` with `Allow` |
    /// | `HEAD` with no route of its own | its path's `GET` route, answered without the body |
    /// | a malformed head (see below) | `400`, and the connection closes |
    /// | body not valid JSON (JSON or no content type) | `400` |
    /// | a chunked or other transfer coding | `501` |
    /// | a reply whose `http.status` or a header is invalid (a control byte in a value) | `500` |
    /// | body over the limit / head over the limit | `413` / `431` |
    /// | head or body too slow | `408` |
    /// | past the connection cap | `503` with `Retry-After` |
    ///
    /// Every error body has one shape:
    /// `{"error":{"status":503,"code":"backpressure","message":"..."}}`; an application
    /// error's `code` and `message` are the component's own.
    ///
    /// A head is malformed (`400`) when it is not HTTP/1.x, its target is not an absolute
    /// path or has a fragment (`#`), a header is not UTF-8, `Content-Length` is not digits
    /// alone (`+3`, `3, 3` and `0x3` are refused) or is given twice with different values,
    /// both `Content-Length` and `Transfer-Encoding` are given, or an HTTP/1.1 request has
    /// no `Host` or more than one (RFC 9112 §3.2, §6). Framing two parsers could read
    /// differently is how requests are smuggled past a proxy, so none of it is guessed.
    /// A response to `HEAD` carries the `Content-Length` its `GET` would have and no body
    /// (RFC 9110 §9.3.2); the component sees a `GET`. A response to an HTTP/1.0 request
    /// that asked for keep-alive says `Connection: keep-alive`. A literal segment of a route
    /// matches its path segment once that is percent-decoded (`/he%6Clo` is `/hello`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a setting out of range; [`Error::Io`] when the address
    /// cannot be bound; [`Error::Spawn`] when an I/O thread cannot be started;
    /// [`Error::InvalidState`] once the runtime has stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, ComponentOptions, Context, HttpConfig, HttpServer, Message, Routes, Runtime};
    /// use std::io::{Read, Write};
    ///
    /// struct Echo;
    /// impl Component for Echo {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let id = msg.header("http.param.id").unwrap_or("?").to_owned();
    ///         ctx.reply(&mut msg, Message::json(serde_json::json!({ "id": id })))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy_with("echo", ComponentOptions::new().subscribe("echo.get"), || Echo)?;
    /// rt.start()?;
    /// let server = HttpServer::start(
    ///     &rt,
    ///     HttpConfig::new().bind("127.0.0.1:0".parse()?),
    ///     Routes::new().route("GET", "/echo/{id}", "echo.get")?,
    /// )?;
    ///
    /// let mut s = std::net::TcpStream::connect(server.local_addr())?;
    /// s.write_all(b"GET /echo/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    /// let mut response = String::new();
    /// s.read_to_string(&mut response)?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.ends_with(r#"{"id":"42"}"#));
    ///
    /// let report = rt.stop()?; // the front-end stops first
    /// assert_eq!(report.front_ends[0].kind, "http");
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn start(rt: &Runtime, config: HttpConfig, routes: Routes) -> Result<HttpServer, Error> {
        config.validate()?;
        let admin = rt.admin();
        let engine_config = EngineConfig::new(format!("{}http", admin.thread_name_prefix()))
            .bind(config.bind)
            .io_threads(config.io_threads)
            .max_connections(config.max_connections)
            .backlog(config.backlog)
            .write_timeout(config.write_timeout)
            .shutdown_timeout(config.shutdown_timeout)
            .drain_grace(config.drain_grace);
        let protocol = Http {
            stats: stats::Counters::new(routes.len()),
            bus: admin.bus().clone(),
            admin,
            config,
            routes,
        };
        let engine = StreamEngine::start(engine_config, Arc::new(protocol))?;
        let server = HttpServer {
            inner: Arc::new(ServerInner {
                name: format!("http {}", engine.local_addr()),
                engine,
                report: Mutex::new(None),
            }),
        };
        if let Err(e) = rt.attach(Arc::new(server.clone())) {
            server.stop();
            return Err(e);
        }
        Ok(server)
    }

    fn http(&self) -> &Http {
        self.inner.engine.protocol()
    }

    /// The address the server listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.engine.local_addr()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HttpStats {
        self.http().stats.snapshot(&self.inner.engine.stats())
    }

    /// Stops the server gracefully; see `# Shutdown` on [`HttpServer`]. Blocks until the I/O
    /// threads have finished (at most the shutdown timeout and one second more). Calling it
    /// again returns the first call's report.
    ///
    /// Each connection open at the stop is in one of the report's counts: `completed`, a
    /// request was in flight (partly or wholly received, or being answered) or arrived
    /// within the drain grace, and was answered; `closed`, no byte of a request arrived
    /// (idle keep-alive or new connections); `abandoned`, a request not answered (the
    /// deadline passed, or the client went first). Its `detail` has `requests`, the
    /// responses written over the server's life.
    pub fn stop(&self) -> FrontEndReport {
        let mut report = self.inner.report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &*report {
            return r.clone();
        }
        let mut r = self
            .inner
            .engine
            .stop()
            .to_front_end(self.inner.name.clone(), "http");
        r.detail.push(("requests", self.stats().requests));
        *report = Some(r.clone());
        r
    }

    pub(crate) fn routes(&self) -> &Routes {
        &self.http().routes
    }

    pub(crate) fn counters(&self) -> &stats::Counters {
        &self.http().stats
    }
}

impl FrontEnd for HttpServer {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn write_metrics(&self, w: &mut TextWriter<'_>) {
        stats::write_prometheus(w, self);
    }

    fn stop(&self) -> FrontEndReport {
        HttpServer::stop(self)
    }
}
