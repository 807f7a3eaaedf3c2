//! The `http` scenario's load client: HTTP/1.1 keep-alive connections spread over a few
//! threads, each thread with its own `polling::Poller`, in a closed loop (every connection
//! has exactly one request outstanding and sends the next as soon as the response is in).
//! Responses are framed by `Content-Length` (parsed with `httparse`); a response without one
//! is a protocol error.
//!
//! Time runs in three phases from the moment the threads start: a warm-up whose responses
//! are counted but not measured, the measured window (`duration`), and a drain in which no
//! new request is sent and the last outstanding ones are read. Every response of every phase
//! is counted in `total`, so the server's own count can be compared with it exactly.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use hdrhistogram::Histogram;
use reactorium::engine::polling::{Event, Events, Poller};
use reactorium::engine::Registration;

use super::measure::{latency_histogram, record};

/// How long the drain may take before the requests still outstanding count as unanswered.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long one connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most bytes one read takes; a response here is about a hundred.
const READ_CHUNK: usize = 4096;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// One connection's request, sent again and again, and the body a `200` must carry.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) request: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl Exchange {
    /// `GET path` on a keep-alive connection, expecting `body`.
    pub(crate) fn get(path: &str, body: &[u8]) -> Exchange {
        Exchange {
            request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes(),
            body: body.to_vec(),
        }
    }
}

/// What the client saw.
#[derive(Debug)]
pub(crate) struct Report {
    /// Latency of each response completed in the measured window, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Responses completed in the measured window.
    pub(crate) measured: u64,
    /// The measured window's length.
    pub(crate) window: Duration,
    /// Responses of every phase (warm-up, window, drain).
    pub(crate) total: u64,
    /// Responses whose status was not `200`, every phase.
    pub(crate) non_200: u64,
    /// `200` responses whose body was not the one expected.
    pub(crate) wrong_body: u64,
    /// Responses completed in the measured window, per connection.
    pub(crate) per_connection: Vec<u64>,
    /// Connections the server closed or broke, and why (the first few).
    pub(crate) lost: u64,
    pub(crate) lost_why: Vec<String>,
    /// Requests still outstanding when the drain gave up.
    pub(crate) unanswered: u64,
}

impl Report {
    fn new(connections: usize, window: Duration) -> Report {
        Report {
            latency: latency_histogram(),
            measured: 0,
            window,
            total: 0,
            non_200: 0,
            wrong_body: 0,
            per_connection: vec![0; connections],
            lost: 0,
            lost_why: Vec::new(),
            unanswered: 0,
        }
    }

    fn merge(&mut self, other: Report) -> Result<()> {
        self.latency
            .add(&other.latency)
            .map_err(|e| anyhow!("merging latency histograms: {e:?}"))?;
        self.measured += other.measured;
        self.total += other.total;
        self.non_200 += other.non_200;
        self.wrong_body += other.wrong_body;
        for (a, b) in self.per_connection.iter_mut().zip(other.per_connection) {
            *a += b;
        }
        self.lost += other.lost;
        self.lost_why.extend(
            other
                .lost_why
                .into_iter()
                .take(3 - self.lost_why.len().min(3)),
        );
        self.unanswered += other.unanswered;
        Ok(())
    }

    fn lose(&mut self, why: String) {
        self.lost += 1;
        if self.lost_why.len() < 3 {
            self.lost_why.push(why);
        }
    }
}

