//! What every scenario measures with: budgets, resident memory, percentiles, medians.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hdrhistogram::Histogram;

/// How much work a run does: a number of messages, or as many as fit in a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Budget {
    Count(u64),
    Time(Duration),
}

impl Budget {
    /// This producer's share of the budget, counting from now.
    pub(crate) fn quota(self, share: usize, of: usize) -> Quota {
        match self {
            Budget::Count(n) => {
                let of = of as u64;
                let share = share as u64;
                Quota {
                    limit: n / of + u64::from(share < n % of),
                    end: None,
                    done: 0,
                }
            }
            Budget::Time(d) => Quota {
                limit: u64::MAX,
                end: Some(Instant::now() + d),
                done: 0,
            },
        }
    }

    /// The hop count a relay runs to (`u64::MAX` for a timed run, which a [`Halt`] ends).
    pub(crate) fn hops(self) -> u64 {
        match self {
            Budget::Count(n) => n,
            Budget::Time(_) => u64::MAX,
        }
    }

    pub(crate) fn describe(self, unit: &str) -> String {
        match self {
            Budget::Count(n) => format!("{} {unit}", si(n as f64)),
            Budget::Time(d) => format!("{:.1} s", d.as_secs_f64()),
        }
    }
}

/// One producer's remaining budget.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: u64,
    end: Option<Instant>,
    done: u64,
}

impl Quota {
    /// `true` while this producer may offer another message.
    #[inline]
    pub(crate) fn next(&mut self) -> bool {
        if self.done >= self.limit {
            return false;
        }
        if let Some(end) = self.end {
            // A clock read every 256 messages keeps the check off the hot path.
            if self.done % 256 == 0 && Instant::now() >= end {
                self.limit = self.done;
                return false;
            }
        }
        self.done += 1;
        true
    }
}

/// Tells relays (ping-pong, ring) on a timed budget when to stop passing the token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Halt(Arc<AtomicBool>);

impl Halt {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the flag after `budget`'s time (at once for a count budget, which needs none).
    pub(crate) fn after(&self, budget: Budget) {
        if let Budget::Time(d) = budget {
            std::thread::sleep(d);
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Waits until `count` reaches `n`, polling every 100 µs, for at most 120 s. `what` names the
/// count in the error: "jobs run: 17 of 20 within 120 s".
pub(crate) fn wait_for_count(count: &AtomicU64, n: u64, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!(
                "{what}: {} of {n} within 120 s",
                count.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// Resident set size of this process, in bytes, from `/proc/self/status`.
pub(crate) fn rss_bytes() -> Result<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size since the last [`reset_peak_rss`], in bytes.
pub(crate) fn peak_rss_bytes() -> Result<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) to the current RSS, so a scenario can read its
/// own peak. Returns `false` where the kernel does not allow it.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(field: &str) -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let Some(line) = status.lines().find(|l| l.starts_with(field)) else {
        bail!("/proc/self/status has no {field} line");
    };
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {line:?}"))
}

/// A latency histogram in nanoseconds, 1 ns to 60 s at 3 significant figures.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (saturating at the histogram's top).
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().max(1) as u64);
}

/// The `q` quantile of `h`, in microseconds.
pub(crate) fn quantile_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

/// The median of `xs` (the mean of the middle two for an even count).
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `x` with an SI suffix: 12.3 M, 4.56 k.
pub(crate) fn si(x: f64) -> String {
    let (v, s) = if x >= 1e9 {
        (x / 1e9, " G")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e3 {
        (x / 1e3, " k")
    } else {
        (x, "")
    };
    if s.is_empty() && v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.0}{s}")
    } else if v >= 10.0 {
        format!("{v:.1}{s}")
    } else {
        format!("{v:.2}{s}")
    }
}

/// Spins, then yields: what a producer does after a refusal before it offers again.
pub(crate) use crossbeam::utils::Backoff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_quotas_add_up_to_the_budget() {
        for (n, p) in [(10, 3), (7, 7), (5, 8), (1_000_001, 4)] {
            let total: u64 = (0..p)
                .map(|i| {
                    let mut q = Budget::Count(n).quota(i, p);
                    let mut k = 0;
                    while q.next() {
                        k += 1;
                    }
                    k
                })
                .sum();
            assert_eq!(total, n, "n={n} p={p}");
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn si_suffixes() {
        assert_eq!(si(12_345_678.0), "12.3 M");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(1_500.0), "1.50 k");
    }

    #[test]
    fn rss_is_readable() {
        assert!(rss_bytes().unwrap() > 0);
        assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
    }
}
