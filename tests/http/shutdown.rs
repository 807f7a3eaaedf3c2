//! A graceful stop: requests in flight are answered (with `Connection: close`) while the
//! components still run, idle connections close at once, new connections are refused, and
//! a reply slower than the shutdown timeout is abandoned.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use crossbeam::channel;
use reactorium::{FrontEndReport, Routes};

use crate::support::http::{config, serve, Client, Slow};
use crate::support::{on, wait_until, Probe, SOON};

const SLOW_GET: &[u8] = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";

/// Larger than loopback socket buffers take at once: writing it waits for the client.
const BIG: usize = 16 * 1024 * 1024;

fn routes() -> Result<Routes> {
    Ok(Routes::new()
        .route("GET", "/slow", "slow.get")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?
        .fixed(
            "GET",
            "/big",
            200,
            "application/octet-stream",
            vec![b'x'; BIG],
        )?)
}

/// Asserts nothing is served on `addr` any more: the connection is refused, or closed at
/// once if the OS still took it.
fn assert_not_served(addr: SocketAddr) {
    let Ok(stream) = TcpStream::connect(addr) else {
        return; // refused
    };
    let mut c = Client::from_stream(stream);
    let _ = c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    match c.wait_closed(Duration::from_secs(2)) {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "served after the stop: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(_) => panic!(
            "a connection made after the stop was taken by the OS and left hanging: \
             neither refused nor closed"
        ),
    }
}

#[test]
fn stop_answers_requests_in_flight_with_connection_close() -> Result<()> {
    let (received_tx, received) = channel::unbounded();
    let (rt, server) = serve(config(), routes()?, |rt| {
        rt.deploy_with("slow", on("slow.get"), move || Slow {
            delay: Duration::from_millis(300),
            received: received_tx.clone(),
        })?;
        Ok(())
    })?;
    let addr = server.local_addr();
    let mut idle = Client::connect(addr)?;
    assert_eq!(idle.get("/hello")?.status, 200);
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(addr)?;
        c.send(SLOW_GET)?;
        in_flight.push(c);
    }
    for _ in 0..3 {
        received.recv_timeout(SOON)?;
    }

    let report = rt.stop()?;

    for c in &mut in_flight {
        let r = c.read_response()?;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.closes(), "answered with Connection: close: {r:?}");
        c.assert_closed_silently();
    }
    idle.assert_closed_silently();
    let http: &FrontEndReport = report.front_ends.first().expect("one front-end");
    assert_eq!(
        (http.completed, http.closed, http.abandoned, http.joined),
        (3, 1, 0, true),
        "{http:?}"
    );
    assert_eq!(report.component("slow").map(|c| c.handled), Some(3));
    assert_not_served(addr);
    Ok(())
}

