//! Overload with counting invariants: many clients against a component with a small
//! mailbox. Every request gets exactly one response, each a `200` or a `503`, and the
//! component handled exactly the `200`s.

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Routes};

use crate::support::http::{assert_error, config, serve, Client};
use crate::support::wait_until;

/// Answers after a little work, so its mailbox fills under load.
struct Work;

impl Component for Work {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        // Makes a full mailbox likelier; nothing asserts on time.
        std::thread::sleep(Duration::from_micros(50));
        ctx.reply(&mut msg, Message::json(serde_json::json!({"ok": true})))?;
        Ok(())
    }
}

#[test]
fn stress_every_request_gets_one_response_and_the_counts_match() -> Result<()> {
    const CLIENTS: usize = 8;
    const CONNS: usize = 8; // per client: one request in flight on each
    const ROUNDS: usize = 40;
    let sent = (CLIENTS * CONNS * ROUNDS) as u64;
    let routes = Routes::new().route("GET", "/work", "work.do")?;
    let (rt, server) = serve(config(), routes, |rt| {
        rt.deploy_with(
            "work",
            ComponentOptions::new()
                .subscribe("work.do")
                .mailbox_capacity(4),
            || Work,
        )?;
        Ok(())
    })?;
    let addr = server.local_addr();
    let ok = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ok, busy) = (Arc::clone(&ok), Arc::clone(&busy));
            std::thread::spawn(move || -> Result<()> {
                let mut conns = (0..CONNS)
                    .map(|_| Client::connect(addr))
                    .collect::<std::io::Result<Vec<_>>>()?;
                for _ in 0..ROUNDS {
                    for c in &mut conns {
                        c.send(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n")?;
                    }
                    for c in &mut conns {
                        let r = c.read_response()?;
                        match r.status {
                            200 => ok.fetch_add(1, Ordering::Relaxed),
                            503 => {
                                assert_error(&r, 503, "backpressure");
                                assert!(r.header("retry-after").is_some());
                                busy.fetch_add(1, Ordering::Relaxed)
                            }
                            other => panic!("unexpected {other}: {}", r.text()),
                        };
                    }
                }
                // Exactly one response each: nothing more is waiting on any connection.
                for c in &mut conns {
                    c.stream().set_nonblocking(true)?;
                    let mut byte = [0u8; 1];
                    let extra = c.stream().read(&mut byte);
                    assert!(
                        matches!(&extra, Err(e) if e.kind() == ErrorKind::WouldBlock),
                        "an extra response byte: {extra:?}"
                    );
                }
                Ok(())
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread")?;
    }
    let (ok, busy) = (ok.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    println!("stress: {sent} requests: {ok} answered 200, {busy} refused 503");
    assert_eq!(ok + busy, sent);
    assert_eq!(server.stats().requests, sent);
    let work = rt.component("work").expect("deployed").reactor;
    wait_until("the component counts what it answered", || {
        work.stats().handled >= ok
    });
    assert_eq!(work.stats().handled, ok);
    assert_eq!(work.stats().rejected, busy);
    Ok(())
}
