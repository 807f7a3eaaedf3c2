//! `fanin`: P plain producer threads send to one component through `bus.send`.
//!
//! Floor: P threads `send` into one `crossbeam_channel::bounded(mailbox)` drained by one
//! thread. On a refusal a reactorium producer backs off and offers the returned message
//! again; the floor's `send` blocks instead.

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime, SendError};

use super::measure::{Backoff, Budget};
use super::{Better, Checks, FloorItem, Knobs, Metric, Run, Scenario, Unit, Verdict};

const TOPIC: &str = "load.fanin";

pub(crate) struct Fanin {
    producers: usize,
    budget: Budget,
    mailbox: usize,
    knobs: Knobs,
}

impl Fanin {
    pub(crate) fn new(k: &Knobs, producers: usize) -> Fanin {
        Fanin {
            producers,
            budget: k.budget_or(2_000_000),
            mailbox: k.mailbox,
            knobs: *k,
        }
    }
}

/// Counts what it is given; the count is read back from `ReactorStats::handled`.
pub(crate) struct Sink;

impl Component for Sink {
    fn handle(&mut self, msg: Message, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        drop(msg);
        Ok(())
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "msg/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
    Metric {
        name: "refusals/msg",
        unit: Unit::Count,
        better: Better::Lower,
    },
];

/// What each producer did.
#[derive(Default)]
struct Offered {
    accepted: u64,
    refused: u64,
}

impl Scenario for Fanin {
    fn name(&self) -> &'static str {
        "fanin"
    }

    fn params(&self) -> String {
        format!(
            "P={} mailbox={} {}",
            self.producers,
            self.mailbox,
            self.budget.describe("msgs")
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        let sink = rt.deploy_with(
            "sink",
            ComponentOptions::new()
                .mailbox_capacity(self.mailbox)
                .subscribe(TOPIC),
            || Sink,
        )?;
        rt.start()?;
        let payload = self.knobs.payload();
        let barrier = Barrier::new(self.producers + 1);
        let (offered, started) = thread::scope(|s| {
            let handles: Vec<_> = (0..self.producers)
                .map(|i| {
                    let (barrier, payload, bus) = (&barrier, &payload, rt.bus());
                    s.spawn(move || -> Result<Offered> {
                        barrier.wait();
                        let mut quota = self.budget.quota(i, self.producers);
                        let mut o = Offered::default();
                        let backoff = Backoff::new();
                        while quota.next() {
                            let mut msg = Message::new(payload.clone());
                            loop {
                                match bus.send(TOPIC, msg) {
                                    Ok(()) => break,
                                    Err(SendError::Backpressure { rejected, .. }) => {
                                        o.refused += 1;
                                        msg = rejected;
                                        backoff.snooze();
                                    }
                                    Err(e) => bail!("send failed: {}", e),
                                }
                            }
                            backoff.reset();
                            o.accepted += 1;
                        }
                        Ok(o)
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            let offered = handles
                .into_iter()
                .map(|h| h.join().expect("producer panicked"))
                .collect::<Result<Vec<_>>>();
            (offered, started)
        });
        let offered = offered?;
        let accepted: u64 = offered.iter().map(|o| o.accepted).sum();
        let refused: u64 = offered.iter().map(|o| o.refused).sum();
        // Done when the sink has handled everything accepted.
        let deadline = Instant::now() + Duration::from_secs(30);
        while sink.stats().handled < accepted && Instant::now() < deadline {
            thread::sleep(Duration::from_micros(100));
        }
        let elapsed = started.elapsed();
        let report = rt.stop()?;
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("accepted", accepted, n);
        }
        let handled = report.component("sink").map_or(0, |c| c.handled);
        check.eq("handled by the sink", handled, accepted);
        check.eq(
            "refusals counted by the reactor",
            sink.stats().rejected,
            refused,
        );
        Ok(Run::checked(
            vec![
                accepted as f64 / elapsed.as_secs_f64(),
                refused as f64 / accepted.max(1) as f64,
            ],
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        let (tx, rx) = crossbeam::channel::bounded::<FloorItem>(self.mailbox);
        let payload = self.knobs.floor_payload();
        let barrier = Barrier::new(self.producers + 1);
        let (sent, received, elapsed) = thread::scope(|s| {
            let consumer = s.spawn(move || rx.iter().map(drop).count() as u64);
            let producers: Vec<_> = (0..self.producers)
                .map(|i| {
                    let (tx, barrier, payload) = (tx.clone(), &barrier, &payload);
                    s.spawn(move || {
                        barrier.wait();
                        let mut quota = self.budget.quota(i, self.producers);
                        let mut n = 0u64;
                        while quota.next() {
                            tx.send(payload.clone()).expect("consumer alive");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            drop(tx);
            barrier.wait();
            let started = Instant::now();
            let sent: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
            let received = consumer.join().unwrap();
            (sent, received, started.elapsed())
        });
        let mut check = Checks::default();
        check.eq("received", received, sent);
        Ok(Run::checked(
            vec![sent as f64 / elapsed.as_secs_f64(), 0.0],
            check.0,
        ))
    }

    fn verdict(&self, ours: &[f64], floor: &[f64]) -> Option<Verdict> {
        (self.producers == 4).then(|| Verdict {
            target: "≥0.5× and ≥15 M/s".into(),
            met: ours[0] >= 0.5 * floor[0] && ours[0] >= 15e6,
        })
    }
}
