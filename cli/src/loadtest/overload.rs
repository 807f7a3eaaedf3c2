//! `overload`: P producers offer messages as fast as they can, for a fixed time, to one
//! component that spends `WORK` on each. Most offers are refused with `Backpressure`; the
//! producers count each refusal and drop the message handed back (that is the documented
//! choice a load-shedding producer makes). Reports accepted and refused rates, the latency of
//! accepted messages (queueing included) and resident memory at the start and the end: a
//! bounded mailbox must keep it flat.
//!
//! Floor: the same producers `try_send` into one `crossbeam_channel::bounded(mailbox)` read
//! by one thread doing the same work.

use std::sync::mpsc;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use crossbeam::channel::{bounded, TrySendError};
use hdrhistogram::Histogram;
use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime, SendError};

use super::measure::{latency_histogram, quantile_us, record, rss_bytes, Backoff, Budget};
use super::{Better, Checks, Knobs, Metric, Run, Scenario, Unit, Verdict};

const TOPIC: &str = "load.overload";
/// What the slow component spends on each message.
const WORK: Duration = Duration::from_micros(20);
/// RSS is first read after this much of the run, once the mailbox has filled.
const WARMUP: Duration = Duration::from_millis(250);
const MIB: f64 = 1024.0 * 1024.0;

pub(crate) struct Overload {
    producers: usize,
    duration: Duration,
    mailbox: usize,
}

impl Overload {
    pub(crate) fn new(k: &Knobs) -> Overload {
        Overload {
            producers: k.producers.unwrap_or(2),
            duration: match k.budget {
                Some(Budget::Time(d)) => d,
                _ => Duration::from_secs(2),
            },
            mailbox: k.mailbox,
        }
    }
}

