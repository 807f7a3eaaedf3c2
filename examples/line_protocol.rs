//! A front-end of your own, written only against reactorium's public API: a line protocol
//! over TCP on the connection engine (`reactorium::engine`), attached to a runtime like the
//! built-in HTTP front-end.
//!
//! Each line is `TOPIC JSON`: it becomes a bus request to `TOPIC` carrying the JSON, and the
//! component's reply is written back as one line of JSON. Anything that goes wrong is one
//! line `ERR <reason>`, and the connection goes on (a line over the limit, or one that takes
//! too long to arrive, also closes it). One request at a time per connection: lines sent
//! ahead wait in the buffer and are answered in order.
//!
//! ```sh
//! cargo run --example line_protocol            # listens on 127.0.0.1:7070
//! printf 'greet {"name":"ada"}\nnope\n' | nc 127.0.0.1 7070
//! {"hello":"ada"}
//! ERR a line is `TOPIC JSON`
//! ```
//!
//! Its tests (`cargo test --example line_protocol`) run it over 127.0.0.1, with garbage, a
//! client that resets, a line over the limit and a slow client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reactorium::engine::{Admission, CloseReason, EngineConfig, Io, StreamEngine, StreamProtocol};
use reactorium::{
    BoxError, Bus, Component, ComponentOptions, Context, Error, FrontEnd, FrontEndReport, Message,
    ReplyTicket, Runtime, TextWriter,
};

/// The protocol: what every connection of one server shares.
struct Lines {
    bus: Bus,
    max_line: usize,
    line_timeout: Duration,
    idle_timeout: Duration,
    reply_timeout: Duration,
    answered: AtomicU64,
    errors: AtomicU64,
    /// Replies that came after their connection closed.
    unclaimed: AtomicU64,
}

/// One connection: the request it waits for, if any.
#[derive(Default)]
struct Conn {
    waiting: Option<(u64, ReplyTicket)>,
}

impl StreamProtocol for Lines {
    type Conn = Conn;
    type Outcome = Result<Message, Error>;

    fn open(&self, io: &mut Io<'_, Self>, admission: Admission) -> Conn {
        if admission == Admission::OverCap {
            io.write(b"ERR too many connections\n");
            io.close();
        }
        io.set_deadline(Some(io.now() + self.idle_timeout));
        Conn::default()
    }

