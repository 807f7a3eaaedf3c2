//! The connection engine with a protocol of the test's own (the public API only): the
//! connection cap and its slack, outcomes from other threads, the write timeout, lingering,
//! a peer that resets while its work is in flight, the graceful stop's three counts, and the
//! datagram side's exchanges. HTTP, on the same engine, is tested in `tests/http.rs`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use reactorium::engine::{
    Admission, CloseReason, Completer, DatagramEngine, DatagramIo, DatagramProtocol, EngineConfig,
    Io, StreamEngine, StreamProtocol,
};

use support::{wait_until, SOON};

/// `w`: start work (its completer goes to the test, which answers with a string); `b`:
/// queue 8 MiB; `c`: answer `bye` and close lingering; `e`: answer `e` at once; `g`: hold
/// the I/O thread until the test opens the gate (so bytes the test sends meanwhile wait
/// unread in the kernel); `p`: begin a unit that needs more input (`q` ends it, answered
/// `q`). Over the cap: `full`, then closed at the first input.
struct Held {
    work: Sender<Completer<String>>,
    gate: Receiver<()>,
    held: Sender<()>,
    closed: Sender<CloseReason>,
    unclaimed: Sender<String>,
}

#[derive(Default)]
struct Conn {
    waiting: Option<u64>,
    reject: bool,
    partial: bool,
}

impl StreamProtocol for Held {
    type Conn = Conn;
    type Outcome = String;

    fn open(&self, io: &mut Io<'_, Self>, admission: Admission) -> Conn {
        if admission == Admission::OverCap {
            io.write(b"full\n"); // and closed at its first input
            return Conn {
                reject: true,
                ..Conn::default()
            };
        }
        Conn::default()
    }

    fn on_input(&self, conn: &mut Conn, io: &mut Io<'_, Self>) {
        if conn.reject {
            io.close_now();
            return;
        }
        while conn.waiting.is_none() && !io.input().is_empty() {
            match io.input().remove(0) {
                b'w' => {
                    let done = io.completer();
                    conn.waiting = Some(done.token());
                    let _ = self.work.send(done);
                }
                b'b' => io.write(&vec![b'x'; 8 << 20]),
                b'c' => {
                    io.write(b"bye\n");
                    io.close_linger();
                    return;
                }
                b'e' => io.write(b"e\n"),
                b'p' => conn.partial = true,
                b'q' => {
                    conn.partial = false;
                    io.write(b"q\n");
                }
                b'g' => {
                    let _ = self.held.send(());
                    let _ = self.gate.recv_timeout(SOON);
                }
                _ => {}
            }
        }
    }

    fn on_outcome(&self, conn: &mut Conn, token: u64, outcome: String, io: &mut Io<'_, Self>) {
        if conn.waiting == Some(token) {
            conn.waiting = None;
            io.write(outcome.as_bytes());
        }
    }

    fn in_flight(&self, conn: &Conn) -> bool {
        conn.waiting.is_some() || conn.partial
    }

    fn wants_input(&self, conn: &Conn) -> bool {
        conn.partial
    }

    fn on_close(&self, _conn: Conn, reason: CloseReason) {
        let _ = self.closed.send(reason);
    }

    fn unclaimed(&self, outcome: String) {
        let _ = self.unclaimed.send(outcome);
    }
}

struct Harness {
    engine: StreamEngine<Held>,
    /// Opens the gate of a `g`.
    gate: Sender<()>,
    /// A `g` holds the I/O thread.
    held: Receiver<()>,
    work: Receiver<Completer<String>>,
    closed: Receiver<CloseReason>,
    unclaimed: Receiver<String>,
}

fn start(config: EngineConfig) -> Result<Harness> {
    let (work_tx, work) = channel::unbounded();
    let (closed_tx, closed) = channel::unbounded();
    let (unclaimed_tx, unclaimed) = channel::unbounded();
    let (gate, gate_rx) = channel::unbounded();
    let (held_tx, held) = channel::unbounded();
    let engine = StreamEngine::start(
        config.io_threads(1),
        Arc::new(Held {
            work: work_tx,
            gate: gate_rx,
            held: held_tx,
            closed: closed_tx,
            unclaimed: unclaimed_tx,
        }),
    )?;
    Ok(Harness {
        engine,
        gate,
        held,
        work,
        closed,
        unclaimed,
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(SOON))?;
    Ok(s)
}

fn read_all(mut s: &TcpStream) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    Ok(v)
}

