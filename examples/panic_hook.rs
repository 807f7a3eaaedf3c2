//! What a supervised panic costs, with and without `reactorium::set_panic_hook`.
//!
//! A permanent component panics on every message and its supervisor restarts it; a plain
//! thread sends one message at a time and waits for the restart. The runtime reports each
//! panic as an `error` event (`component failed`, with the component's name and the panic's
//! text). Without the hook the standard library's default hook *also* prints each panic to
//! stderr, and with `RUST_BACKTRACE=1` captures and prints a backtrace first, on the
//! component's own thread.
//!
//! ```sh
//! RUST_BACKTRACE=1 cargo run --release --example panic_hook            # default hook
//! RUST_BACKTRACE=1 cargo run --release --example panic_hook -- hook    # set_panic_hook
//! ```
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use std::time::{Duration, Instant};

use anyhow::bail;
use reactorium::{
    BoxError, Component, ComponentOptions, Context, Message, Restart, Runtime, SupervisorOptions,
};

struct Fragile;

impl Component for Fragile {
    fn handle(&mut self, _msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        panic!("fragile panics on every message")
    }
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let hook = std::env::args().nth(1).as_deref() == Some("hook");
    if hook {
        reactorium::set_panic_hook();
    }
    let panics: u32 = 20;
    let rt = Runtime::builder()
        .supervisor(SupervisorOptions::default().intensity(panics, Duration::from_secs(3600)))
        .build()?;
    let fragile = rt.deploy_with(
        "fragile",
        ComponentOptions::new().restart(Restart::Permanent),
        || Fragile,
    )?;
    rt.start()?;
    let mut took = Vec::new();
    for i in 1..=u64::from(panics) {
        let sent = Instant::now();
        rt.bus().send_to("fragile", Message::empty())?;
        let deadline = sent + Duration::from_secs(30);
        while fragile.stats().restarts < i {
            if Instant::now() > deadline {
                bail!("no restart after panic {i}");
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        took.push(sent.elapsed());
    }
    rt.stop()?;
    let rest = took[1..].iter().sum::<Duration>() / (panics - 1);
    println!(
        "{panics} panics, each caught, reported and restarted: the first {:.2?}, the others \
         {rest:.2?} on average (set_panic_hook: {hook}, RUST_BACKTRACE={})",
        took[0],
        std::env::var("RUST_BACKTRACE").unwrap_or_default()
    );
    Ok(())
}