#[test]
fn a_stop_under_load_answers_every_request_that_was_sent() -> Result<()> {
    // Issue 12, item 2: `wrk -c200` and a stop got 200 read errors: requests in the socket
    // buffers were closed as idle, and so were keep-alive connections whose next request
    // was on its way. Every request sent must be answered; the stop's answers close.
    const CLIENTS: usize = 32;
    let (rt, server) = serve(
        config().drain_grace(SOON).shutdown_timeout(SOON * 2),
        routes()?,
        |_| Ok(()),
    )?;
    let addr = server.local_addr();
    let answered = AtomicU64::new(0);
    let report = std::thread::scope(|s| -> Result<_> {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let answered = &answered;
                s.spawn(move || -> Result<()> {
                    let mut c = Client::connect(addr)?;
                    for n in 0..1_000_000 {
                        let r = c.get("/hello").map_err(|e| {
                            anyhow::anyhow!("client {i}, request {n}: sent, not answered: {e}")
                        })?;
                        assert_eq!(r.status, 200, "{r:?}");
                        answered.fetch_add(1, Ordering::Relaxed);
                        if r.closes() {
                            // The stop's answer: nothing more comes on this connection.
                            c.assert_closed_silently();
                            return Ok(());
                        }
                    }
                    anyhow::bail!("client {i}: no stop came")
                })
            })
            .collect();
        wait_until("every client is under way", || {
            answered.load(Ordering::Relaxed) >= 10 * CLIENTS as u64
        });
        let report = rt.stop()?;
        for c in clients {
            c.join().expect("client thread")?;
        }
        Ok(report)
    })?;
    let http = &report.front_ends[0];
    assert_eq!(
        (http.completed, http.closed, http.abandoned, http.joined),
        (CLIENTS as u64, 0, 0, true),
        "every connection had a request sent or on its way: {http:?}"
    );
    assert_eq!(
        http.detail("requests"),
        Some(answered.load(Ordering::Relaxed))
    );
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[test]
fn a_response_being_written_at_the_stop_is_finished_and_its_connection_closed() -> Result<()> {
    let (_rt, server) = serve(
        config().shutdown_timeout(Duration::from_secs(2)),
        routes()?,
        |_| Ok(()),
    )?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")?;
    // Not read yet: the server waits for the socket to take the rest.
    wait_until("the response is partly written", || {
        c.stream().peek(&mut [0u8; 1]).is_ok_and(|n| n == 1)
    });
    let addr = server.local_addr();
    let report = std::thread::scope(|s| -> Result<FrontEndReport> {
        let stopping = s.spawn(|| server.stop());
        // Read only once the stop has begun: the listener closes when the I/O threads start
        // their drain. Reading earlier lets the response finish before the stop on a busy
        // machine, and the connection is then idle, not in flight, when the stop comes.
        wait_until("the server stopped accepting", || {
            TcpStream::connect(addr).is_err()
        });
        let r = c.read_response()?;
        assert_eq!((r.status, r.body.len()), (200, BIG));
        // Written in full during the drain: nothing more can come on it.
        c.assert_closed_silently();
        Ok(stopping.join().expect("stop"))
    })?;
    assert_eq!((report.completed, report.abandoned), (1, 0), "{report:?}");
    Ok(())
}

#[test]
fn new_connections_are_refused_after_stop() -> Result<()> {
    let (rt, server) = serve(config(), routes()?, |_| Ok(()))?;
    let addr = server.local_addr();
    assert_eq!(Client::connect(addr)?.get("/hello")?.status, 200);
    rt.stop()?;
    // `server` (a handle the application keeps, for its address and stats) is still alive.
    assert_not_served(addr);
    drop(server);
    assert_not_served(addr);
    Ok(())
}

#[test]
fn a_reply_slower_than_the_shutdown_timeout_is_abandoned() -> Result<()> {
    let (tx, held) = channel::unbounded();
    let (rt, server) = serve(
        config().shutdown_timeout(Duration::from_millis(200)),
        routes()?,
        |rt| {
            rt.deploy_with("slow", on("slow.get"), move || Probe { tx: tx.clone() })?;
            Ok(())
        },
    )?;
    let mut c = Client::connect(server.local_addr())?;
    c.send(SLOW_GET)?;
    let (mut request, _thread) = held.recv_timeout(SOON)?;

    let report = rt.stop()?;
    let http = &report.front_ends[0];
    assert_eq!(
        (http.completed, http.abandoned, http.joined),
        (0, 1, true),
        "{http:?}"
    );
    c.assert_closed_silently();

    // The component answers after all: nobody reads it, and it is counted late.
    let handle = request.take_reply_handle().expect("a request");
    let late_before = rt.bus().stats().late_replies;
    let _ = handle.send(reactorium::Message::empty());
    wait_until("the abandoned reply is counted late", || {
        rt.bus().stats().late_replies == late_before + 1
    });
    Ok(())
}

#[test]
fn a_second_stop_returns_the_first_report() -> Result<()> {
    let (rt, server) = serve(config(), routes()?, |_| Ok(()))?;
    let mut idle = Client::connect(server.local_addr())?;
    assert_eq!(idle.get("/hello")?.status, 200);
    let first = server.stop();
    assert_eq!((first.closed, first.joined), (1, true), "{first:?}");
    idle.assert_closed_silently();
    assert_eq!(server.stop(), first);
    let report = rt.stop()?;
    assert_eq!(report.front_ends, vec![first]);
    Ok(())
}