#[test]
fn outcomes_from_other_threads_come_back_to_their_connection() -> Result<()> {
    let h = start(EngineConfig::new("t"))?;
    let mut a = connect(h.engine.local_addr())?;
    let mut b = connect(h.engine.local_addr())?;
    a.write_all(b"w")?;
    let for_a = h.work.recv_timeout(SOON)?;
    b.write_all(b"w")?;
    let for_b = h.work.recv_timeout(SOON)?;
    std::thread::spawn(move || for_b.complete("to b\n".into()))
        .join()
        .unwrap();
    for_a.complete("to a\n".into());
    let mut buf = [0u8; 5];
    a.read_exact(&mut buf)?;
    assert_eq!(&buf, b"to a\n");
    b.read_exact(&mut buf)?;
    assert_eq!(&buf, b"to b\n");
    Ok(())
}

#[test]
fn past_the_cap_connections_are_told_then_past_the_slack_refused() -> Result<()> {
    let h = start(EngineConfig::new("t").max_connections(1).reject_slack(1))?;
    let addr = h.engine.local_addr();
    let _first = connect(addr)?;
    wait_until("the first in", || h.engine.stats().open == 1);
    let mut second = connect(addr)?;
    let mut told = [0u8; 5];
    second.read_exact(&mut told)?;
    assert_eq!(&told, b"full\n");
    assert_eq!(h.engine.stats().open, 2);
    let refused = connect(addr)?;
    let bytes = read_all(&refused).unwrap_or_default();
    assert!(bytes.is_empty(), "{bytes:?}");
    assert_eq!(h.engine.stats().refused, 1);
    second.write_all(b"?")?;
    assert!(read_all(&second)?.is_empty(), "closed at its first input");
    Ok(())
}

#[test]
fn output_the_peer_does_not_take_is_closed_at_the_write_timeout() -> Result<()> {
    let h = start(EngineConfig::new("t").write_timeout(Duration::from_millis(200)))?;
    let mut s = connect(h.engine.local_addr())?;
    s.write_all(b"b")?; // 8 MiB back, never read
    assert_eq!(h.closed.recv_timeout(SOON)?, CloseReason::WriteTimeout);
    Ok(())
}

#[test]
fn a_lingering_close_lets_the_peer_read_the_answer_while_it_still_writes() -> Result<()> {
    let h = start(EngineConfig::new("t"))?;
    let s = connect(h.engine.local_addr())?;
    // `c` then far more than the socket buffers: closing without lingering would reset.
    let mut out = vec![b'c'];
    out.extend(std::iter::repeat(b'.').take(4 << 20));
    let writer = s.try_clone()?;
    let t = std::thread::spawn(move || (&writer).write_all(&out));
    let mut answer = [0u8; 4];
    (&s).read_exact(&mut answer)?;
    assert_eq!(&answer, b"bye\n");
    let _ = t.join();
    drop(s);
    assert_eq!(h.closed.recv_timeout(SOON)?, CloseReason::Done);
    Ok(())
}

#[test]
fn a_peer_that_resets_with_work_in_flight_is_closed_at_once() -> Result<()> {
    let h = start(EngineConfig::new("t"))?;
    let s = connect(h.engine.local_addr())?;
    (&s).write_all(b"w")?;
    let done = h.work.recv_timeout(SOON)?;
    // End of stream first (read interest goes off, the work is in flight), then a reset:
    // the engine must see the hang-up and close, not wait (or spin) on it.
    s.shutdown(std::net::Shutdown::Write)?;
    std::thread::sleep(Duration::from_millis(50)); // the end of stream first, likelier
    assert!(h.closed.is_empty(), "held while its work is in flight");
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    drop(s);
    let reason = h.closed.recv_timeout(SOON)?;
    assert!(
        matches!(reason, CloseReason::PeerClosed | CloseReason::Error),
        "{reason:?}"
    );
    done.complete("late\n".into());
    assert_eq!(h.unclaimed.recv_timeout(SOON)?, "late\n");
    Ok(())
}

