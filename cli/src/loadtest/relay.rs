//! `pingpong` and `ring`: components pass one token from reactor to reactor.
//!
//! `pingpong` is a ring of two, counted in round trips; `ring` is R components, counted in
//! hops. Only one token is in flight, so each hop is a hand-off to a thread that was idle:
//! this measures the wake-up path. Floor: R threads in a ring of
//! `crossbeam_channel::bounded(mailbox)` channels, each `recv`ing and `send`ing on.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use crossbeam::channel::{bounded, Sender};
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};

use super::measure::{Budget, Halt};
use super::{Better, Checks, Knobs, Metric, Run, Scenario, Unit, Verdict};

pub(crate) struct Relay {
    /// `pingpong` or `ring`.
    name: &'static str,
    components: usize,
    budget: Budget,
    mailbox: usize,
}

impl Relay {
    pub(crate) fn pingpong(k: &Knobs) -> Relay {
        Relay {
            name: "pingpong",
            components: 2,
            // Counted in round trips on the command line, in hops here.
            budget: match k.budget {
                Some(Budget::Count(n)) => Budget::Count(n.saturating_mul(2)),
                Some(t) => t,
                None => Budget::Count(200_000),
            },
            mailbox: k.mailbox,
        }
    }

    pub(crate) fn ring(k: &Knobs) -> Relay {
        Relay {
            name: "ring",
            components: k.components.unwrap_or(100).max(2),
            budget: k.budget.unwrap_or(Budget::Count(100_000)),
            mailbox: k.mailbox,
        }
    }

    /// Hops per unit the scenario reports: a round trip is two hops.
    fn hops_per_unit(&self) -> f64 {
        if self.name == "pingpong" {
            2.0
        } else {
            1.0
        }
    }
}

/// How a relay run ended: the hops made, or what went wrong.
type Finish = Result<u64, String>;

/// Takes the token (a `u64` hop count) and sends it on to the next component.
struct Station {
    next: String,
    limit: u64,
    halt: Halt,
    done: Sender<Finish>,
}

impl Component for Station {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let hops = msg.take::<u64>().map_err(|_| "the token carries a u64")? + 1;
        if hops >= self.limit || self.halt.is_set() {
            let _ = self.done.send(Ok(hops));
            return Ok(());
        }
        if let Err(e) = ctx.send(&self.next, Message::typed(hops)) {
            let _ = self.done.send(Err(e.to_string()));
        }
        Ok(())
    }
}

const PINGPONG: &[Metric] = &[Metric {
    name: "round trips/s",
    unit: Unit::Rate,
    better: Better::Higher,
}];

const RING: &[Metric] = &[Metric {
    name: "hops/s",
    unit: Unit::Rate,
    better: Better::Higher,
}];

fn topic(i: usize) -> String {
    format!("load.relay.{i}")
}

impl Scenario for Relay {
    fn name(&self) -> &'static str {
        self.name
    }

    fn params(&self) -> String {
        let unit = if self.name == "pingpong" {
            "round trips"
        } else {
            "hops"
        };
        let budget = match self.budget {
            Budget::Count(n) => Budget::Count(n / self.hops_per_unit() as u64),
            t => t,
        };
        if self.name == "pingpong" {
            budget.describe(unit)
        } else {
            format!("R={} {}", self.components, budget.describe(unit))
        }
    }

    fn metrics(&self) -> &'static [Metric] {
        if self.name == "pingpong" {
            PINGPONG
        } else {
            RING
        }
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        let (done, finished) = bounded::<Finish>(self.components + 1);
        let halt = Halt::default();
        for i in 0..self.components {
            let (next, limit, halt, done) = (
                topic((i + 1) % self.components),
                self.budget.hops(),
                halt.clone(),
                done.clone(),
            );
            rt.deploy_with(
                &format!("station{i}"),
                ComponentOptions::new()
                    .mailbox_capacity(self.mailbox)
                    .subscribe(topic(i)),
                move || Station {
                    next: next.clone(),
                    limit,
                    halt: halt.clone(),
                    done: done.clone(),
                },
            )?;
        }
        rt.start()?;
        let started = Instant::now();
        rt.bus().send(&topic(0), Message::typed(0u64))?;
        halt.after(self.budget);
        let hops = finished
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| anyhow!("the token did not come back within 120 s"))?
            .map_err(|e| anyhow!("a station could not pass the token on: {e}"))?;
        let elapsed = started.elapsed();
        let report = rt.stop()?;
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("hops", hops, n);
        }
        let handled: u64 = report.components.iter().map(|c| c.handled).sum();
        check.eq("messages handled by the stations", handled, hops);
        check.that(report.is_clean(), || format!("unclean stop: {report:?}"));
        Ok(Run::checked(
            vec![hops as f64 / self.hops_per_unit() / elapsed.as_secs_f64()],
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        const STOP: u64 = u64::MAX;
        let limit = self.budget.hops();
        let halt = Halt::default();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..self.components)
            .map(|_| bounded::<u64>(self.mailbox))
            .unzip();
        let (done, finished) = bounded::<u64>(1);
        let (hops, elapsed) = thread::scope(|s| {
            for (i, rx) in rxs.into_iter().enumerate() {
                let next = txs[(i + 1) % self.components].clone();
                let (halt, done) = (halt.clone(), done.clone());
                s.spawn(move || {
                    for v in rx.iter() {
                        if v == STOP {
                            let _ = next.send(STOP);
                            return;
                        }
                        let hops = v + 1;
                        if hops >= limit || halt.is_set() {
                            let _ = done.send(hops);
                            let _ = next.send(STOP);
                            return;
                        }
                        next.send(hops).expect("the ring holds one token");
                    }
                });
            }
            let started = Instant::now();
            txs[0].send(0).expect("station 0 alive");
            drop(txs);
            halt.after(self.budget);
            let hops = finished.recv().expect("a station finishes");
            (hops, started.elapsed())
        });
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("hops", hops, n);
        }
        Ok(Run::checked(
            vec![hops as f64 / self.hops_per_unit() / elapsed.as_secs_f64()],
            check.0,
        ))
    }

    fn verdict(&self, ours: &[f64], floor: &[f64]) -> Option<Verdict> {
        if self.name == "pingpong" {
            Some(Verdict {
                target: "≥0.5×".into(),
                met: ours[0] >= 0.5 * floor[0],
            })
        } else {
            (self.components == 100).then(|| Verdict {
                target: "≥1×".into(),
                met: ours[0] >= floor[0],
            })
        }
    }
}
