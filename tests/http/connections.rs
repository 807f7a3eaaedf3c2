//! Many connections: the connection cap, slowloris heads, and fairness across a thousand
//! keep-alive connections. The server's threads stay fixed whatever the number of
//! connections.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Result;
use reactorium::{ComponentOptions, HttpConfig, HttpServer, Routes, Runtime};

use crate::support::http::{assert_error, config, thread_count, Client, Echo};
use crate::support::{threads_named, wait_until, SOON};

/// A runtime whose threads are named `{prefix}...`, serving a fixed `GET /hello` and "echo"
/// (mailbox 2,048) behind `GET /items/{id}`.
fn server(prefix: &str, config: HttpConfig) -> Result<(Runtime, HttpServer)> {
    let rt = Runtime::builder()
        .worker_threads(1)
        .thread_name_prefix(prefix)
        .drain_timeout(Duration::from_secs(1))
        .build()?;
    rt.deploy_with(
        "echo",
        ComponentOptions::new()
            .subscribe("echo.>")
            .mailbox_capacity(2048),
        || Echo,
    )?;
    rt.start()?;
    let routes = Routes::new()
        .route("GET", "/items/{id}", "echo.get")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?;
    let server = HttpServer::start(&rt, config, routes)?;
    Ok((rt, server))
}

const CLOSE_HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn connections_past_the_cap_get_503_then_are_served_again_once_some_close() -> Result<()> {
    let (_rt, server) = server("cap", config().max_connections(3).header_timeout(SOON))?;
    let addr = server.local_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(addr)?;
        assert_eq!(c.get("/hello")?.status, 200);
        held.push(c); // idle, kept alive
    }
    assert_eq!(server.stats().open_connections, 3);

    let mut over = Client::connect(addr)?;
    let r = over.get("/hello")?;
    assert_error(&r, 503, "too_many_connections");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.closes());
    over.assert_closed_silently();

    // The held ones are still served.
    assert_eq!(held[0].get("/hello")?.status, 200);

    held.truncate(1);
    wait_until("two connections close", || {
        server.stats().open_connections == 1
    });
    for _ in 0..2 {
        let mut c = Client::connect(addr)?;
        assert_eq!(c.request(CLOSE_HELLO)?.status, 200);
    }
    Ok(())
}

#[test]
fn connections_far_past_the_cap_are_closed_at_once() -> Result<()> {
    // Past `max_connections` by 256 more, a connection is closed without being read.
    const SLACK: usize = 256;
    let (_rt, server) = server("far", config().max_connections(1).header_timeout(SOON))?;
    let addr = server.local_addr();
    let mut held = vec![Client::connect(addr)?];
    assert_eq!(held[0].get("/hello")?.status, 200);
    for _ in 0..SLACK {
        held.push(Client::connect(addr)?);
    }
    wait_until("the slack is full", || {
        server.stats().open_connections == 1 + SLACK
    });
    let mut far = Client::connect(addr)?;
    far.assert_closed_silently();
    assert_eq!(server.stats().refused_connections, 1);
    // Those within the slack are told why.
    let r = held[1].get("/hello")?;
    assert_error(&r, 503, "too_many_connections");
    Ok(())
}