#[test]
fn a_half_close_ends_a_unit_that_wants_input_at_once_and_lets_work_in_flight_answer() -> Result<()>
{
    // Issue 12, item 5: a unit that needs more input can never be whole after the peer's
    // end of stream; it was held until a deadline (HTTP: the 30 s body timeout).
    let h = start(EngineConfig::new("t"))?;
    let partial = connect(h.engine.local_addr())?;
    (&partial).write_all(b"p")?;
    partial.shutdown(std::net::Shutdown::Write)?;
    assert_eq!(h.closed.recv_timeout(SOON)?, CloseReason::PeerClosed);
    assert!(read_all(&partial)?.is_empty());

    // Work that needs nothing more from the peer goes on: its answer is written.
    let waiting = connect(h.engine.local_addr())?;
    (&waiting).write_all(b"w")?;
    let done = h.work.recv_timeout(SOON)?;
    waiting.shutdown(std::net::Shutdown::Write)?;
    done.complete("answered\n".into());
    assert_eq!(read_all(&waiting)?, b"answered\n");
    assert_eq!(h.closed.recv_timeout(SOON)?, CloseReason::PeerClosed);
    Ok(())
}

#[test]
fn a_stop_closes_idle_completes_in_flight_and_abandons_the_late() -> Result<()> {
    let h = start(EngineConfig::new("t").shutdown_timeout(Duration::from_millis(500)))?;
    let addr = h.engine.local_addr();
    let idle = connect(addr)?;
    let quick = connect(addr)?;
    let slow = connect(addr)?;
    (&quick).write_all(b"w")?;
    let for_quick = h.work.recv_timeout(SOON)?;
    (&slow).write_all(b"w")?;
    let _for_slow = h.work.recv_timeout(SOON)?; // never answered
    wait_until("three open", || h.engine.stats().open == 3);
    let report = std::thread::scope(|s| -> Result<_> {
        let stopping = s.spawn(|| h.engine.stop());
        assert!(
            read_all(&idle)?.is_empty(),
            "the idle one closes at the drain's start"
        );
        for_quick.complete("done\n".into());
        assert_eq!(read_all(&quick)?, b"done\n");
        Ok(stopping.join().expect("stop"))
    })?;
    assert_eq!(
        (
            report.closed_idle,
            report.completed,
            report.abandoned,
            report.joined
        ),
        (1, 1, 1, true),
        "{report:?}"
    );
    assert!(read_all(&slow)?.is_empty());
    assert!(TcpStream::connect_timeout(&addr, SOON)
        .map_or(true, |s| read_all(&s).map_or(true, |b| b.is_empty())));
    assert_eq!(
        h.engine.stop(),
        report,
        "a second stop returns the first report"
    );
    Ok(())
}

/// Holds the I/O thread (a `g` on a connection of its own), runs `meanwhile` (its bytes wait
/// unread in the kernel), starts a stop, and opens the gate once the stop has been asked:
/// the thread's drain then begins with those bytes not read yet. Returns the stop's report.
fn stop_while_held(
    h: &Harness,
    meanwhile: impl FnOnce() -> Result<()>,
    then: impl FnOnce() -> Result<()>,
) -> Result<reactorium::engine::EngineReport> {
    let holder = connect(h.engine.local_addr())?;
    (&holder).write_all(b"g")?;
    h.held.recv_timeout(SOON)?;
    meanwhile()?;
    std::thread::scope(|s| -> Result<_> {
        let stopping = s.spawn(|| h.engine.stop());
        wait_until("the stop is asked", || h.engine.is_stopped());
        h.gate.send(())?;
        drop(holder); // idle: closed within the grace, counted closed idle
        then()?;
        Ok(stopping.join().expect("stop"))
    })
}

