//! Metrics: the [`Histogram`] of durations, the striped counters the bus counts its traffic
//! with, and the Prometheus text format writer that renders
//! [`RuntimeStats`](crate::RuntimeStats) and every front-end's own families.
//!
//! Depends on `types` only, so every other module may count with it. What is counted, and
//! where, lives with each module (`ReactorStats`, `BusStats`, `WorkerPoolStats`); the
//! runtime gathers them into one snapshot ([`Runtime::stats`](crate::Runtime::stats)).
//!
//! Hot-path costs: a striped counter is one relaxed `fetch_add` on a cache line of the
//! calling thread's own (see `Striped`); a histogram record is a binary search over its bounds
//! and two relaxed `fetch_add`s, plus the two clock reads of whoever times the work.

mod histogram;
mod striped;
mod text;

pub use histogram::{Histogram, HistogramSnapshot};

pub(crate) use striped::Striped;
pub use text::TextWriter;
