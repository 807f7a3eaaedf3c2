//! `fanout`: one publisher sends each message to K subscribers through `bus.publish`.
//!
//! A refused copy comes back in the `PublishReport`; the publisher backs off and hands it to
//! the named subscriber's reactor until it is taken, so every subscriber gets every message.
//! Floor: one thread `send`s each message into K `crossbeam_channel::bounded(mailbox)`
//! channels, each drained by its own thread.

use std::collections::HashMap;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use reactorium::{ComponentOptions, Message, Reactor, Runtime, SendError};

use super::fanin::Sink;
use super::measure::{Backoff, Budget};
use super::{Better, Checks, FloorItem, Knobs, Metric, Run, Scenario, Unit, Verdict};

const TOPIC: &str = "load.fanout";

pub(crate) struct Fanout {
    subscribers: usize,
    budget: Budget,
    mailbox: usize,
    knobs: Knobs,
}

impl Fanout {
    pub(crate) fn new(k: &Knobs) -> Fanout {
        Fanout {
            subscribers: k.components.unwrap_or(64),
            budget: k.budget_or(50_000),
            mailbox: k.mailbox,
            knobs: *k,
        }
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "deliveries/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
    Metric {
        name: "refusals/delivery",
        unit: Unit::Count,
        better: Better::Lower,
    },
];

impl Scenario for Fanout {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn params(&self) -> String {
        format!(
            "K={} mailbox={} {}",
            self.subscribers,
            self.mailbox,
            self.budget.describe("publishes")
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        let mut subs: HashMap<String, Reactor> = HashMap::new();
        for i in 0..self.subscribers {
            let name = format!("sub{i}");
            let r = rt.deploy_with(
                &name,
                ComponentOptions::new()
                    .mailbox_capacity(self.mailbox)
                    .subscribe(TOPIC),
                || Sink,
            )?;
            subs.insert(name, r);
        }
        rt.start()?;
        let payload = self.knobs.payload();
        let started = Instant::now();
        let mut quota = self.budget.quota(0, 1);
        let (mut published, mut refused) = (0u64, 0u64);
        let backoff = Backoff::new();
        while quota.next() {
            let report = rt.bus().publish(TOPIC, Message::new(payload.clone()))?;
            for refusal in report.refused {
                let SendError::Backpressure {
                    target,
                    mut rejected,
                    ..
                } = refusal
                else {
                    bail!("publish refused: {}", refusal);
                };
                let to = subs
                    .get(&*target)
                    .context("refusal names an unknown subscriber")?;
                loop {
                    refused += 1;
                    backoff.snooze();
                    match to.send(rejected) {
                        Ok(()) => break,
                        Err(SendError::Backpressure { rejected: r, .. }) => rejected = r,
                        Err(e) => bail!("send failed: {}", e),
                    }
                }
                backoff.reset();
            }
            published += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while subs.values().any(|r| r.stats().handled < published) && Instant::now() < deadline {
            thread::sleep(Duration::from_micros(100));
        }
        let elapsed = started.elapsed();
        let report = rt.stop()?;
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("published", published, n);
        }
        for c in &report.components {
            check.eq(&format!("handled by {}", c.name), c.handled, published);
        }
        check.eq(
            "subscribers in the report",
            report.components.len() as u64,
            self.subscribers as u64,
        );
        let deliveries = published * self.subscribers as u64;
        Ok(Run::checked(
            vec![
                deliveries as f64 / elapsed.as_secs_f64(),
                refused as f64 / deliveries.max(1) as f64,
            ],
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        let payload = self.knobs.floor_payload();
        let barrier = Barrier::new(2);
        let (published, received, elapsed) = thread::scope(|s| {
            let (txs, consumers): (Vec<_>, Vec<_>) = (0..self.subscribers)
                .map(|_| {
                    let (tx, rx) = crossbeam::channel::bounded::<FloorItem>(self.mailbox);
                    (tx, s.spawn(move || rx.iter().map(drop).count() as u64))
                })
                .unzip();
            let publisher = s.spawn(|| {
                barrier.wait();
                let mut quota = self.budget.quota(0, 1);
                let mut n = 0u64;
                while quota.next() {
                    for tx in &txs {
                        tx.send(payload.clone()).expect("consumer alive");
                    }
                    n += 1;
                }
                drop(txs);
                n
            });
            barrier.wait();
            let started = Instant::now();
            let published = publisher.join().unwrap();
            let received: Vec<u64> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
            (published, received, started.elapsed())
        });
        let mut check = Checks::default();
        for (i, r) in received.iter().enumerate() {
            check.eq(&format!("received by consumer {i}"), *r, published);
        }
        let deliveries = published * self.subscribers as u64;
        Ok(Run::checked(
            vec![deliveries as f64 / elapsed.as_secs_f64(), 0.0],
            check.0,
        ))
    }

    fn verdict(&self, ours: &[f64], floor: &[f64]) -> Option<Verdict> {
        (self.subscribers == 64).then(|| Verdict {
            target: "≥0.5× and ≥20 M/s".into(),
            met: ours[0] >= 0.5 * floor[0] && ours[0] >= 20e6,
        })
    }
}