#[test]
fn a_stop_serves_what_arrived_before_it_and_counts_it_completed() -> Result<()> {
    // Issue 12, item 2: a request in the socket's buffer when the stop began was closed as
    // idle, and its sender saw a reset.
    let h = start(EngineConfig::new("t").drain_grace(Duration::ZERO))?;
    let waiting = connect(h.engine.local_addr())?;
    let report = stop_while_held(
        &h,
        || Ok((&waiting).write_all(b"e")?),
        || {
            assert_eq!(read_all(&waiting)?, b"e\n", "answered, then closed");
            Ok(())
        },
    )?;
    assert_eq!(
        (report.completed, report.closed_idle, report.abandoned),
        (1, 1, 0),
        "{report:?}"
    );
    Ok(())
}

#[test]
fn a_stop_serves_connections_the_kernel_held_in_the_backlog() -> Result<()> {
    // Accepted by the kernel while the I/O thread was busy, its unit sent: the drain takes
    // it before it stops listening (closing a listener resets what its backlog holds).
    let h = start(EngineConfig::new("t").drain_grace(Duration::ZERO))?;
    let mut late = None;
    let report = stop_while_held(
        &h,
        || {
            let s = connect(h.engine.local_addr())?;
            (&s).write_all(b"e")?;
            late = Some(s);
            Ok(())
        },
        || Ok(()),
    )?;
    let late = late.expect("connected");
    assert_eq!(read_all(&late)?, b"e\n", "answered, then closed");
    assert_eq!(
        (report.completed, report.closed_idle, report.abandoned),
        (1, 1, 0),
        "{report:?}"
    );
    Ok(())
}

#[test]
fn a_unit_sent_on_an_idle_connection_within_the_drain_grace_is_served() -> Result<()> {
    // Closing an idle connection at once races with a unit on its way: within the grace it
    // is served, and counted completed; an idle connection that sends nothing is closed
    // idle when the peer goes or the grace ends.
    let h = start(
        EngineConfig::new("t")
            .drain_grace(SOON)
            .shutdown_timeout(SOON * 2),
    )?;
    let addr = h.engine.local_addr();
    let idle = connect(addr)?;
    let quiet = connect(addr)?;
    wait_until("two open", || h.engine.stats().open == 2);
    let report = std::thread::scope(|s| -> Result<_> {
        let stopping = s.spawn(|| h.engine.stop());
        // The drain has begun once the listener refuses. (A probe taken before that is
        // dropped at once: closed by its peer, or closed idle if the drain took it.)
        wait_until("the listener stops", || TcpStream::connect(addr).is_err());
        (&idle).write_all(b"e")?;
        assert_eq!(read_all(&idle)?, b"e\n", "answered, then closed");
        drop(quiet);
        Ok(stopping.join().expect("stop"))
    })?;
    assert_eq!((report.completed, report.abandoned), (1, 0), "{report:?}");
    assert!(report.closed_idle >= 1, "{report:?}");
    Ok(())
}

#[test]
fn work_in_flight_whose_peer_resets_during_a_stop_is_counted_abandoned() -> Result<()> {
    // Each connection open at the stop lands in one count; one whose work did not finish
    // because its peer went is not completed.
    let h = start(EngineConfig::new("t"))?;
    let s = connect(h.engine.local_addr())?;
    (&s).write_all(b"w")?;
    let _done = h.work.recv_timeout(SOON)?; // never answered
    let report = std::thread::scope(|sc| -> Result<_> {
        let stopping = sc.spawn(|| h.engine.stop());
        wait_until("the stop is asked", || h.engine.is_stopped());
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        drop(s);
        Ok(stopping.join().expect("stop"))
    })?;
    assert_eq!(
        (report.completed, report.closed_idle, report.abandoned),
        (0, 0, 1),
        "{report:?}"
    );
    Ok(())
}

/// Each datagram `N` begins an exchange whose outcome the test gives; the reply is `N:outcome`.
/// A datagram `t` begins one with a deadline of 50 ms.
struct Exchanger {
    work: Sender<Completer<String>>,
    abandoned: Sender<String>,
}

