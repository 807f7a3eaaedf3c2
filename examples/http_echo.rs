//! The server of the `loadtest http` scenario, alone in its process, for an outside load
//! client such as `wrk` (see `benches/http.md`): `GET /echo/{id}` is answered by a component
//! with the id, `GET /hello` by the front-end itself.
//!
//! ```sh
//! cargo run --release --example http_echo -- 127.0.0.1:8081 1   # address, I/O threads
//! wrk -t1 -c100 -d10s http://127.0.0.1:8081/echo/7
//! wrk -t1 -c100 -d10s http://127.0.0.1:8081/hello
//! ```
//!
//! Runs until killed; Ctrl-C ends the process.

use anyhow::Context as _;
use reactorium::{
    BoxError, Component, ComponentOptions, Context, HttpConfig, HttpServer, Message, Routes,
    Runtime,
};

/// Answers `/echo/{id}` with the id, as bytes (as the load test's echo does).
struct Echo;

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let id = msg.header("http.param.id").unwrap_or_default().to_owned();
        ctx.reply(&mut msg, Message::bytes(id))?;
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
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()
        .context("the first argument is the address to listen on, such as 127.0.0.1:8081")?;
    let io_threads: usize = args
        .next()
        .map_or(Ok(1), |s| s.parse())
        .context("the second argument is the number of I/O threads")?;

    let rt = Runtime::builder().worker_threads(1).build()?;
    rt.deploy_with(
        "echo",
        ComponentOptions::new()
            .mailbox_capacity(1024)
            .subscribe("bench.echo"),
        || Echo,
    )?;
    rt.start()?;
    let server = HttpServer::start(
        &rt,
        HttpConfig::new().bind(addr).io_threads(io_threads),
        Routes::new()
            .route("GET", "/echo/{id}", "bench.echo")?
            .fixed("GET", "/hello", 200, "text/plain", "hello")?,
    )?;
    println!(
        "http_echo: listening on http://{} with {io_threads} I/O thread(s)",
        server.local_addr()
    );
    loop {
        std::thread::park();
    }
}
