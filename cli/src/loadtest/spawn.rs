//! `spawn`: deploy N components (10,000 by default), start them, send one message to each
//! through the bus, wait until every one has handled it, and stop the runtime. Reports the
//! whole time and the peak resident memory it added.
//!
//! Floor: N plain threads, each `recv`ing one message from its own
//! `crossbeam_channel::bounded` channel, then joined.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use anyhow::{Context as _, Result};
use crossbeam::channel::bounded;
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};

use super::measure::{peak_rss_bytes, reset_peak_rss, rss_bytes, wait_for_count};
use super::{Better, Checks, Knobs, Metric, Run, Scenario, Unit, Verdict};

const MAILBOX: usize = 16;
const MIB: f64 = 1024.0 * 1024.0;

pub(crate) struct Spawn {
    components: usize,
}

impl Spawn {
    pub(crate) fn new(k: &Knobs) -> Spawn {
        Spawn {
            components: k.components.unwrap_or(10_000),
        }
    }
}

/// Counts its one message into a shared counter.
struct Once(Arc<AtomicU64>);

impl Component for Once {
    fn handle(&mut self, _: Message, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "deploy..stop",
        unit: Unit::Millis,
        better: Better::Lower,
    },
    Metric {
        name: "peak RSS delta",
        unit: Unit::MiB,
        better: Better::Lower,
    },
];

/// Tracks the peak RSS of a run: the kernel's high-water mark where it can be reset, else
/// the largest of the samples taken.
struct Peak {
    base: u64,
    kernel: bool,
    sampled: u64,
}

impl Peak {
    fn start() -> Result<Peak> {
        let kernel = reset_peak_rss();
        let base = rss_bytes()?;
        Ok(Peak {
            base,
            kernel,
            sampled: base,
        })
    }

    fn sample(&mut self) -> Result<()> {
        self.sampled = self.sampled.max(rss_bytes()?);
        Ok(())
    }

    fn delta_mib(&self) -> Result<f64> {
        let peak = if self.kernel {
            peak_rss_bytes()?
        } else {
            self.sampled
        };
        Ok(peak.saturating_sub(self.base) as f64 / MIB)
    }
}

impl Scenario for Spawn {
    fn name(&self) -> &'static str {
        "spawn"
    }

    fn params(&self) -> String {
        format!("N={}", self.components)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn ours(&self) -> Result<Run> {
        let mut peak = Peak::start()?;
        let started = Instant::now();
        let handled = Arc::new(AtomicU64::new(0));
        let rt = Runtime::builder().worker_threads(1).build()?;
        for i in 0..self.components {
            let count = handled.clone();
            rt.deploy_with(
                &format!("c{i}"),
                ComponentOptions::new()
                    .mailbox_capacity(MAILBOX)
                    .subscribe(format!("load.spawn.{i}")),
                move || Once(count.clone()),
            )
            .with_context(|| format!("deploying component {i}"))?;
        }
        rt.start()?;
        for i in 0..self.components {
            rt.bus()
                .send(&format!("load.spawn.{i}"), Message::empty())?;
        }
        wait_for_count(
            &handled,
            self.components as u64,
            "components that handled their message",
        )?;
        peak.sample()?;
        let report = rt.stop()?;
        let elapsed = started.elapsed();
        drop(rt);
        let mut check = Checks::default();
        check.eq(
            "components stopped",
            report.components.len() as u64,
            self.components as u64,
        );
        check.eq(
            "messages handled",
            report.components.iter().map(|c| c.handled).sum(),
            self.components as u64,
        );
        check.that(report.is_clean(), || {
            let bad: Vec<_> = report
                .components
                .iter()
                .filter(|c| c.failure.is_some() || !c.joined)
                .take(3)
                .collect();
            format!("unclean stop, e.g. {bad:?}")
        });
        Ok(Run::checked(
            vec![elapsed.as_secs_f64() * 1e3, peak.delta_mib()?],
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        let mut peak = Peak::start()?;
        let started = Instant::now();
        let handled = Arc::new(AtomicU64::new(0));
        let mut txs = Vec::with_capacity(self.components);
        let mut threads = Vec::with_capacity(self.components);
        for i in 0..self.components {
            let (tx, rx) = bounded::<()>(MAILBOX);
            let count = handled.clone();
            let t = thread::Builder::new()
                .name(format!("floor-{i}"))
                .spawn(move || {
                    for () in rx.iter() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .with_context(|| format!("spawning floor thread {i}"))?;
            txs.push(tx);
            threads.push(t);
        }
        for tx in &txs {
            tx.send(()).expect("thread alive");
        }
        wait_for_count(
            &handled,
            self.components as u64,
            "floor threads that handled their message",
        )?;
        peak.sample()?;
        drop(txs);
        for t in threads {
            t.join().expect("floor thread panicked");
        }
        let elapsed = started.elapsed();
        let mut check = Checks::default();
        check.eq(
            "messages handled",
            handled.load(Ordering::Relaxed),
            self.components as u64,
        );
        Ok(Run::checked(
            vec![elapsed.as_secs_f64() * 1e3, peak.delta_mib()?],
            check.0,
        ))
    }

    fn verdict(&self, ours: &[f64], floor: &[f64]) -> Option<Verdict> {
        (self.components == 10_000).then(|| Verdict {
            target: "faster than floor, ≤64 MiB".into(),
            met: ours[0] < floor[0] && ours[1] <= 64.0,
        })
    }
}