fn busy(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Works on each message for `WORK` and records how long it waited; hands its histogram over
/// when it stops.
struct Slow {
    latency: Histogram<u64>,
    out: mpsc::Sender<Histogram<u64>>,
}

impl Component for Slow {
    fn handle(&mut self, msg: Message, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let sent = *msg
            .get::<Instant>()
            .ok_or("an offer carries its send time")?;
        record(&mut self.latency, sent.elapsed());
        busy(WORK);
        Ok(())
    }

    fn stop(&mut self, _: &mut Context<'_, Self>) {
        let _ = self
            .out
            .send(std::mem::replace(&mut self.latency, latency_histogram()));
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "accepted/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
    Metric {
        name: "refused/s",
        unit: Unit::Rate,
        better: Better::Lower,
    },
    Metric {
        name: "p99 accepted",
        unit: Unit::Micros,
        better: Better::Lower,
    },
    Metric {
        name: "RSS start",
        unit: Unit::MiB,
        better: Better::Lower,
    },
    Metric {
        name: "RSS end",
        unit: Unit::MiB,
        better: Better::Lower,
    },
    Metric {
        name: "RSS growth",
        unit: Unit::Percent,
        better: Better::Lower,
    },
];

/// What one producer did.
#[derive(Default)]
struct Offered {
    offered: u64,
    accepted: u64,
    refused: u64,
}

/// Runs `producers` threads offering through `offer` for `duration` while the calling thread
/// reads RSS; returns per-producer counts, RSS at start and end (after the warm-up), and the
/// time the offers took.
fn drive(
    producers: usize,
    duration: Duration,
    offer: impl Fn(Instant) -> Result<bool> + Sync,
) -> Result<(Vec<Offered>, u64, u64, Duration)> {
    let barrier = Barrier::new(producers + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                let (barrier, offer) = (&barrier, &offer);
                s.spawn(move || -> Result<Offered> {
                    barrier.wait();
                    let end = Instant::now() + duration;
                    let mut o = Offered::default();
                    let backoff = Backoff::new();
                    while Instant::now() < end {
                        o.offered += 1;
                        if offer(Instant::now())? {
                            o.accepted += 1;
                            backoff.reset();
                        } else {
                            o.refused += 1;
                            backoff.snooze();
                        }
                    }
                    Ok(o)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        thread::sleep(WARMUP.min(duration / 4));
        let rss_start = rss_bytes()?;
        let mut rss_end = rss_start;
        while started.elapsed() + Duration::from_millis(50) < duration {
            thread::sleep(Duration::from_millis(50));
            rss_end = rss_bytes()?;
        }
        let offered = handles
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect::<Result<Vec<_>>>()?;
        Ok((offered, rss_start, rss_end, started.elapsed()))
    })
}

fn figures(
    accepted: u64,
    refused: u64,
    h: &Histogram<u64>,
    rss: (u64, u64),
    elapsed: Duration,
) -> Vec<f64> {
    let secs = elapsed.as_secs_f64();
    vec![
        accepted as f64 / secs,
        refused as f64 / secs,
        quantile_us(h, 0.99),
        rss.0 as f64 / MIB,
        rss.1 as f64 / MIB,
        (rss.1 as f64 - rss.0 as f64) / rss.0 as f64 * 100.0,
    ]
}

impl Scenario for Overload {
    fn name(&self) -> &'static str {
        "overload"
    }

    fn params(&self) -> String {
        format!(
            "P={} mailbox={} work={}µs {:.1} s",
            self.producers,
            self.mailbox,
            WORK.as_micros(),
            self.duration.as_secs_f64()
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn runs(&self, _asked: u64) -> u64 {
        1
    }

    fn ours(&self) -> Result<Run> {
        let rt = Runtime::builder()
            .worker_threads(1)
            .drain_timeout(Duration::from_secs(60))
            .build()?;
        let (out, hist) = mpsc::channel();
        let slow = rt.deploy_with(
            "slow",
            ComponentOptions::new()
                .mailbox_capacity(self.mailbox)
                .subscribe(TOPIC),
            move || Slow {
                latency: latency_histogram(),
                out: out.clone(),
            },
        )?;
        rt.start()?;
        let (offered, rss_start, rss_end, elapsed) =
            drive(self.producers, self.duration, |sent| {
                match rt.bus().send(TOPIC, Message::typed(sent)) {
                    Ok(()) => Ok(true),
                    // Handed back: this producer sheds it, and counts it.
                    Err(SendError::Backpressure { rejected, .. }) => {
                        drop(rejected);
                        Ok(false)
                    }
                    Err(e) => bail!("send failed: {}", e),
                }
            })?;
        let report = rt.stop()?;
        let h = hist
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow!("the slow component did not hand its histogram over"))?;
        let sum = |f: fn(&Offered) -> u64| offered.iter().map(f).sum::<u64>();
        let (n, accepted, refused) = (sum(|o| o.offered), sum(|o| o.accepted), sum(|o| o.refused));
        let mut check = Checks::default();
        check.eq("offered - refused", n - refused, accepted);
        let handled = report.component("slow").map_or(0, |c| c.handled);
        check.eq("handled (every accepted message)", handled, accepted);
        check.eq(
            "refusals counted by the reactor",
            slow.stats().rejected,
            refused,
        );
        check.eq("latencies recorded", h.len(), handled);
        Ok(Run::checked(
            figures(accepted, refused, &h, (rss_start, rss_end), elapsed),
            check.0,
        ))
    }

    fn floor(&self) -> Result<Run> {
        let (tx, rx) = bounded::<Instant>(self.mailbox);
        let consumer = thread::spawn(move || {
            let mut h = latency_histogram();
            for sent in rx.iter() {
                record(&mut h, sent.elapsed());
                busy(WORK);
            }
            h
        });
        let (offered, rss_start, rss_end, elapsed) =
            drive(self.producers, self.duration, |sent| {
                match tx.try_send(sent) {
                    Ok(()) => Ok(true),
                    Err(TrySendError::Full(_)) => Ok(false),
                    Err(TrySendError::Disconnected(_)) => bail!("consumer gone"),
                }
            })?;
        drop(tx);
        let h = consumer.join().expect("consumer panicked");
        let sum = |f: fn(&Offered) -> u64| offered.iter().map(f).sum::<u64>();
        let (n, accepted, refused) = (sum(|o| o.offered), sum(|o| o.accepted), sum(|o| o.refused));
        let mut check = Checks::default();
        check.eq("offered - refused", n - refused, accepted);
        check.eq("latencies recorded", h.len(), accepted);
        Ok(Run::checked(
            figures(accepted, refused, &h, (rss_start, rss_end), elapsed),
            check.0,
        ))
    }

    fn verdict(&self, ours: &[f64], _floor: &[f64]) -> Option<Verdict> {
        Some(Verdict {
            target: "RSS growth ≤5 %, nothing lost".into(),
            met: ours[5] <= 5.0,
        })
    }
}
