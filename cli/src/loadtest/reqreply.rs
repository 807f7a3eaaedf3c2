//! `reqreply`: a plain thread makes sequential requests to a component and waits for each
//! reply (`bus.request(..).wait()`); latency percentiles of the round trip.
//!
//! Floor: a server thread answers over a pair of `crossbeam_channel::bounded` channels.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use crossbeam::channel::bounded;
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};

use super::measure::{latency_histogram, quantile_us, record, Budget};
use super::{Better, Checks, FloorItem, Knobs, Metric, Run, Scenario, Unit, Verdict};

const TOPIC: &str = "load.echo";

pub(crate) struct ReqReply {
    budget: Budget,
    mailbox: usize,
    knobs: Knobs,
}

impl ReqReply {
    pub(crate) fn new(k: &Knobs) -> ReqReply {
        ReqReply {
            budget: k.budget_or(100_000),
            mailbox: k.mailbox,
            knobs: *k,
        }
    }
}

/// Answers every request with its own payload.
struct Echo;

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let payload = msg.payload().clone();
        ctx.reply(&mut msg, Message::new(payload))?;
        Ok(())
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "p50",
        unit: Unit::Micros,
        better: Better::Lower,
    },
    Metric {
        name: "p99",
        unit: Unit::Micros,
        better: Better::Lower,
    },
    Metric {
        name: "p99.9",
        unit: Unit::Micros,
        better: Better::Lower,
    },
    Metric {
        name: "requests/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
];

/// A request's timeout: far above any latency measured, so a timeout is a failure.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Scenario for ReqReply {
    fn name(&self) -> &'static str {
        "reqreply"
    }

    fn params(&self) -> String {
        self.budget.describe("requests")
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.deploy_with(
            "echo",
            ComponentOptions::new()
                .mailbox_capacity(self.mailbox)
                .subscribe(TOPIC),
            || Echo,
        )?;
        rt.start()?;
        let payload = self.knobs.payload();
        let mut h = latency_histogram();
        let mut quota = self.budget.quota(0, 1);
        let started = Instant::now();
        let mut answered = 0u64;
        while quota.next() {
            let t = Instant::now();
            let reply = rt
                .bus()
                .request(TOPIC, Message::new(payload.clone()), TIMEOUT)
                .context("request refused")?
                .wait()
                .context("request failed")?;
            record(&mut h, t.elapsed());
            drop(reply);
            answered += 1;
        }
        let elapsed = started.elapsed();
        let report = rt.stop()?;
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("answered", answered, n);
        }
        check.eq(
            "handled by echo",
            report.component("echo").map_or(0, |c| c.handled),
            answered,
        );
        check.eq("recorded latencies", h.len(), answered);
        Ok(Run::checked(figures(&h, answered, elapsed), check.0))
    }

    fn floor(&self) -> Result<Run> {
        let payload = self.knobs.floor_payload();
        let (req_tx, req_rx) = bounded::<FloorItem>(self.mailbox);
        let (rep_tx, rep_rx) = bounded::<FloorItem>(1);
        let server = thread::spawn(move || {
            for p in req_rx.iter() {
                if rep_tx.send(p).is_err() {
                    break;
                }
            }
        });
        let mut h = latency_histogram();
        let mut quota = self.budget.quota(0, 1);
        let started = Instant::now();
        let mut answered = 0u64;
        while quota.next() {
            let t = Instant::now();
            req_tx.send(payload.clone()).context("server gone")?;
            drop(rep_rx.recv().context("server gone")?);
            record(&mut h, t.elapsed());
            answered += 1;
        }
        let elapsed = started.elapsed();
        drop(req_tx);
        server.join().expect("server panicked");
        let mut check = Checks::default();
        check.eq("recorded latencies", h.len(), answered);
        Ok(Run::checked(figures(&h, answered, elapsed), check.0))
    }

    fn verdict(&self, ours: &[f64], _floor: &[f64]) -> Option<Verdict> {
        Some(Verdict {
            target: "p50≤1 µs, p99≤2 µs".into(),
            met: ours[0] <= 1.0 && ours[1] <= 2.0,
        })
    }
}

fn figures(h: &hdrhistogram::Histogram<u64>, answered: u64, elapsed: Duration) -> Vec<f64> {
    vec![
        quantile_us(h, 0.50),
        quantile_us(h, 0.99),
        quantile_us(h, 0.999),
        answered as f64 / elapsed.as_secs_f64(),
    ]
}