/// Opens `plan.connections` connections, runs the closed loop on `plan.threads` threads and
/// returns what they saw. `exchange(i)` is connection `i`'s request and expected body.
pub(crate) fn run(plan: &Plan, exchange: impl Fn(usize) -> Exchange) -> Result<Report> {
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    let mut shares: Vec<Vec<(TcpStream, Conn)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..plan.connections {
        let stream =
            TcpStream::connect_timeout(&plan.addr, CONNECT_TIMEOUT).with_context(|| {
                format!(
                    "connection {} of {} to {} (each takes two descriptors here, client and \
                 server side: see `ulimit -n`)",
                    i + 1,
                    plan.connections,
                    plan.addr
                )
            })?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        shares[i % threads].push((stream, Conn::new(i, exchange(i))));
    }
    let t0 = Instant::now();
    let window_start = t0 + plan.warmup;
    let clock = Clock {
        window_start,
        end: window_start + plan.duration,
    };
    let reports = thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, conns)| {
                let n = plan.connections;
                thread::Builder::new()
                    .name(format!("http-client-{t}"))
                    .spawn_scoped(s, move || drive(conns, n, clock, plan.duration))
            })
            .collect::<io::Result<Vec<_>>>()
            .context("starting the client threads")?;
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect::<Result<Vec<Report>>>()
    })?;
    let mut all = Report::new(plan.connections, plan.duration);
    for r in reports {
        all.merge(r)?;
    }
    Ok(all)
}

/// The phase boundaries, shared by every client thread.
#[derive(Debug, Clone, Copy)]
struct Clock {
    window_start: Instant,
    end: Instant,
}

/// One client connection (its socket apart, in the [`Registered`] guard once polled).
struct Conn {
    index: usize,
    exchange: Exchange,
    rbuf: Vec<u8>,
    /// How much of the request is written (`request.len()` when all of it).
    written: usize,
    /// When the outstanding request was sent; `None` when nothing is outstanding.
    sent: Option<Instant>,
    writing: bool,
}

impl Conn {
    fn new(index: usize, exchange: Exchange) -> Conn {
        Conn {
            index,
            written: exchange.request.len(),
            exchange,
            rbuf: Vec::with_capacity(READ_CHUNK),
            sent: None,
            writing: false,
        }
    }
}

/// A connection registered with its thread's poller: the library's registration guard
/// deletes the socket from the poller before it closes.
struct Registered<'p> {
    io: Registration<TcpStream, &'p Poller>,
    conn: Conn,
}

impl<'p> Registered<'p> {
    fn new(poller: &'p Poller, stream: TcpStream, conn: Conn, key: usize) -> io::Result<Self> {
        let io = Registration::new(poller, stream, Event::readable(key))?;
        Ok(Registered { io, conn })
    }

    fn interest(&self, key: usize, write: bool) -> io::Result<()> {
        self.io.modify(Event::new(key, true, write))
    }
}