impl DatagramProtocol for Exchanger {
    type Exchange = (SocketAddr, String);
    type Outcome = String;

    fn on_datagram(&self, from: SocketAddr, data: &[u8], io: &mut DatagramIo<'_, Self>) {
        let id = String::from_utf8_lossy(data).into_owned();
        let wait = if id == "t" {
            Duration::from_millis(50)
        } else {
            SOON
        };
        let done = io.begin((from, id), io.now() + wait);
        let _ = self.work.send(done);
    }

    fn on_outcome(
        &self,
        (from, id): (SocketAddr, String),
        outcome: String,
        io: &mut DatagramIo<'_, Self>,
    ) {
        io.send_to(from, format!("{id}:{outcome}").as_bytes());
    }

    fn on_deadline(&self, (from, id): (SocketAddr, String), io: &mut DatagramIo<'_, Self>) {
        io.send_to(from, format!("{id}:timeout").as_bytes());
    }

    fn on_abandon(&self, (_, id): (SocketAddr, String)) {
        let _ = self.abandoned.send(id);
    }
}

#[test]
fn datagram_exchanges_end_by_outcome_deadline_or_abandon() -> Result<()> {
    let (work_tx, work) = channel::unbounded();
    let (abandoned_tx, abandoned) = channel::unbounded();
    let engine = DatagramEngine::start(
        EngineConfig::new("u").shutdown_timeout(Duration::from_millis(300)),
        Arc::new(Exchanger {
            work: work_tx,
            abandoned: abandoned_tx,
        }),
    )?;
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.set_read_timeout(Some(SOON))?;
    let recv = || -> Result<String> {
        let mut buf = [0u8; 64];
        let n = client.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    client.send_to(b"1", engine.local_addr())?;
    let one = work.recv_timeout(SOON)?;
    std::thread::spawn(move || one.complete("ok".into()))
        .join()
        .unwrap();
    assert_eq!(recv()?, "1:ok");
    client.send_to(b"t", engine.local_addr())?;
    let late = work.recv_timeout(SOON)?;
    assert_eq!(recv()?, "t:timeout");
    late.complete("too late".into()); // unclaimed: its exchange ended
    client.send_to(b"2", engine.local_addr())?;
    let two = work.recv_timeout(SOON)?;
    client.send_to(b"3", engine.local_addr())?;
    let _three = work.recv_timeout(SOON)?; // never answered
    wait_until("two in flight", || engine.stats().in_flight == 2);
    let report = std::thread::scope(|s| -> Result<_> {
        let stopping = s.spawn(|| engine.stop());
        wait_until("the stop", || engine.is_stopped());
        two.complete("in the drain".into());
        assert_eq!(recv()?, "2:in the drain");
        Ok(stopping.join().expect("stop"))
    })?;
    assert_eq!(
        (report.completed, report.abandoned, report.joined),
        (1, 1, true),
        "{report:?}"
    );
    assert_eq!(abandoned.recv_timeout(SOON)?, "3");
    let stats = engine.stats();
    assert_eq!(
        (stats.received, stats.sent, stats.timeouts),
        (4, 3, 1),
        "{stats:?}"
    );
    Ok(())
}

#[test]
fn the_registration_guard_works_with_a_borrowed_poller() -> Result<()> {
    use reactorium::engine::polling::{Event, Events, Poller};
    use reactorium::engine::Registration;
    let poller = Poller::new()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    let addr = socket.local_addr()?;
    let reg = Registration::new(&poller, socket, Event::readable(3))?;
    UdpSocket::bind("127.0.0.1:0")?.send_to(b"x", addr)?;
    let mut events = Events::new();
    let end = Instant::now() + SOON;
    while events.is_empty() && Instant::now() < end {
        poller.wait(&mut events, Some(SOON))?;
    }
    assert_eq!(events.iter().next().map(|e| e.key), Some(3));
    let mut buf = [0u8; 4];
    assert_eq!(reg.source().recv(&mut buf)?, 1);
    reg.modify(Event::none(3))?;
    Ok(())
}