#[test]
fn slowloris_heads_are_cut_off_without_new_threads_while_others_are_served() -> Result<()> {
    const SLOW: usize = 2_000;
    const OPENERS: usize = 8;
    let header_timeout = Duration::from_secs(1);
    let (_rt, server) = server("slw", config().header_timeout(header_timeout))?;
    let addr = server.local_addr();
    // A thread names itself once it runs: wait for the two I/O threads.
    wait_until("the I/O threads run", || {
        threads_named("slwhttp").len() == 2
    });
    // And every other thread of the runtime (a reactor, the supervisor, a worker), or the
    // count below misses one that has not named itself yet on a loaded machine.
    crate::support::wait_for_spawned_threads_to_name_themselves();
    let ours_before = threads_named("slw").len();
    let all_before = thread_count();

    // Opened from a few threads: a connect here now and then waits out a 1 s SYN
    // retransmit (even against a plain `std` accept loop), and the threads overlap the waits.
    let started = Instant::now();
    let openers: Vec<_> = (0..OPENERS)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<Vec<Client>> {
                (0..SLOW / OPENERS)
                    .map(|_| {
                        let mut c = Client::connect(addr)?;
                        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")?; // and nothing more
                        Ok(c)
                    })
                    .collect()
            })
        })
        .collect();
    // A keep-alive client is served meanwhile.
    let mut normal = Client::connect(addr)?;
    let mut served = 0;
    while !openers.iter().all(|o| o.is_finished()) {
        let r = normal.get("/items/1")?;
        assert_eq!(r.status, 200, "served while the slow heads are opened");
        served += 1;
        // Leaves the two cores to the openers and the server; nothing is asserted on time.
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(normal);
    let mut slow = Vec::with_capacity(SLOW);
    for o in openers {
        slow.extend(o.join().expect("opener thread")?);
    }
    let opened = started.elapsed();
    let r = Client::connect(addr)?.request(CLOSE_HELLO)?;
    assert_eq!(r.status, 200, "served while all the slow heads are open");
    let ours_during = threads_named("slw").len();
    let all_during = thread_count();

    let deadline = Instant::now() + header_timeout + SOON;
    let mut answered_408 = 0;
    for (i, c) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.wait_closed(left) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                assert!(
                    bytes.starts_with(b"HTTP/1.1 408 "),
                    "connection {i}: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                answered_408 += 1;
            }
            Err(_) => panic!("slow connection {i} still open at the deadline"),
        }
    }
    let all_closed = started.elapsed();
    println!(
        "slowloris: {SLOW} slow heads opened in {opened:?} ({served} requests served meanwhile), \
         all closed after {all_closed:?} ({answered_408} with a 408); runtime threads {ours_before} -> {ours_during}, \
         process threads {all_before} -> {all_during}"
    );
    assert_eq!(ours_during, ours_before, "the server spawned threads");
    wait_until("every slow connection is counted closed", || {
        server.stats().open_connections == 0
    });
    let stats = server.stats();
    // A head the server had not read within `header_timeout` of the accept (a loaded
    // machine) is closed as idle rather than answered 408: either way, cut off.
    assert_eq!(
        stats.header_timeouts + stats.idle_timeouts,
        SLOW as u64,
        "{stats:?}"
    );
    Ok(())
}

#[test]
fn a_thousand_keep_alive_connections_are_all_answered() -> Result<()> {
    const THREADS: usize = 10;
    const PER_THREAD: usize = 100;
    const ROUNDS: usize = 5;
    // A connection that has sent nothing yet is closed after `header_timeout`: keep the
    // first ones open while the last connect.
    let (_rt, server) = server("fair", config().header_timeout(SOON))?;
    let addr = server.local_addr();
    let ready = Arc::new(Barrier::new(THREADS));
    let started = Instant::now();
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || -> Result<Duration> {
                let mut conns = (0..PER_THREAD)
                    .map(|_| Client::connect(addr))
                    .collect::<std::io::Result<Vec<_>>>()?;
                ready.wait();
                let mut worst = Duration::ZERO;
                for round in 0..ROUNDS {
                    let mut sent = Vec::with_capacity(PER_THREAD);
                    for (i, c) in conns.iter_mut().enumerate() {
                        let path = format!("/items/{t}-{i}-{round}");
                        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
                        sent.push((path, Instant::now()));
                    }
                    for (c, (path, at)) in conns.iter_mut().zip(sent) {
                        let r = c.read_response()?;
                        worst = worst.max(at.elapsed());
                        assert_eq!(r.status, 200);
                        let echoed = r.json()["headers"]["http.path"].clone();
                        assert_eq!(echoed, path.as_str());
                    }
                }
                Ok(worst)
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for c in clients {
        worst = worst.max(c.join().expect("client thread")?);
    }
    let took = started.elapsed();
    let stats = server.stats();
    println!(
        "fairness: {} connections x {ROUNDS} requests in {took:?}; worst wait {worst:?} \
         (write to response read, client-side queueing included)",
        THREADS * PER_THREAD
    );
    assert_eq!(stats.accepted, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.requests, (THREADS * PER_THREAD * ROUNDS) as u64);
    assert!(worst < SOON, "a connection waited {worst:?}");
    Ok(())
}
