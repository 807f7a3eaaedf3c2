//! `workers`: P plain threads saturate the worker pool with small jobs through
//! `WorkerPool::execute`. A refused job is handed back; the producer counts the refusal,
//! backs off and offers it again. Jobs/s counts jobs run.
//!
//! Floor: W threads `recv` boxed jobs from one `crossbeam_channel::bounded(queue)`; the
//! producers `send` (blocking).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use anyhow::{bail, Result};
use crossbeam::channel::bounded;
use reactorium::{Runtime, SendError};

use super::measure::{wait_for_count, Backoff, Budget};
use super::{Better, Checks, Knobs, Metric, Run, Scenario, Unit};

pub(crate) struct Workers {
    producers: usize,
    workers: usize,
    queue: usize,
    budget: Budget,
}

impl Workers {
    pub(crate) fn new(k: &Knobs) -> Workers {
        Workers {
            producers: k.producers.unwrap_or(2),
            workers: k.workers.unwrap_or(2),
            queue: k.mailbox,
            budget: k.budget_or(1_000_000),
        }
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "jobs/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
    Metric {
        name: "refusals/job",
        unit: Unit::Count,
        better: Better::Lower,
    },
];

/// The job: a little arithmetic, and a count of jobs run.
fn job(ran: &AtomicU64, seed: u64) {
    let mut x = seed;
    for _ in 0..16 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    std::hint::black_box(x);
    ran.fetch_add(1, Ordering::Relaxed);
}

impl Scenario for Workers {
    fn name(&self) -> &'static str {
        "workers"
    }

    fn params(&self) -> String {
        format!(
            "P={} W={} queue={} {}",
            self.producers,
            self.workers,
            self.queue,
            self.budget.describe("jobs")
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder()
            .worker_threads(self.workers)
            .worker_queue_capacity(self.queue)
            .build()?;
        let ran = Arc::new(AtomicU64::new(0));
        let barrier = Barrier::new(self.producers + 1);
        let (counts, started) = thread::scope(|s| {
            let handles: Vec<_> = (0..self.producers)
                .map(|i| {
                    let (barrier, pool, ran) = (&barrier, rt.pool(), &ran);
                    s.spawn(move || -> Result<(u64, u64)> {
                        barrier.wait();
                        let mut quota = self.budget.quota(i, self.producers);
                        let (mut submitted, mut refused) = (0u64, 0u64);
                        let backoff = Backoff::new();
                        while quota.next() {
                            let ran = ran.clone();
                            let seed = submitted;
                            let mut work = Box::new(move || job(&ran, seed));
                            loop {
                                match pool.execute(work) {
                                    Ok(()) => break,
                                    Err(SendError::Backpressure { rejected, .. }) => {
                                        refused += 1;
                                        work = rejected;
                                        backoff.snooze();
                                    }
                                    Err(e) => bail!("submit failed: {}", e),
                                }
                            }
                            backoff.reset();
                            submitted += 1;
                        }
                        Ok((submitted, refused))
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            let counts = handles
                .into_iter()
                .map(|h| h.join().expect("producer panicked"))
                .collect::<Result<Vec<_>>>();
            (counts, started)
        });
        let counts = counts?;
        let submitted: u64 = counts.iter().map(|c| c.0).sum();
        let refused: u64 = counts.iter().map(|c| c.1).sum();
        wait_for_count(&ran, submitted, "jobs run")?;
        let elapsed = started.elapsed();
        let stats = rt.pool().stats();
        let report = rt.stop()?;
        let mut check = Checks::default();
        if let Budget::Count(n) = self.budget {
            check.eq("submitted", submitted, n);
        }
        check.eq("jobs run", ran.load(Ordering::Relaxed), submitted);
        check.eq("refusals counted by the pool", stats.rejected, refused);
        check.eq(
            "worker threads joined",
            report.pool.joined as u64,
            self.workers as u64,
        );
        Ok(Run::checked(
            vec![
                submitted as f64 / elapsed.as_secs_f64(),
                refused as f64 / submitted.max(1) as f64,
            ],
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        type Job = Box<dyn FnOnce() + Send>;
        let (tx, rx) = bounded::<Job>(self.queue);
        let ran = Arc::new(AtomicU64::new(0));
        let barrier = Barrier::new(self.producers + 1);
        let (submitted, elapsed) = thread::scope(|s| {
            for _ in 0..self.workers {
                let rx = rx.clone();
                s.spawn(move || rx.iter().for_each(|j| j()));
            }
            drop(rx);
            let producers: Vec<_> = (0..self.producers)
                .map(|i| {
                    let (tx, barrier, ran) = (tx.clone(), &barrier, &ran);
                    s.spawn(move || {
                        barrier.wait();
                        let mut quota = self.budget.quota(i, self.producers);
                        let mut n = 0u64;
                        while quota.next() {
                            let (ran, seed) = (ran.clone(), n);
                            tx.send(Box::new(move || job(&ran, seed)) as Job)
                                .expect("workers alive");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            drop(tx);
            barrier.wait();
            let started = Instant::now();
            let submitted: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
            let waited = wait_for_count(&ran, submitted, "jobs run");
            (waited.map(|()| submitted), started.elapsed())
        });
        let submitted = submitted?;
        let mut check = Checks::default();
        check.eq("jobs run", ran.load(Ordering::Relaxed), submitted);
        Ok(Run::checked(
            vec![submitted as f64 / elapsed.as_secs_f64(), 0.0],
            check.0,
        ))
    }
}