    fn on_input(&self, conn: &mut Conn, io: &mut Io<'_, Self>) {
        if conn.waiting.is_some() || io.closing() {
            return; // the next line waits for this one's answer
        }
        let Some(end) = io.input().iter().position(|&b| b == b'\n') else {
            if io.input().len() > self.max_line {
                self.error(io, &format!("a line is at most {} bytes", self.max_line));
                io.close_linger();
            } else {
                // A partial line: it has `line_timeout` to end.
                io.set_deadline(Some(io.now() + self.line_timeout));
            }
            return;
        };
        if end > self.max_line {
            self.error(io, &format!("a line is at most {} bytes", self.max_line));
            io.close_linger();
            return;
        }
        let line: Vec<u8> = io.input().drain(..=end).collect();
        let Some((topic, json)) = parse(&line) else {
            self.error(io, "a line is `TOPIC JSON`");
            return self.idle(io);
        };
        let value: serde_json::Value = match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => {
                self.error(io, &format!("not JSON: {e}"));
                return self.idle(io);
            }
        };
        let done = io.completer();
        let token = done.token();
        let sent = self.bus.request_callback(
            topic,
            Message::json(value),
            self.reply_timeout,
            move |outcome| done.complete(outcome),
        );
        match sent {
            Ok(ticket) => {
                io.set_deadline(Some(ticket.deadline()));
                conn.waiting = Some((token, ticket));
            }
            Err(e) => {
                self.error(io, &e.to_string());
                self.idle(io);
            }
        }
    }

    fn on_outcome(
        &self,
        conn: &mut Conn,
        token: u64,
        outcome: Result<Message, Error>,
        io: &mut Io<'_, Self>,
    ) {
        if conn.waiting.as_ref().map(|w| w.0) != Some(token) {
            return self.unclaimed(outcome);
        }
        conn.waiting = None;
        match outcome {
            Ok(reply) => match reply.as_json() {
                Some(v) => {
                    self.answered.fetch_add(1, Ordering::Relaxed);
                    let out = io.output();
                    let _ = serde_json::to_writer(&mut *out, v);
                    out.push(b'\n');
                }
                None => self.error(io, "the reply is not JSON"),
            },
            Err(e) => self.error(io, &e.to_string()),
        }
        self.idle(io);
    }

    fn in_flight(&self, conn: &Conn) -> bool {
        conn.waiting.is_some()
    }

    fn on_deadline(&self, conn: &mut Conn, io: &mut Io<'_, Self>) {
        match &conn.waiting {
            // Our own callback then runs with `Timeout`: `on_outcome` answers `ERR`.
            Some((_, ticket)) => {
                ticket.expire();
            }
            None if io.input().is_empty() => io.close_now(), // idle
            None => {
                self.error(io, "the line took too long");
                io.close_linger();
            }
        }
    }

    fn on_written(&self, _conn: &mut Conn, io: &mut Io<'_, Self>) {
        if io.deadline().is_none() {
            self.idle(io);
        }
    }

    fn read_limit(&self, _conn: &Conn) -> usize {
        self.max_line + 2 // one byte past a whole line tells "too long" from "fits"
    }

    fn on_close(&self, conn: Conn, _reason: CloseReason) {
        if let Some((_, ticket)) = conn.waiting {
            ticket.expire(); // the client is gone: a reply that comes later is unclaimed
        }
    }

    fn unclaimed(&self, outcome: Result<Message, Error>) {
        if outcome.is_ok() {
            self.unclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Lines {
    fn error(&self, io: &mut Io<'_, Self>, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // One line whatever the reason says.
        let reason = reason.replace(['\r', '\n'], " ");
        io.write(format!("ERR {reason}\n").as_bytes());
    }

    fn idle(&self, io: &mut Io<'_, Self>) {
        io.set_deadline(Some(io.now() + self.idle_timeout));
    }
}

/// `TOPIC JSON` (a trailing `\r\n` or `\n` taken off).
fn parse(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.trim_end_matches(['\n', '\r']);
    let (topic, json) = line.split_once(' ')?;
    (!topic.is_empty()).then_some((topic, json))
}

/// The front-end: the engine's handle, attached to a runtime.
struct LineServer {
    engine: StreamEngine<Lines>,
    name: String,
}

impl LineServer {
    fn start(
        rt: &Runtime,
        addr: SocketAddr,
        tune: impl FnOnce(&mut Lines),
    ) -> anyhow::Result<Arc<Self>> {
        let mut lines = Lines {
            bus: rt.bus().clone(),
            max_line: 4096,
            line_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            reply_timeout: Duration::from_secs(5),
            answered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unclaimed: AtomicU64::new(0),
        };
        tune(&mut lines);
        let config = EngineConfig::new("line")
            .bind(addr)
            .io_threads(1)
            .shutdown_timeout(Duration::from_secs(2));
        let engine = StreamEngine::start(config, Arc::new(lines))?;
        let server = Arc::new(LineServer {
            name: format!("line {}", engine.local_addr()),
            engine,
        });
        if let Err(e) = rt.attach(server.clone()) {
            server.engine.stop();
            return Err(e.into());
        }
        Ok(server)
    }

    fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }
}

impl FrontEnd for LineServer {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "line"
    }

    fn write_metrics(&self, w: &mut TextWriter<'_>) {
        let listen = self.local_addr().to_string();
        let labels = [("listen", listen.as_str())];
        self.engine.stats().write_metrics(w, "line", &labels);
        let p = self.engine.protocol();
        w.counter(
            "line_answers_total",
            "Lines answered with a reply.",
            [(labels, p.answered.load(Ordering::Relaxed))],
        );
        w.counter(
            "line_errors_total",
            "Lines answered with ERR.",
            [(labels, p.errors.load(Ordering::Relaxed))],
        );
    }

    fn stop(&self) -> FrontEndReport {
        let mut r = self.engine.stop().to_front_end(&self.name, "line");
        let p = self.engine.protocol();
        r.detail
            .push(("unclaimed", p.unclaimed.load(Ordering::Relaxed)));
        r
    }
}

