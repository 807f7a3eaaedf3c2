//! `reactorium demo`: a short tour of the runtime: a pipeline that meets backpressure,
//! request/reply, the worker pool and an orderly shutdown.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime, SendError};

/// Counts orders and keeps a running total; slow on purpose so its mailbox fills.
struct Ledger {
    orders: u64,
    total: u64,
}

impl Component for Ledger {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if msg.expects_reply() {
            let summary = serde_json::json!({ "orders": self.orders, "total": self.total });
            ctx.reply(&mut msg, Message::json(summary))?;
            return Ok(());
        }
        let amount = msg
            .get::<u64>()
            .copied()
            .ok_or("an order carries a u64 amount")?;
        // Pretend each order takes a little bookkeeping, so producers outrun us.
        let until = Instant::now() + Duration::from_micros(20);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.orders += 1;
        self.total += amount;
        Ok(())
    }
}

/// Offloads a "slow" computation to the worker pool and answers with its result.
struct Auditor;

impl Component for Auditor {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let reply = msg.take_reply_handle().ok_or("audit expects a request")?;
        let n = msg.get::<u64>().copied().unwrap_or(0);
        ctx.spawn_blocking(
            move || (1..=n).map(|i| i * i).sum::<u64>(),
            move |_this: &mut Self, ctx, result| {
                let answer = match result {
                    Ok(sum) => Message::typed(sum),
                    Err(e) => Message::json(serde_json::json!({ "error": e.to_string() })),
                };
                // Back on this component's reactor thread.
                debug_assert_eq!(std::thread::current().name(), Some(ctx.name()));
                let _ = reply.send(answer);
            },
        )?;
        Ok(())
    }
}

/// Runs the tour, printing what each step did.
pub(crate) fn run() -> Result<()> {
    let rt = Runtime::builder().worker_threads(2).build()?;
    rt.deploy_with(
        "ledger",
        ComponentOptions::new()
            .mailbox_capacity(256)
            .subscribe("orders.>"),
        || Ledger {
            orders: 0,
            total: 0,
        },
    )?;
    rt.deploy_with(
        "auditor",
        ComponentOptions::new().subscribe("audit"),
        || Auditor,
    )?;
    rt.start()?;
    println!(
        "deployed and started: {:?}",
        rt.components()
            .iter()
            .map(|c| c.name.to_string())
            .collect::<Vec<_>>()
    );

    // 1. A producer that outruns the ledger: every refusal hands the order back to us.
    let (mut accepted, mut refused) = (0u64, 0u64);
    let started = Instant::now();
    for amount in 1..=50_000u64 {
        let mut msg = Message::typed(amount);
        loop {
            match rt.bus().send("orders.created", msg) {
                Ok(()) => {
                    accepted += 1;
                    break;
                }
                Err(SendError::Backpressure { rejected, .. }) => {
                    refused += 1;
                    msg = rejected;
                    std::thread::yield_now();
                }
                Err(e) => bail!("send failed: {e}"),
            }
        }
    }
    println!(
        "sent 50000 orders in {:?}: accepted {accepted}, refused with Backpressure {refused} times \
         (each refusal handed the order back and it was retried)",
        started.elapsed()
    );

    // 2. Request/reply from a plain thread.
    let summary = rt
        .bus()
        .request("orders.summary", Message::empty(), Duration::from_secs(5))?
        .wait()?;
    println!(
        "ledger summary (request/reply): {}",
        summary.as_json().unwrap()
    );

    // 3. Offloading to the worker pool, result back on the component's reactor.
    let audit = rt
        .bus()
        .request("audit", Message::typed(1_000u64), Duration::from_secs(5))?
        .wait()?;
    println!("audit (computed on a worker): {:?}", audit.get::<u64>());

    // 4. Nobody listens on this topic: the error says so and hands the message back.
    match rt.bus().send("nobody.listens", Message::empty()) {
        Err(e @ SendError::NoSubscriber { .. }) => println!("send to an unknown topic: {e}"),
        other => bail!("expected NoSubscriber, got {other:?}"),
    }

    // 5. Orderly shutdown, reverse deploy order, with the accounting.
    let report = rt.stop()?;
    for c in &report.components {
        println!(
            "stopped {:<8} handled {:>6}  drained {:>4}  abandoned {}  failure {:?}",
            c.name, c.handled, c.drained, c.abandoned, c.failure
        );
    }
    println!(
        "worker pool: {} threads joined; dead letters: {}; clean: {}",
        report.pool.joined,
        report.bus.dead_letters,
        report.is_clean()
    );
    Ok(())
}