/// One client thread's loop over its connections.
fn drive(
    conns: Vec<(TcpStream, Conn)>,
    connections: usize,
    clock: Clock,
    window: Duration,
) -> Result<Report> {
    let poller = Poller::new().context("creating the client's poller")?;
    let mut report = Report::new(connections, window);
    let mut live: Vec<Option<Registered<'_>>> = Vec::with_capacity(conns.len());
    for (key, (stream, c)) in conns.into_iter().enumerate() {
        live.push(Some(
            Registered::new(&poller, stream, c, key).context("registering a client connection")?,
        ));
    }
    let mut outstanding = 0usize;
    let now = Instant::now();
    for key in 0..live.len() {
        match send(&mut live, key, now) {
            Ok(()) => outstanding += 1,
            Err(e) => {
                report.lose(format!("sending the first request: {e}"));
                live[key] = None;
            }
        }
    }
    let drain_end = clock.end + DRAIN_LIMIT;
    let mut events = Events::new();
    loop {
        let now = Instant::now();
        if now >= clock.end && outstanding == 0 {
            break;
        }
        if now >= drain_end {
            report.unanswered = outstanding as u64;
            break;
        }
        let until = if now < clock.end {
            clock.end
        } else {
            drain_end
        };
        events.clear();
        poller
            .wait(&mut events, Some(until - now))
            .context("waiting for the client's sockets")?;
        for ev in events.iter() {
            let key = ev.key;
            if ev.writable {
                if let Err(e) = flush(&mut live, key) {
                    report.lose(format!("writing a request: {e}"));
                    live[key] = None;
                    outstanding -= 1;
                    continue;
                }
            }
            if ev.readable && live[key].is_some() {
                match receive(&mut live, key, &clock, &mut report) {
                    Ok(Received::Nothing) => {}
                    Ok(Received::Answered) => outstanding -= 1,
                    Err(e) => {
                        let had = live[key].as_ref().is_some_and(|r| r.conn.sent.is_some());
                        report.lose(e.to_string());
                        live[key] = None;
                        if had {
                            outstanding -= 1;
                        }
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Sends `key`'s request, as much as the socket takes now; the rest goes on writability.
fn send(live: &mut [Option<Registered<'_>>], key: usize, now: Instant) -> io::Result<()> {
    let r = live[key].as_mut().expect("sending on a live connection");
    r.conn.sent = Some(now);
    r.conn.written = 0;
    flush(live, key)
}

fn flush(live: &mut [Option<Registered<'_>>], key: usize) -> io::Result<()> {
    let Some(r) = live[key].as_mut() else {
        return Ok(());
    };
    let c = &mut r.conn;
    while c.written < c.exchange.request.len() {
        match r.io.source().write(&c.exchange.request[c.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !c.writing {
                    c.writing = true;
                    r.interest(key, true)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    if c.writing {
        c.writing = false;
        r.interest(key, false)?;
    }
    Ok(())
}

enum Received {
    /// Nothing complete yet (or the socket had nothing).
    Nothing,
    /// The outstanding request was answered and none was sent in its place (the window is
    /// over).
    Answered,
}

/// Reads what `key` has; on a complete response records it and sends the next request
/// while the window is open.
fn receive(
    live: &mut [Option<Registered<'_>>],
    key: usize,
    clock: &Clock,
    report: &mut Report,
) -> Result<Received> {
    let r = live[key].as_mut().expect("reading a live connection");
    let c = &mut r.conn;
    let have = c.rbuf.len();
    c.rbuf.resize(have + READ_CHUNK, 0);
    let n = match r.io.source().read(&mut c.rbuf[have..]) {
        Ok(0) => {
            c.rbuf.truncate(have);
            bail!("connection {} closed by the server", c.index);
        }
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            c.rbuf.truncate(have);
            return Ok(Received::Nothing);
        }
        Err(e) => {
            c.rbuf.truncate(have);
            bail!("connection {}: {e}", c.index);
        }
    };
    c.rbuf.truncate(have + n);
    let Some((status, head, len)) =
        parse(&c.rbuf).with_context(|| format!("connection {}", c.index))?
    else {
        return Ok(Received::Nothing);
    };
    if c.rbuf.len() > head + len {
        bail!(
            "connection {}: bytes after the response with one request outstanding",
            c.index
        );
    }
    let Some(sent) = c.sent.take() else {
        bail!(
            "connection {}: a response with no request outstanding",
            c.index
        );
    };
    let now = Instant::now();
    report.total += 1;
    if status != 200 {
        report.non_200 += 1;
    } else if c.rbuf[head..] != c.exchange.body[..] {
        report.wrong_body += 1;
    }
    c.rbuf.clear();
    if now >= clock.window_start && now < clock.end {
        report.measured += 1;
        report.per_connection[c.index] += 1;
        record(&mut report.latency, now - sent);
    }
    if now < clock.end {
        send(live, key, now).with_context(|| format!("sending on connection {key}"))?;
        Ok(Received::Nothing)
    } else {
        Ok(Received::Answered)
    }
}

/// A complete response at the start of `buf`: its status, head length and body length.
/// `None` while more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut res = httparse::Response::new(&mut headers);
    let head = match res.parse(buf).context("malformed response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = res.code.unwrap_or(0);
    let len = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| anyhow!("a {status} response without Content-Length"))?;
    let len: usize = std::str::from_utf8(len.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("a Content-Length that is not a number"))?;
    Ok((buf.len() >= head + len).then_some((status, head, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_content_length() {
        let full = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello";
        let head = full.len() - 5;
        assert_eq!(parse(full).unwrap(), Some((200, head, 5)));
        assert_eq!(parse(&full[..full.len() - 1]).unwrap(), None);
        assert_eq!(parse(&full[..10]).unwrap(), None);
        let missing = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(parse(missing).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }
}