/// Answers `{"name": N}` with `{"hello": N}`.
struct Greeter;

impl Component for Greeter {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let name = msg
            .as_json()
            .and_then(|v| v.get("name"))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        ctx.reply(
            &mut msg,
            Message::json(serde_json::json!({ "hello": name })),
        )?;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    // Logs (the runtime's `tracing` events) to stderr, filtered by `RUST_LOG` (default: info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    reactorium::set_panic_hook();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7070".into())
        .parse()?;
    let rt = Runtime::new()?;
    rt.deploy_with(
        "greeter",
        ComponentOptions::new().subscribe("greet"),
        || Greeter,
    )?;
    rt.start()?;
    let server = LineServer::start(&rt, addr, |_| {})?;
    println!("line_protocol: listening on {}", server.local_addr());
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    const SOON: Duration = Duration::from_secs(5);

    fn runtime() -> anyhow::Result<Runtime> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.deploy_with(
            "greeter",
            ComponentOptions::new().subscribe("greet"),
            || Greeter,
        )?;
        rt.start()?;
        Ok(rt)
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    struct Client(BufReader<TcpStream>);

    impl Client {
        fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
            let s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(SOON))?;
            Ok(Client(BufReader::new(s)))
        }
        fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
            self.0.get_mut().write_all(bytes)?;
            Ok(())
        }
        fn line(&mut self) -> anyhow::Result<String> {
            let mut l = String::new();
            anyhow::ensure!(self.0.read_line(&mut l)? > 0, "closed before a line");
            Ok(l)
        }
        /// Reads until the server closes; what came meanwhile.
        fn rest(&mut self) -> anyhow::Result<String> {
            let mut s = String::new();
            self.0.read_to_string(&mut s)?;
            Ok(s)
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + SOON;
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn lines_become_requests_and_replies_come_back_in_order() -> anyhow::Result<()> {
        let rt = runtime()?;
        let server = LineServer::start(&rt, local(), |_| {})?;
        let mut c = Client::connect(server.local_addr())?;
        // Two lines in one write: answered one after the other.
        c.send(b"greet {\"name\":\"ada\"}\ngreet {\"name\":\"bob\"}\r\n")?;
        assert_eq!(c.line()?, "{\"hello\":\"ada\"}\n");
        assert_eq!(c.line()?, "{\"hello\":\"bob\"}\n");
        let metrics = rt.admin().metrics();
        assert!(metrics.contains("line_answers_total{listen="), "{metrics}");
        assert!(
            metrics.contains("line_open_connections{listen="),
            "{metrics}"
        );
        let report = rt.stop()?;
        let line = &report.front_ends[0];
        assert_eq!(
            (line.kind, line.closed, line.joined),
            ("line", 1, true),
            "{line:?}"
        );
        Ok(())
    }

    #[test]
    fn garbage_gets_one_err_line_each_and_the_connection_goes_on() -> anyhow::Result<()> {
        let rt = runtime()?;
        let server = LineServer::start(&rt, local(), |_| {})?;
        let mut c = Client::connect(server.local_addr())?;
        for (garbage, expect) in [
            (&b"nonsense\n"[..], "ERR a line is `TOPIC JSON`\n"),
            (b" {}\n", "ERR a line is `TOPIC JSON`\n"),
            (b"greet {not json\n", "ERR not JSON"),
            (b"\xff\xfe\x00 {}\n", "ERR a line is `TOPIC JSON`\n"),
            (b"nobody.here {}\n", "ERR no subscriber"),
            (b"bad..topic {}\n", "ERR "),
            (b"\n", "ERR a line is `TOPIC JSON`\n"),
        ] {
            c.send(garbage)?;
            let got = c.line()?;
            assert!(got.starts_with(expect), "{garbage:?}: {got:?}");
        }
        c.send(b"greet {\"name\":1}\n")?;
        assert_eq!(c.line()?, "{\"hello\":1}\n");
        Ok(())
    }

    #[test]
    fn a_line_over_the_limit_is_refused_and_the_connection_closes() -> anyhow::Result<()> {
        let rt = runtime()?;
        let server = LineServer::start(&rt, local(), |l| l.max_line = 64)?;
        let mut c = Client::connect(server.local_addr())?;
        // Far more than the limit, with no newline: the client is still writing when the
        // refusal comes, and reads it rather than a reset (the server lingers).
        let long = vec![b'x'; 200_000];
        let writer = c.0.get_ref().try_clone()?;
        let t = std::thread::spawn(move || (&writer).write_all(&long));
        assert_eq!(c.line()?, "ERR a line is at most 64 bytes\n");
        assert_eq!(c.rest()?, "");
        let _ = t.join();
        // The next client is served.
        let mut c = Client::connect(server.local_addr())?;
        c.send(b"greet {}\n")?;
        assert_eq!(c.line()?, "{\"hello\":null}\n");
        Ok(())
    }

    #[test]
    fn a_slow_client_is_told_and_closed_at_the_line_timeout() -> anyhow::Result<()> {
        let rt = runtime()?;
        let server = LineServer::start(&rt, local(), |l| {
            l.line_timeout = Duration::from_millis(200);
        })?;
        let mut c = Client::connect(server.local_addr())?;
        c.send(b"greet {\"na")?; // and nothing more
        assert_eq!(c.line()?, "ERR the line took too long\n");
        assert_eq!(c.rest()?, "");
        Ok(())
    }

    #[test]
    fn a_client_that_resets_with_a_request_in_flight_is_closed_and_its_reply_counted(
    ) -> anyhow::Result<()> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.start()?;
        let service = rt.bus().subscribe_inbox("held", 8)?;
        let server = LineServer::start(&rt, local(), |_| {})?;
        let c = TcpStream::connect(server.local_addr())?;
        (&c).write_all(b"held {}\n")?;
        let mut request = service.recv_timeout(SOON)?;
        // Reset: SO_LINGER 0, then close.
        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO))?;
        drop(c);
        let engine = &server.engine;
        wait_until("the reset connection to close", || engine.stats().open == 0);
        // The reply comes after all: nobody reads it, and it is counted.
        let handle = request.take_reply_handle().expect("a request");
        let _ = handle.send(Message::json(serde_json::json!(1)));
        let p = engine.protocol();
        wait_until("the unclaimed reply", || {
            p.unclaimed.load(Ordering::Relaxed) + rt.bus().stats().late_replies >= 1
        });
        // Still serving.
        let mut c = Client::connect(server.local_addr())?;
        c.send(b"held {}\n")?;
        let mut request = service.recv_timeout(SOON)?;
        request
            .take_reply_handle()
            .expect("a request")
            .send(Message::json(serde_json::json!("ok")))?;
        assert_eq!(c.line()?, "\"ok\"\n");
        Ok(())
    }

    #[test]
    fn a_stop_answers_the_request_in_flight_first() -> anyhow::Result<()> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.start()?;
        let service = rt.bus().subscribe_inbox("held", 8)?;
        let server = LineServer::start(&rt, local(), |_| {})?;
        let mut idle = Client::connect(server.local_addr())?;
        let mut busy = Client::connect(server.local_addr())?;
        busy.send(b"held {}\n")?;
        let mut request = service.recv_timeout(SOON)?;
        wait_until("both connections", || server.engine.stats().accepted == 2);
        let report = std::thread::scope(|s| -> anyhow::Result<_> {
            let stopping = s.spawn(|| rt.stop());
            // The drain has begun when the idle connection is closed; only then does the
            // component answer, so the request is in flight at the stop.
            assert_eq!(idle.rest()?, "");
            let h = request.take_reply_handle().expect("a request");
            h.send(Message::json(serde_json::json!("late but answered")))?;
            assert_eq!(busy.line()?, "\"late but answered\"\n");
            assert_eq!(busy.rest()?, "");
            Ok(stopping.join().expect("stop")?)
        })?;
        let line = &report.front_ends[0];
        assert_eq!(
            (line.completed, line.closed, line.abandoned),
            (1, 1, 0),
            "{line:?}"
        );
        Ok(())
    }
}
