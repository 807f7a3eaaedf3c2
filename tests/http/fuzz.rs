//! A bounded, seeded fuzz run of the front-end (issue 12, item 6), in the normal suite:
//! generated request heads against the parser (`reactorium::__fuzzing`, which checks the
//! parser's invariants itself), and generated connection scripts (requests split at random
//! points, pauses, pipelining, half-closes, resets) against a live server on 127.0.0.1,
//! checking that nothing panics, nothing is answered `500`, the counters add up, every
//! connection is closed, and the server still answers. The same generator runs for millions
//! of inputs by hand (`FUZZ_HEADS`, `FUZZ_SCRIPTS`, `FUZZ_SEED`); the coverage-guided target
//! is `fuzz/` (`cargo fuzz`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Result;
use reactorium::{HttpServer, Routes, Runtime};

use crate::support::http::{config, serve, Client, Echo, Slow};
use crate::support::{on, wait_until};

/// SplitMix64: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, from: &[&'a T]) -> &'a T {
        from[self.below(from.len())]
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The grammar's pieces: most picks come from the first list (valid), some from the second.
const METHODS: (&[&str], &[&str]) = (
    &["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE"],
    &["OPTIONS", "get", "G\0T", "", "PATCH", "GE T"],
);
const PATHS: (&[&str], &[&str]) = (
    &[
        "/hello",
        "/items/1",
        "/items/%41%2F",
        "/items",
        "/he%6Clo",
        "/slow/1",
        "/health",
        "/users/a/orders/b",
        "/hello?x=1&y",
        "/nowhere",
        "/",
    ],
    &[
        "/items/%zz",
        "/items/%ff",
        "/hello#frag",
        "*",
        "http://h/hello",
        "//",
        "/items/\u{e9}",
        "/a b",
    ],
);
const VERSIONS: (&[&str], &[&str]) = (
    &["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"],
    &["HTTP/2.0", "HTTP/1.2", "HTTP/1", "http/1.1", ""],
);
const HEADERS: (&[&str], &[&str]) = (
    &[
        "Content-Type: application/json",
        "Content-Type: text/plain",
        "Connection: close",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "X-Forwarded: a\tb",
        "Accept: */*",
        "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ],
    &[
        "Host: other",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
        "Content-Length: +3",
        "Content-Length: -1",
        "Content-Length: 3, 3",
        "Content-Length: 0x10",
        "Content-Length: 99999999999999999999999",
        " folded",
        "No-Colon",
        ": empty-name",
        "Bad Name: x",
        "X-Ctl: a\u{1}b",
    ],
);

impl Rng {
    /// From the valid list, or one time in `1 / bad_one_in`, the other.
    fn piece<'a>(&mut self, lists: (&[&'a str], &[&'a str]), bad_one_in: usize) -> &'a str {
        if self.below(bad_one_in) == 0 {
            self.pick(lists.1)
        } else {
            self.pick(lists.0)
        }
    }
}

/// A request: a head from the grammar above (with a body of the length it declares, or
/// not), then, sometimes, bytes flipped, inserted, removed or cut.
fn request(rng: &mut Rng) -> Vec<u8> {
    let eol = if rng.chance(90) { "\r\n" } else { "\n" };
    let mut head = format!(
        "{} {} {}{eol}",
        rng.piece(METHODS, 12),
        rng.piece(PATHS, 10),
        rng.piece(VERSIONS, 15)
    );
    if rng.below(20) != 0 {
        head.push_str(&format!("Host: t{eol}"));
    }
    for _ in 0..rng.below(4) {
        head.push_str(rng.piece(HEADERS, 8));
        head.push_str(eol);
    }
    let body_len = [0, 0, 2, 5, 17][rng.below(5)];
    if body_len > 0 && rng.chance(90) {
        head.push_str(&format!("Content-Length: {body_len}{eol}"));
    }
    head.push_str(eol);
    let mut raw = head.into_bytes();
    let body = if rng.chance(50) {
        &b"{\"a\":[1,2,3]}xxxx"[..]
    } else {
        &b"not json ..........."[..]
    };
    raw.extend_from_slice(&body[..body_len.min(body.len())]);
    if rng.chance(15) {
        for _ in 0..1 + rng.below(3) {
            if raw.is_empty() {
                break;
            }
            let at = rng.below(raw.len());
            match rng.below(4) {
                0 => raw[at] ^= 1 << rng.below(8),
                1 => raw.insert(at, rng.next() as u8),
                2 => {
                    raw.remove(at);
                }
                _ => raw.truncate(at),
            }
        }
    }
    raw
}

#[test]
fn fuzz_request_heads_against_the_parser() {
    let seed = env("FUZZ_SEED", 12);
    let count = env("FUZZ_HEADS", 20_000);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut whole = 0u64;
    for _ in 0..count {
        let mut raw = request(&mut rng);
        // Pipelining: what follows a head must not change it.
        if rng.chance(20) {
            raw.extend(request(&mut rng));
        }
        whole += u64::from(reactorium::__fuzzing::http_head(&raw).is_some());
        let n = rng.below(raw.len() + 1);
        let _ = reactorium::__fuzzing::http_head(&raw[..n]);
    }
    let mut replies = 0u64;
    for _ in 0..count / 10 {
        let name = rng.pick(&[
            "X-A",
            "Location",
            "Set-Cookie",
            "Content-Type",
            "X Y",
            "",
            "Connection",
        ]);
        let value: String = (0..rng.below(12))
            .map(|_| {
                let b = rng.pick(&[
                    &b"a"[..],
                    b" ",
                    b"\t",
                    b"\r",
                    b"\n",
                    b"\0",
                    b"\x7f",
                    b"z",
                    b":",
                ]);
                b[0] as char
            })
            .collect();
        let status = rng.pick(&["200", "201", "99", "600", "abc", " 204 ", "404"]);
        reactorium::__fuzzing::http_reply_header(name, &value, status);
        replies += 1;
    }
    println!(
        "fuzz (seed {seed}): {} heads ({whole} whole) and {replies} reply headers in {:?}",
        count * 2,
        started.elapsed()
    );
}

/// One step of a connection script.
#[derive(Debug)]
enum Step {
    Send(Vec<u8>),
    Pause(Duration),
    HalfClose,
    Reset,
    Read,
    /// Leave the connection open: the server's deadlines must close it.
    Leave,
}

/// A connection's script: one to three requests (pipelined), sent in chunks split at random
/// points, with pauses and reads in between, ended by a close, a half-close or a reset.
fn script(rng: &mut Rng) -> Vec<Step> {
    let mut bytes = Vec::new();
    for _ in 0..1 + rng.below(3) {
        bytes.extend(request(rng));
    }
    let mut steps = Vec::new();
    while !bytes.is_empty() {
        let n = 1 + rng.below(bytes.len());
        steps.push(Step::Send(bytes.drain(..n).collect()));
        match rng.below(6) {
            0 => steps.push(Step::Pause(Duration::from_millis(rng.below(15) as u64))),
            1 => steps.push(Step::Read),
            _ => {}
        }
    }
    match rng.below(6) {
        0 => steps.push(Step::HalfClose),
        5 => steps.push(Step::Leave),
        1 => steps.push(Step::Reset),
        2 => {
            steps.push(Step::HalfClose);
            steps.push(Step::Pause(Duration::from_millis(rng.below(10) as u64)));
            steps.push(Step::Reset);
        }
        _ => steps.push(Step::Read),
    }
    steps
}

/// Runs `steps` on a new connection; returns the bytes the server sent, and the connection
/// if the script leaves it open.
fn run(addr: SocketAddr, steps: &[Step]) -> Result<(Vec<u8>, Option<TcpStream>)> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for step in steps {
        match step {
            // The server may have closed already (a 400 closes): a failed write ends it.
            Step::Send(b) => {
                if (&s).write_all(b).is_err() {
                    break;
                }
            }
            Step::Pause(d) => std::thread::sleep(*d),
            Step::HalfClose => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Step::Reset => {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                return Ok((got, None)); // dropped: a reset
            }
            Step::Leave => return Ok((got, Some(s))),
            Step::Read => {
                if let Ok(n) = (&s).read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    Ok((got, None))
}

/// The server has closed `s` (end of stream, or a reset); what it sent before is skipped.
fn closed_by_peer(s: &TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
    let mut buf = [0u8; 4096];
    loop {
        match (&*s).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn fuzz_server() -> Result<(Runtime, HttpServer)> {
    let routes = Routes::new()
        .route("GET", "/items/{id}", "echo.get")?
        .route("POST", "/items", "echo.create")?
        .route("PUT", "/items/{id}", "echo.put")?
        .route("GET", "/users/{user}/orders/{order}", "echo.orders")?
        .route("GET", "/slow/{id}", "slow.get")?
        .route("DELETE", "/items/{id}", "nobody.delete")?
        .fixed("GET", "/hello", 200, "text/plain", "hello")?
        .health("/health")?
        .metrics("/metrics")?;
    let short = Duration::from_millis(300);
    let (received, _) = crossbeam::channel::unbounded();
    serve(
        config()
            .header_timeout(short)
            .body_timeout(short)
            .idle_timeout(short)
            .max_body_bytes(16)
            .forward_header("x-forwarded"),
        routes,
        move |rt| {
            rt.deploy_with("echo", on("echo.>"), || Echo)?;
            rt.deploy_with("slow", on("slow.get"), move || Slow {
                delay: Duration::from_millis(5),
                received: received.clone(),
            })?;
            Ok(())
        },
    )
}

#[test]
fn fuzz_connection_scripts_against_a_live_server() -> Result<()> {
    let seed = env("FUZZ_SEED", 12);
    let count = env("FUZZ_SCRIPTS", 400) as usize;
    const THREADS: usize = 8;
    let (rt, server) = fuzz_server()?;
    let addr = server.local_addr();
    let started = Instant::now();
    let scripts: Vec<Vec<Step>> = {
        let mut rng = Rng(seed);
        (0..count).map(|_| script(&mut rng)).collect()
    };
    let received: u64 = std::thread::scope(|s| -> Result<u64> {
        let workers: Vec<_> = scripts
            .chunks(count.div_ceil(THREADS))
            .map(|chunk| {
                s.spawn(move || -> Result<u64> {
                    let mut bytes = 0;
                    let mut left_open = Vec::new();
                    for (i, steps) in chunk.iter().enumerate() {
                        let (got, open) = run(addr, steps)?;
                        left_open.extend(open);
                        bytes += got.len() as u64;
                        // Nothing the server sends is a 500 (a status line at the start).
                        assert!(!got.starts_with(b"HTTP/1.1 500"), "{steps:?}");
                        if i % 50 == 0 {
                            // The canary: still served meanwhile.
                            assert_eq!(Client::connect(addr)?.get("/hello")?.status, 200);
                        }
                    }
                    // Kept until the server has closed them all.
                    wait_until("the server closes what was left open", || {
                        left_open.iter().all(closed_by_peer)
                    });
                    Ok(bytes)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("script thread"))
            .sum()
    })?;
    // Every connection is closed by the server (timeouts are short) or its client.
    wait_until("every connection is closed", || {
        server.stats().open_connections == 0
    });
    let canary = Client::connect(addr)?.get("/hello")?;
    assert_eq!(canary.status, 200, "the server still answers");
    wait_until("the canary is closed", || {
        server.stats().open_connections == 0
    });

    let stats = server.stats();
    assert_eq!(stats.accepted, stats.closed, "{stats:?}");
    // Each script's connection and the canaries'.
    assert!(stats.accepted > count as u64, "{stats:?}");
    assert_eq!(
        stats.refused_connections + stats.accept_errors + stats.poll_errors,
        0
    );
    // The responses counted by status add up to the responses written, and none is a 500.
    let metrics = rt.admin().metrics();
    let mut by_status = 0u64;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("reactorium_http_requests_total{") {
            assert!(!rest.contains("status=\"500\""), "a 500: {line}");
            by_status += rest
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    assert_eq!(by_status, stats.requests, "{stats:?}");
    assert!(
        stats.header_timeouts + stats.body_timeouts + stats.idle_timeouts > 0,
        "scripts that leave a connection open meet the server's deadlines: {stats:?}"
    );
    // No component failed (a panic would show here) and the stop is clean.
    let report = rt.stop()?;
    assert!(
        report.components.iter().all(|c| c.failure.is_none()),
        "{report:?}"
    );
    println!(
        "fuzz (seed {seed}): {count} connection scripts in {:?}: {} responses, {received} bytes \
         received; {stats:?}",
        started.elapsed(),
        stats.requests
    );
    Ok(())
}
