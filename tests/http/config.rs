//! Settings `HttpServer::start` refuses, and the threads it starts.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::Result;
use reactorium::{Error, HttpConfig, HttpServer, Routes};

use crate::support::http::config;
use crate::support::{runtime, threads_named, wait_until};

#[test]
fn settings_out_of_range_are_invalid_config() -> Result<()> {
    let rt = runtime()?;
    let zero = Duration::ZERO;
    let cases: Vec<(&str, HttpConfig)> = vec![
        ("io_threads(0)", config().io_threads(0)),
        ("io_threads(65)", config().io_threads(65)),
        ("max_connections(0)", config().max_connections(0)),
        ("max_header_bytes(16)", config().max_header_bytes(16)),
        ("header_timeout(0)", config().header_timeout(zero)),
        ("body_timeout(0)", config().body_timeout(zero)),
        ("idle_timeout(0)", config().idle_timeout(zero)),
        ("write_timeout(0)", config().write_timeout(zero)),
        ("request_timeout(0)", config().request_timeout(zero)),
    ];
    for (what, c) in cases {
        let r = HttpServer::start(&rt, c, Routes::new());
        assert!(
            matches!(r, Err(Error::InvalidConfig { .. })),
            "{what}: {r:?}"
        );
    }
    let r = Routes::new().route_timeout("GET", "/a", "a", zero);
    assert!(matches!(r, Err(Error::InvalidConfig { .. })), "{r:?}");
    assert!(rt.front_ends().is_empty(), "nothing was started");
    Ok(())
}

#[test]
fn binding_a_port_in_use_is_an_io_error() -> Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let rt = runtime()?;
    let r = HttpServer::start(&rt, config().bind(taken.local_addr()?), Routes::new());
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    Ok(())
}

#[test]
fn starting_http_on_a_stopped_runtime_is_invalid_state() -> Result<()> {
    let rt = runtime()?;
    rt.start()?;
    rt.stop()?;
    let r = HttpServer::start(&rt, config(), Routes::new());
    assert!(matches!(r, Err(Error::InvalidState { .. })), "{r:?}");
    Ok(())
}

#[test]
fn a_server_runs_exactly_io_threads_until_it_stops() -> Result<()> {
    let rt = runtime()?;
    let server = HttpServer::start(&rt, config().io_threads(3), Routes::new())?;
    let name = format!("http-{}-", server.local_addr().port());
    // A thread names itself once it runs: wait for all three.
    wait_until("three I/O threads", || threads_named(&name).len() == 3);
    server.stop();
    wait_until("the I/O threads end", || threads_named(&name).is_empty());
    Ok(())
}

#[test]
fn public_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<reactorium::HttpServer>();
    send_sync::<HttpConfig>();
    send_sync::<Routes>();
    send_sync::<reactorium::HttpStats>();
    send_sync::<reactorium::FrontEndReport>();
    send_sync::<reactorium::AdminHandle>();
}
