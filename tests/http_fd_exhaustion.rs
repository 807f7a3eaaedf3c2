//! The HTTP front-end out of file descriptors: `accept` fails with `EMFILE`, the server
//! counts it and pauses accepting instead of spinning, and serves again (the connection that
//! waited in the backlog too) once descriptors are free.
//!
//! A process of its own: `RLIMIT_NOFILE` is process-wide, and any other test opening a file
//! or a socket meanwhile would fail. The descriptors are used up with `/dev/null` handles
//! rather than with client connections, so the one that is left can be given to exactly one
//! client socket: its server side then cannot be accepted (a race between client and server
//! for the last descriptors would make that a matter of luck).

mod support;

use std::fs::File;
use std::io;
use std::net::TcpStream;

use anyhow::Result;
use reactorium::Routes;

use support::http::{config, serve, Client};
use support::{wait_until, SOON};

/// Sets the soft `RLIMIT_NOFILE`; restores the limit it found when dropped.
struct FdLimit {
    saved: libc::rlimit,
}

impl FdLimit {
    #[allow(unsafe_code)]
    fn lower_to(soft: u64) -> io::Result<FdLimit> {
        let mut saved = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer to a local.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let lowered = libc::rlimit {
            rlim_cur: soft.min(saved.rlim_cur),
            rlim_max: saved.rlim_max,
        };
        // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer to a local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FdLimit { saved })
    }
}

impl Drop for FdLimit {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: as in `lower_to`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.saved) };
    }
}

/// The highest descriptor open now.
fn highest_fd() -> io::Result<u64> {
    let mut highest = 0;
    for e in std::fs::read_dir("/proc/self/fd")? {
        if let Some(n) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[test]
fn out_of_descriptors_accept_fails_is_counted_and_serving_resumes_once_they_are_free() -> Result<()>
{
    let routes = Routes::new().fixed("GET", "/hello", 200, "text/plain", "hello")?;
    let (_rt, server) = serve(config(), routes, |_| Ok(()))?;
    let addr = server.local_addr();
    assert_eq!(Client::connect(addr)?.request(HELLO)?.status, 200);

    let limit = FdLimit::lower_to(highest_fd()? + 64)?;
    let mut filler = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => return Err(e.into()),
        }
    }
    assert!(!filler.is_empty());

    // One descriptor free: the client's socket takes it; the server's side of the
    // connection cannot be accepted.
    drop(filler.pop());
    let mut waiting = Client::from_stream(TcpStream::connect(addr)?);
    waiting.send(HELLO)?;
    wait_until("accept fails", || server.stats().accept_errors > 0);
    let errors = server.stats().accept_errors;
    assert_eq!(server.stats().accepted, 1, "nothing accepted meanwhile");

    drop(filler);
    let r = waiting.read_response()?;
    assert_eq!(r.status, 200, "the connection that waited is served");
    assert_eq!(Client::connect(addr)?.request(HELLO)?.status, 200);
    let stats = server.stats();
    println!(
        "accept failed {} times while out of descriptors ({} in all); {stats:?}",
        errors, stats.accept_errors
    );
    // The pause between retries keeps the failures few (about ten a second).
    assert!(
        stats.accept_errors < 10 * SOON.as_secs() + 10,
        "accept spun: {stats:?}"
    );
    drop(limit);
    Ok(())
}
